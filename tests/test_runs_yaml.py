"""One safe reader for every YAML file the tool reads: a run folder's config.yaml goes through the config reader's
limits (no anchors or aliases, size and depth caps) in `reproduce --verify-only`, `compare`, `eval`, resume and the
run cache, so a small hostile file fails fast with one clear error instead of expanding into gigabytes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.builders import sealed_run
from tests.compare_fakes import make_run, records
from tests.paths import REPO
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit

# A 1 KB "billion laughs": nine levels of nine aliases each, 9**9 strings once expanded.
BOMB = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
# 353 bytes whose `gates` entry is tens of megabytes once the aliases are expanded and the entry made a string.
GATES_BOMB = (
    "task: classification\nmodel: m\ndataset: ds@v1\n"
    "x: &x ['accuracy@source=human<-1pts:significant', 'accuracy@source=human<-1pts:significant']\n"
    + "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("xabcde", "abcdef", strict=True))
    + "gates: [*f]\n"
)
HANG_GUARD = 120  # seconds: a generous limit that only a hang reaches


def test_only_yamlsource_parses_yaml():
    """Every YAML read goes through verifily_action/yamlsource.py; other modules may only write YAML."""
    reader = re.compile(r"\byaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all|compose|parse)\b")
    found = []
    for path in sorted((REPO / "verifily_action").rglob("*.py")):
        if path.name == "yamlsource.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if reader.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []


def test_an_alias_bomb_config_fails_verify_only_fast(tmp_path, cli_process):
    run = sealed_run(tmp_path)
    (run / "config.yaml").write_text(BOMB)
    assert len(BOMB) < 1100
    out = cli_process("reproduce", "--verify-only", str(run), timeout=HANG_GUARD)
    assert out.returncode == 1, out.stderr
    assert f"{run / 'config.yaml'}:1:" in out.stderr
    assert "anchors and aliases" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_alias_bomb_config_fails_compare_fast(tmp_path, cli_process):
    recs = records({"human": 40, "synthetic": 40}, {"human": 0.8, "synthetic": 0.8}, seed=0)
    base = make_run(tmp_path, "base", recs)
    cand = make_run(tmp_path, "cand", recs)
    (cand / "config.yaml").write_text(BOMB)
    out = cli_process("compare", "--runs", f"{base},{cand}", timeout=HANG_GUARD)
    assert out.returncode == 2, out.stderr
    assert f"{cand / 'config.yaml'}:1:" in out.stderr
    assert "anchors and aliases" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_small_config_with_a_huge_gates_string_is_refused(tmp_path):
    from verifily_action.compare.loading import config_gates

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(GATES_BOMB)
    assert len(GATES_BOMB) <= 353
    with pytest.raises(VerifilyError) as err:
        config_gates(run)
    assert "anchors and aliases" in err.value.render()
    assert err.value.problems[0].file == str(run / "config.yaml")


def test_the_run_cache_lookup_refuses_an_alias_bomb_fast(tmp_path):
    """`train` looks for a cached run with its run key and verifies its chain, config:canonical included."""
    run = sealed_run(tmp_path)
    (run / "config.yaml").write_text(BOMB)
    code = f"from verifily_action.runs.cache import find_cached; print(find_cached({str(tmp_path)!r}, 'a' * 64))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert (out.returncode, out.stdout) == (0, "None\n"), out.stderr


@pytest.mark.parametrize("reader", ["load_run", "verify_chain", "recorded_root", "resume"])
def test_every_run_config_reader_refuses_aliases(tmp_path, reader):
    """Each place that reads a run's config.yaml refuses an alias (and so never expands a bomb)."""
    from verifily_action.datasets.registry import recorded_root
    from verifily_action.runs.chain import verify_chain
    from verifily_action.runs.folder import load_run
    from verifily_action.train.plan import TrainOptions, load_for

    run = sealed_run(tmp_path)
    cfg = run / "config.yaml"
    text = cfg.read_text()
    assert "  slice_by: []\n" in text and "  metrics: []\n" in text
    # the same values, written with an alias: a plain YAML reader sees no change, so the chain still holds for it
    cfg.write_text(text.replace("  slice_by: []", "  slice_by: &e []").replace("  metrics: []", "  metrics: *e"))
    if reader == "load_run":
        with pytest.raises(VerifilyError, match="cannot read") as err:
            load_run(run)
        assert "anchors and aliases" in err.value.render()
    elif reader == "verify_chain":
        (alias,) = [p for p in verify_chain(run) if "anchors and aliases" in p.message]
        assert (alias.file, alias.line) == (str(cfg), cfg.read_text().splitlines().index("  slice_by: &e []") + 1)
    elif reader == "recorded_root":
        assert recorded_root(cfg) is None
    else:
        meta = run / "run_meta.json"
        meta.write_text(meta.read_text().replace('"completed"', '"interrupted"'))
        with pytest.raises(VerifilyError) as err:
            load_for(TrainOptions(resume=str(run)))
        assert "anchors and aliases" in err.value.render()


def test_a_plain_run_config_is_read_as_before(tmp_path):
    from verifily_action.runs.cache import find_cached
    from verifily_action.runs.folder import load_run
    from verifily_action.yamlsource import load_yaml

    run = sealed_run(tmp_path)
    assert load_yaml(run / "config.yaml")["dataset"] == "ds@v1"
    assert load_run(run).config.dataset == "ds@v1"
    assert find_cached(tmp_path, "a" * 64) == run
