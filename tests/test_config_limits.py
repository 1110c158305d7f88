"""Configs people actually write and configs no one should (issue 22, items 15 and 16): numbers in scientific
notation, thousands of unknown keys (every problem counted, the first few listed), and configs or run files that are
pipes or devices (refused at once instead of blocking or reading forever)."""

from __future__ import annotations

import json
import os

import pytest

from tests.builders import write_config
from tests.compare_fakes import make_run, records
from tests.paths import REPO
from verifily_action import config as cfgmod
from verifily_action import yamlsource
from verifily_action.errors import MAX_PROBLEMS_SHOWN, VerifilyError

pytestmark = pytest.mark.unit

DATASETS = REPO / "examples" / "datasets"


def demo_config(path, **training):
    return write_config(
        path,
        task="classification",
        model="all-MiniLM-L6-v2",
        dataset="ds_demo@v1",
        datasets_root=str(DATASETS),
        training={"epochs": 0.5, "batch_size": 16, **training},
    )


# ---------------------------------------------------------------- YAML 1.2 numbers (item 16)


def test_scientific_notation_is_a_number_in_a_config(cli, tmp_path):
    p = demo_config(tmp_path / "train.yaml", learning_rate=0.0001, weight_decay=0.01, warmup_ratio=0.5)
    text = p.read_text()
    for written, as_people_write in (("0.0001", "1e-4"), ("0.01", "1E-2"), ("0.5", ".5")):
        assert f": {written}\n" in text
        text = text.replace(f": {written}\n", f": {as_people_write}\n")
    p.write_text(text)
    assert "learning_rate: 1e-4" in p.read_text()
    r = cli("validate", str(p))
    assert r.returncode == 0, r.stderr
    t = cfgmod.load_config(p).training
    assert (t.learning_rate, t.weight_decay, t.warmup_ratio) == (0.0001, 0.01, 0.5)


def test_training_reads_the_learning_rate_written_as_1e_4(tmp_path):
    from verifily_action.train.plan import TrainOptions, make_plan
    from verifily_action.train.trainer import training_arguments

    p = demo_config(tmp_path / "train.yaml")
    p.write_text(p.read_text().replace("training:\n", "training:\n  learning_rate: 1e-4\n"))
    plan = make_plan(TrainOptions(config=p, output_dir=str(tmp_path / "runs"), dry_run=True))
    assert plan.config_dict["training"]["learning_rate"] == 0.0001  # what config.yaml records
    args = training_arguments(plan.cfg, tmp_path / "out", "fp32", "cpu")
    assert args.learning_rate == 0.0001


def test_files_the_tool_writes_are_read_back_as_written(tmp_path):
    """PyYAML writes the string '1e5' unquoted; a run's config.yaml must read it back as that string."""
    import yaml

    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump({"run_name": "1e5", "learning_rate": 1e-4}))
    assert yamlsource.load_yaml(p) == {"run_name": "1e5", "learning_rate": 1e-4}


# ---------------------------------------------------------------- problems counted, not all printed (item 15)


def test_thousands_of_unknown_keys_list_the_first_problems_and_count_the_rest(cli, tmp_path):
    p = demo_config(tmp_path / "train.yaml")
    n = 5000
    with p.open("a") as f:
        f.writelines(f"k{i}: 1\n" for i in range(n))
    with pytest.raises(VerifilyError) as exc:
        cfgmod.load_config(p)
    e = exc.value
    assert len(e.problems) == MAX_PROBLEMS_SHOWN and e.omitted == n - MAX_PROBLEMS_SHOWN
    assert f"{n:,} problems in the config (first {MAX_PROBLEMS_SHOWN} shown)" in e.message
    assert e.problems[0].message == "unknown key `k0`" and e.problems[0].hint  # the shown ones keep their hints
    r = cli("validate", str(p))
    assert r.returncode == 2
    assert f"  … and {n - MAX_PROBLEMS_SHOWN:,} more problems\n" in r.stderr
    assert r.stderr.count("unknown key `") == MAX_PROBLEMS_SHOWN
    d = json.loads(cli("validate", str(p), "--json").stdout)
    assert len(d["problems"]) == MAX_PROBLEMS_SHOWN and d["omitted_problems"] == n - MAX_PROBLEMS_SHOWN


def test_a_short_problem_list_is_printed_whole(cli, tmp_path):
    p = demo_config(tmp_path / "train.yaml")
    with p.open("a") as f:
        f.write("lorra: 1\nepoch: 2\n")
    r = cli("validate", str(p))
    assert r.returncode == 2 and "2 problems in the config\n" in r.stderr and "more problem" not in r.stderr


# ---------------------------------------------------------------- pipes and devices (item 15)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_as_config_is_refused_not_waited_on(cli_process, tmp_path):
    fifo = tmp_path / "train.yaml"
    os.mkfifo(fifo)
    for args in (("validate", str(fifo)), ("train", "--config", str(fifo), "--dry-run")):
        r = cli_process(*args, timeout=120)  # reading a FIFO without a writer blocks: the timeout fails the test
        assert r.returncode == 2, r
        assert f"config {fifo} is a named pipe (FIFO), not a regular file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_config_is_refused_not_read_forever(cli_process, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    r = cli_process("validate", device, timeout=120)
    assert r.returncode == 2 and "is a character device, not a regular file" in r.stderr, r


def test_open_regular_names_what_the_path_is(tmp_path):
    with pytest.raises(VerifilyError, match="config not found"):
        yamlsource.open_regular(tmp_path / "nope.yaml", "config")
    with pytest.raises(VerifilyError, match="is a directory"):
        yamlsource.open_regular(tmp_path, "config")
    (tmp_path / "ok.yaml").write_text("a: 1\n")
    with yamlsource.open_regular(tmp_path / "ok.yaml") as f:
        assert f.read() == b"a: 1\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_in_place_of_a_run_file_is_refused_not_waited_on(cli_process, tmp_path):
    runs = [make_run(tmp_path, n, records({"human": 10}, {"human": 0.8}, seed=s)) for n, s in (("a", 1), ("b", 2))]
    (results,) = runs[0].glob("eval/*/eval_results.json")
    results.unlink()
    os.mkfifo(results)
    r = cli_process("compare", "--runs", ",".join(map(str, runs)), timeout=120)
    assert r.returncode == 2, r
    assert f"{results} is a named pipe (FIFO), not a regular file" in r.stderr and "Traceback" not in r.stderr
    from verifily_action.hashing import sha256_file

    with pytest.raises(VerifilyError, match="named pipe"):
        sha256_file(results)
