"""`data: {streaming: true}`: a streamed run completes and seals like any run; the same seed gives the same data
order and weights, another seed another order; a run that failed mid-way resumes to the uninterrupted run's weights;
the data checks count what the in-memory path counts; without max_steps it is one clear error before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.adapters import weights
from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.tiny_models import make_tiny_llama
from verifily_action.runs.chain import verify_chain
from verifily_action.train import callbacks, job
from verifily_action.train.plan import TrainOptions

pytestmark = pytest.mark.integration

QUIET = {"echo": lambda s: None}


def _rows() -> list[dict]:
    """40 sft rows with one exact duplicate, one empty response and one eval prompt seen in train (leakage)."""
    rows = sft_rows(40)
    rows[5] = dict(rows[4], id="dup")
    rows[7] = dict(rows[7], response=" ")
    return rows


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream_assets")
    ev = sft_rows(8, 1)
    ev[0] = dict(_rows()[10], id="leak")
    write_dataset(d / "datasets", "sft", "v1", {"train": _rows(), "eval": ev}, task="sft", **GENERATED)
    return {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}


def config(folder: Path, assets, *, streaming: bool = True, buffer: int = 16, **training) -> Path:
    # 40 rows, batch 4: a pass is 10 steps, so 24 steps read the data two and a half times
    training = {"max_steps": 24, "batch_size": 4, "learning_rate": 0.01, **training}
    return tiny_sft_config(folder, assets, training, data={"streaming": streaming, "shuffle_buffer": buffer})


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def losses(run_dir: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, assets):
    """One uninterrupted streamed run, shared by the tests that compare against it."""
    d = tmp_path_factory.mktemp("straight")
    return job.train(TrainOptions(config=config(d, assets, checkpoint_steps=5)), **QUIET)


def test_streamed_run_completes_sealed_with_the_in_memory_data_checks(straight, tmp_path, assets):
    meta = straight.meta
    assert meta["status"] == "completed" and verify_chain(straight.run_dir) == []
    assert meta["metrics"]["global_step"] == 24
    assert [json.loads(x)["step"] for x in (straight.run_dir / "train_log.jsonl").read_text().splitlines()] == list(
        range(1, 25)
    )
    assert meta["truncation"]["train"]["rows"] >= 24 * 4  # the rows training tokenized, counted as it read them
    cfg = (straight.run_dir / "config.yaml").read_text()
    assert "streaming: true" in cfg and "shuffle_buffer: 16" in cfg

    # the map-style run of the same data: its checks (load_split, then check_data) count the same
    loaded = job.train(TrainOptions(config=config(tmp_path, assets, streaming=False, max_steps=2)), **QUIET)
    streamed, mapped = meta["data_report"], loaded.meta["data_report"]
    assert all(streamed[k] and sum(streamed[k].values()) for k in ("duplicates", "empty_text", "leakage"))
    for k in ("rows", "duplicates", "empty_text", "leakage", "findings", "examples"):
        assert streamed[k] == mapped[k], k
    assert loaded.meta["run_key"] != meta["run_key"]


def test_same_seed_same_weights_and_another_seed_another_order(straight, tmp_path, assets):
    again = job.train(TrainOptions(config=config(tmp_path / "a", assets, checkpoint_steps=5)), **QUIET)
    assert again.meta["run_key"] == straight.meta["run_key"]
    assert losses(again.run_dir) == losses(straight.run_dir)
    assert same(weights(again.run_dir), weights(straight.run_dir))

    from verifily_action.datasets import resolve
    from verifily_action.datasets.loading import row_spec
    from verifily_action.train.streaming import Stream

    manifest = resolve("sft@v1", assets["root"])
    files = [(str(manifest.file_path(e)), e.path) for e in manifest.splits["train"]]

    def order(seed: int, buffer: int = 16) -> list[str]:
        s = Stream(files, row_spec(manifest), seed=seed, buffer=buffer, encoder=lambda rows: {"id": rows["id"]})
        it = iter(s)
        return [next(it)["id"] for _ in range(80)]  # two passes

    ids = sorted(r.get("id") for r in _rows())
    a = order(1)
    assert a == order(1)  # the same seed: the same order, pass after pass
    assert sorted(a[:40]) == ids and sorted(a[40:]) == ids  # each pass reads every row once
    assert a[:40] != a[40:]  # pass 2 is shuffled with seed + 1
    assert a != order(2) and a[:40] != [r["id"] for r in _rows()]  # another seed, another order; not file order


def test_resume_after_a_failure_equals_the_uninterrupted_run(straight, tmp_path, assets, monkeypatch):
    on_log = callbacks.LogCallback.on_log

    def fail_at_17(self, args, state, control, logs=None, **kw):
        if state.global_step == 17:  # in the second pass over the data, after checkpoint-15
            raise RuntimeError("the machine went away at step 17")
        return on_log(self, args, state, control, logs=logs, **kw)

    monkeypatch.setattr(callbacks.LogCallback, "on_log", fail_at_17)
    with pytest.raises(RuntimeError, match="step 17"):
        job.train(TrainOptions(config=config(tmp_path, assets, checkpoint_steps=5)), **QUIET)
    monkeypatch.undo()
    partial = tmp_path / "runs" / "r.partial"
    assert json.loads((partial / "run_meta.json").read_text())["status"] == "failed"
    resumed = job.train(TrainOptions(resume=str(partial)), **QUIET)
    assert resumed.meta["resumed_from"] == "checkpoint-15"
    assert losses(resumed.run_dir) == losses(straight.run_dir)
    assert same(weights(resumed.run_dir), weights(straight.run_dir))
    assert resumed.meta["truncation"] == straight.meta["truncation"]


def test_streaming_without_max_steps_is_one_clear_error(tmp_path, assets, cli):
    cfg = config(tmp_path, assets, max_steps=None)
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    assert "data.streaming needs training.max_steps" in r.stderr and "$.data.streaming" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_streamed_eval_equals_the_in_memory_eval(straight, tmp_path, monkeypatch):
    """The same run evaluated in memory and in chunks of 3 rows (the 8 eval rows span 3 chunks): the same metrics,
    intervals, slices, breakdown and truncation, byte-identical predictions.jsonl and hard_examples.jsonl."""
    import shutil

    from verifily_action.evaluate import streaming
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run

    monkeypatch.setattr(streaming, "CHUNK", 3)
    got = {}
    for mode in (False, True):
        run = shutil.copytree(straight.run_dir, tmp_path / str(mode) / "r")
        out = evaluate_run(run, EvalOptions(streaming=mode, slice_by=["source"], batch_size=2))
        files = {n: (out.eval_dir / n).read_bytes() for n in ("predictions.jsonl", "hard_examples.jsonl")}
        got[mode] = ({k: v for k, v in out.results.items() if k not in ("created_at", "timing")}, files)
        assert verify_chain(run) == []
    assert got[True][0]["n"] == 8 and got[True][0]["slices"] and got[True][0]["overall"]
    assert got[True] == got[False]


def test_streamed_classification_learns_its_labels_in_the_check_pass(tmp_path, assets, cli):
    """The label map and the eval split's unseen labels come from the one check pass, as a loaded split gives them;
    a broken row is one clear error naming file:line, before any training."""
    from tests.builders import cls_rows, write_config

    ev = cls_rows(8, 1) + [{"id": "n1", "text": "meh", "label": "neutral", "tags": {"source": "human"}}]
    write_dataset(tmp_path / "ds", "cls", "v1", {"train": cls_rows(24), "eval": ev}, **GENERATED)
    common = {"task": "classification", "model": str(assets["model"]), "dataset": "cls@v1",
              "datasets_root": str(tmp_path / "ds"), "output_dir": str(tmp_path / "runs")}  # fmt: skip
    metas = []
    for streaming in (True, False):
        cfg = write_config(tmp_path / f"{streaming}.yaml", **common, run_name=f"c{streaming}",
                           data={"streaming": streaming}, training={"max_steps": 2, "batch_size": 4})  # fmt: skip
        metas.append(job.train(TrainOptions(config=cfg), **QUIET).meta)
    for k in ("label_map", "unseen_eval_labels", "notes"):
        assert metas[0][k] == metas[1][k], k
    assert metas[0]["label_map"] == {"negative": 0, "positive": 1} and metas[0]["unseen_eval_labels"] == {"neutral": 1}

    (tmp_path / "ds" / "cls" / "v1" / "train.jsonl").write_bytes(b'{"id": "x", "text": "hi"}\n')
    from verifily_action.hashing import sha256_file

    m = tmp_path / "ds" / "cls" / "v1" / "manifest.json"
    doc = json.loads(m.read_text())
    doc["splits"]["train"]["files"][0].update(sha256=sha256_file(m.parent / "train.jsonl"), rows=1)
    m.write_text(json.dumps(doc))
    cfg = write_config(tmp_path / "bad.yaml", **common, run_name="bad", data={"streaming": True},
                       training={"max_steps": 2})  # fmt: skip
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "train.jsonl:1" in r.stderr and "label" in r.stderr
    assert not (tmp_path / "runs" / "bad" / "checkpoints").exists() and not (tmp_path / "runs" / "bad").exists()
