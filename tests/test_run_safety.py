"""Run folders under attack, without training: the per-run lock against a real second process, every crash point of
a sealed run's swap (killed with os._exit in a subprocess), scratch files in verification, a full disk told as
such, checkpoints by time, and train_loss from the log over the whole run."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest

from tests.builders import recorded_run
from tests.crashes import KILLED, crash_at, lock_held
from verifily_action.config import from_dict
from verifily_action.errors import VerifilyError
from verifily_action.runs import cache, chain, files, folder, layout
from verifily_action.runs.lock import run_lock
from verifily_action.runs.verify import verify_run

pytestmark = pytest.mark.unit

HOST = socket.gethostname()


# ---------------------------------------------------------------- 1. the lock


def test_a_lock_held_by_another_process_is_a_clear_error(tmp_path):
    run = tmp_path / "runs" / "r"
    with lock_held(run, "training") as pid:
        for asked in (run, tmp_path / "runs" / "r.partial"):  # one lock for the unfinished and the final folder
            with pytest.raises(VerifilyError) as exc, run_lock(asked, "evaluating"):
                pass
            err = exc.value
            assert err.exit_code == 2
            assert f"another process is training this run (pid {pid}, host {HOST})" in err.message
            assert str(run) in err.message and err.hint and "released when that process exits" in err.hint
        with pytest.raises(VerifilyError, match="another process is training"), run_lock(run, "copying", shared=True):
            pass
    with run_lock(run, "evaluating") as path:  # released when its holder ended
        assert path == tmp_path / "runs" / ".r.lock" and json.loads(path.read_text())["doing"] == "evaluating"
    assert not path.exists()  # the last holder deletes it: nothing is left beside the runs
    assert not run.exists()  # and nothing was put in (or made as) the run folder


def test_copies_share_the_lock_but_exclude_changes(tmp_path):
    run = tmp_path / "r"
    with lock_held(run, "copying", shared=True) as pid:
        with run_lock(run, "copying", shared=True):
            pass
        with pytest.raises(VerifilyError, match=rf"another process is copying this run \(pid {pid}"), run_lock(run):
            pass


def test_the_lock_nests_in_one_process(tmp_path):
    with run_lock(tmp_path / "r") as path, run_lock(tmp_path / "r.partial", shared=True), run_lock(tmp_path / "r"):
        assert path.exists()
    assert not path.exists()


def test_the_lock_file_is_not_a_run_file(tmp_path):
    run = recorded_run(tmp_path / "r")
    with run_lock(run):
        assert verify_run(run, inputs=False).ok
        copy = folder.copy_run(run, tmp_path / "cache" / "r")
        assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in run.iterdir())


# ---------------------------------------------------------------- 2, 3. crash points


def _add_file(run: Path) -> str:
    """Add an eval-like file to a sealed run, as eval does; returns the new root hash."""

    def change(stage: Path) -> str:
        files.write_text_atomic(stage / "eval" / "x" / "extra.json", json.dumps({"n": 1}) + "\n")
        return chain.add_artifacts(stage, [stage / "eval" / "x" / "extra.json"])

    with run_lock(run, "evaluating"):
        return folder.replace_run(run, change)


def _root(run: Path) -> str:
    return json.loads((run / "run_meta.json").read_text())["root_hash"]


@pytest.fixture
def two_states(tmp_path):
    """A sealed run, and the root hash it has before and after `_add_file` (learnt on a twin)."""
    run = recorded_run(tmp_path / "runs" / "r")
    twin = recorded_run(tmp_path / "twin" / "r")
    return run, _root(run), _add_file(twin)


CRASH_POINTS = [
    # (target, n, after, exchange, state right after the kill)
    ("verifily_action.runs.files:write_text_atomic", 1, False, True, "old"),  # writing the new eval file
    ("verifily_action.runs.chain:write_json_atomic", 1, True, True, "old"),  # new hashes.json, old run_meta.json
    ("verifily_action.runs.chain:write_json_atomic", 2, True, True, "old"),  # the copy sealed, not yet swapped in
    ("verifily_action.runs.folder:_exchange", 1, True, True, "new"),  # swapped; the old run not yet deleted
    ("verifily_action.runs.folder:_rename", 1, True, False, "missing"),  # fallback: old moved aside, new not in
    ("verifily_action.runs.folder:_rename", 2, True, False, "new"),  # fallback: new in, old not yet deleted
]


@pytest.mark.parametrize(("target", "n", "after", "exchange", "state"), CRASH_POINTS)
def test_every_crash_point_of_a_swap_leaves_the_old_or_the_new_run(two_states, target, n, after, exchange, state):
    run, old, new = two_states
    r = crash_at(target, n, str(run), after=after, exchange=exchange, call="add_eval_file")
    assert r.returncode == KILLED, r.stderr
    if state == "missing":
        # the only window of the fallback (no atomic exchange): both complete runs are beside the name
        assert not run.exists() and len(layout.siblings(run)) == 2
    else:
        report = verify_run(run, inputs=False)
        assert report.ok, [p.message for p in report.problems]
        assert _root(run) == {"old": old, "new": new}[state]
        assert not any(p.is_file() and layout.is_scratch(p.name) for p in run.rglob("*"))
    said: list[str] = []
    with run_lock(run):
        folder.recover(run, said.append)
    assert verify_run(run, inputs=False).ok
    assert _root(run) == (new if state in ("new", "missing") else old)
    assert layout.siblings(run) == []  # every leftover beside the run is gone
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]
    assert (state == "missing") == any("restored" in s for s in said)
    # and the change can be made (again)
    assert _add_file(run) and verify_run(run, inputs=False).ok


def test_a_sealed_partial_is_finished_by_recover(tmp_path):
    partial = recorded_run(tmp_path / "r.partial")
    said: list[str] = []
    assert folder.recover(tmp_path / "r", said.append) == tmp_path / "r"
    assert not partial.exists() and verify_run(tmp_path / "r", inputs=False).ok
    assert "sealed but not yet renamed" in said[0]


def test_an_unsealed_partial_is_left_alone(tmp_path):
    partial = recorded_run(tmp_path / "r.partial")
    folder.update_meta(partial, status="running")  # its chain no longer verifies: it is not a finished run
    assert folder.recover(tmp_path / "r", lambda s: None) is None
    assert partial.is_dir() and not (tmp_path / "r").exists()


def test_scratch_files_are_not_run_files(tmp_path):
    run = recorded_run(tmp_path / "r")
    (run / "adapter" / ".README.md.k3j_x1.tmp").write_text("half a file")  # a write cut short by a kill
    assert verify_run(run, inputs=False).ok
    (run / "adapter" / "extra.bin").write_bytes(b"x")  # a real file added after the seal still fails
    assert [p.message for p in verify_run(run, inputs=False).problems] == [
        "adapter/extra.bin is not in hashes.json: it was added after the run was sealed"
    ]


# ---------------------------------------------------------------- 5. a full disk


def test_a_full_disk_names_the_file_and_the_space_it_needed(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    target = tmp_path / "run_meta.json"
    with pytest.raises(OSError) as exc:
        files.write_json_atomic(target, {"a": "x" * 3000})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # no temporary file left
    assert files.is_disk_full(exc.value)
    err = files.disk_full_error(exc.value, tmp_path)
    assert err.exit_code == 2
    assert err.message.startswith(f"disk full: cannot write {target}: No space left on device (it needs 2.9 KiB, ")
    assert "free there)" in err.message and "free space" in (err.hint or "")


def test_libraries_full_disks_are_recognised(tmp_path, monkeypatch):
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")  # safetensors
    assert files.is_disk_full(rust)
    torch_writer = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert not files.is_disk_full(torch_writer, tmp_path)  # plenty of space here: some other failure
    monkeypatch.setattr(files, "free_bytes", lambda p: 4096)
    assert files.is_disk_full(torch_writer, tmp_path)
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert files.is_disk_full(wrapped)
    assert "Disk quota exceeded" in files.disk_full_error(wrapped, tmp_path).message
    assert not files.is_disk_full(ValueError("bad value"))


# ---------------------------------------------------------------- 6. checkpoints by time


class _Control:
    def __init__(self):
        self.should_save = self.should_log = self.should_training_stop = False


class _State:
    def __init__(self, step, max_steps=100):
        self.global_step, self.max_steps = step, max_steps


def test_checkpoint_callback_saves_by_time_and_logs_at_every_save():
    from verifily_action.train.callbacks import CheckpointCallback

    now = [0.0]
    cb = CheckpointCallback(10, clock=lambda: now[0])
    cb.on_train_begin(None, _State(0), _Control())
    saved = []
    for step in range(1, 100):
        now[0] += 60.0  # a minute a step
        c = cb.on_step_end(None, _State(step), _Control())
        assert c.should_log == c.should_save  # a line at every checkpoint (and only then, before the last step)
        if c.should_save:
            saved.append(step)
            cb.on_save(None, _State(step), c)
    assert saved == list(range(10, 100, 10))
    last = cb.on_step_end(None, _State(100), _Control())
    assert last.should_log and not last.should_save  # the last step is logged; the run is saved whole anyway
    for off in (0, None):
        quiet = CheckpointCallback(off, clock=lambda: now[0])
        quiet.on_train_begin(None, _State(0), _Control())
        now[0] += 1e9
        assert not quiet.on_step_end(None, _State(1), _Control()).should_save


def test_checkpoint_minutes_is_in_the_schema_and_not_in_the_run_key():
    cfg = from_dict({"task": "sft", "model": "m", "dataset": "d@v1"}).to_dict()
    assert cfg["training"]["checkpoint_minutes"] == 10 and cfg["training"]["checkpoint_steps"] is None
    off = from_dict({"task": "sft", "model": "m", "dataset": "d@v1", "training": {"checkpoint_minutes": 0}}).to_dict()
    assert cache.key_config(cfg) == cache.key_config(off)
    steps = from_dict({"task": "sft", "model": "m", "dataset": "d@v1", "training": {"checkpoint_steps": 5}}).to_dict()
    assert cache.key_config(cfg) != cache.key_config(steps)


# ---------------------------------------------------------------- 4. train_loss over the whole run


def test_train_loss_weights_each_line_by_its_window(tmp_path):
    from verifily_action.train import trainlog

    log = tmp_path / "train_log.jsonl"
    # logging_steps 4 with a checkpoint at step 9 and 10 steps in all: windows of 4, 4, 1 and 1 steps
    lines = [(4, 2.0), (8, 1.0), (9, 0.5), (10, 0.25)]
    log.write_text("".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in lines))
    assert trainlog.mean_loss(log) == (4 * 2.0 + 4 * 1.0 + 0.5 + 0.25) / 10
    trainlog.truncate(log, 9)  # resumed from checkpoint-9: the line at 10 is logged again
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [4, 8, 9]
    (tmp_path / "empty.jsonl").write_text("")
    assert trainlog.mean_loss(tmp_path / "empty.jsonl") is None
