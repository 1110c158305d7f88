"""Training under a multi-process launch (torchrun, `accelerate launch`, `verifily train --nproc N`): one run folder,
written by rank 0 alone.

- Every rank plans the run (the same plan: same config, data and model hashes, same run key) and the ranks agree
  that planning worked before anything is written: a bad config is the same error on every rank, and no rank waits
  for one that has already exited.
- Rank 0 goes the one-process way (`job.train`: lock, recover, cache, `.partial`, hash chain, rename). When the
  folder is ready it announces it (`announce`); an answer it gives without training (a cached run, an error) is
  broadcast instead, so the other ranks return or fail with it.
- The other ranks train the same `_run` in a private scratch folder that holds copies of the run's small files and
  whose `checkpoints/` is the run's own (the Trainer saves each rank's RNG state there). They never write the run
  folder otherwise, and drop the scratch folder at the end; then they wait for rank 0's sealed result.
- A failure on any rank ends every rank: the failing process exits, gloo's connections to it close (the others'
  collectives raise), torchrun stops the rest with SIGTERM, which raises `PeerStopped` here so rank 0's
  `job.execute` marks the run `failed` before it exits. The process group's timeout (VERIFILY_DIST_TIMEOUT
  seconds, 1800 by default) bounds any other wait.
- Decisions a rank makes alone (a checkpoint by time, Ctrl-C) are agreed on (`agree`) so every rank saves and
  stops at the same step.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, VerifilyError
from ..runs.files import read_json
from ..runs.layout import CONFIG, RUN_META, TRAIN_LOG

Echo = Callable[[str], None]
TIMEOUT_ENV = "VERIFILY_DIST_TIMEOUT"
EXIT_DIR_ENV = "VERIFILY_RANK_EXIT_DIR"  # set by `verifily train --nproc`: each rank's exit code of a VerifilyError
_state: dict[str, Any] = {"announced": False}


@dataclass(frozen=True)
class World:
    size: int
    rank: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place in a launch, from the variables torchrun and accelerate set (one process: size 1)."""

    def num(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            raise VerifilyError(f"{name}={os.environ[name]!r} is not a number", hint="launch with torchrun") from None

    return World(num("WORLD_SIZE", 1), num("RANK", 0), num("LOCAL_RANK", 0))


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(w: World) -> None:
    """Join the launch's process group (gloo for CPU tensors, NCCL for CUDA ones), before the Trainer does, with a
    timeout on every collective."""
    import torch
    import torch.distributed as dist

    if w.size <= 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(w.local_rank)
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    seconds = float(os.environ.get(TIMEOUT_ENV) or 1800)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))


def agree(*flags: bool) -> tuple[bool, ...]:
    """Each flag true on every rank if it is true on any (one all-reduce; unchanged in one process)."""
    if not flags or not active():
        return tuple(flags)
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(f) for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(x) for x in t.tolist())


def share(message: Any = None) -> Any:
    """Rank 0's `message`, on every rank."""
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class PeerStopped(Exception):
    """torchrun stopped this rank (SIGTERM): another rank failed."""


def _stopped(signum: int, frame: Any) -> None:
    if sys.exc_info()[1] is not None:  # already ending with an error (a collective saw the peer go): let it record
        return  # the run as failed; raising here could cut that write short and leave it `running`
    raise PeerStopped("stopped by the launcher (SIGTERM): another rank failed; see its error above")


def announce(run_dir: Path) -> None:
    """Rank 0: the run folder is ready; the other ranks train with it (nothing in one process)."""
    from .job import CHECKPOINTS

    if not active() or _state["announced"]:
        return
    (run_dir / CHECKPOINTS).mkdir(exist_ok=True)  # the other ranks' checkpoints/ is this one
    names = (RUN_META, CONFIG, TRAIN_LOG)
    files = {n: (run_dir / n).read_text(encoding="utf-8") for n in names if (run_dir / n).is_file()}
    _state["announced"] = True
    share({"train": str(run_dir), "files": files})


def train(opts: Any, echo: Echo) -> Any:
    """`job.train` for this process: directly in one process, else as rank 0 or as another rank."""
    from . import job

    w = world()
    if w.size <= 1:
        return job.train(opts, echo)
    try:
        return _train_ranks(opts, echo, w)
    except VerifilyError as e:  # `verifily train --nproc` exits with it, not with torchrun's own 1 (launch.py)
        if os.environ.get(EXIT_DIR_ENV):
            (Path(os.environ[EXIT_DIR_ENV]) / f"rank-{w.rank}").write_text(str(e.exit_code), encoding="utf-8")
        raise


def _train_ranks(opts: Any, echo: Echo, w: World) -> Any:
    from .plan import make_plan

    init(w)
    signal.signal(signal.SIGTERM, _stopped)
    error: VerifilyError | None = None
    try:
        plan = make_plan(opts)
    except VerifilyError as e:
        error = e
    (any_failed,) = agree(error is not None)
    if error is not None:
        raise error
    if any_failed:
        raise VerifilyError("another rank could not plan this run", hint="see the first rank's error above")
    result = _lead(opts, echo) if w.main else _follow(plan, w)
    close()
    return result


def close() -> None:
    """Leave the process group together: no rank exits while another still talks to it (a rank whose peer is gone
    mid-collective aborts)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _lead(opts: Any, echo: Echo) -> Any:
    from . import job

    try:
        result = job.train(opts, echo)
    except VerifilyError as e:
        if not _state["announced"]:  # the others wait for the folder: tell them why there is none
            share({"error": [e.message, e.hint, e.exit_code]})
            close()
        raise
    except BaseException:
        if not _state["announced"]:
            share({"error": ["rank 0 failed before training; see its error", None, 3]})
        raise
    done = {"run_dir": str(result.run_dir), "meta": result.meta, "cached": result.cached}
    share(done)
    return result


def _follow(plan: Any, w: World) -> Any:
    from . import job

    message = share()
    if "train" in message:
        _train_here(plan, w, Path(message["train"]), message["files"])
        message = share()  # rank 0's sealed result (or its process exits and this wait ends in an error)
    if "error" in message:
        text, hint, code = message["error"]
        close()
        raise VerifilyError(text, hint=hint, exit_code=code)
    return job.TrainResult(Path(message["run_dir"]), message["meta"], cached=message["cached"])


def _train_here(plan: Any, w: World, run_dir: Path, files: dict[str, str]) -> None:
    from . import job
    from .job import CHECKPOINTS

    if plan.resume_dir is not None and not (run_dir / CHECKPOINTS).is_dir():
        raise VerifilyError(
            f"rank {w.rank} cannot see {run_dir}: resuming on several nodes needs output_dir on shared storage",
            hint="put output_dir on a filesystem every node mounts at the same path (docs/distributed.md)",
        )
    scratch = Path(tempfile.mkdtemp(prefix=f"verifily-rank{w.rank}-"))
    try:
        for name, text in files.items():
            (scratch / name).write_text(text, encoding="utf-8")
        real = run_dir / CHECKPOINTS
        if real.is_dir():
            (scratch / CHECKPOINTS).symlink_to(real, target_is_directory=True)
        job._run(plan, scratch, read_json(scratch / RUN_META), lambda s: None)
    except job.Interrupted:  # Ctrl-C: every rank saved the same checkpoint and stopped; rank 0 says how to resume
        raise VerifilyError(f"rank {w.rank}: training interrupted", exit_code=EXIT_INTERRUPTED) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def settings(cfg: Any, world_size: int | None) -> dict[str, Any]:
    """run_meta.json's `distributed`: world size, strategy (`none` for one process) and the effective global batch
    (batch_size x world_size x gradient_accumulation_steps). `world_size` None: this launch's."""
    n = world().size if world_size is None else world_size
    t = cfg.training
    strategy = cfg.distributed.strategy if n > 1 else "none"
    return {"world_size": n, "strategy": strategy, "global_batch": t.batch_size * n * t.gradient_accumulation_steps}


def run_key(key: str, dist: dict[str, Any]) -> str:
    """A multi-process run's key covers how it was split; one process keeps the one-process key."""
    from ..hashing import sha256_json

    return key if dist["world_size"] == 1 else sha256_json({"run_key": key, "distributed": dist})


def check(cfg: Any, dist: dict[str, Any], resume_meta: dict[str, Any] | None, resume_dir: Path | None) -> None:
    """Before anything is written or any process trains: the strategy must run here, and a resumed run continues
    with the world size it started with (its data order and key depend on it)."""
    from ..errors import Problem

    if resume_meta is not None and resume_dir is not None:
        before = (resume_meta.get("distributed") or {}).get("world_size", 1)
        if before != dist["world_size"]:
            raise VerifilyError(
                f"--resume {resume_dir}: the run was trained by {before} process{'es' * (before != 1)}, this launch "
                f"has {dist['world_size']}",
                problems=[
                    Problem(
                        f"distributed.world_size is {before}",
                        file=str(resume_dir / RUN_META),
                        json_path="$.distributed.world_size",
                    )
                ],
                hint=f"resume with the same world size (`verifily train --resume {resume_dir} --nproc {before}`), "
                "or --force a new run",
            )
    launched_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"  # accelerate launch --use_fsdp
    if dist["world_size"] > 1 and launched_fsdp and dist["strategy"] != "fsdp":
        raise VerifilyError(
            "accelerate launch was configured for FSDP (ACCELERATE_USE_FSDP=true) but the config's "
            f"distributed.strategy is {dist['strategy']}",
            problems=[
                Problem(f"strategy: {dist['strategy']}", file=cfg.source_path, json_path="$.distributed.strategy")
            ],
            hint="set `distributed: {strategy: fsdp}` in the config (it holds the FSDP settings), and launch without "
            "--use_fsdp or with the accelerate config of docs/distributed.md",
        )
    if dist["strategy"] == "fsdp":
        from .device import pick_device

        device = pick_device()
        if device != "cuda":
            raise VerifilyError(
                f"distributed.strategy fsdp cannot run on {device}: the installed accelerate shards models (FSDP) "
                "across GPUs only; with CPU processes it would silently train plain data-parallel",
                problems=[Problem("strategy: fsdp", file=cfg.source_path, json_path="$.distributed.strategy")],
                hint="use `distributed: {strategy: ddp}` here, or launch on CUDA GPUs",
            )


def strategy_args(cfg: Any) -> dict[str, Any]:
    """TrainingArguments for the config's strategy under this launch: ddp is the Trainer's default when launched;
    fsdp maps onto accelerate's FSDP plugin (docs/distributed.md shows the `accelerate config` it equals)."""
    if world().size <= 1:
        return {}
    if cfg.distributed.strategy == "ddp":  # LoRA's trainable parameters all take part in every forward pass
        return {"ddp_find_unused_parameters": False}
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,  # FSDP2 (fully_shard): frozen and trainable parameters may share a wrapped module
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one shard unit per decoder layer (_no_split_modules)
            "reshard_after_forward": True,  # FULL_SHARD
            "state_dict_type": "FULL_STATE_DICT",  # the adapter gathered whole for saving
        },
    }


class GatheredAdapter:
    """An FSDP-trained PEFT model whose full state dict was gathered on rank 0: `save_pretrained` writes the adapter
    from it (on the other ranks the gathered dict is empty and nothing is written)."""

    def __init__(self, model: Any, state_dict: dict[str, Any]):
        self.model = model
        self.state_dict = state_dict

    def save_pretrained(self, path: str, **kwargs: Any) -> None:
        if self.state_dict:
            self.model.save_pretrained(path, state_dict=self.state_dict, **kwargs)


def gathered(trainer: Any) -> Any:
    """The model to save after training: under FSDP, the adapter gathered from every rank's shards (a collective:
    every rank calls it); else the trainer's model."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return trainer.model
    acc = trainer.accelerator
    state = acc.get_state_dict(trainer.model)
    return GatheredAdapter(acc.unwrap_model(trainer.model), state or {})
