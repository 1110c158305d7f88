"""Tag slices (per key/value and AND-slices), too-small flags, bad slice keys; hard examples and failure breakdown."""

from __future__ import annotations

import pytest

from verifily_action.errors import VerifilyError
from verifily_action.evaluate import hard, slices

pytestmark = pytest.mark.unit


def _tags():
    rows = []
    for i in range(100):
        rows.append(
            {
                "source": "synthetic" if i % 5 in (0, 1) else "human",  # 40 synthetic, 60 human
                "difficulty": "hard" if i % 4 == 0 else "easy",  # 25 hard
                "origin": None if i >= 90 else ("imdb" if i % 2 else "yelp"),
            }
        )
    return rows


def test_slices_per_key_value_most_common_first_none_last():
    tags = _tags()
    out = slices.build_slices(tags, ["source", "origin"], min_size=30)
    assert [(s.name, s.n, s.too_small) for s in out] == [
        ("source=human", 60, False),
        ("source=synthetic", 40, False),
        ("origin=imdb", 45, False),
        ("origin=yelp", 45, False),
        (f"origin={slices.NONE_TAG}", 10, True),
    ]
    human = out[0]
    assert all(tags[i]["source"] == "human" for i in human.indices)


def test_cross_slice_is_and_of_pairs():
    tags = _tags()
    spec = slices.parse_slice("source=human, difficulty=hard")
    assert spec == {"source": "human", "difficulty": "hard"}
    (s,) = slices.build_slices(tags, [], [spec], min_size=30)
    want = [i for i, t in enumerate(tags) if t["source"] == "human" and t["difficulty"] == "hard"]
    assert s.indices.tolist() == want
    assert s.too_small is (len(want) < 30)


def test_unknown_slice_key_lists_existing_keys():
    with pytest.raises(VerifilyError) as e:
        slices.build_slices(_tags(), ["sourc"])
    assert "sourc" in e.value.message
    assert "difficulty, origin, source" in (e.value.hint or "")
    with pytest.raises(VerifilyError, match="lang"):
        slices.build_slices(_tags(), [], [{"lang": "en"}])


def test_unknown_slice_value_lists_values():
    with pytest.raises(VerifilyError) as e:
        slices.build_slices(_tags(), [], [{"source": "humn"}])
    assert "human, synthetic" in (e.value.hint or "")


@pytest.mark.parametrize("bad", ["source", "source=", "=x", "a=1,a=2"])
def test_bad_slice_spec(bad):
    with pytest.raises(VerifilyError):
        slices.parse_slice(bad)


def test_parse_slice_by_accepts_comma_lists():
    assert slices.parse_slice_by(["source,origin", "origin", " lang "]) == ["source", "origin", "lang"]


def test_none_tag_matches_datasets_contract():
    ds = pytest.importorskip("verifily_action.datasets")
    assert slices.NONE_TAG == ds.NONE_TAG


def _records():
    recs = []
    for i in range(10):
        synthetic = i < 4  # 40% of the set
        correct = not synthetic if i != 9 else False  # 4 synthetic failures + 1 human failure
        recs.append(
            {
                "id": f"r{i}",
                "tags": {"source": "synthetic" if synthetic else "human"},
                "correct": correct,
                "score": float(correct),
                "loss": float(i) / 10,
            }
        )
    return recs


def test_hard_examples_wrong_first_then_highest_loss():
    out = hard.hard_examples(_records(), 3)
    assert [r["id"] for r in out] == ["r9", "r3", "r2"]
    assert [r["rank"] for r in out] == [1, 2, 3]
    assert out[0]["tags"] == {"source": "human"}
    # Missing losses sort after present ones among the wrong, and k beyond the set returns everything.
    recs = _records()
    recs[9]["loss"] = None
    assert [r["id"] for r in hard.hard_examples(recs, 100)][:5] == ["r3", "r2", "r1", "r0", "r9"]


def test_failure_breakdown_shares_and_sentence():
    out = hard.failure_breakdown(_records(), ["source"])
    top = out[0]
    assert (top["key"], top["value"], top["n"], top["failures"]) == ("source", "synthetic", 4, 4)
    assert top["share_of_failures"] == pytest.approx(0.8)
    assert top["share_of_eval"] == pytest.approx(0.4)
    assert top["sentence"] == "80% of failures come from source=synthetic, which is 40% of the eval set"
    assert sum(e["share_of_failures"] for e in out) == pytest.approx(1.0)


def test_failure_breakdown_without_failures():
    recs = [dict(r, correct=True) for r in _records()]
    out = hard.failure_breakdown(recs)
    assert all(e["failures"] == 0 and e["sentence"].startswith("no failures") for e in out)
    assert hard.failure_breakdown([]) == []
