"""Kill and resume: a training subprocess SIGKILLed after its first checkpoint, resumed with --resume, ends with the
same adapter weights, losses and train_loss as an uninterrupted run; so does a run that failed at 40% and resumed
from its checkpoint at 30%; Ctrl-C leaves a resumable `interrupted` run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.adapters import weights
from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.paths import REPO
from tests.tiny_models import make_tiny_llama
from verifily_action.train import callbacks, job, trainlog
from verifily_action.train.plan import TrainOptions, make_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_assets")
    write_dataset(d / "datasets", "sft", "v1", {"train": sft_rows(40), "eval": sft_rows(8, 1)}, task="sft", **GENERATED)
    return {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}


def config(folder: Path, assets, **training) -> Path:
    """`folder`/train.yaml: run `r` of the tiny llama on sft@v1 under `folder`/runs, `training` merged in."""
    # 3 epochs of 10 steps: the resume crosses epoch boundaries; dropout and length grouping stay on
    return tiny_sft_config(folder, assets, {"max_steps": 30, "batch_size": 4, "learning_rate": 0.01, **training})


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "verifily_action.cli", "train", *args],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before the signal:\n{proc.stderr.read()[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("timed out waiting for training to reach the point of the signal")


def log(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, assets, cli):
    straight = job.train(TrainOptions(config=config(tmp_path / "a", assets, checkpoint_steps=4)), echo=lambda s: None)

    cfg = config(tmp_path / "b", assets, checkpoint_steps=4)
    partial = tmp_path / "b" / "runs" / "r.partial"
    proc = start("--config", str(cfg))
    wait_for(proc, lambda: any(partial.glob("checkpoints/checkpoint-*/trainer_state.json")))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((partial / "run_meta.json").read_text())["status"] == "running"  # killed: no chance to say
    assert not (tmp_path / "b" / "runs" / "r").exists()

    r = cli("train", "--resume", str(partial))
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr
    resumed = tmp_path / "b" / "runs" / "r"
    meta = json.loads((resumed / "run_meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed_from"].startswith("checkpoint-")
    assert meta["run_key"] == straight.meta["run_key"]

    assert [x["step"] for x in log(resumed)] == list(range(1, 31))
    assert [x["loss"] for x in log(resumed)] == [x["loss"] for x in log(straight.run_dir)]
    assert meta["metrics"]["train_loss"] == straight.meta["metrics"]["train_loss"]  # over all 30 steps
    a, b = weights(straight.run_dir), weights(resumed)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_ctrl_c_marks_interrupted_and_resumes(tmp_path, assets):
    cfg = config(tmp_path, assets, max_steps=400, checkpoint_steps=None)  # no periodic checkpoints at all
    partial = tmp_path / "runs" / "r.partial"
    proc = start("--config", str(cfg))
    wait_for(proc, lambda: (partial / "train_log.jsonl").is_file() and (partial / "train_log.jsonl").stat().st_size)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    meta = json.loads((partial / "run_meta.json").read_text())
    assert meta["status"] == "interrupted"
    ckpts = list((partial / "checkpoints").glob("checkpoint-*"))
    assert len(ckpts) == 1  # saved on Ctrl-C even though checkpoint_steps is null
    step = int(ckpts[0].name.split("-")[1])
    assert 0 < step < 400

    # resumable: --resume finds this run and continues from the checkpoint saved on Ctrl-C (the resume itself
    # is exercised end to end by the SIGKILL test; running 400 steps here would only cost time)
    plan = make_plan(TrainOptions(resume=str(partial)))
    assert plan.resume_dir == partial.resolve() and plan.run_key == meta["run_key"]
    assert trainlog.last_checkpoint(partial / "checkpoints") == str(ckpts[0])
    assert max(x["step"] for x in log(partial)) >= 1


def test_resumed_run_records_the_whole_runs_train_loss(tmp_path, assets, monkeypatch):
    """Logged every 4 steps, saved every 9: the run fails at step 12 (40%) and resumes from checkpoint-9 (30%). Its
    train_log and train_loss are those of the uninterrupted run, exactly: both logs have the same lines (a line at
    every checkpoint, so the resumed windows are the uninterrupted ones) and train_loss is computed from the log."""
    from verifily_action.train import trainer

    training = {"logging_steps": 4, "checkpoint_steps": 9}
    own: list[float] = []  # the Trainer's own train_loss: right for an uninterrupted run only
    build = trainer.build_and_train

    def spy(*a, **kw):
        outcome = build(*a, **kw)
        own.append(outcome.summary["train_loss"])
        return outcome

    monkeypatch.setattr(trainer, "build_and_train", spy)
    straight = job.train(TrainOptions(config=config(tmp_path / "a", assets, **training)), echo=lambda s: None)
    monkeypatch.undo()
    steps = [x["step"] for x in log(straight.run_dir)]
    assert steps == [4, 8, 9, 12, 16, 18, 20, 24, 27, 28, 30]

    on_log = callbacks.LogCallback.on_log

    def fail_at_12(self, args, state, control, logs=None, **kw):
        if state.global_step == 12:
            raise RuntimeError("the machine went away at step 12")
        return on_log(self, args, state, control, logs=logs, **kw)

    monkeypatch.setattr(callbacks.LogCallback, "on_log", fail_at_12)
    cfg = config(tmp_path / "b", assets, **training)
    with pytest.raises(RuntimeError, match="step 12"):
        job.train(TrainOptions(config=cfg), echo=lambda s: None)
    monkeypatch.undo()
    partial = tmp_path / "b" / "runs" / "r.partial"
    assert json.loads((partial / "run_meta.json").read_text())["status"] == "failed"
    resumed = job.train(TrainOptions(resume=str(partial)), echo=lambda s: None)
    assert resumed.meta["resumed_from"] == "checkpoint-9"
    assert [x["step"] for x in log(resumed.run_dir)] == steps
    assert [x["loss"] for x in log(resumed.run_dir)] == [x["loss"] for x in log(straight.run_dir)]
    loss = straight.meta["metrics"]["train_loss"]
    assert resumed.meta["metrics"]["train_loss"] == loss
    # the Trainer sums each window's loss total and divides by 30; the log holds total/n per window, so the two
    # differ only by float rounding (a few ulps, ~1e-15 relative, over 11 windows): 1e-12 is far above that
    assert loss == pytest.approx(own[0], rel=1e-12, abs=0) and loss > 0
