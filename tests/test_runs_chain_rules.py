"""What `reproduce --verify-only` and the run cache refuse before trusting a hash chain: entries that are not plain
relative paths inside the run (or inside the dataset or model folder for inputs), symbolic links and special files
anywhere in a run folder, and a chain without the entries every run records. Each case is first shown to be
consistent (every hash and the root recomputed and sealed), so only the rule can catch it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.builders import sealed_run
from verifily_action.errors import VerifilyError
from verifily_action.hashing import sha256_file
from verifily_action.runs import chain
from verifily_action.runs.cache import find_cached
from verifily_action.runs.verify import verify_run

pytestmark = pytest.mark.unit

KEY = "a" * 64


@pytest.fixture
def run(tmp_path):
    return sealed_run(tmp_path)


def text(problems) -> str:
    return "\n".join(p.render() for p in problems)


def reseal(run: Path, entries: dict[str, str]) -> None:
    """Write `entries` as the chain and seal it again, as a forger with every hash recomputed would."""
    chain.seal(run, entries)


def test_a_sealed_run_holds_and_is_found_in_the_cache(run, tmp_path):
    report = verify_run(run)
    assert report.ok, text(report.problems)
    assert report.checked == len(chain.read_entries(run)) and report.notes == []
    assert chain.verify_chain(run) == []
    assert find_cached(tmp_path, KEY) == run


# ---------------------------------------------------------------- entry names


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("not a run file\n")
    return secret


@pytest.mark.parametrize(
    "name",
    ["../secret.txt", "adapter/../../secret.txt", "ABSOLUTE", "./config.yaml", "adapter//adapter_config.json"],
)
def test_a_file_entry_that_is_not_a_plain_path_inside_the_run_is_refused(run, tmp_path, name):
    secret = _outside(tmp_path)
    name = str(secret) if name == "ABSOLUTE" else name
    entries = chain.read_entries(run)
    entries[name] = sha256_file(run / name)  # the hash is right: only the name is wrong
    reseal(run, entries)
    report = verify_run(run)
    (bad,) = [p for p in report.problems if repr(name) in p.message]
    assert bad.file == str(run / "hashes.json") and bad.json_path == f"$.entries[{json.dumps(name)}]"
    assert chain.verify_chain(run) and find_cached(tmp_path, KEY) is None


def test_a_backslash_in_a_file_entry_is_refused(run, tmp_path):
    (run / "adapter\\notes.txt").write_text("a file whose name has a backslash\n")
    entries = chain.read_entries(run)
    entries["adapter\\notes.txt"] = sha256_file(run / "adapter\\notes.txt")
    reseal(run, entries)
    report = verify_run(run)
    assert any("backslash" in p.message and "adapter\\\\notes.txt" in p.message for p in report.problems), text(
        report.problems
    )


@pytest.mark.parametrize(
    "name",
    ["dataset:ds@v1/../../../secret.txt", "dataset:ds@v1//SECRET", "dataset:../x", "model:../secret.txt",
     "model:sub/config.json", "model:/SECRET", "weights:adapter", "run_meta.json"],
)  # fmt: skip
def test_an_input_entry_outside_its_folder_or_of_no_known_kind_is_refused(run, tmp_path, name):
    secret = _outside(tmp_path)
    name = name.replace("/SECRET", str(secret))
    entries = chain.read_entries(run)
    entries[name] = sha256_file(secret)
    reseal(run, entries)
    report = verify_run(run)
    (bad,) = [p for p in report.problems if repr(name) in p.message]
    assert bad.file == str(run / "hashes.json")
    assert chain.verify_chain(run) and find_cached(tmp_path, KEY) is None


# ---------------------------------------------------------------- links and special files


@pytest.mark.parametrize("rel", ["adapter/adapter_model.safetensors", "config.yaml", "hashes.json", "run_meta.json"])
def test_a_symlink_in_place_of_a_run_file_is_refused(run, tmp_path, rel):
    """The link points to an identical copy outside the run: every hash still matches."""
    copy = tmp_path / "elsewhere" / rel
    copy.parent.mkdir(parents=True)
    shutil.copyfile(run / rel, copy)
    (run / rel).unlink()
    (run / rel).symlink_to(copy)
    assert sha256_file(run / rel) == sha256_file(copy)
    report = verify_run(run)
    (bad,) = [p for p in report.problems if "symbolic link" in p.message]
    assert bad.file == str(run / rel) and str(copy) in bad.message
    assert find_cached(tmp_path, KEY) is None


def test_a_symlinked_folder_is_refused_even_when_its_files_are_in_the_chain(run, tmp_path):
    shutil.move(run / "tokenizer", tmp_path / "tokenizer")
    (run / "tokenizer").symlink_to(tmp_path / "tokenizer", target_is_directory=True)
    report = verify_run(run)
    assert [p.file for p in report.problems] == [str(run / "tokenizer")], text(report.problems)
    assert find_cached(tmp_path, KEY) is None


def test_an_extra_symlink_is_refused_by_the_cache_too(run, tmp_path):
    (run / "adapter" / "more.safetensors").symlink_to(run / "adapter" / "adapter_model.safetensors")
    entries = chain.read_entries(run)
    entries["adapter/more.safetensors"] = sha256_file(run / "adapter" / "adapter_model.safetensors")
    reseal(run, entries)
    report = verify_run(run)
    assert [p.file for p in report.problems] == [str(run / "adapter" / "more.safetensors")], text(report.problems)
    assert "symbolic link" in report.problems[0].message
    assert find_cached(tmp_path, KEY) is None


def test_a_fifo_in_a_run_folder_is_refused_without_reading_it(run, tmp_path):
    os.mkfifo(run / "adapter" / "pipe")
    report = verify_run(run)  # would block forever if the FIFO were opened
    assert [p.file for p in report.problems] == [str(run / "adapter" / "pipe")], text(report.problems)
    assert "not a regular file" in report.problems[0].message
    assert find_cached(tmp_path, KEY) is None


# ---------------------------------------------------------------- required entries


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ("dataset:", "dataset:ds@v1"),
        ("dataset:ds@v1/manifest", "dataset:ds@v1/manifest"),
        ("model:", "model:<file>"),
        ("config:canonical", "config:canonical"),
        ("config.yaml", "config.yaml"),
        ("environment.json", "environment.json"),
    ],
)
def test_a_chain_without_a_required_entry_is_refused(run, tmp_path, drop, named):
    entries = {k: v for k, v in chain.read_entries(run).items() if not k.startswith(drop)}
    if drop == "environment.json":
        (run / drop).unlink()  # the file goes too, so nothing is left unrecorded
    reseal(run, entries)
    report = verify_run(run)
    assert not report.ok
    assert any(named in p.message and p.file == str(run / "hashes.json") for p in report.problems), text(
        report.problems
    )
    assert find_cached(tmp_path, KEY) is None


def test_a_chain_without_the_adapter_is_refused(run, tmp_path):
    shutil.rmtree(run / "adapter")
    reseal(run, {k: v for k, v in chain.read_entries(run).items() if not k.startswith("adapter/")})
    assert "adapter/adapter_model.safetensors" in text(verify_run(run).problems)
    assert find_cached(tmp_path, KEY) is None


def test_a_chain_without_its_run_meta_entry_is_refused(run, tmp_path):
    """seal always adds run_meta:canonical: drop it by hand and forge the root over the rest."""
    entries = {k: v for k, v in chain.read_entries(run).items() if k != "run_meta:canonical"}
    root = chain.write_entries(run, entries)
    meta = json.loads((run / "run_meta.json").read_text())
    meta["root_hash"] = root
    (run / "run_meta.json").write_text(json.dumps(meta))
    report = verify_run(run)
    assert any("'run_meta:canonical'" in p.message for p in report.problems), text(report.problems)
    assert find_cached(tmp_path, KEY) is None


def test_the_eval_dataset_entries_are_required_when_run_meta_names_one(run):
    meta = json.loads((run / "run_meta.json").read_text())
    meta["eval_dataset"] = {**meta["dataset"], "ref": "other@v2", "name": "other", "version": "v2"}
    (run / "run_meta.json").write_text(json.dumps(meta))
    reseal(run, chain.read_entries(run))
    msgs = text(verify_run(run).problems)
    assert "'dataset:other@v2'" in msgs and "'dataset:other@v2/manifest'" in msgs


def test_a_damaged_hashes_json_is_a_problem_not_a_crash_in_the_cache(run, tmp_path):
    (run / "hashes.json").write_text("[1, 2]")
    assert chain.verify_chain(run) and find_cached(tmp_path, KEY) is None


# ---------------------------------------------------------------- the CLI and sealing


def test_cli_names_each_refusal_and_exits_1(run, tmp_path, cli):
    secret = _outside(tmp_path)
    entries = {k: v for k, v in chain.read_entries(run).items() if not k.startswith("model:")}
    entries["../secret.txt"] = sha256_file(secret)
    reseal(run, entries)
    (run / "extra").symlink_to(secret)
    out = cli("reproduce", "--verify-only", str(run))
    assert out.returncode == 1
    assert "entry '../secret.txt'" in out.stderr and "model:<file>" in out.stderr
    assert f"{run / 'extra'}: extra is a symbolic link" in out.stderr
    assert "Traceback" not in out.stderr
    doc = json.loads(cli("reproduce", "--verify-only", str(run), "--json").stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 3


def test_sealing_refuses_a_symlink_and_drop_links_removes_trackers_links(run, tmp_path):
    logs = run / "logs" / "wandb"
    (logs / "offline-run-1").mkdir(parents=True)
    (logs / "offline-run-1" / "debug.log").write_text("log\n")
    (logs / "latest-run").symlink_to("offline-run-1", target_is_directory=True)
    (logs / "debug.log").symlink_to("offline-run-1/debug.log")
    (logs / "offline-run-1" / "core.log").symlink_to(_outside(tmp_path))
    with pytest.raises(VerifilyError, match="symbolic link"):
        chain.hash_run_files(run, ["logs"])
    assert sorted(chain.drop_links(run)) == [
        "logs/wandb/debug.log",
        "logs/wandb/latest-run",
        "logs/wandb/offline-run-1/core.log",
    ]
    assert list(chain.hash_run_files(run, ["logs"])) == ["logs/wandb/offline-run-1/debug.log"]
