"""Dataset manifests and `name@version` references: schema errors with positions, path escapes, registry errors,
the dataset hash."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from tests.builders import jsonl, row, write_dataset
from tests.paths import DEMO_ROOT
from verifily_action.datasets import Manifest, load_manifest, resolve
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit


def error_of(fn, *args, **kwargs) -> VerifilyError:
    with pytest.raises(VerifilyError) as exc:
        fn(*args, **kwargs)
    return exc.value


def test_demo_manifests_resolve_by_ref_and_path():
    m1 = resolve("ds_demo@v1", DEMO_ROOT)
    m2 = resolve(str(DEMO_ROOT / "ds_demo" / "v2" / "manifest.yaml"))
    assert isinstance(m1, Manifest)
    assert (m1.ref, m1.parent, m2.ref, m2.parent) == ("ds_demo@v1", None, "ds_demo@v2", "v1")
    assert m1.tag_keys == ["source", "origin"]
    assert m1.fields["text"] == "text" and m1.fields["prompt"] is None
    assert [e.path for e in m1.splits["eval"]] == ["eval.jsonl"]
    assert m1.splits["eval"][0].sha256 == m2.splits["eval"][0].sha256  # the shared eval set
    assert m1.dir == (DEMO_ROOT / "ds_demo" / "v1").resolve()
    assert m1.dataset_hash() != m2.dataset_hash()
    # a folder works as a path too
    assert resolve(str(DEMO_ROOT / "ds_demo" / "v1")).ref == "ds_demo@v1"


def test_root_from_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFILY_DATASETS", str(DEMO_ROOT))
    assert resolve("ds_demo@v2").version == "v2"
    monkeypatch.delenv("VERIFILY_DATASETS")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(DEMO_ROOT / "ds_demo" / "v1", tmp_path / "datasets" / "ds_demo" / "v1")
    assert resolve("ds_demo@v1").ref == "ds_demo@v1"  # ./datasets


def test_unknown_name_lists_datasets_and_suggests():
    e = error_of(resolve, "ds_dem@v1", DEMO_ROOT)
    assert "no dataset named 'ds_dem'" in e.message
    assert "did you mean 'ds_demo'" in (e.hint or "") and "ds_demo" in (e.hint or "")


def test_unknown_version_lists_versions():
    e = error_of(resolve, "ds_demo@v7", DEMO_ROOT)
    assert "no version 'v7'" in e.message
    assert "v1, v2" in (e.hint or "")


def test_missing_root_and_bad_reference(tmp_path):
    e = error_of(resolve, "ds_demo@v1", tmp_path / "nope")
    assert "does not exist" in e.message and "--datasets-root" in (e.hint or "")
    e = error_of(resolve, "ds_demo", DEMO_ROOT)
    assert "name@version" in e.message and "ds_demo@v1" in (e.hint or "")
    e = error_of(resolve, str(tmp_path / "missing.yaml"))
    assert "not found" in e.message


def test_folder_must_match_manifest_name(tmp_path):
    write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)])})
    shutil.copytree(tmp_path / "ds" / "v1", tmp_path / "ds" / "v2")
    e = error_of(resolve, "ds@v2", tmp_path)
    assert "says it is ds@v1" in e.message


def test_schema_errors_all_reported_with_positions(tmp_path):
    p = tmp_path / "manifest.yaml"
    p.write_text(
        "schema_version: 1\n"
        "name: ds\n"
        "version: v1\n"
        "colour: blue\n"
        "tag_keys: [source, source]\n"
        "splits:\n"
        "  train:\n"
        "    files:\n"
        "      - {path: train.jsonl, sha256: not-a-hash, rows: -1}\n",
        encoding="utf-8",
    )
    e = error_of(load_manifest, p)
    assert "not valid" in e.message
    by_path = {pr.json_path: pr for pr in e.problems}
    assert "unknown key" in by_path["$"].message and "colour" in by_path["$"].message
    assert by_path["$.splits.train.files[0].sha256"].line == 9
    assert "$.splits.train.files[0].rows" in by_path
    assert "$.tag_keys" in by_path
    assert all(pr.file == str(p) for pr in e.problems)


def test_missing_required_and_wrong_version(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text('{"schema_version": 2, "name": "ds"}', encoding="utf-8")
    e = error_of(load_manifest, p)
    messages = " | ".join(pr.message for pr in e.problems)
    assert "'version' is a required property" in messages and "'splits' is a required property" in messages
    assert any(pr.json_path == "$.schema_version" for pr in e.problems)


def test_not_a_mapping_and_yaml_syntax(tmp_path):
    p = tmp_path / "manifest.yaml"
    p.write_text("- just\n- a list\n", encoding="utf-8")
    assert "mapping" in error_of(load_manifest, p).problems[0].message
    p.write_text("name: [unclosed\n", encoding="utf-8")
    e = error_of(load_manifest, p)
    assert e.problems[0].line is not None and "YAML" in e.problems[0].message


@pytest.mark.parametrize("bad", ["../outside.jsonl", "sub/../../outside.jsonl", "/etc/passwd"])
def test_paths_escaping_the_folder_are_refused(tmp_path, bad):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)])})
    (tmp_path / "ds" / "outside.jsonl").write_bytes(jsonl([row(2)]))
    data = yaml.safe_load(p.read_text())
    data["splits"]["train"]["files"][0]["path"] = bad
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    e = error_of(load_manifest, p)
    assert "inside the dataset folder" in e.message
    assert bad in e.problems[0].message
    assert e.problems[0].line is not None and e.problems[0].json_path == "$.splits.train.files[0].path"


def test_symlink_pointing_outside_is_refused_inside_is_fine(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)])})
    outside = tmp_path / "secret.jsonl"
    outside.write_bytes(jsonl([row(3)]))
    folder = p.parent
    os.symlink(outside, folder / "link.jsonl")
    os.symlink(folder / "train.jsonl", folder / "inner.jsonl")
    data = yaml.safe_load(p.read_text())
    data["splits"]["train"]["files"] = [{"path": "inner.jsonl"}]
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_manifest(p).splits["train"][0].path == "inner.jsonl"
    data["splits"]["train"]["files"] = [{"path": "link.jsonl"}]
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    e = error_of(load_manifest, p)
    assert "through a symlink" in e.problems[0].message


def test_dataset_hash_covers_data_not_documentation(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)]), "eval": jsonl([row(2)])}, description="first")
    h = load_manifest(p).dataset_hash()
    data = yaml.safe_load(p.read_text())
    data["description"] = "edited words"
    data["license"] = "CC0-1.0"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_manifest(p).dataset_hash() == h
    data["splits"]["train"]["files"][0]["sha256"] = "0" * 64
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_manifest(p).dataset_hash() != h
    data["splits"]["train"]["files"][0]["sha256"] = None
    data["tag_keys"] = ["source"]
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_manifest(p).dataset_hash() != h


def test_fields_default_by_task(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([{"prompt": "a", "response": "b"}])})
    data = yaml.safe_load(p.read_text())
    del data["fields"]
    data["task"] = "sft"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    m = load_manifest(p)
    expected = {"id": "id", "text": None, "prompt": "prompt", "response": "response", "label": None, "tags": "tags"}
    assert m.fields == expected


def test_unknown_split(tmp_path):
    m = load_manifest(write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)])}))
    e = error_of(m.require_split, "test")
    assert "no split 'test'" in e.message and "train" in (e.hint or "")


def test_demo_data_is_small_and_licensed():
    total = sum(f.stat().st_size for f in (DEMO_ROOT / "ds_demo").rglob("*") if f.is_file())
    assert total < 2 * 1024 * 1024
    assert (DEMO_ROOT / "ds_demo" / "LICENSES" / "SuperGen-LICENSE.txt").is_file()
    assert (DEMO_ROOT / "ds_demo" / "LICENSES" / "FewGen-LICENSE.txt").is_file()
    assert "CC BY 4.0" in (DEMO_ROOT / "README.md").read_text()


def test_build_script_reproduces_committed_files(tmp_path, shared_data):
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(DEMO_ROOT / "build_demo.py"), str(shared_data), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for version in ("v1", "v2"):
        for name in ("manifest.yaml", "train.jsonl", "eval.jsonl"):
            built = (tmp_path / "ds_demo" / version / name).read_bytes()
            assert built == (DEMO_ROOT / "ds_demo" / version / name).read_bytes(), f"{version}/{name} differs"
