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
    spec = slices.parse_slice("source=human, difficulty=hard")  # --slice: a comma is AND too
    assert [(t.key, t.value) for t in spec.terms] == [("source", "human"), ("difficulty", "hard")]
    assert spec.text == "source=human&difficulty=hard"
    (s,) = slices.build_slices(tags, [], [spec], min_size=30)
    want = [i for i, t in enumerate(tags) if t["source"] == "human" and t["difficulty"] == "hard"]
    assert s.indices.tolist() == want
    assert s.too_small is (len(want) < 30)
    assert s.name == "source=human&difficulty=hard"
    # a mapping (how `reproduce` passes an evaluation's cross slices) is the same slice
    (again,) = slices.build_slices(tags, [], [{"source": "human", "difficulty": "hard"}], min_size=30)
    assert again.indices.tolist() == want


# ---------------------------------------------------------------- the grammar


@pytest.mark.parametrize(
    ("text", "terms", "canonical"),
    [
        ("source=human", [("source", "human")], "source=human"),
        ("source = human & origin = imdb", [("source", "human"), ("origin", "imdb")], "source=human&origin=imdb"),
        ("source=human&origin=imdb", [("source", "human"), ("origin", "imdb")], "source=human&origin=imdb"),
        ("source=*", [("source", None)], "source"),
        ("source", [("source", None)], "source"),
        ("source=*&origin=*", [("source", None), ("origin", None)], "source=*&origin=*"),
        ("source=* × origin=*", [("source", None), ("origin", None)], "source=*&origin=*"),
        ("source×origin", [("source", None), ("origin", None)], "source=*&origin=*"),
        ("source=human & origin=*", [("source", "human"), ("origin", None)], "source=human&origin=*"),
        ("origin=imdb v1.2", [("origin", "imdb v1.2")], "origin=imdb v1.2"),
        ('origin="a&b"', [("origin", "a&b")], 'origin="a&b"'),
        ('origin="*"', [("origin", "*")], 'origin="*"'),
        ('origin="say \\"hi\\""', [("origin", 'say "hi"')], 'origin="say \\"hi\\""'),
        ("lang.v2-x=(none)", [("lang.v2-x", "(none)")], "lang.v2-x=(none)"),
    ],
)
def test_grammar_parses(text, terms, canonical):
    e = slices.parse_expression(text)
    assert [(t.key, t.value) for t in e.terms] == terms
    assert e.text == canonical
    # the canonical spelling reads back as the same expression
    assert slices.parse_expression(e.text).same(e)


@pytest.mark.parametrize(
    ("text", "why", "position"),
    [
        ("source=human &", "a term is missing after '&'", 14),
        ("source=human & & origin=imdb", "a term is missing after '&'", 14),
        ("& source=human", "a term is missing before '&'", 1),
        ("", "the expression is empty", 1),
        ("source=", "no value after 'source='", 8),
        ("source= & origin=imdb", "no value after 'source='", 9),
        ("=human", "'=' cannot start a tag key", 1),
        ("source=a & source=b", "the key 'source' appears twice", 12),
        ("sou rce=human", "expected '=' or '&' after the key 'sou'", 5),
        ("sourcé=human", "'é' cannot be in a tag key", 6),
        ('origin="imdb', "the quoted value is not closed", 8),
        ('origin="imdb" yelp', "unexpected 'y'", 15),
    ],
)
def test_grammar_errors_name_the_position(text, why, position):
    with pytest.raises(slices.SliceSyntaxError) as e:
        slices.parse_expression(text, "--slice-by")
    assert why in e.value.why and e.value.position == position
    rendered = e.value.render()
    assert f"bad slice expression {text!r} (--slice-by): " in rendered and f"at position {position}" in rendered
    # the expression, then a caret under the position
    caret_line = rendered.splitlines()[2]
    assert rendered.splitlines()[1] == "  " + text and caret_line == "  " + " " * (position - 1) + "^"
    assert e.value.exit_code == 2


def test_a_comma_is_and_in_eval_slice_only():
    assert slices.parse_slice("source=human,origin=imdb").text == "source=human&origin=imdb"
    with pytest.raises(slices.SliceSyntaxError, match="a comma in a value .* at position 13"):
        slices.parse_expression("source=human,origin=imdb")  # lists split on commas before an expression is read


def test_lists_split_on_commas_outside_quotes():
    assert slices.split_list(["source,origin", 'origin="a,b"&source', " lang "]) == [
        "source",
        "origin",
        'origin="a,b"&source',
        "lang",
    ]
    texts = [e.text for e in slices.parse_list(["source,origin", "origin", "source=*", "origin&source"])]
    assert texts == ["source", "origin", "origin=*&source=*"]  # repeats dropped, a×b kept


def test_parse_list_accepts_comma_lists():
    assert [e.text for e in slices.parse_list(["source,origin", "origin", " lang "])] == ["source", "origin", "lang"]


def test_labels_quote_what_would_read_otherwise():
    from verifily_action.tags import slice_label

    key = {"origin": "a&b", "src": " x", "k": "*", "q": 'say "hi"', "plain": "imdb v1.2"}
    label = slice_label(key)
    assert label == 'origin="a&b"&src=" x"&k="*"&q="say \\"hi\\""&plain=imdb v1.2'
    assert slices.parse_expression(label).matches(key)


def test_matches_names_the_slices_of_an_expression():
    e = slices.parse_expression("source=human & origin=*")
    assert e.matches({"source": "human", "origin": "imdb"})
    assert e.matches({"origin": "yelp", "source": "human"})
    assert not e.matches({"source": "synthetic", "origin": "imdb"})
    assert not e.matches({"source": "human"})
    assert not e.matches({"source": "human", "origin": "imdb", "lang": "en"})


# ---------------------------------------------------------------- slices over data


def test_cross_product_has_every_combination_some_row_has():
    tags = _tags()
    out = slices.build_slices(tags, ["source=*&difficulty=*"], min_size=20)
    got = {s.name: s.n for s in out}
    want = {}
    for t in tags:
        name = f"source={t['source']}&difficulty={t['difficulty']}"
        want[name] = want.get(name, 0) + 1
    assert got == want and len(out) == 4
    # most common first within each key: human before synthetic, easy before hard
    assert [s.name for s in out][:2] == ["source=human&difficulty=easy", "source=human&difficulty=hard"]
    for s in out:
        assert all(
            tags[i]["source"] == s.key["source"] and tags[i]["difficulty"] == s.key["difficulty"] for i in s.indices
        )
        assert s.too_small is (s.n < 20)  # shown, flagged; never dropped
    # one fixed, one wildcard: every origin of the human rows, the rows without one included
    half = slices.build_slices(tags, ["source=human&origin"], min_size=1)
    assert [s.name for s in half] == [
        "source=human&origin=imdb",
        "source=human&origin=yelp",
        "source=human&origin=(none)",
    ]
    assert sum(s.n for s in half) == 60


def test_slice_by_and_cross_are_listed_once():
    tags = _tags()
    out = slices.build_slices(tags, ["source", "source=human"], ["source=human&difficulty=hard", "source=human"])
    assert [s.name for s in out] == ["source=human", "source=synthetic", "source=human&difficulty=hard"]


def test_unknown_slice_key_lists_existing_keys():
    with pytest.raises(VerifilyError) as e:
        slices.build_slices(_tags(), ["sourc"])
    assert "sourc" in e.value.message
    assert "difficulty, origin, source" in (e.value.hint or "")
    with pytest.raises(VerifilyError) as e:
        slices.build_slices(_tags(), [], ["source=human & lang=en"])
    assert "tag key lang" in e.value.message
    assert "'source=human&lang=en'" in e.value.render() and "--slice" in e.value.render()


def test_unknown_slice_value_warns_with_the_values_and_keeps_the_slice():
    warnings: list[str] = []
    out = slices.build_slices(_tags(), [], [{"source": "humn"}, "source=humn&difficulty=*"], warn=warnings.append)
    assert [(s.name, s.n, s.too_small) for s in out] == [("source=humn", 0, True)]
    assert len(warnings) == 2
    assert "no eval row has source=humn" in warnings[0] and "values of source: human, synthetic" in warnings[0]


def test_an_empty_combination_of_known_values_is_shown_with_n_0():
    tags = [{"a": "x", "b": "p"}, {"a": "y", "b": "q"}]
    warnings: list[str] = []
    (s,) = slices.build_slices(tags, ["a=x&b=q"], min_size=1, warn=warnings.append)
    assert (s.n, s.too_small, warnings) == (0, True, [])


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


# ---------------------------------------------------------------- in the config: eval.slices, file:line


def _config(tmp_path, eval_lines: str, gates: str = "[]"):
    from tests.builders import write_config

    path = write_config(tmp_path / "train.yaml", task="classification", model="m", dataset="ds@v1")
    path.write_text(path.read_text() + f"eval:\n{eval_lines}gates: {gates}\n", encoding="utf-8")
    return path


def test_config_slices_load_and_are_typed(tmp_path):
    from verifily_action.config import load_config

    path = _config(tmp_path, '  slice_by: [source]\n  slices: ["source=human & origin=imdb", "source×origin"]\n')
    cfg = load_config(path)
    assert cfg.eval.slices == ["source=human & origin=imdb", "source×origin"]
    by, more = slices.eval_slicing(cfg.eval, None, None, path)
    assert [e.text for e in by] == ["source"]
    assert [e.text for e in more] == ["source=human&origin=imdb", "source=*&origin=*"]
    # --slice-by / --slice replace their config lists; an empty --slice list is no cross slice at all
    by, more = slices.eval_slicing(cfg.eval, ["origin"], [], path)
    assert ([e.text for e in by], more) == (["origin"], [])


def test_config_slice_errors_name_file_line_and_position(tmp_path):
    from verifily_action.config import load_config

    path = _config(
        tmp_path,
        '  slices:\n    - source=human & origin=imdb\n    - "source=human &"\n',
        gates='["accuracy@source=*&<-2pts"]',
    )
    with pytest.raises(VerifilyError) as e:
        load_config(path)
    lines = path.read_text().splitlines()
    slice_line = next(i for i, x in enumerate(lines, 1) if '"source=human &"' in x)
    gate_line = next(i for i, x in enumerate(lines, 1) if x.startswith("gates:"))
    text = e.value.render()
    assert e.value.exit_code == 2 and "2 problems in the config" in e.value.message
    assert f"{path}:{slice_line}:" in text and "$.eval.slices[1]: bad slice expression 'source=human &'" in text
    assert "a term is missing after '&' at position 14" in text
    assert f"{path}:{gate_line}:" in text and "$.gates[0]: bad gate rule" in text and "at position 18" in text


def test_a_config_slice_with_an_unknown_key_names_where_it_was_written(tmp_path):
    path = _config(tmp_path, '  slices: ["source=human & lang=en"]\n')
    from verifily_action.config import load_config

    by, more = slices.eval_slicing(load_config(path).eval, None, None, path)
    line = next(i for i, x in enumerate(path.read_text().splitlines(), 1) if "lang=en" in x)
    assert more[0].origin == f"{path}:{line}:12 eval.slices[0]"
    with pytest.raises(VerifilyError) as e:
        slices.build_slices(_tags(), by, more)
    assert "tag key lang" in e.value.message and f"{path}:{line}:12 eval.slices[0]" in e.value.render()
