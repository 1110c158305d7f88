"""Hostile and almost-valid data (issue 22, items 14, 15 and 19): empty splits, manifest row counts, duplicate JSON
keys, lone UTF-16 surrogates, over-long rows and files that are not regular files. Each is one clear problem with
its file (and line), exit code 2, no traceback; nothing hangs."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.builders import jsonl, row, write_dataset
from verifily_action.datasets import check_data, load_manifest, load_split
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit

SURROGATE = b'{"id": "s1", "text": "broken \\ud800 text", "label": "positive"}\n'


def load_error(path, split="train") -> VerifilyError:
    with pytest.raises(VerifilyError) as exc:
        load_split(load_manifest(path), split)
    return exc.value


def set_rows(manifest, split: str, rows: int, index: int = 0) -> None:
    """Edit the row count the manifest records for one file of a split (its hash stays right)."""
    data = yaml.safe_load(manifest.read_text())
    data["splits"][split]["files"][index]["rows"] = rows
    manifest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def verify_json(cli, manifest) -> tuple[int, dict]:
    r = cli("dataset", "verify", str(manifest), "--json")
    return r.returncode, json.loads(r.stdout)


# ---------------------------------------------------------------- empty splits and row counts (item 14)


def test_an_empty_split_fails_verify_and_load_naming_its_file(cli, tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": b"", "eval": [row(1)]})
    r = cli("dataset", "verify", str(p))
    assert r.returncode == 2, r.stdout
    assert f"{p.parent / 'train.jsonl'}: split 'train' has no rows" in r.stderr and "Traceback" not in r.stderr
    e = load_error(p)
    assert [(pr.file, pr.message) for pr in e.problems] == [
        (str(p.parent / "train.jsonl"), "split 'train' has no rows")
    ]


def test_blank_lines_only_is_an_empty_split(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": b"\n\n"})
    assert "split 'train' has no rows" in load_error(p).render()


def test_load_refuses_a_manifest_row_count_that_differs_naming_the_file(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(i) for i in range(5)]})
    set_rows(p, "train", 6)
    e = load_error(p)
    assert [(pr.file, pr.message) for pr in e.problems] == [
        (str(p.parent / "train.jsonl"), "the manifest says 6 rows, the file has 5")
    ]
    set_rows(p, "train", 5)
    assert load_split(load_manifest(p), "train").num_rows == 5


def test_a_cached_load_still_checks_the_row_count(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(i) for i in range(5)]})
    assert load_split(load_manifest(p), "train").num_rows == 5  # now in the Arrow cache
    set_rows(p, "train", 6)
    assert "the manifest says 6 rows, the file has 5" in load_error(p).render()


def test_verify_checks_row_counts_of_every_file_of_a_split(cli, tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(1), row(2)], "extra": [row(3), row(4), row(5)]})
    data = yaml.safe_load(p.read_text())
    data["splits"]["train"]["files"].append(data["splits"].pop("extra")["files"][0])
    data["splits"]["train"]["files"][1]["rows"] = 4
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, d = verify_json(cli, p)
    assert code == 2 and d["problem_total"] == 1
    assert [(pr["file"], pr["message"]) for pr in d["problems"]] == [
        (str(p.parent / "extra.jsonl"), "the manifest says 4 rows, the file has 3")
    ]


def test_one_bad_row_is_one_problem(cli, tmp_path):
    data = jsonl([row(1), row(2)]) + b"{broken\n" + jsonl([row(4), row(5)])
    p = write_dataset(tmp_path, "ds", "v1", {"train": data, "eval": [row(9)]})  # the manifest counts 5 rows
    code, d = verify_json(cli, p)
    assert code == 2 and d["problem_total"] == 1, d["problems"]
    assert (d["problems"][0]["line"], d["problems"][0]["message"][:12]) == (3, "invalid JSON")
    assert len(load_error(p).problems) == 1


def test_a_changed_file_is_one_hash_problem_not_also_a_row_count(cli, tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(1), row(2)], "eval": [row(9)]})
    (p.parent / "train.jsonl").write_bytes(jsonl([row(1)]))
    code, d = verify_json(cli, p)
    assert code == 2 and d["problem_total"] == 1 and "sha256 mismatch" in d["problems"][0]["message"]


# ---------------------------------------------------------------- JSON that is valid but not valid data


def test_a_duplicated_json_key_is_refused_with_file_and_line(cli, tmp_path):
    data = jsonl([row(1)]) + b'{"id": "r2", "id": "r3", "text": "t", "label": "positive"}\n'
    p = write_dataset(tmp_path, "ds", "v1", {"train": data, "eval": [row(9)]})
    e = load_error(p)
    assert len(e.problems) == 1
    pr = e.problems[0]
    assert (pr.file, pr.line) == (str(p.parent / "train.jsonl"), 2) and "key 'id' appears twice" in pr.message
    nested = jsonl([row(1)]) + b'{"id": "r2", "text": "t", "label": "p", "tags": {"source": "a", "source": "b"}}\n'
    p = write_dataset(tmp_path / "n", "ds", "v1", {"train": nested})
    assert "key 'source' appears twice" in load_error(p).render()
    code, d = verify_json(cli, p)
    assert code == 2 and d["problem_total"] == 1


def test_a_lone_surrogate_is_refused_everywhere_rows_are_read(cli, tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)]) + SURROGATE, "eval": [row(9)]})
    where = f"{p.parent / 'train.jsonl'}:2"
    e = load_error(p)
    assert [(pr.line, pr.json_path) for pr in e.problems] == [(2, "$.text")]
    assert "\\ud800 is a lone UTF-16 surrogate" in e.problems[0].message
    for args in (("verify",), ("info",), ("diff", str(p))):
        r = cli("dataset", *args, str(p))
        assert r.returncode == 2 and where in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    code, d = verify_json(cli, p)
    assert code == 2 and d["problem_total"] == 1
    assert check_data(load_manifest(p)).row_problem_total == 1


def test_surrogates_in_keys_and_nested_values_are_found_and_pairs_are_fine(tmp_path):
    bad_key = b'{"id": "a", "text": "t", "label": "p", "tags": {"\\udc00": "x"}}\n'
    p = write_dataset(tmp_path / "k", "ds", "v1", {"train": bad_key})
    assert [pr.json_path for pr in load_error(p).problems] == ["$.tags"]
    pair = b'{"id": "a", "text": "smile \\ud83d\\ude00", "label": "p"}\n'
    p = write_dataset(tmp_path / "p", "ds", "v1", {"train": pair})
    assert load_split(load_manifest(p), "train")["text"] == ["smile \U0001f600"]


# ---------------------------------------------------------------- row size cap (item 15)


def test_a_row_over_max_row_bytes_is_refused_with_file_and_line(tmp_path):
    long = row(2, text="x" * 500)
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(1), long, row(3)]}, max_row_bytes=200)
    e = load_error(p)
    size = len(json.dumps(long))
    assert [(pr.line, pr.message) for pr in e.problems] == [
        (2, f"row is {size + 1:,} bytes; a row may be at most 200 bytes")
    ]
    assert "max_row_bytes" in (e.problems[0].hint or "")
    p = write_dataset(tmp_path / "ok", "ds", "v1", {"train": [row(1), long, row(3)]}, max_row_bytes=size)
    assert load_split(load_manifest(p), "train").num_rows == 3  # the cap is on the row, not its line end


def test_the_default_row_cap_comes_from_the_schema(tmp_path):
    from verifily_action.schemas import load_schema

    default = load_schema("dataset.schema.json")["properties"]["max_row_bytes"]["default"]
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(1, text="x" * default)]})
    assert f"a row may be at most {default:,} bytes" in load_error(p).render()
    assert load_manifest(p).max_row_bytes == default


# ---------------------------------------------------------------- not regular files (item 15)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_as_data_file_or_manifest_is_refused_not_read(cli_process, tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(1)], "eval": [row(2)]})
    (p.parent / "train.jsonl").unlink()
    os.mkfifo(p.parent / "train.jsonl")
    for args in (("verify", str(p)), ("info", str(p)), ("hash", str(p))):
        r = cli_process("dataset", *args, timeout=120)  # a read would block forever: the timeout fails the test
        assert r.returncode == 2 and "named pipe (FIFO)" in r.stderr and "Traceback" not in r.stderr, (args, r)
    assert "named pipe (FIFO)" in load_error(p).render()
    folder = tmp_path / "pipes" / "v1"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "train.jsonl")
    r = cli_process("dataset", "init", str(folder), timeout=120)
    assert r.returncode == 2 and "named pipe (FIFO)" in r.stderr and "Traceback" not in r.stderr, r
    os.mkfifo(folder / "manifest.yaml")
    r = cli_process("dataset", "verify", str(folder), timeout=120)
    assert r.returncode == 2 and "named pipe (FIFO)" in r.stderr and "manifest.yaml" in r.stderr, r


def test_a_device_as_manifest_is_refused(cli_process):
    r = cli_process("dataset", "verify", "/dev/zero", timeout=120)  # reading it never ends
    assert r.returncode == 2 and "character device" in r.stderr and "Traceback" not in r.stderr, r
