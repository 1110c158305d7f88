"""One torchrun rank of `verifily ARGS` that can crash on purpose: with VERIFILY_TEST_DIE_RANK=R and
VERIFILY_TEST_DIE_STEP=K, rank R dies at the end of optimizer step K the way a crash or kill -9 ends a process
(`os._exit`: no `finally`, no `except`, no cleanup), before the step's checkpoint is saved.

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.dist_worker train --config train.yaml
"""

from __future__ import annotations

import os
import sys

from verifily_action import cli
from verifily_action.train import callbacks


def _install() -> None:
    rank, step = os.environ.get("VERIFILY_TEST_DIE_RANK"), os.environ.get("VERIFILY_TEST_DIE_STEP")
    if rank is None or step is None or os.environ.get("RANK") != rank:
        return
    original = callbacks.CheckpointCallback.on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(step):
            sys.stderr.write(f"rank {rank}: dying at step {step}\n")
            sys.stderr.flush()
            os._exit(9)
        return original(self, args, state, control, **kwargs)

    callbacks.CheckpointCallback.on_step_end = on_step_end  # type: ignore[method-assign]


if __name__ == "__main__":
    _install()
    sys.exit(cli.main(sys.argv[1:]))
