"""`verifily compare --chart`: the PNG of per-slice values and intervals, drawn from hand-built comparison data."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from verifily_action.errors import VerifilyError
from verifily_action.report import charts as chart

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ORIGINS = ("imdb", "amazon", "yelp", "sst2", "fewgen", "supergen")


def _value(run: str, n: int, value: float | None, width: float = 0.03, too_small: bool = False) -> dict:
    lo = None if value is None else value - width
    hi = None if value is None else value + width
    return {"run": run, "n": n, "too_small": too_small, "value": value, "ci_low": lo, "ci_high": hi}


def _comparison(metrics: list[str], slices: list[dict[str, str]], runs: list[str]) -> dict:
    rows = []
    for s_i, key in enumerate(slices):
        for m_i, metric in enumerate(metrics):
            n = 600 if key else 1200
            values = [_value(r, n, 0.7 + 0.05 * r_i + 0.01 * s_i - 0.02 * m_i) for r_i, r in enumerate(runs)]
            rows.append({"slice": key, "metric": metric, "direction": "higher", "values": values, "deltas": []})
    return {
        "baseline": runs[0],
        "runs": [{"name": r} for r in runs],
        "metrics": metrics,
        "directions": {m: "higher" for m in metrics},
        "confidence": 0.95,
        "rows": rows,
    }


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\0")[-8:-4] == b"IEND", "PNG is truncated"
    return width, height


@pytest.mark.parametrize(
    ("metrics", "slices", "runs"),
    [
        (["accuracy", "macro_f1"], [{}, {"source": "human"}, {"source": "synthetic"}], ["v1-run", "v2-run"]),
        (["accuracy"], [{}, *({"origin": o} for o in ORIGINS)], ["a", "b", "c"]),
    ],
)
def test_chart_is_a_png_of_the_expected_size(tmp_path, metrics, slices, runs):
    out = chart.write_chart(_comparison(metrics, slices, runs), tmp_path / "sub" / "compare.png")
    assert out == tmp_path / "sub" / "compare.png"
    w_in, h_in = chart.figure_size(len(slices), len(metrics))
    assert _png_size(out) == (round(w_in * chart.DPI), round(h_in * chart.DPI))
    assert out.stat().st_size < 200_000


def test_more_slices_and_metrics_make_a_bigger_chart():
    small = chart.figure_size(3, 1)
    assert chart.figure_size(8, 1)[0] > small[0]
    assert chart.figure_size(3, 3)[1] > small[1]


def test_missing_values_and_small_slices_are_drawn(tmp_path):
    comp = _comparison(["accuracy"], [{}, {"source": "human"}, {"source": "synthetic"}], ["a", "b"])
    comp["rows"][1]["values"][1] = _value("b", 0, None)  # slice absent from run b
    comp["rows"][2]["values"][0] = _value("a", 12, 0.5, too_small=True)
    _png_size(chart.write_chart(comp, tmp_path / "c.png"))


def test_unwritable_path_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    comp = _comparison(["accuracy"], [{}], ["a", "b"])
    with pytest.raises(VerifilyError, match="cannot write the chart"):
        chart.write_chart(comp, blocker / "c.png")
