"""`classifier: label_tokens` (train/label_tokens.py, evaluate/label_tokens.py): classification by a causal LM that
writes the label, on a tiny random-init llama.

The tiny llama's LM head is scaled up (×25) before training: at its random init (std 0.02, hidden 32, after RMSNorm)
every next-token distribution is almost uniform and no LoRA update of the inner layers can sharpen it, so a
classifier by label tokens would only ever learn the majority label. A pretrained LM head is confident; the scaling
stands in for that. The head path ignores the LM head, so both paths train on the same model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.builders import GENERATED, cls_rows, write_config, write_dataset
from tests.tiny_models import make_tiny_llama, make_tiny_t5

pytestmark = pytest.mark.integration

MAPPING = {"positive": " good", "negative": " day"}  # two tokens and one token in the tiny tokenizer
SUFFIX = "\nLabel:"
TRAINING = {"max_steps": 30, "batch_size": 8, "learning_rate": 0.01, "max_length": 64, "logging_steps": 5}


def _confident_llama(folder: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    raw = make_tiny_llama(folder / "raw")
    model = AutoModelForCausalLM.from_pretrained(raw)
    with torch.no_grad():
        model.lm_head.weight.mul_(25.0)
    model.save_pretrained(folder / "llama")
    AutoTokenizer.from_pretrained(raw).save_pretrained(folder / "llama")
    return folder / "llama"


def _config(d: Path, name: str, model: Path | str, **extra) -> Path:
    return write_config(
        d / name / "train.yaml",
        task="classification",
        model=str(model),
        dataset="cls@v1",
        datasets_root=str(d / "datasets"),
        output_dir=str(d / name / "runs"),
        run_name="r",
        training=TRAINING,
        **extra,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both paths trained and evaluated on the same data and model: `tokens` (label_tokens with MAPPING) and
    `head`."""
    from tests.cli_runner import run_cli
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    d = tmp_path_factory.mktemp("label-tokens")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("VERIFILY_CACHE", str(d / "cache"))
        llama = _confident_llama(d)
        write_dataset(d / "datasets", "cls", "v1", {"train": cls_rows(64), "eval": cls_rows(32, 1)}, **GENERATED)
        runs, results = {}, {}
        for name, extra in (("tokens", {"classifier": "label_tokens", "label_tokens": MAPPING}), ("head", {})):
            runs[name] = job.train(TrainOptions(config=_config(d, name, llama, **extra)), echo=lambda s: None).run_dir
            out = run_cli("eval", "--run", str(runs[name]), "--slice-by", "source", "--json")
            assert out.returncode == 0, out.stderr
            results[name] = json.loads(out.stdout)
    return SimpleNamespace(dir=d, model=llama, runs=runs, results=results)


def _predictions(run: Path) -> list[dict]:
    (f,) = run.glob("eval/*/predictions.jsonl")
    return [json.loads(line) for line in f.read_text().splitlines()]


def test_encoding_masks_everything_but_the_label_tokens(trained):
    import datasets
    from transformers import AutoTokenizer

    from verifily_action.train import data, label_tokens

    tok = AutoTokenizer.from_pretrained(trained.model)
    label_map = {"negative": 0, "positive": 1}
    v = label_tokens.build(tok, label_map, MAPPING)
    good, day = (tok(MAPPING[k], add_special_tokens=False)["input_ids"] for k in ("positive", "negative"))
    assert len(good) == 2 and len(day) == 1 and v.ids == [day, good]  # class-id order: negative, positive
    # a label the mapping leaves out (or no mapping at all) is verbalized by its own text after a space
    assert label_tokens.verbalizer_texts(["negative", "positive"], {"positive": " good"}) == [" negative", " good"]
    assert label_tokens.build(tok, label_map, None).texts == [" negative", " positive"]
    rows = datasets.Dataset.from_list(
        [
            {"text": "The movie was great.", "label": "positive"},
            {"text": "The food was terrible.", "label": "negative"},
            {"text": "great " * 80, "label": "positive"},  # longer than max_length: the text is cut, not the label
            {"text": "never seen", "label": "neutral"},  # a label the train split lacks: left out, counted
        ]
    )
    enc = data.encode("classification", rows, tok, 32, label_map, v)
    suffix = tok(SUFFIX, add_special_tokens=False)["input_ids"]
    ids, labels = enc.columns["input_ids"], enc.columns["labels"]
    assert len(ids) == 3 and enc.stats.dropped == 1 and enc.stats.truncated == 1
    for i, (text, verb) in enumerate((("The movie was great.", good), ("The food was terrible.", day))):
        prompt = tok(text)["input_ids"] + suffix
        assert ids[i] == prompt + verb
        assert labels[i] == [-100] * len(prompt) + verb  # the loss sees the label's tokens only
    assert len(ids[2]) <= 32 and ids[2][-len(good) - len(suffix) :] == suffix + good
    assert [t for t in labels[2] if t != -100] == good and ids[2][0] == tok.bos_token_id


def test_label_tokens_learn_and_compare_with_the_head(trained, cli):
    tokens, head = trained.results["tokens"], trained.results["head"]
    acc = {name: r["overall"]["accuracy"]["value"] for name, r in trained.results.items()}
    print(f"accuracy on 32 eval rows: label_tokens {acc['tokens']:.3f}, head {acc['head']:.3f}")
    # chance is 0.5 and the majority label 0.66 of the eval rows: both must have learned the texts
    assert acc["tokens"] >= 0.9 and tokens["overall"]["macro_f1"]["value"] >= 0.9
    assert acc["head"] >= 0.9
    # the same report either way: metrics, slices with intervals, confusion matrix
    assert tokens["metrics"] == head["metrics"] == ["accuracy", "macro_f1"]
    assert [s["key"] for s in tokens["slices"]] == [s["key"] for s in head["slices"]]
    sl = tokens["slices"][0]["metrics"]["accuracy"]
    assert sl["ci_low"] <= sl["value"] <= sl["ci_high"]
    assert set(tokens["confusion_matrix"]["labels"]) == {"negative", "positive"}
    out = cli("compare", "--runs", f"{trained.runs['head']},{trained.runs['tokens']}", "-f", "json")
    assert out.returncode in (0, 1), out.stderr
    assert any(r["metric"] == "accuracy" for r in json.loads(out.stdout)["rows"])
    # what the run holds: a causal-LM adapter (no head saved), the verbalizers, another run key
    tok_run, head_run = trained.runs["tokens"], trained.runs["head"]
    adapter = json.loads((tok_run / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and not adapter.get("modules_to_save")
    label_map = json.loads((tok_run / "adapter" / "label_map.json").read_text())
    assert label_map == {"label2id": {"negative": 0, "positive": 1}, "classifier": "label_tokens",
                         "label_tokens": MAPPING, "suffix": SUFFIX}  # fmt: skip
    keys = [json.loads((r / "run_meta.json").read_text())["run_key"] for r in (tok_run, head_run)]
    assert keys[0] != keys[1]
    from verifily_action.runs.cache import key_config

    assert key_config({"classifier": "label_tokens", "label_tokens": MAPPING}) == {  # another mapping, another key
        "classifier": "label_tokens",
        "label_tokens": MAPPING,
    }


def test_prediction_is_the_argmax_of_the_summed_label_log_probs(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = trained.runs["tokens"]
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(trained.model), str(run / "adapter"))
    model.eval()
    texts = {r["id"]: r["text"] for r in cls_rows(32, 1)}
    suffix = tok(SUFFIX, add_special_tokens=False)["input_ids"]
    tol = 0.05 if torch.cuda.is_available() else 1e-4  # eval runs in bf16 on a GPU, this check in fp32 on the CPU
    preds = _predictions(run)
    assert len(preds) == 32
    for rec in preds:
        prompt = tok(texts[rec["id"]])["input_ids"] + suffix
        summed = {}
        for label, text in MAPPING.items():
            verb = tok(text, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = model(input_ids=torch.tensor([prompt + verb])).logits[0].float().log_softmax(-1)
            summed[label] = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(verb))
        z = math.log(sum(math.exp(s) for s in summed.values()))
        probs = {k: math.exp(s - z) for k, s in summed.items()}
        assert rec["probabilities"] == pytest.approx(probs, abs=tol)
        if abs(probs["positive"] - probs["negative"]) > 2 * tol:
            assert rec["prediction"] == max(summed, key=summed.get)
        assert sum(rec["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert rec["correct"] == (rec["prediction"] == rec["reference"])


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({"positive": "", "negative": " day"}, ["'positive'", "empty (zero tokens)", "$.label_tokens.positive"]),
        ({"positive": " day", "negative": " day"}, ["'negative' and 'positive' share a verbalizer", "$.label_tokens"]),
    ],
    ids=["empty", "shared"],
)
def test_bad_verbalizers_are_one_clear_error_and_nothing_is_written(trained, cli, tmp_path, mapping, words):
    cfg = write_config(
        tmp_path / "train.yaml",
        task="classification",
        model=str(trained.model),
        dataset="cls@v1",
        datasets_root=str(trained.dir / "datasets"),
        output_dir=str(tmp_path / "runs"),
        classifier="label_tokens",
        label_tokens=mapping,
    )
    out = cli("train", "--config", str(cfg))
    assert out.returncode == 2, out.stderr
    assert all(w in out.stderr for w in words), out.stderr
    assert f"{cfg}:" in out.stderr  # the config file and line of the label
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["encoder-decoder", "encoder"])
def test_label_tokens_refuse_models_without_a_next_token_head(trained, cli, tmp_path, kind):
    model = make_tiny_t5(tmp_path / "t5") if kind == "encoder-decoder" else "all-MiniLM-L6-v2"
    cfg = _config(tmp_path, "bad", model, classifier="label_tokens")
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "datasets"), str(trained.dir / "datasets")))
    out = cli("train", "--config", str(cfg))
    assert out.returncode == 2, out.stderr
    assert "classifier: label_tokens needs a decoder-only causal LM" in out.stderr
    assert "classifier: head" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "bad" / "runs").exists()


def test_classifier_keys_only_where_they_mean_something(cli, tmp_path):
    cfg = write_config(tmp_path / "t.yaml", task="sft", model="m", dataset="d@v1", classifier="label_tokens")
    out = cli("validate", str(cfg))
    assert out.returncode == 2 and "classifier works for task classification only, not sft" in out.stderr
    cfg = write_config(tmp_path / "t.yaml", task="classification", model="m", dataset="d@v1", label_tokens=MAPPING)
    out = cli("validate", str(cfg))
    assert out.returncode == 2 and "label_tokens is read by `classifier: label_tokens` only" in out.stderr


def test_attribution_and_export_of_a_label_tokens_run(trained, cli, tmp_path):
    run = trained.runs["tokens"]
    out = cli("attribute", "--run", str(run), "--method", "tracin")
    assert out.returncode == 2, out.stderr
    assert "classifies by label tokens" in out.stderr and "knn-shapley" in out.stderr and "Traceback" not in out.stderr
    out = cli("attribute", "--run", str(run), "--method", "knn-shapley", "--json")
    assert out.returncode == 0, out.stderr  # embeddings from the run's causal LM (the adapter merged)
    assert len(list(run.glob("attribution/knn-shapley/*"))) > 0
    out = cli("export", "--run", str(run), "--merged", str(tmp_path / "merged"))
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "AutoModelForCausalLM" in card and "`positive`: ' good'" in card
