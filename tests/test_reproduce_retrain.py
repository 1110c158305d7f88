"""`verifily reproduce RUN`: retrain a real run from its recorded config and data; on CPU with the same seed the
metrics, the predictions and the adapter weights are identical. A changed run is refused."""

from __future__ import annotations

import json

import pytest

from tests.compare_real import copy_run, shared_runs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def test_reproduction_on_cpu_is_identical(cli, real, tmp_path):
    # In-process (the session already imported torch for the shared runs): a subprocess would pay that again.
    from verifily_action.compare.reproduce import reproduce

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


def test_a_run_without_eval_results_is_refused(cli, tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    out = cli("reproduce", str(d))
    assert out.returncode == 2 and "not a run folder" in out.stderr
