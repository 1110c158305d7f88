"""`verifily compare` on hand-built run folders with known answers: deltas, pairing, slices, summary, rendering,
gates, exit codes and every bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.compare_fakes import make_run, records
from verifily_action.compare import compare, failed_gates
from verifily_action.errors import VerifilyError
from verifily_action.report import comparison as render
from verifily_action.schemas import validator

pytestmark = pytest.mark.unit

SOURCES = {"human": 300, "synthetic": 300}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Baseline a and candidate b on the same 600 examples: synthetic +10 points, human unchanged."""
    root = tmp_path_factory.mktemp("runs")
    a = make_run(root, "a", records(SOURCES, {"human": 0.85, "synthetic": 0.65}, seed=1))
    b = make_run(root, "b", records(SOURCES, {"human": 0.85, "synthetic": 0.75}, seed=2))
    return a, b


@pytest.fixture(scope="module")
def result(pair):
    return compare(list(pair))


def row(comparison, metric, slice_=None):
    (r,) = [r for r in comparison["rows"] if r["metric"] == metric and r["slice"] == (slice_ or {})]
    return r


def test_values_and_deltas_are_the_known_ones(result):
    syn = row(result, "accuracy", {"source": "synthetic"})
    assert [v["value"] for v in syn["values"]] == pytest.approx([0.65, 0.75])
    assert [v["n"] for v in syn["values"]] == [300, 300]
    d = syn["deltas"][0]
    assert d["status"] == "compared" and d["method"] == "paired" and d["test"] == "mcnemar_exact"
    assert d["delta"] == pytest.approx(0.10)
    assert d["relative"] == pytest.approx(0.10 / 0.65)
    assert d["significant"] and d["improved"] and d["ci_low"] > 0
    hum = row(result, "accuracy", {"source": "human"})["deltas"][0]
    assert hum["delta"] == pytest.approx(0.0) and not hum["significant"]
    overall = row(result, "accuracy")
    assert [v["n"] for v in overall["values"]] == [600, 600]
    assert overall["deltas"][0]["delta"] == pytest.approx(0.05)


def test_mcnemar_counts_match_the_predictions(pair, result):
    a, b = (
        {r["id"]: r["correct"] for r in map(json.loads, (p / "eval/ds_demo@v1-eval/predictions.jsonl").open())}
        for p in pair
    )
    want = [sum(1 for i in a if a[i] and not b[i]), sum(1 for i in a if not a[i] and b[i])]
    assert row(result, "accuracy")["deltas"][0]["discordant"] == want


def test_summary_names_the_significant_change_in_plain_english(result):
    text = "\n".join(result["summary"])
    pattern = (
        r"accuracy on source=synthetic improved: 0\.65 → 0\.75 \(\+10\.0 pts, 95% CI \+\d+\.\d…\+\d+\.\d, "
        r"p[=<]0\.\d+\)"
    )
    assert re.search(pattern, text), text
    assert "no significant change" in text and "accuracy on source=human" in text.split("no significant change")[1]


def test_json_matches_its_schema(result):
    doc = json.loads(render.to_json(result))
    assert list(validator("comparison.schema.json").iter_errors(doc)) == []
    assert doc["pairing"] == [{"run": "b", "paired": True, "reason": "paired on 600 matching examples"}]


def test_markdown_renders_as_a_github_table(result):
    from markdown_it import MarkdownIt

    md = render.markdown(result)
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    types = [t.type for t in tokens]
    assert types.count("table_open") == 1
    heads = sum(1 for t in tokens if t.type == "th_open")
    cells = sum(1 for t in tokens if t.type == "td_open")
    assert heads == len(render.header(result)) and cells == heads * len(result["rows"])
    inline = [t.content for t in tokens if t.type == "inline"]
    assert "source=synthetic" in inline and any(c.startswith("+10.0") and "▲" in c for c in inline)


def test_markdown_escapes_pipes(tmp_path):
    a = make_run(tmp_path, "a|x", records({"a|b": 40}, {"a|b": 0.5}, seed=1))
    b = make_run(tmp_path, "b", records({"a|b": 40}, {"a|b": 0.6}, seed=2))
    md = render.markdown(compare([a, b]))
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    assert sum(1 for t in tokens if t.type == "th_open") == len(render.header(compare([a, b])))


def test_table_output_through_the_cli(cli, pair):
    out = cli("compare", "--runs", f"{pair[0]},{pair[1]}", "--slice-by", "source")
    assert out.returncode == 0, out.stderr
    assert "source=synthetic" in out.stdout and "+10.0 ▲" in out.stdout
    assert "accuracy on source=synthetic improved" in out.stdout


def test_failing_gate_exits_1_and_lists_each_rule(cli, pair):
    out = cli(
        "compare",
        "--runs",
        f"{pair[0]},{pair[1]}",
        "-f",
        "json",
        "--fail-on",
        "accuracy@source=synthetic>0.05",
        "--fail-on",
        "accuracy@source=*>=0",
        "--fail-on",
        "accuracy<-0.01",
    )
    assert out.returncode == 1
    assert "gate rule(s) failed" in out.stderr
    assert "accuracy@source=synthetic>0.05 FAILED for b" in out.stderr
    assert out.stderr.count("accuracy@source=*>=0 FAILED") == 2  # human (0 >= 0) and synthetic
    assert "accuracy<-0.01" not in out.stderr  # it passed
    doc = json.loads(out.stdout)  # the output is still printed in full
    assert len([g for g in doc["gates"] if g["failed"]]) == 3


def test_passing_gates_exit_0(cli, pair):
    out = cli("compare", "--runs", f"{pair[0]},{pair[1]}", "--fail-on", "accuracy@source=*<-0.02:significant")
    assert out.returncode == 0, out.stderr
    assert "2 check(s) passed" in out.stdout


def test_gates_from_the_candidate_config(tmp_path):
    a = make_run(tmp_path, "a", records(SOURCES, {"human": 0.85, "synthetic": 0.75}, seed=1))
    b = make_run(
        tmp_path,
        "b",
        records(SOURCES, {"human": 0.70, "synthetic": 0.75}, seed=2),
        gates=["accuracy@source=human<-2pts:significant"],
    )
    c = compare([a, b])
    (g,) = failed_gates(c)
    assert g["origin"] == "config of b" and g["slice"] == {"source": "human"}
    assert failed_gates(compare([a, b], config_gates=False)) == []


def test_lower_is_better_metric_direction(tmp_path):
    a = make_run(tmp_path, "a", records({"h": 100}, {"h": 0.7}, seed=1), task="classification")
    b = make_run(tmp_path, "b", records({"h": 100}, {"h": 0.7}, seed=1), task="classification")
    c = compare([a, b])
    assert c["directions"] == {"accuracy": "higher", "macro_f1": "higher"}
    # loss needs a loss per example: a clear error, not a crash
    with pytest.raises(VerifilyError, match="does not exist for classification"):
        compare([a, b], metrics=["loss"])


def _gen_records(losses, seed):
    """sft records whose per-example loss we choose (the paired test sees the same ids in both runs)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "id": f"g-{i:04d}",
            "tags": {"source": "human" if i % 2 else "synthetic"},
            "reference": "a b",
            "prediction": "a b",
            "score": 1.0,
            "loss": float(loss + rng.normal(0, 0.05)),
            "correct": True,
        }
        for i, loss in enumerate(losses)
    ]


@pytest.mark.parametrize("lower_after,verb,mark", [(True, "improved", "▲"), (False, "regressed", "▼")])
def test_lower_is_better_loss_is_judged_by_its_direction(tmp_path, lower_after, verb, mark):
    before = [1.0] * 120
    after = [0.7 if lower_after else 1.3] * 120
    a = make_run(tmp_path, "a", _gen_records(before, seed=1), task="sft", metric_names=["loss"])
    b = make_run(tmp_path, "b", _gen_records(after, seed=2), task="sft", metric_names=["loss"])
    c = compare([a, b], metrics=["loss"], fail_on=["loss>0.1"])
    assert c["directions"] == {"loss": "lower"}
    (d,) = row(c, "loss")["deltas"]
    assert (d["delta"] < 0) == lower_after and d["significant"] and d["improved"] is lower_after
    assert any(s.startswith(f"loss overall {verb}: ") for s in c["summary"]), c["summary"]
    assert mark in render.markdown(c)
    # the gate `loss>0.1` (the change, run minus baseline) holds only for the regression
    assert bool(failed_gates(c)) is (not lower_after)


def test_three_runs_each_against_the_baseline(tmp_path):
    # 1,000 synthetic examples: on 300, c's -10 points (p=0.018) is not a regression once the three tests of the
    # comparison are adjusted together (q=0.055)
    sources = {"human": 300, "synthetic": 1000}
    runs = [
        make_run(tmp_path, n, records(sources, {"human": 0.8, "synthetic": acc}, seed=i))
        for i, (n, acc) in enumerate([("a", 0.6), ("b", 0.7), ("c", 0.5)])
    ]
    c = compare(runs, metrics=["accuracy"])
    syn = row(c, "accuracy", {"source": "synthetic"})
    assert [d["run"] for d in syn["deltas"]] == ["b", "c"]
    assert [d["delta"] for d in syn["deltas"]] == pytest.approx([0.1, -0.1])
    assert syn["deltas"][1]["improved"] is False
    assert any(s.startswith("c vs a: accuracy on source=synthetic regressed") for s in c["summary"])
    assert len(render.header(c)) == 2 + 3 * 2 + 2 * 4  # per candidate: Δ, interval, p, q
    assert render.run_labels(c) == ["baseline", "run 2", "run 3"]


def test_terminal_table_labels_runs_short_and_names_them_once(result, capsys):
    render.print_table(result)
    out = capsys.readouterr().out
    legend = [line.split() for line in out.splitlines() if line.strip().startswith(("baseline ", "run "))]
    assert legend == [["baseline", result["runs"][0]["name"]], ["run", result["runs"][1]["name"]]]
    head = next(line for line in out.splitlines() if line.strip().startswith("slice"))
    assert head.split()[:7] == ["slice", "metric", "baseline", "n", "run", "n", "Δ"]


def test_different_examples_fall_back_to_unpaired_and_say_so(tmp_path):
    a = make_run(tmp_path, "a", records(SOURCES, {"human": 0.8, "synthetic": 0.6}, seed=1))
    b = make_run(tmp_path, "b", records(SOURCES, {"human": 0.8, "synthetic": 0.7}, seed=2, id_prefix="other"))
    c = compare([a, b])
    assert c["pairing"][0]["paired"] is False
    assert "different examples" in c["pairing"][0]["reason"] and "0 ids in common" in c["pairing"][0]["reason"]
    d = row(c, "accuracy", {"source": "synthetic"})["deltas"][0]
    assert d["method"] == "unpaired" and d["test"] == "unpaired_bootstrap"
    assert d["delta"] == pytest.approx(0.1)
    assert any("different examples" in n for n in c["notes"])
    assert "unpaired" in render.markdown(c)


def test_slice_present_in_one_run_only(tmp_path):
    a = make_run(tmp_path, "a", records({"human": 100, "synthetic": 100}, {"human": 0.8, "synthetic": 0.6}, seed=1))
    b = make_run(
        tmp_path,
        "b",
        records({"human": 100, "synthetic": 50, "new": 50}, {"human": 0.8, "synthetic": 0.6, "new": 0.5}, seed=2),
    )
    c = compare([a, b], fail_on=["accuracy@source=*<-0.5"])
    new = row(c, "accuracy", {"source": "new"})
    assert new["deltas"][0]["status"] == "only_in_run"
    assert new["values"][0]["value"] is None and new["values"][0]["n"] == 0
    assert any("source=new is only in b (n=50)" in s for s in c["summary"])
    unchecked = [g for g in c["gates"] if not g["checked"]]
    assert [g["slice"] for g in unchecked] == [{"source": "new"}]
    assert "only in this run" in render.markdown(c)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"metrics": ["bleu"]}, "metric 'bleu' does not exist"),
        ({"metrics": ["acuracy"]}, "did you mean accuracy"),
        ({"slice_by": ["topic"]}, "tag key topic"),
        ({"fail_on": ["accuracy@source=synth<0"]}, "no run has the slice source=synth"),
        ({"fail_on": ["accuracy<<0"]}, "bad gate rule"),
        ({"eval_name": "other@v1-eval"}, "no evaluation named 'other@v1-eval'"),
    ],
)
def test_bad_arguments_are_clear(pair, kwargs, says):
    with pytest.raises(VerifilyError) as exc:
        compare(list(pair), **kwargs)
    assert says in exc.value.render()


def test_bad_runs_are_clear(tmp_path, pair):
    def err(paths):
        with pytest.raises(VerifilyError) as exc:
            compare(paths)
        return exc.value.render()

    assert "at least two runs, got 1" in err([pair[0]])
    assert "does not exist" in err([pair[0], tmp_path / "nope"])
    (tmp_path / "plain").mkdir()
    assert "is not a run folder (no run_meta.json)" in err([pair[0], tmp_path / "plain"])
    noeval = tmp_path / "noeval"
    noeval.mkdir()
    (noeval / "run_meta.json").write_text(json.dumps({"status": "completed", "task": "classification"}))
    text = err([pair[0], noeval])
    assert "have no eval results" in text and "verifily eval --run" in text
    failed = make_run(tmp_path, "failed", records({"h": 40}, {"h": 0.5}, seed=1), status="failed")
    assert "not completed (status 'failed')" in err([pair[0], failed])
    gen = make_run(
        tmp_path,
        "gen",
        [{"id": "g1", "tags": {}, "reference": "a b", "prediction": "a", "score": 0.6, "loss": 1.0, "correct": False}],
        task="sft",
        slice_by=(),
    )
    assert "different tasks (classification, sft)" in err([pair[0], gen])
    nopreds = make_run(tmp_path, "nopreds", records({"h": 40}, {"h": 0.5}, seed=1))
    (nopreds / "eval/ds_demo@v1-eval/predictions.jsonl").unlink()
    assert "predictions.jsonl is missing" in err([pair[0], nopreds])


def test_several_evaluations_need_eval(tmp_path):
    a = make_run(tmp_path, "a", records({"h": 40}, {"h": 0.5}, seed=1), eval_name="ds@v1-eval")
    b = make_run(tmp_path, "b", records({"h": 40}, {"h": 0.6}, seed=2), eval_name="ds@v1-eval")
    extra = make_run(tmp_path / "x", "a", records({"h": 40}, {"h": 0.5}, seed=1), eval_name="ds@v2-eval")
    for d in (a, b):
        (d / "eval" / "ds@v2-eval").mkdir()
        for f in (extra / "eval" / "ds@v2-eval").iterdir():
            (d / "eval" / "ds@v2-eval" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(VerifilyError, match="several evaluations"):
        compare([a, b])
    assert compare([a, b], eval_name="ds@v2-eval")["runs"][0]["eval_name"] == "ds@v2-eval"


def test_runs_evaluated_on_different_datasets_are_compared_with_a_note(tmp_path):
    a = make_run(tmp_path, "a", records({"h": 60}, {"h": 0.5}, seed=1), eval_name="ds@v1-eval")
    b = make_run(tmp_path, "b", records({"h": 60}, {"h": 0.6}, seed=2), eval_name="ds@v2-eval")
    c = compare([a, b])
    assert any("different datasets" in n for n in c["notes"])


def test_compare_never_imports_torch(pair):
    code = (
        "import sys; import verifily_action.compare as c; "
        f"c.compare([{str(pair[0])!r}, {str(pair[1])!r}]); "
        "from verifily_action.commands import compare; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'peft', 'scipy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_output_file(cli, pair, tmp_path):
    dest = tmp_path / "out" / "cmp.md"
    out = cli("compare", "--runs", str(pair[0]), "--runs", str(pair[1]), "-f", "markdown", "-o", str(dest))
    assert out.returncode == 0, out.stderr
    assert dest.read_text() == out.stdout
    bad = cli("compare", "--runs", f"{pair[0]},{pair[1]}", "-f", "html")
    assert bad.returncode == 2 and "unknown --format 'html'" in bad.stderr


def test_repeated_names_are_told_apart(tmp_path):
    a = make_run(tmp_path / "x", "run", records({"h": 40}, {"h": 0.5}, seed=1))
    b = make_run(tmp_path / "y", "run", records({"h": 40}, {"h": 0.6}, seed=2))
    assert [r["name"] for r in compare([a, b])["runs"]] == ["x/run", "y/run"]


def test_no_dataset_diff_without_manifests(result):
    assert result["dataset_diffs"] == []


def test_schema_file_is_valid_2020_12():
    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).parent.parent / "schemas" / "comparison.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
