"""`verifily dataset derive`: a new version without the listed rows, kept lines byte for byte, the parent and the
reason recorded, and nothing written on bad input."""

from __future__ import annotations

import json

import pytest

from tests.builders import row, write_dataset
from verifily_action.datasets import resolve

pytestmark = pytest.mark.unit


@pytest.fixture
def root(tmp_path):
    rows = [row(i, label="positive" if i % 2 else "negative") for i in range(8)]
    write_dataset(tmp_path / "datasets", "ds", "v1", {"train": rows, "eval": [row(100), row(101)]})
    return tmp_path / "datasets"


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_derive_drops_the_listed_rows_and_records_why(cli, root, tmp_path):
    ids = tmp_path / "drop.txt"
    ids.write_text("# rows to drop\nr1\n\nr4\n")
    out = cli("dataset", "derive", "ds@v1", "--to", "v2", "--drop-ids", str(ids), "--datasets-root", str(root))
    assert out.returncode == 0, out.stderr
    parent, child = resolve("ds@v1", root), resolve("ds@v2", root)
    old_lines = (parent.dir / "train.jsonl").read_bytes().splitlines(keepends=True)
    new_lines = (child.dir / "train.jsonl").read_bytes().splitlines(keepends=True)
    assert new_lines == [x for x in old_lines if json.loads(x)["id"] not in {"r1", "r4"}]  # byte for byte
    assert (child.dir / "eval.jsonl").read_bytes() == (parent.dir / "eval.jsonl").read_bytes()
    assert child.parent == "v1" and child.splits["train"][0].rows == 6
    d = child.data["derivation"]
    assert d["from"] == "ds@v1" and d["dropped"] == {"train": 2} and d["attribution"] is None
    assert d["rule"] == "ids listed in drop.txt"
    assert cli("dataset", "verify", "ds@v2", "--datasets-root", str(root)).returncode == 0
    assert not [p for p in root.joinpath("ds").iterdir() if p.name.startswith(".")]  # no stage left behind


def test_derive_accepts_jsonl_rows_with_ids(cli, root, tmp_path):
    ids = tmp_path / "rows.jsonl"
    ids.write_text(json.dumps({"id": "r2", "value": -0.1}) + "\n")
    out = cli("dataset", "derive", "ds@v1", "--to", "v2", "--drop-ids", str(ids), "--datasets-root", str(root))
    assert out.returncode == 0, out.stderr
    assert resolve("ds@v2", root).splits["train"][0].rows == 7


@pytest.mark.parametrize(
    ("args", "ids_text", "message"),
    [
        (["--to", "v2", "--drop-ids", "{ids}"], "r1\nnot-there\n", "1 id(s) to drop are not in ds@v1's train split"),
        (["--to", "v1", "--drop-ids", "{ids}"], "r1\n", "already exists"),
        (["--to", "v2", "--drop-ids", "{ids}"], "# nothing\n", "names no id"),
        (["--to", "v2", "--drop-ids", "{ids}"], "{broken\n", ":1: not valid JSON"),
        (["--to", "v2", "--drop-ids", "{ids}", "--split", "dev"], "r1\n", "has no split 'dev'"),
        (["--to", "v2"], "", "give exactly one of --drop-ids FILE and --drop-below VALUE"),
        (["--to", "v2", "--drop-below", "0"], "", "--drop-below needs --run RUN"),
    ],
)
def test_bad_input_writes_nothing(cli, root, tmp_path, args, ids_text, message):
    ids = tmp_path / "drop.txt"
    ids.write_text(ids_text)
    before = _files(root)
    argv = [a.replace("{ids}", str(ids)) for a in args]
    out = cli("dataset", "derive", "ds@v1", *argv, "--datasets-root", str(root))
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert _files(root) == before


def test_a_changed_parent_file_is_refused(cli, root, tmp_path):
    (root / "ds" / "v1" / "train.jsonl").open("a").write(json.dumps(row(50)) + "\n")
    ids = tmp_path / "drop.txt"
    ids.write_text("r1\n")
    out = cli("dataset", "derive", "ds@v1", "--to", "v2", "--drop-ids", str(ids), "--datasets-root", str(root))
    assert out.returncode == 2 and "sha256" in out.stderr + out.stdout
    assert not (root / "ds" / "v2").exists()
