"""How often a comparison of two runs with no real difference flags some slice: raw p-values against q-values.

Each simulated comparison: two runs, the same accuracy on every example in expectation (no real difference), the eval
set cut into S disjoint slices of n examples; each slice's change is tested with McNemar's exact test (what
`verifily compare` runs for accuracy) and the S p-values are adjusted together (compare/fdr.py). Printed: the share of
comparisons with at least one slice flagged (p < 0.05, q < 0.05 by Benjamini-Hochberg, q < 0.05 by
Benjamini-Yekutieli), with its 95% simulation interval. With every null true, that share is the family-wise error
rate, which equals the false discovery rate: FDR control promises at most 5%.

`--pipeline` runs compare's own statistics instead (paired.paired_deltas: accuracy by McNemar and macro-F1 by the
paired permutation test, each reconciled with its bootstrap interval) on 3-class predictions: a family of
2 x S tests per comparison, the two metrics of a slice positively dependent. Slower: use fewer comparisons.

    python bench/fdr_simulation.py [--slices 40] [--n 100] [--accuracy 0.8] [--comparisons 20000] [--seed 0]
    python bench/fdr_simulation.py --pipeline --comparisons 400 [--resamples 200]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from verifily_action.compare.fdr import adjust_rows
from verifily_action.compare.paired import Outcomes, mcnemar_exact, paired_deltas
from verifily_action.evaluate.metrics import per_example_scores


def null_p_values(comparisons: int, slices: int, n: int, accuracy: float, seed: int) -> np.ndarray:
    """(comparisons x slices) McNemar p-values of two runs that are right on each example independently with the
    same probability: discordant pairs are Binomial(n, 2 a (1 - a)), split evenly between the two runs."""
    rng = np.random.default_rng(seed)
    both_ways = 2 * accuracy * (1 - accuracy)
    discordant = rng.binomial(n, both_ways, size=(comparisons, slices))
    b = rng.binomial(discordant, 0.5)
    c = discordant - b
    table = np.array([[mcnemar_exact(i, j) if i + j <= n else 1.0 for j in range(n + 1)] for i in range(n + 1)])
    return table[b, c]


def pipeline_p_values(comparisons: int, slices: int, n: int, accuracy: float, seed: int, resamples: int) -> np.ndarray:
    """(comparisons x 2 slices) p-values of accuracy and macro-F1 from paired_deltas, two runs with no real
    difference: each run predicts the reference with probability `accuracy`, else another of 3 labels."""
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])
    out = np.empty((comparisons, 2 * slices))
    for k in range(comparisons):
        for s in range(slices):
            ref = rng.integers(0, 3, n)
            runs = []
            for _ in range(2):
                pred = np.where(rng.random(n) < accuracy, ref, (ref + rng.integers(1, 3, n)) % 3)
                refs, preds = labels[ref].tolist(), labels[pred].tolist()
                runs.append(Outcomes(per_example_scores("classification", refs, preds), refs, preds))
            d = paired_deltas(["accuracy", "macro_f1"], *runs, resamples=resamples, seed=k * slices + s)
            out[k, 2 * s], out[k, 2 * s + 1] = d["accuracy"].p_value, d["macro_f1"].p_value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--n", type=int, default=100, help="examples per slice")
    ap.add_argument("--accuracy", type=float, default=0.8)
    ap.add_argument("--comparisons", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--pipeline", action="store_true", help="compare's paired_deltas, accuracy and macro-F1")
    ap.add_argument("--resamples", type=int, default=200, help="--pipeline: bootstrap/permutation resamples")
    args = ap.parse_args()
    if args.pipeline:
        p = pipeline_p_values(args.comparisons, args.slices, args.n, args.accuracy, args.seed, args.resamples)
        test = f"paired_deltas (accuracy: McNemar, macro-F1: permutation, {args.resamples} resamples), 3 labels"
    else:
        p = null_p_values(args.comparisons, args.slices, args.n, args.accuracy, args.seed)
        test = "McNemar's exact test"
    print(
        f"{args.comparisons} comparisons of two runs with no real difference, {args.slices} slices of {args.n} "
        f"examples, accuracy {args.accuracy}, {test}, {p.shape[1]} tests each, alpha {args.alpha}"
    )
    for label, flagged in [
        ("raw p-values", p < args.alpha),
        ("q-values, Benjamini-Hochberg", adjust_rows(p, "bh") < args.alpha),
        ("q-values, Benjamini-Yekutieli", adjust_rows(p, "by") < args.alpha),
    ]:
        share = float(np.mean(flagged.any(axis=1)))
        half = 1.96 * math.sqrt(share * (1 - share) / args.comparisons)
        per_slice = float(np.mean(flagged))
        print(
            f"  {label:<30} comparisons with any flagged slice: {share:6.2%} (±{half:.2%}); "
            f"tests flagged: {per_slice:.2%}"
        )


if __name__ == "__main__":
    main()
