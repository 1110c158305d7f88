"""`verifily dataset init|hash|verify|info|diff` end to end (subprocess), on the real demo dataset and broken copies."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.builders import jsonl, row, write_dataset
from tests.paths import DEMO_ROOT

pytestmark = pytest.mark.unit

ROOT = ["--datasets-root", str(DEMO_ROOT)]


def demo_copy(tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(DEMO_ROOT / "ds_demo", root / "ds_demo")
    return root


def test_verify_demo(cli):
    r = cli("dataset", "verify", "ds_demo@v1", *ROOT)
    assert r.returncode == 0, r.stderr
    assert "hashes match (2 files), rows valid" in r.stdout
    assert "train: 2000 rows, 0 empty text, 0 exact duplicates" in r.stdout
    r = cli("dataset", "verify", "ds_demo@v2", *ROOT, "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["ok"] and d["data_report"]["rows"] == {"train": 2000, "eval": 1200}


def test_info_json_counts_tags(cli):
    r = cli("dataset", "info", "ds_demo@v1", *ROOT, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    train, ev = d["splits"]["train"], d["splits"]["eval"]
    assert train["rows"] == 2000 and ev["rows"] == 1200
    assert train["tags"]["source"] == {"human": 1000, "synthetic": 1000}
    assert train["tags"]["origin"]["fewgen"] == 1000 and "supergen" not in train["tags"]["origin"]
    assert ev["tags"]["origin"] == {o: 200 for o in ("amazon", "fewgen", "imdb", "sst2", "supergen", "yelp")}
    assert all(f["verified"] for f in train["files"])
    text = cli("dataset", "info", "ds_demo@v1", *ROOT).stdout
    assert "synthetic  1000" in text and "[verified]" in text


def test_info_counts_none_tag(cli, tmp_path):
    write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1, source="human"), row(2, origin="x")])})
    d = json.loads(cli("dataset", "info", "ds@v1", "--datasets-root", str(tmp_path), "--json").stdout)
    assert d["splits"]["train"]["tags"]["source"] == {"(none)": 1, "human": 1}


def test_diff_v1_v2_by_origin(cli):
    r = cli("dataset", "diff", "ds_demo@v1", "ds_demo@v2", *ROOT, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    train = d["splits"]["train"]
    assert (train["added"], train["removed"], train["changed"], train["unchanged"]) == (1000, 1000, 0, 1000)
    assert train["by_tag"]["origin"]["fewgen"]["removed"] == 1000
    assert train["by_tag"]["origin"]["supergen"]["added"] == 1000
    assert train["by_tag"]["source"]["human"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 1000}
    assert all(i.startswith("supergen-") for i in train["example_ids"]["added"])
    ev = d["splits"]["eval"]
    assert (ev["added"], ev["removed"], ev["changed"], ev["unchanged"]) == (0, 0, 0, 1200)
    text = cli("dataset", "diff", "ds_demo@v1", "ds_demo@v2", *ROOT).stdout
    assert "fewgen" in text and "supergen" in text


def test_diff_reports_changed_fields(cli, tmp_path):
    write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1), row(2), row(3)])})
    write_dataset(tmp_path, "ds", "v2", {"train": jsonl([row(1), row(2, label="negative"), row(4)])})
    d = json.loads(cli("dataset", "diff", "ds@v1", "ds@v2", "--datasets-root", str(tmp_path), "--json").stdout)
    t = d["splits"]["train"]
    assert (t["added"], t["removed"], t["changed"], t["unchanged"]) == (1, 1, 1, 1)
    assert t["changed_fields"] == {"label": 1} and t["example_ids"]["changed"] == ["r2"]


def test_diff_refuses_a_file_changed_since_hashing(cli, tmp_path):
    root = demo_copy(tmp_path)
    f = root / "ds_demo" / "v2" / "train.jsonl"
    f.write_bytes(f.read_bytes().replace(b"aimless", b"aimful", 1))
    r = cli("dataset", "diff", "ds_demo@v1", "ds_demo@v2", "--datasets-root", str(root))
    assert r.returncode == 2, r.stdout
    assert "sha256 mismatch" in r.stderr and "v2/train.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_tampered_file_fails_verify_naming_both_hashes(cli, tmp_path):
    root = demo_copy(tmp_path)
    f = root / "ds_demo" / "v1" / "train.jsonl"
    f.write_bytes(f.read_bytes().replace(b"aimless", b"aimful", 1))
    r = cli("dataset", "verify", "ds_demo@v1", "--datasets-root", str(root))
    assert r.returncode == 2
    m = yaml.safe_load((root / "ds_demo" / "v1" / "manifest.yaml").read_text())
    assert m["splits"]["train"]["files"][0]["sha256"] in r.stderr and "sha256 mismatch" in r.stderr
    assert "train.jsonl" in r.stderr and "Traceback" not in r.stderr
    # `hash --check` sees it; `hash` records the new hash and verify passes again
    assert cli("dataset", "hash", "ds_demo@v1", "--datasets-root", str(root), "--check").returncode == 2
    r = cli("dataset", "hash", "ds_demo@v1", "--datasets-root", str(root))
    assert r.returncode == 0 and "(changed)" in r.stdout
    assert cli("dataset", "verify", "ds_demo@v1", "--datasets-root", str(root)).returncode == 0


def test_verify_reports_bad_rows_and_findings(cli, tmp_path):
    data = jsonl([row(1), row(2, text=" ")]) + b"{broken\n" + b'{"id": "r9", "text": "x"}\r\n'
    write_dataset(tmp_path, "ds", "v1", {"train": data, "eval": jsonl([row(5, text="text number 1")])})
    r = cli("dataset", "verify", "ds@v1", "--datasets-root", str(tmp_path))
    assert r.returncode == 2
    assert "train.jsonl:3" in r.stderr and "invalid JSON" in r.stderr
    assert "train.jsonl:4" in r.stderr and "missing field 'label'" in r.stderr and "CRLF" in r.stderr
    assert "Traceback" not in r.stderr
    # findings alone: a warning, or a failure with --strict
    write_dataset(tmp_path, "ds", "v1", {"train": [row(1), row(2, text=" ")], "eval": [row(5, text="text number 1")]})
    r = cli("dataset", "verify", "ds@v1", "--datasets-root", str(tmp_path))
    assert r.returncode == 0 and "empty_text" in r.stdout and "leakage train/eval: 1" in r.stdout
    assert "2 data-check findings" in r.stdout
    assert cli("dataset", "verify", "ds@v1", "--datasets-root", str(tmp_path), "--strict").returncode == 2


def test_missing_file_and_invalid_manifest_exit_2(cli, tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)])})
    (p.parent / "train.jsonl").unlink()
    r = cli("dataset", "verify", str(p))
    assert r.returncode == 2 and "file not found" in r.stderr and "Traceback" not in r.stderr
    p.write_text("schema_version: 1\nname: ds\nversion: v1\nsplits: {}\nextra: 1\n", encoding="utf-8")
    r = cli("dataset", "verify", str(p), "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 2 and d["ok"] is False
    assert {pr["json_path"] for pr in d["problems"]} >= {"$", "$.splits"}
    r = cli("dataset", "info", "nope@v1", "--datasets-root", str(tmp_path))
    assert r.returncode == 2 and "datasets there: ds" in r.stderr


def test_init_scaffolds_and_hashes(cli, tmp_path):
    folder = tmp_path / "mine" / "v3"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_bytes(
        jsonl([{"uid": "a", "sentence": "s", "sentiment": "pos", "tags": {"lang": "en", "src": "web"}}])
    )
    (folder / "test.jsonl").write_bytes(jsonl([{"uid": "b", "sentence": "t", "sentiment": "neg"}]))
    r = cli("dataset", "init", str(folder))
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert (m["name"], m["version"], m["task"]) == ("mine", "v3", "classification")
    assert m["fields"] == {"id": "uid", "text": "sentence", "label": "sentiment", "tags": "tags"}
    assert m["tag_keys"] == ["lang", "src"]
    assert set(m["splits"]) == {"train", "test"} and m["splits"]["test"]["files"][0]["rows"] == 1
    assert cli("dataset", "verify", "mine@v3", "--datasets-root", str(tmp_path)).returncode == 0
    r = cli("dataset", "init", str(folder))
    assert r.returncode == 2 and "--force" in r.stderr
