"""Run folders against a second process and a kill at the worst moment, with real training and eval of a tiny Llama:
a second train, resume or eval while a real process trains or evaluates the run is refused (the lock); a train killed
between its seal and its rename is finished by the next command; an eval killed while writing its results leaves a
sealed run that the same config finds in the cache; a full disk during eval is a user error; checkpoints by time."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.crashes import KILLED, crash_at, lock_held, paused_at
from tests.tiny_models import make_tiny_llama
from verifily_action.runs.verify import verify_run
from verifily_action.train import job
from verifily_action.train.plan import TrainOptions

pytestmark = pytest.mark.integration

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash_assets")
    write_dataset(d / "datasets", "sft", "v1", {"train": sft_rows(24), "eval": sft_rows(6, 1)}, task="sft", **GENERATED)
    return {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}


def config(folder: Path, assets, **training) -> Path:
    """`folder`/train.yaml: run `r` of the tiny llama on sft@v1 into `folder`/runs."""
    training = {"max_steps": 3, "batch_size": 8, **training}
    return tiny_sft_config(folder, assets, training, eval={"max_new_tokens": 4, "hard_examples": 2})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, assets):
    """A run trained once; tests copy it (`run_copy`)."""
    d = tmp_path_factory.mktemp("trained")
    return job.train(TrainOptions(config=config(d, assets)), echo=lambda s: None).run_dir


@pytest.fixture
def run_copy(tmp_path, trained, assets):
    """(run folder, config that trains it) in this test's folder: the same run key as `trained`."""
    run = tmp_path / "runs" / "r"
    shutil.copytree(trained, run)
    return run, config(tmp_path, assets)


def _root(run: Path) -> str:
    return json.loads((run / "run_meta.json").read_text())["root_hash"]


def _intact(run: Path) -> None:
    report = verify_run(run, inputs=False)
    assert report.ok, [p.message for p in report.problems]


# ---------------------------------------------------------------- 1. one process per run


def test_a_second_train_or_resume_while_one_trains_is_refused(tmp_path, assets, cli):
    cfg = config(tmp_path, assets)
    partial = tmp_path / "runs" / "r.partial"
    with paused_at("verifily_action.train.trainer:build_and_train", 1, "train", "--config", str(cfg)) as proc:
        assert json.loads((partial / "run_meta.json").read_text())["status"] == "running"
        busy = f"another process is training this run (pid {proc.pid}, host {HOST})"
        for args in (("--config", str(cfg)), ("--resume", str(partial)), ("--config", str(cfg), "--force")):
            r = cli("train", *args)
            assert r.returncode == 2, (args, r.stderr)
            assert busy in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        out, err = proc.communicate("\n", timeout=600)
        assert proc.returncode == 0, err
    run = tmp_path / "runs" / "r"
    assert out.strip() == str(run)
    _intact(run)
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3]  # nobody else wrote into it
    assert json.loads((run / "run_meta.json").read_text())["resumed_from"] is None
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]  # no lock file or leftover beside it


def test_eval_or_retrain_while_one_evaluates_is_refused(run_copy, cli):
    run, cfg = run_copy
    with paused_at("verifily_action.evaluate.runner:_infer", 1, "eval", "--run", str(run)) as proc:
        busy = f"another process is evaluating this run (pid {proc.pid}, host {HOST})"
        for args in (("eval", "--run", str(run)), ("train", "--config", str(cfg), "--force")):
            r = cli(*args)
            assert r.returncode == 2 and busy in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        _, err = proc.communicate("\n", timeout=600)
        assert proc.returncode == 0, err
    _intact(run)
    assert list((run / "eval").glob("*/eval_results.json"))


def test_the_cache_copy_waits_for_no_one(run_copy, tmp_path, assets, cli):
    cached, _ = run_copy  # the run cache folder is tmp_path/runs; train into tmp_path/elsewhere/runs
    cfg = config(tmp_path / "elsewhere", assets)
    with lock_held(cached, "evaluating") as pid:
        r = cli("train", "--config", str(cfg), "--cache-dir", str(cached.parent))
    assert r.returncode == 0, r.stderr
    assert f"another process is evaluating this run (pid {pid}, host {HOST})" in r.stderr
    assert r.stdout.strip() == str(cached)  # returned from the cache, not copied while it may change
    r = cli("train", "--config", str(cfg), "--cache-dir", str(cached.parent))
    assert r.returncode == 0 and "copied from the run cache" in r.stderr, r.stderr
    _intact(tmp_path / "elsewhere" / "runs" / "r")


# ---------------------------------------------------------------- 2. killed between seal and rename


@pytest.mark.parametrize("then", ["train again", "resume"])
def test_killed_between_seal_and_rename_is_finished_by_the_next_command(tmp_path, assets, cli, then):
    cfg = config(tmp_path, assets)
    r = crash_at("verifily_action.train.job:finalize", 1, "train", "--config", str(cfg))
    assert r.returncode == KILLED, r.stderr
    partial, final = tmp_path / "runs" / "r.partial", tmp_path / "runs" / "r"
    assert json.loads((partial / "run_meta.json").read_text())["status"] == "completed" and not final.exists()
    args = ("--config", str(cfg)) if then == "train again" else ("--resume", str(partial))
    r = cli("train", *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(final)
    assert "sealed but not yet renamed" in r.stderr and "training" not in r.stderr.replace("without training", "")
    assert not partial.exists()
    _intact(final)


# ---------------------------------------------------------------- 3. killed while eval writes


@pytest.mark.parametrize(
    ("target", "n"),
    [
        ("verifily_action.evaluate.runner:write_text_atomic", 2),  # two of the three eval files written
        ("verifily_action.runs.chain:write_json_atomic", 1),  # the new hashes.json written, run_meta.json not
        ("verifily_action.runs.folder:_exchange", 1),  # the new run in place, the old one not yet deleted
    ],
)
def test_killed_during_eval_leaves_a_sealed_run(run_copy, cli, target, n):
    run, cfg = run_copy
    before = _root(run)
    r = crash_at(target, n, "eval", "--run", str(run), after=True)
    assert r.returncode == KILLED, r.stderr
    _intact(run)  # the old run or the new one, sealed either way
    assert _root(run) == before or list((run / "eval").glob("*/eval_results.json"))
    r = cli("train", "--config", str(cfg))  # the same config finds it: not "already exists (another run key)"
    assert r.returncode == 0 and "has the same run key" in r.stderr, r.stderr
    assert r.stdout.strip() == str(run)
    r = cli("eval", "--run", str(run))
    assert r.returncode == 0, r.stderr
    _intact(run)
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]  # the leftovers are gone


# ---------------------------------------------------------------- 5. a full disk during eval


def test_a_full_disk_during_eval_is_a_user_error_and_changes_nothing(run_copy, cli, monkeypatch):
    import errno

    from verifily_action.evaluate import runner

    run, _ = run_copy
    before = _root(run)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "write_text_atomic", full)
    r = cli("eval", "--run", str(run))
    assert r.returncode == 2, r.stderr
    assert "disk full: cannot write" in r.stderr and "predictions.jsonl" in r.stderr, r.stderr
    assert "No space left on device" in r.stderr and "internal error" not in r.stderr
    assert _root(run) == before
    _intact(run)
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]


# ---------------------------------------------------------------- 6. checkpoints by time


@pytest.mark.parametrize("minutes", [1e-9, 0])
def test_checkpoints_by_time_without_checkpoint_steps(tmp_path, assets, monkeypatch, minutes):
    seen: list[str] = []
    save = job.save_outputs

    def spy(run_dir, *a, **kw):
        seen.extend(sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")))
        return save(run_dir, *a, **kw)

    monkeypatch.setattr(job, "save_outputs", spy)
    cfg = config(tmp_path, assets, max_steps=4, logging_steps=10, checkpoint_minutes=minutes)
    res = job.train(TrainOptions(config=cfg), echo=lambda s: None)
    steps = [json.loads(x)["step"] for x in (res.run_dir / "train_log.jsonl").read_text().splitlines()]
    if minutes:
        # a checkpoint after every step but the last (the interval is far shorter than a step), the newest two
        # kept (save_total_limit), and a log line at each of them
        assert seen == ["checkpoint-2", "checkpoint-3"]
        assert steps == [1, 2, 3, 4]
    else:
        assert seen == [] and steps == [4]  # no checkpoint; the last step is logged though logging_steps is 10
    assert res.meta["metrics"]["global_step"] == 4
    _intact(res.run_dir)
