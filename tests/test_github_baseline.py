"""Baseline selection and safe artifact extraction against the fake GitHub."""

from __future__ import annotations

import io
import random
import warnings
import zipfile

import pytest

from verifily_action.github.archive import UnsafeArchive, safe_extract, zip_dir
from verifily_action.github.baseline import (
    download_baseline,
    find_baseline,
    merge_base,
    run_baseline,
    usable_artifact,
    workflow_file,
)

from .github_fixtures import patched_zip, zip_of

pytestmark = pytest.mark.unit

REPO = "Codertocat/Hello-World"
NAME = "verifily-run"


def _sha(c: str) -> str:
    return c * 40


def test_workflow_file_from_ref():
    assert workflow_file("octo/repo/.github/workflows/eval.yml@refs/pull/2/merge") == "eval.yml"
    assert workflow_file(None) is None and workflow_file("garbage") is None


def test_merge_base_run_is_preferred_over_newer(fake_github, gh):
    mb = fake_github.add_run(_sha("a"), created_at="2024-01-01T00:00:00Z")
    newer = fake_github.add_run(_sha("b"), created_at="2024-02-01T00:00:00Z")
    for r in (mb, newer):
        fake_github.add_artifact(r["id"], NAME, zip_of({"run_meta.json": b"{}"}))
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME, merge_base_sha=_sha("a"))
    assert res.baseline is not None and res.baseline.run_id == mb["id"] and res.baseline.merge_base
    res2 = find_baseline(gh, REPO, "eval.yml", "master", NAME, merge_base_sha=_sha("f"))
    assert res2.baseline.run_id == newer["id"] and not res2.baseline.merge_base
    assert "no usable run at the merge base" in res2.reason
    assert "run " in res.baseline.describe() and "`master`" in res.baseline.describe()
    q = fake_github.calls("GET", r"/actions/workflows/eval.yml/runs$")[0].query
    assert q["branch"] == ["master"] and q["status"] == ["success"]


def test_fork_runs_are_never_baselines(fake_github, gh):
    fork = fake_github.add_run(_sha("a"), head_repo="mallory/Hello-World", created_at="2024-03-01T00:00:00Z")
    fake_github.add_artifact(fork["id"], NAME, zip_of({"x": b"1"}))
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME, merge_base_sha=_sha("a"))
    assert res.baseline is None and "forks" in res.reason
    own = fake_github.add_run(_sha("c"), created_at="2024-01-01T00:00:00Z")
    fake_github.add_artifact(own["id"], NAME, zip_of({"x": b"1"}))
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME, merge_base_sha=_sha("a"))
    assert res.baseline.run_id == own["id"]


def test_expired_and_missing_artifacts_are_skipped(fake_github, gh):
    newest = fake_github.add_run(_sha("a"), created_at="2024-03-01T00:00:00Z")
    fake_github.add_artifact(newest["id"], NAME, b"zip", expired=True)
    middle = fake_github.add_run(_sha("b"), created_at="2024-02-01T00:00:00Z")
    fake_github.add_artifact(middle["id"], "other-name", b"zip")
    oldest = fake_github.add_run(_sha("c"), created_at="2024-01-01T00:00:00Z")
    fake_github.add_artifact(oldest["id"], NAME, b"zip")
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    assert res.baseline.run_id == oldest["id"]


def test_no_baseline_gives_a_reason(fake_github, gh):
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    assert res.baseline is None and "no successful run" in res.reason and "master" in res.reason
    r = fake_github.add_run(_sha("a"))
    fake_github.add_artifact(r["id"], NAME, b"zip", expired=True)
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    assert res.baseline is None and "artifact expired" in res.reason
    failed = fake_github.add_run(_sha("b"), conclusion="failure")
    fake_github.add_artifact(failed["id"], NAME, b"zip")
    assert find_baseline(gh, REPO, "eval.yml", "master", NAME).baseline is None


def test_baseline_by_run_id(fake_github, gh):
    r = fake_github.add_run(_sha("a"))
    fake_github.add_artifact(r["id"], NAME, b"zip")
    assert run_baseline(gh, REPO, r["id"], NAME).baseline.run_id == r["id"]
    missing = run_baseline(gh, REPO, 999999, NAME)
    assert missing.baseline is None and "does not exist" in missing.reason
    fork = fake_github.add_run(_sha("b"), head_repo="mallory/x")
    assert "fork" in run_baseline(gh, REPO, fork["id"], NAME).reason


def test_merge_base_via_compare_api(fake_github, gh):
    fake_github.merge_bases[f"{_sha('1')}...{_sha('2')}"] = _sha("3")
    assert merge_base(gh, REPO, _sha("1"), _sha("2")) == _sha("3")
    assert merge_base(gh, REPO, _sha("1"), _sha("9")) is None  # 404: unknown


def test_download_and_extract_baseline(fake_github, gh, tmp_path):
    r = fake_github.add_run(_sha("a"))
    members = {"run_meta.json": b'{"id": "x"}', "eval/a/eval_results.json": b"{}"}
    fake_github.add_artifact(r["id"], NAME, zip_of(members))
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    out = download_baseline(gh, REPO, res.baseline, tmp_path / "baseline")
    assert (out / "run_meta.json").read_bytes() == b'{"id": "x"}'
    assert (out / "eval/a/eval_results.json").is_file() and res.baseline.dir == out
    assert "authorization" not in fake_github.calls("GET", "/artifact-blobs/", host="blob")[0].headers


def test_a_zip_slip_artifact_is_refused_on_download(fake_github, gh, tmp_path):
    r = fake_github.add_run(_sha("a"))
    fake_github.add_artifact(r["id"], NAME, zip_of({"../../escaped.txt": b"gotcha"}))
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    with pytest.raises(UnsafeArchive, match="climbs out"):
        download_baseline(gh, REPO, res.baseline, tmp_path / "deep" / "baseline")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "climbs out"),
        ("a/../../evil.txt", "climbs out"),
        ("/etc/evil", "absolute"),
        ("C:/evil", "absolute"),
        ("a\\..\\evil", "absolute"),
    ],
)
def test_unsafe_member_names_are_refused(tmp_path, name, why):
    z = tmp_path / "a.zip"
    z.write_bytes(zip_of({"ok.txt": b"fine", name: b"x"}))
    with pytest.raises(UnsafeArchive, match=why):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written


def test_symlink_members_are_refused(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        safe_extract(z, tmp_path / "out")


def test_zip_bombs_are_refused(tmp_path):
    z = tmp_path / "bomb.zip"
    z.write_bytes(zip_of({"zeros": b"\0" * (4 * 1024 * 1024)}))
    with pytest.raises(UnsafeArchive, match="ratio"):
        safe_extract(z, tmp_path / "out")
    z2 = tmp_path / "big.zip"
    z2.write_bytes(zip_of({f"f{i}": bytes(range(256)) * 40 for i in range(5)}))
    with pytest.raises(UnsafeArchive, match="expands to more"):
        safe_extract(z2, tmp_path / "out2", max_total=30_000)
    with pytest.raises(UnsafeArchive, match="members"):
        safe_extract(z2, tmp_path / "out3", max_files=3)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UnsafeArchive, match="not a readable zip"):
        safe_extract(bad, tmp_path / "out4")


def test_a_zip_that_lies_about_its_compression_is_refused(tmp_path):
    """The central directory claims 150x more compressed bytes than the zeros really use (the bytes after them, a
    second member, are there to be read), so the claimed ratio, about 7x, passes; the real one is about 1000x.
    Trusting the claim, 1 MiB came out of 1 KB; with a 1 GiB member the same zip extracted 1 GiB."""
    zeros = b"\0" * (1024 * 1024)
    with zipfile.ZipFile(io.BytesIO(zip_of({"zeros": zeros}))) as zf:
        real = zf.getinfo("zeros").compress_size
    members = {"zeros": zeros, "filler.bin": random.Random(0).randbytes(160 * real)}  # does not compress
    z = tmp_path / "liar.zip"
    z.write_bytes(patched_zip(members, claim_compressed={"zeros": real * 150}))
    with zipfile.ZipFile(z) as zf:
        assert zf.getinfo("zeros").file_size / zf.getinfo("zeros").compress_size < 10  # the claim
    with pytest.raises(UnsafeArchive, match="zip bomb"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "zeros").exists()  # refused before anything was written


def _duplicate_names() -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        zf.writestr("run_meta.json", b"{}")
        zf.writestr("run_meta.json", b'{"status": "completed"}')
    return buf.getvalue()


def _corrupt_stream() -> bytes:
    data = bytearray(zip_of({"f.txt": b"hello world " * 500}))
    start = 30 + len("f.txt")  # the deflate stream after the first local header
    data[start + 2 : start + 40] = bytes(range(38))
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (zip_of({"a": b"file", "a/b": b"in a folder"}), "as a file and as a folder"),
        (zip_of({"a/b": b"in a folder", "a": b"file"}), "as a file and as a folder"),
        (zip_of({"a/": b"", "a": b"file"}), "as a file and as a folder"),
        (zip_of({".": b"dot"}), "names the target folder itself"),
        (zip_of({"./": b""}), "names the target folder itself"),
        (patched_zip({"run_meta.json": b"{}"}, encrypted=["run_meta.json"]), "is encrypted"),
        (_duplicate_names(), "holds it twice"),
        (_corrupt_stream(), "cannot be read"),
    ],
    ids=["file then folder", "folder then file", "folder member", "dot", "dot folder", "encrypted", "twice", "corrupt"],
)
def test_hostile_but_well_formed_zips_are_refused_not_crashed_on(tmp_path, data, why):
    z = tmp_path / "hostile.zip"
    z.write_bytes(data)
    with pytest.raises(UnsafeArchive, match=why):
        safe_extract(z, tmp_path / "out")


def test_zip_dir_round_trip_skips_symlinks(tmp_path):
    src = tmp_path / "run"
    (src / "eval").mkdir(parents=True)
    (src / "run_meta.json").write_text("{}")
    (src / "eval" / "r.json").write_text("[]")
    (src / "link").symlink_to("/etc/passwd")
    info = zip_dir(src, tmp_path / "run.zip", extra={"verifily-pr.json": b'{"number": 2}'})
    assert info.files == 3 and len(info.sha256) == 64
    files = safe_extract(info.path, tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in files) == [
        "eval/r.json",
        "run_meta.json",
        "verifily-pr.json",
    ]


def test_the_newest_of_the_artifact_and_its_fallback_is_used(fake_github, gh):
    run = fake_github.add_run(_sha("a"))
    old = fake_github.add_artifact(run["id"], NAME, b"1")
    old["created_at"] = "2024-01-01T00:00:00Z"
    fallback = fake_github.add_artifact(run["id"], f"{NAME}-fallback", b"2")
    fallback["created_at"] = "2024-01-02T00:00:00Z"
    other = fake_github.add_artifact(run["id"], f"{NAME}-other", b"3")
    other["created_at"] = "2024-01-03T00:00:00Z"
    assert usable_artifact(gh, REPO, run["id"], NAME)[0]["id"] == fallback["id"]
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    assert res.baseline.artifact_id == fallback["id"]
    fallback["expired"] = True
    assert usable_artifact(gh, REPO, run["id"], NAME)[0]["id"] == old["id"]
    old["created_at"] = fallback["created_at"]  # the same second: the higher id is the later upload
    twin = fake_github.add_artifact(run["id"], NAME, b"4")
    twin["created_at"] = old["created_at"]
    assert usable_artifact(gh, REPO, run["id"], NAME)[0]["id"] == twin["id"]
    assert usable_artifact(gh, REPO, run["id"], "verifily") == (None, "no artifact")
