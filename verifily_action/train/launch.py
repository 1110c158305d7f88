"""`verifily train --nproc N`: check what N processes would train, then start them through torchrun.

Everything that can be wrong is found here, in one process, before any training process starts: N against the
machine (GPUs when CUDA is there, else CPU cores), the config, the strategy on this device, a resume's world size
(`plan.make_plan` with `world_size=N`). Then torchrun (`torch.distributed.run --standalone --nproc_per_node N -m
verifily_action.cli train ...`, through `torchrun` below) runs the same command line without `--nproc` on every
rank. torchrun exits 1 whatever failed; this command exits as the CLI does: with a rank's VerifilyError code (2,
130; each rank writes it into VERIFILY_RANK_EXIT_DIR), else 3 for a rank that crashed or was killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERNAL, EXIT_INTERRUPTED, VerifilyError
from .ranks import EXIT_DIR_ENV


def capacity() -> tuple[int, str]:
    """How many training processes this machine can hold, and of what: CUDA GPUs, else CPU cores."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), "CUDA GPUs"
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, "CPU cores"


def check_nproc(nproc: int) -> None:
    have, what = capacity()
    if nproc < 1 or nproc > have:
        raise VerifilyError(
            f"--nproc {nproc}: this machine has {have} {what}",
            hint=f"give --nproc between 1 and {have} (one process per {what[:-1].split()[-1].lower()})",
        )
    if os.environ.get("WORLD_SIZE"):
        raise VerifilyError(
            "--nproc inside a launch that already started several processes (WORLD_SIZE is set)",
            hint="drop --nproc: torchrun or accelerate launch already started the ranks",
        )


def command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line: this command's arguments, `--nproc N` taken out."""
    return [
        sys.executable, "-m", "verifily_action.train.launch", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "verifily_action.cli", "train", *argv,
    ]  # fmt: skip


def arguments(opts: Any, as_json: bool) -> list[str]:
    """The `train` arguments each rank gets: the options given, `--nproc` left out."""
    out: list[str] = []
    for flag, value in (
        ("--config", opts.config), ("--dataset", opts.dataset), ("--datasets-root", opts.datasets_root),
        ("--output-dir", opts.output_dir), ("--cache-dir", opts.cache_dir), ("--resume", opts.resume),
    ):  # fmt: skip
        if value is not None:
            out += [flag, str(value)]
    return out + ["--force"] * opts.force + ["--json"] * as_json


def run(opts: Any, nproc: int, as_json: bool, echo: Callable[[str], None]) -> int:
    """Check, then train with `nproc` processes; returns torchrun's exit code."""
    from .plan import make_plan

    check_nproc(nproc)
    opts.world_size = nproc
    plan = make_plan(opts)  # config, data, model, strategy, resume world size: one clear error before any start
    echo(
        f"starting {nproc} processes (torchrun, {plan.distributed['strategy']}), global batch "
        f"{plan.distributed['global_batch']}, run key {plan.run_key[:16]}"
    )
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    with tempfile.TemporaryDirectory(prefix="verifily-ranks-") as codes:
        env[EXIT_DIR_ENV] = codes
        proc = subprocess.Popen(command(nproc, arguments(opts, as_json)), env=env)
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # the ranks and torchrun got the same Ctrl-C: wait for them to stop
                continue
        return exit_code(rc, Path(codes), echo)


def exit_code(rc: int, codes: Path, echo: Callable[[str], None]) -> int:
    """torchrun exits 1 whatever failed; this command exits as the CLI does: a rank's VerifilyError code (2 bad
    input, 130 interrupted), else 3 for a rank that crashed or was killed (its error is above)."""
    if rc == 0:
        return 0
    recorded = sorted(int(f.read_text(encoding="utf-8")) for f in codes.glob("rank-*"))
    if recorded:
        return recorded[0] if EXIT_INTERRUPTED not in recorded else EXIT_INTERRUPTED
    echo(f"error: a training process failed (torchrun exit {rc}); its error is above")
    return EXIT_INTERNAL


def torchrun(argv: list[str]) -> int:
    """torchrun (`torch.distributed.run`) without its tracebacks: when a rank fails it prints which rank, with what
    exit code, then raises ChildFailedError (on Ctrl-C, SignalException); the ranks have printed their own errors."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main

    try:
        main(argv)
    except ChildFailedError:
        return 1
    except SignalException as e:  # Ctrl-C: torchrun passed it on to the ranks, which saved and stopped
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(torchrun(sys.argv[1:]))
