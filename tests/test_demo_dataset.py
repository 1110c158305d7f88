"""The committed demo dataset examples/datasets/ds_demo is what examples/datasets/build_demo.py makes of ../shared/data,
byte for byte, and it has the shape the demo relies on: every row tagged `source` and `origin`, stable unique ids,
v1 = human + FewGen train rows, v2 = the same human rows + SuperGen rows, one eval split shared by both versions."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.paths import DEMO_ROOT

pytestmark = pytest.mark.unit

BUILD = DEMO_ROOT / "build_demo.py"
DEMO = DEMO_ROOT / "ds_demo"
VERSIONS = ("v1", "v2")
SPLITS = ("train", "eval")
HUMAN = {"imdb", "amazon", "yelp", "sst2"}
SYNTHETIC = {"fewgen", "supergen"}
ID_RE = re.compile(r"^(imdb|amazon|yelp|sst2)-\d{4}$|^(fewgen|supergen)-\d{5}$")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(version: str, split: str) -> list[dict]:
    text = (DEMO / version / f"{split}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str], list[dict]]:
    return {(v, s): _rows(v, s) for v in VERSIONS for s in SPLITS}


@pytest.fixture(scope="module")
def sources(shared_data) -> dict[str, dict[str, tuple[str, str]]]:
    """id -> (text, label "0"/"1") for every row of ../shared/data, read independently of build_demo.py."""
    data = shared_data / "sentiment"
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for origin, name in (("imdb", "imdb"), ("amazon", "amazon_cells"), ("yelp", "yelp")):
        lines = (data / "uci_sentiment" / f"{name}_labelled.txt").read_bytes().decode("utf-8").split("\n")
        out[origin] = {
            f"{origin}-{i:04d}": tuple(x.strip() for x in line.rsplit("\t", 1))
            for i, line in enumerate(lines, start=1)
            if line.strip()
        }
    lines = [x for x in (data / "supergen_sst2" / "test.tsv").read_bytes().decode("utf-8").split("\n") if x.strip()]
    assert lines[0].strip() == "sentence\tlabel", lines[0]
    out["sst2"] = {f"sst2-{i:04d}": tuple(x.strip() for x in ln.rsplit("\t", 1)) for i, ln in enumerate(lines[1:], 1)}
    for origin, path in (
        ("fewgen", data / "fewgen_sst2" / "gen-train-seed42.json"),
        ("supergen", data / "supergen_sst2" / "train.json"),
    ):
        items = json.loads(path.read_text(encoding="utf-8"))
        out[origin] = {f"{origin}-{i:05d}": (x["text"], str(x["label"])) for i, x in enumerate(items)}
    return out


def test_rebuild_is_byte_identical(tmp_path, shared_data):
    proc = subprocess.run(
        [sys.executable, str(BUILD), str(shared_data), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built, committed = _files(tmp_path / "ds_demo"), _files(DEMO)
    assert sorted(built) == sorted(committed)
    different = [name for name in committed if built[name] != committed[name]]
    assert not different, f"rebuilt files differ from the committed ones: {different}"


@pytest.mark.parametrize("version", VERSIONS)
def test_manifest_hashes_and_row_counts_match_files(version):
    manifest = yaml.safe_load((DEMO / version / "manifest.yaml").read_text(encoding="utf-8"))
    assert manifest["name"] == "ds_demo" and manifest["version"] == version
    assert manifest["parent"] == {"v1": None, "v2": "v1"}[version]
    assert manifest["tag_keys"] == ["source", "origin"]
    assert sorted(manifest["splits"]) == sorted(SPLITS)
    for split, spec in manifest["splits"].items():
        (entry,) = spec["files"]
        data = (DEMO / version / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), (version, split)
        assert entry["rows"] == len([line for line in data.split(b"\n") if line.strip()]), (version, split)


def test_every_row_is_tagged(rows):
    for (version, split), rs in rows.items():
        for r in rs:
            assert set(r) == {"id", "text", "label", "tags"}, (version, split, r)
            assert r["label"] in ("negative", "positive") and r["text"].strip(), (version, split, r)
            source, origin = r["tags"]["source"], r["tags"]["origin"]
            assert set(r["tags"]) == {"source", "origin"}, (version, split, r)
            assert source in ("human", "synthetic"), (version, split, r)
            assert origin in (HUMAN if source == "human" else SYNTHETIC), (version, split, r)


def test_ids_are_unique_and_name_their_origin(rows):
    for version in VERSIONS:
        ids = [r["id"] for s in SPLITS for r in rows[version, s]]
        assert len(ids) == len(set(ids)), f"{version}: duplicate ids"
        for s in SPLITS:
            for r in rows[version, s]:
                m = ID_RE.match(r["id"])
                assert m and r["id"].split("-")[0] == r["tags"]["origin"], (version, s, r["id"])


def test_ids_point_at_their_source_row(rows, sources):
    """Ids are stable: each is the row's position in its ../shared/data file, and text and label come from there."""
    labels = {"0": "negative", "1": "positive"}
    for (version, split), rs in rows.items():
        for r in rs:
            origin = r["tags"]["origin"]
            assert r["id"] in sources[origin], (version, split, r["id"])
            text, label = sources[origin][r["id"]]
            assert r["label"] == labels[label], (version, split, r["id"])
            if origin != "supergen":  # SuperGen's HTML entities are unescaped by the build
                assert r["text"] == text.strip(), (version, split, r["id"])


def test_train_versions(rows):
    v1, v2 = rows["v1", "train"], rows["v2", "train"]
    assert len(v1) == len(v2) == 2000
    for rs, synthetic in ((v1, "fewgen"), (v2, "supergen")):
        origins = {(r["tags"]["source"], r["tags"]["origin"]) for r in rs}
        assert origins == {("human", "imdb"), ("human", "amazon"), ("human", "yelp"), ("synthetic", synthetic)}
        assert sum(r["tags"]["source"] == "human" for r in rs) == 1000
    human = [[r for r in rs if r["tags"]["source"] == "human"] for rs in (v1, v2)]
    assert human[0] == human[1], "v1 and v2 must share the same human train rows"


def test_eval_is_shared_and_holds_both_sources(rows):
    assert (DEMO / "v1" / "eval.jsonl").read_bytes() == (DEMO / "v2" / "eval.jsonl").read_bytes()
    ev = rows["v1", "eval"]
    assert len(ev) == 1200
    assert {r["tags"]["source"] for r in ev} == {"human", "synthetic"}
    assert {r["tags"]["origin"] for r in ev} == HUMAN | SYNTHETIC


@pytest.mark.parametrize("version", VERSIONS)
def test_train_and_eval_are_disjoint(rows, version):
    train, ev = rows[version, "train"], rows[version, "eval"]
    shared_ids = {r["id"] for r in train} & {r["id"] for r in ev}
    assert not shared_ids, f"{version}: ids in both train and eval: {sorted(shared_ids)[:5]}"
    shared_texts = {_norm(r["text"]) for r in train} & {_norm(r["text"]) for r in ev}
    assert not shared_texts, f"{version}: texts in both train and eval: {sorted(shared_texts)[:5]}"
