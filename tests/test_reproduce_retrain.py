"""`verifily reproduce RUN`: retrain a real run from its recorded config and data; on CPU with the same seed the
metrics, the predictions and the adapter weights are identical. A changed run is refused."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.compare_real import copy_run, shared_runs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def test_reproduction_on_cpu_is_identical(cli, real, tmp_path):
    # In-process (the session already imported torch for the shared runs): a subprocess would pay that again.
    from verifily_action.runs.reproduce import reproduce

    report = reproduce(
        real["v1"], output_dir=tmp_path / "repro", datasets_root=str(real["datasets"]), echo=lambda s: None
    )
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["ok"] and doc["same_run_key"] and doc["same_weights"]
    assert doc["changed_predictions"] == {"ds_demo@v1-eval": 0}
    checks = doc["checks"]
    assert {c["metric"] for c in checks} == {"accuracy", "macro_f1"} and len(checks) == 6  # overall + 2 slices
    assert all(c["reproduced"] == c["original"] for c in checks)
    new = tmp_path / "repro" / "demo_v1-repro"
    assert report.reproduction == new.resolve()
    assert (new / "eval" / "ds_demo@v1-eval" / "eval_results.json").is_file()
    # the reproduction is a complete run of its own, with an intact chain
    verify = cli("reproduce", "--verify-only", str(new))
    assert verify.returncode == 0, verify.stderr


def test_a_changed_run_is_not_reproduced(cli, real, tmp_path):
    run = copy_run(real["v1"], tmp_path)
    f = run / "eval" / "ds_demo@v1-eval" / "eval_results.json"
    doc = json.loads(f.read_text())
    doc["overall"]["accuracy"]["value"] = 1.0
    f.write_text(json.dumps(doc))
    out = cli("reproduce", str(run))
    assert out.returncode == 2
    assert "fails its hash check" in out.stderr and "eval_results.json changed" in out.stderr


def test_a_folder_that_is_not_a_run_is_refused(cli, tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    out = cli("reproduce", str(d))
    assert out.returncode == 2 and "not a run folder" in out.stderr


def test_a_sealed_run_without_eval_results_is_refused(cli, real, tmp_path):
    from verifily_action.runs import chain

    run = copy_run(real["v1"], tmp_path)
    shutil.rmtree(run / "eval")
    chain.seal(run, {k: v for k, v in chain.read_entries(run).items() if not k.startswith("eval/")})
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0  # the chain holds: only eval is missing
    out = cli("reproduce", str(run))
    assert out.returncode == 2 and "has no eval results" in out.stderr and "verifily eval --run" in out.stderr


def test_a_reproduction_that_differs_exits_1_unless_within_the_tolerance(cli, real, tmp_path):
    """Real drift: the dataset at hand under the recorded name@version holds other rows than the run trained on
    (v2's rows with every label flipped, re-hashed so the manifest is valid). The retrained run differs; exit 1
    names each metric beyond the tolerance, and a tolerance as large as the worst difference passes."""
    root = tmp_path / "datasets"
    shutil.copytree(real["datasets"], root)
    v1 = root / "ds_demo" / "v1"
    flip = {"positive": "negative", "negative": "positive"}
    rows = [json.loads(x) for x in (root / "ds_demo" / "v2" / "train.jsonl").read_text().splitlines()]
    (v1 / "train.jsonl").write_text("".join(json.dumps({**r, "label": flip[r["label"]]}) + "\n" for r in rows))
    assert cli("dataset", "hash", "ds_demo@v1", "--datasets-root", str(root)).returncode == 0

    out = cli("reproduce", str(real["v1"]), "--datasets-root", str(root), "--output-dir", str(tmp_path / "r"), "--json")
    report = json.loads(out.stdout)
    assert not report["same_run_key"] and not report["same_weights"]
    diffs = [abs(c["reproduced"] - c["original"]) for c in report["checks"]]
    bad = [c for c in report["checks"] if not c["ok"]]
    assert [c for c in report["checks"] if c["reproduced"] != c["original"]] == bad  # tolerance 0: any change fails
    print(f"{len(bad)} of {len(report['checks'])} metric values moved")
    if bad:
        assert out.returncode == 1 and f"{len(bad)} metric value(s) beyond the tolerance 0" in out.stderr
        assert all(f"{c['metric']}: {c['original']:.6g} originally" in out.stderr for c in bad)
    else:
        assert out.returncode == 0
    out = cli(
        "reproduce",
        str(real["v1"]),
        "--datasets-root",
        str(root),
        "--output-dir",
        str(tmp_path / "r2"),
        "--tolerance",
        f"{max(diffs):.17g}",
    )
    assert out.returncode == 0, out.stderr
    assert "run key DIFFERENT" in out.stdout and "adapter weights differ" in out.stdout
