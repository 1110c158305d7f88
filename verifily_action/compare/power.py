"""The smallest change a slice can show: the minimum detectable effect (MDE) at 80 % power.

For each slice and metric, the change run - baseline that the slice's test would call significant four times in
five (power 0.8, two-sided, at the comparison's level alpha = 1 - confidence), given the slice's n and how much the
two runs disagree on it. z_a = Phi^-1(1 - alpha/2) (1.96 at 95 %), z_b = Phi^-1(0.8) = 0.84.

  accuracy (McNemar's test)   from the observed discordance p_d = (b + c) / n: the normal approximation to the
      power of McNemar's test (Connor 1987) with the continuity correction that brings it to the exact test's
      (reject when |c - b| > 1 + z_a sqrt(b + c)), solved for d by bisection:
          sqrt(n) d = z_a sqrt(p) + z_b sqrt(p - d^2) + 1 / sqrt(n),   p = max(p_d, d)
      (a change d needs at least d * n discordant examples, so when the runs hardly disagree the discordance is
      taken as d itself). Against the exact test by simulation: power 0.80-0.85 at the MDE with ten or more
      discordant pairs, more (the MDE is cautious) when the runs hardly disagree.
  mean metrics (token F1, ROUGE-L, exact match, micro-F1, loss)   from the SD s_d of the per-example paired
      differences: d = (z_a + z_b) s_d / sqrt(n). Perplexity, exp(mean loss), maps the loss's d through exp:
      perplexity_baseline * (exp(d) - 1). By simulation the paired permutation test (which must also agree with
      its bootstrap interval, paired.py) finds a change of this size about 77% of the time, a t-test 79%.
  macro-F1, and every unpaired comparison   from the bootstrap standard error of the change: d = (z_a + z_b) SE.

None when it cannot be estimated: the runs agree on every example of the slice (for anything but accuracy, whose
formula needs no disagreement) or the slice has a single example. The MDE is for the slice's own test; with many
slices the false-discovery adjustment (fdr.py) asks for more, so a change under the MDE cannot be seen at all.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

POWER = 0.8


def _z(confidence: float) -> tuple[float, float]:
    normal = NormalDist()
    return normal.inv_cdf(1.0 - (1.0 - confidence) / 2.0), normal.inv_cdf(POWER)


def mde_mcnemar(b: int, c: int, n: int, confidence: float = 0.95) -> float | None:
    """MDE of a paired accuracy change on n examples with b + c discordant pairs (Connor's approximation)."""
    if n < 1:
        return None
    za, zb = _z(confidence)
    pd = (b + c) / n
    root = math.sqrt(n)

    def short(d: float) -> bool:  # the power at d is still under POWER
        p = max(pd, d)
        return root * d < za * math.sqrt(p) + zb * math.sqrt(max(p - d * d, 0.0)) + 1.0 / root

    if short(1.0):
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2.0
        low, high = (mid, high) if short(mid) else (low, mid)
    return high


def mde_paired_mean(differences: np.ndarray, confidence: float = 0.95) -> float | None:
    """MDE of a mean metric from the per-example differences run - baseline."""
    n = len(differences)
    if n < 2:
        return None
    sd = float(np.std(differences, ddof=1))
    return mde_from_se(sd / math.sqrt(n), confidence)


def mde_perplexity(loss_differences: np.ndarray, baseline_mean_loss: float, confidence: float = 0.95) -> float | None:
    d = mde_paired_mean(loss_differences, confidence)
    return None if d is None else math.exp(baseline_mean_loss) * math.expm1(d)


def mde_from_se(se: float, confidence: float = 0.95) -> float | None:
    """MDE from the standard error of the change (the bootstrap's, for macro-F1 and unpaired comparisons)."""
    if not math.isfinite(se) or se <= 0:
        return None
    za, zb = _z(confidence)
    return (za + zb) * se
