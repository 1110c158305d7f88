"""Loading a split: hash verification, canonical columns, stable ids, tags, and the bad-input corpus (every kind of
malformed JSONL reported with file:line, all problems in one capped report)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.builders import jsonl, row, write_dataset
from tests.paths import DEMO_ROOT
from verifily_action.datasets import NONE_TAG, load_manifest, load_split, resolve
from verifily_action.datasets.rows import MAX_SHOWN
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit


def load_error(path, split="train", **kw) -> VerifilyError:
    with pytest.raises(VerifilyError) as exc:
        load_split(load_manifest(path), split, **kw)
    return exc.value


def test_demo_split_loads_with_canonical_columns():
    m = resolve("ds_demo@v2", DEMO_ROOT)
    ds = load_split(m, "eval")
    assert ds.num_rows == 1200 == m.splits["eval"][0].rows
    assert set(ds.column_names) == {"id", "text", "label", "tags"}
    assert len(set(ds["id"])) == ds.num_rows
    first = json.loads((DEMO_ROOT / "ds_demo" / "v2" / "eval.jsonl").open().readline())
    assert ds[0] == first  # the demo rows are already canonical
    origins = {t["origin"] for t in ds["tags"]}
    assert origins == {"imdb", "amazon", "yelp", "sst2", "fewgen", "supergen"}
    assert set(ds["label"]) == {"negative", "positive"}
    # Arrow-backed and memory-mapped from the datasets cache, not held in Python lists
    assert ds.cache_files and ds.cache_files[0]["filename"].endswith(".arrow")


def test_ids_fall_back_to_content_hash_and_are_stable(tmp_path):
    rows = [{"text": "same words", "label": 1, "tags": {"source": "human"}}, {"text": "other", "label": 0}]
    p = write_dataset(tmp_path / "a", "ds", "v1", {"train": jsonl(rows)})
    ds = load_split(load_manifest(p), "train")
    ids = ds["id"]
    assert len(ids[0]) == 16 and ids[0] != ids[1]
    assert ds["label"] == ["1", "0"]  # integer labels become strings
    # the same content under other tags (another version) keeps its id, so it pairs across versions
    rows[0]["tags"] = {"source": "synthetic"}
    p2 = write_dataset(tmp_path / "b", "ds", "v1", {"train": jsonl(rows)})
    assert load_split(load_manifest(p2), "train")["id"] == ids


def test_missing_tag_keys_are_none_and_counted_as_none_slice(tmp_path):
    rows = [row(1, source="human", origin="imdb"), row(2, source="synthetic"), {"id": "r3", "text": "x", "label": "a"}]
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl(rows)})
    ds = load_split(load_manifest(p), "train")
    assert ds["tags"] == [
        {"source": "human", "origin": "imdb"},
        {"source": "synthetic", "origin": None},
        {"source": None, "origin": None},
    ]
    from verifily_action.datasets.info import dataset_info

    info = dataset_info(load_manifest(p))
    assert info["splits"]["train"]["tags"]["origin"] == {NONE_TAG: 2, "imdb": 1}


def test_fields_override_maps_other_keys(tmp_path):
    rows = [{"uid": "a", "sentence": "hello", "sentiment": "pos"}]
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl(rows)}, tag_keys=())
    ds = load_split(load_manifest(p), "train", fields={"id": "uid", "text": "sentence", "label": "sentiment"})
    assert ds[0] == {"id": "a", "text": "hello", "label": "pos", "tags": {}}
    with pytest.raises(VerifilyError, match="unknown field role"):
        load_split(load_manifest(p), "train", fields={"colour": "x"})


def test_hash_mismatch_names_file_and_both_hashes(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1), row(2)])})
    expected = load_manifest(p).splits["train"][0].sha256
    (p.parent / "train.jsonl").write_bytes(jsonl([row(1), row(2, text="tampered")]))
    e = load_error(p)
    pr = e.problems[0]
    assert pr.file.endswith("train.jsonl")
    assert expected in pr.message and "sha256 mismatch" in pr.message
    from verifily_action.hashing import sha256_file

    assert sha256_file(p.parent / "train.jsonl") in pr.message
    # the override loads it anyway (the caller records unverified data), and the cache never serves the old rows
    ds = load_split(load_manifest(p), "train", verify=False)
    assert ds["text"][1] == "tampered"


def test_unhashed_manifest_and_missing_file(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)])}, hashed=False)
    assert "verifily dataset hash" in (load_error(p).problems[0].hint or "")
    p = write_dataset(tmp_path / "m", "ds", "v1", {"train": jsonl([row(1)])})
    (p.parent / "train.jsonl").unlink()
    e = load_error(p)
    assert e.problems[0].message == "file not found" and e.problems[0].file.endswith("train.jsonl")


# Each entry: the file bytes, then (line, words expected in the problem message) for every problem.
A = b'{"id": "a", "text": "x", "label": "p"}'
B = b'{"id": "b", "text": "y", "label": "p"}'
BAD = {
    "invalid_json": (b'{"id": "a", "text": "x", "label": "p"}\n{"id": "b", "text": \n', [(2, "invalid JSON")]),
    "not_object": (b'["a", "b"]\n"just a string"\n', [(1, "an array, not a JSON object"), (2, "a string")]),
    "missing_field": (b'{"id": "a", "label": "p"}\n', [(1, "missing field 'text'")]),
    "wrong_type": (b'{"id": "a", "text": 5, "label": "p"}\n', [(1, "'text' (text) must be a string")]),
    "bad_label": (b'{"id": "a", "text": "x", "label": 1.5}\n', [(1, "(label) must be")]),
    "bad_id": (b'{"id": ["a"], "text": "x", "label": "p"}\n', [(1, "(id) must be")]),
    "bad_tags": (b'{"id": "a", "text": "x", "label": "p", "tags": ["human"]}\n', [(1, "(tags) must be an object")]),
    "tag_not_string": (b'{"id": "a", "text": "x", "label": "p", "tags": {"source": 1}}\n', [(1, "tag 'source'")]),
    "unknown_tag": (b'{"id": "a", "text": "x", "label": "p", "tags": {"colour": "red"}}\n', [(1, "unknown tag")]),
    "invalid_utf8": (b'{"id": "a", "text": "caf\xe9", "label": "p"}\n', [(1, "invalid UTF-8 byte 0xe9")]),
    "bom": (b'\xef\xbb\xbf{"id": "a", "text": "x", "label": "p"}\n', [(1, "BOM")]),
    "crlf": (A + b"\r\n" + B + b"\r\n", [(1, "CRLF")]),
    "blank_middle": (A + b"\n\n" + B + b"\n", [(2, "blank")]),
    "nan": (b'{"id": "a", "text": "x", "label": NaN}\n', [(1, "NaN is not a JSON number")]),
    "deep_nesting": (
        b'{"id": "a", "text": "x", "label": "p", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        [(1, "nested too deeply")],
    ),
    "duplicate_id": (A + b"\n" + B.replace(b'"b"', b'"a"') + b"\n", [(2, "duplicate id")]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_corpus(tmp_path, case):
    data, expected = BAD[case]
    p = write_dataset(tmp_path, "ds", "v1", {"train": data})
    e = load_error(p)
    assert f"{len(expected)} problem" in e.message
    got = [(pr.line, pr.message) for pr in e.problems]
    for (line, words), (got_line, message) in zip(expected, got, strict=True):
        assert got_line == line and words in message, got
    assert all(pr.file == str(p.parent / "train.jsonl") for pr in e.problems)
    assert "Traceback" not in e.render()


def test_every_problem_in_one_report_capped_with_total(tmp_path):
    good = json.dumps(row(0)).encode() + b"\n"
    bad = b"".join(b"{oops\n" for _ in range(MAX_SHOWN + 10))
    mixed = good + b'{"id": "x", "text": 3, "label": "p"}\n' + bad + b"[1]\n"
    p = write_dataset(tmp_path, "ds", "v1", {"train": mixed})
    e = load_error(p)
    total = MAX_SHOWN + 12
    assert f"{total} problems" in e.message and f"first {MAX_SHOWN} shown" in e.message
    assert len(e.problems) == MAX_SHOWN
    assert [pr.line for pr in e.problems[:3]] == [2, 3, 4]


def test_trailing_blank_line_is_tolerated_with_warning(tmp_path, caplog):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1), row(2)]) + b"\n\n"})
    ds = load_split(load_manifest(p), "train")
    assert ds.num_rows == 2
    assert any("blank lines at the end" in r.getMessage() for r in caplog.records)


def test_multiple_files_per_split_keep_their_own_line_numbers(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": [row(1)], "extra": [row(1), {"id": "r2", "text": 1}]})
    data = yaml.safe_load(p.read_text())
    data["splits"]["train"]["files"].append(data["splits"].pop("extra")["files"][0])
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    e = load_error(p)
    files = {(pr.file.rsplit("/", 1)[-1], pr.line) for pr in e.problems}
    assert ("extra.jsonl", 2) in files  # line 2 of the second file, not line 3 of the split
    assert any("duplicate id (first seen at" in pr.message and "train.jsonl:1" in pr.message for pr in e.problems)
