"""Load, validate and type the train config. `schemas/train.schema.json` is the one source of truth.

Validation reports every problem at once, each with its JSON path, `file:line:column` and a hint (listing the first
MAX_PROBLEMS_SHOWN and counting the rest: a file of 75k unknown keys is one mistake, not 75k lines). The typed config
(`TrainConfig`) is built only from a schema-valid document with the schema's defaults filled in; a test checks that
its fields and the schema's properties are the same at every level, so they cannot drift apart.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from . import yamlsource
from .errors import MAX_PROBLEMS_SHOWN, Problem, VerifilyError
from .schemas import apply_defaults, load_schema, validator

SCHEMA = "train.schema.json"


@dataclass(frozen=True)
class FieldsConfig:
    id: str | None
    text: str | None
    prompt: str | None
    response: str | None
    label: str | None
    chosen: str | None
    rejected: str | None
    tags: str | None


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: float
    dropout: float
    target_modules: str | list[str]


@dataclass(frozen=True)
class DataConfig:
    streaming: bool  # train/streaming.py
    shuffle_buffer: int


@dataclass(frozen=True)
class TrainingConfig:
    epochs: float
    max_steps: int | None
    batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float
    scheduler: str
    warmup_ratio: float
    weight_decay: float
    max_length: int
    seed: int
    precision: str
    gradient_checkpointing: bool
    checkpoint_steps: int | None
    checkpoint_minutes: float | None
    snapshots: int
    logging_steps: int
    group_by_length: bool
    packing: bool
    attention: str
    compile: bool
    dpo_beta: float  # task dpo (train/dpo.py)


@dataclass(frozen=True)
class EvalConfig:
    slice_by: list[str]
    slices: list[str]  # slice expressions (evaluate/slices.py), checked at load time with file:line
    metrics: list[str]
    batch_size: int
    max_new_tokens: int
    hard_examples: int
    min_slice_size: int
    bootstrap_resamples: int
    confidence: float
    fdr: str  # false-discovery control in compare: bh | by (compare/fdr.py)
    slice_macro_f1: str
    discover_max_candidates: int


@dataclass(frozen=True)
class AttributeConfig:
    method: str  # none | knn-shapley | loo | segment-shapley | tracin (attribute/runner.py METHODS)
    by: list[str]
    k: int
    jobs: int
    budget: int
    seeds: int


@dataclass(frozen=True)
class DistributedConfig:
    strategy: str  # ddp | fsdp, under a multi-process launch (train/ranks.py)


@dataclass(frozen=True)
class TrainConfig:
    task: str
    model: str
    dataset: str
    datasets_root: str
    server: str | None  # a Verifily server `name@version` datasets come from (remote/pull.py), or None
    train_split: str
    eval_dataset: str | None
    eval_split: str
    fields: FieldsConfig
    lora: LoraConfig
    quantization: str
    classifier: str  # classification: head | label_tokens (train/label_tokens.py)
    label_tokens: dict[str, str] | None  # classifier label_tokens: label -> verbalizer text (keys: the labels)
    data: DataConfig
    training: TrainingConfig
    eval: EvalConfig
    output_dir: str
    cache_dir: str | None
    run_name: str | None
    report_to: str
    distributed: DistributedConfig
    attribute: AttributeConfig
    gates: list[str]  # compare's gate rules (verifily_action.compare.gates), checked when this run is compared
    # Where the config came from (not part of the schema; never written to config.yaml)
    source_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as a plain dict (defaults filled), without `source_path`."""
        d = asdict(self)
        d.pop("source_path")
        return d


# Nested sections: schema property -> dataclass. Used to build the typed config and by the drift test.
SECTIONS: dict[str, type] = {
    "fields": FieldsConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "eval": EvalConfig,
    "distributed": DistributedConfig,
    "attribute": AttributeConfig,
}


def schema_fields(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.name != "source_path"]


def load_config(path: str | Path) -> TrainConfig:
    """Load and validate a config file; raise one VerifilyError listing every problem."""
    src = yamlsource.load(path, kind="config", yaml12_floats=True)
    problems = validate_source(src, hints=MAX_PROBLEMS_SHOWN)
    if problems:
        n = len(problems)
        shown = problems[:MAX_PROBLEMS_SHOWN]
        raise VerifilyError(
            f"{path}: {n:,} problem{'s' if n > 1 else ''} in the config"
            + (f" (first {len(shown)} shown)" if n > len(shown) else ""),
            problems=shown,
            omitted=n - len(shown),
            hint="the schema is schemas/train.schema.json; `verifily validate` checks a config without running it",
        )
    return from_dict(src.data, source_path=str(path))


def from_dict(data: dict[str, Any], source_path: str | None = None) -> TrainConfig:
    """Build the typed config from a schema-valid dict (defaults are filled from the schema)."""
    full = apply_defaults(load_schema(SCHEMA), data)
    kwargs = {k: (SECTIONS[k](**v) if k in SECTIONS else v) for k, v in full.items()}
    return TrainConfig(**kwargs, source_path=source_path)


def validate_source(src: yamlsource.Source, hints: int | None = None) -> list[Problem]:
    """Every schema problem of a loaded document, sorted by line. `hints`: give an unknown key its "did you mean"
    hint only among the first `hints` problems (the ones shown; the search costs more than the validation)."""
    if not isinstance(src.data, dict):
        kind = type(src.data).__name__ if src.data is not None else "null"
        kind = {"list": "a list", "str": "a string", "int": "a number", "float": "a number"}.get(kind, kind)
        return [
            Problem(
                f"the config must be a mapping of keys to values, but the top level is {kind}",
                file=src.path,
                line=1,
                column=1,
                json_path="$",
                hint="start with `task:`, `model:` and `dataset:` at the left margin; see examples/train.yaml",
            )
        ]
    schema = load_schema(SCHEMA)
    unknown: dict[int, tuple[str, list[str]]] = {}  # id(problem) -> (key, keys allowed there): hint still to find
    problems = [p for err in validator(SCHEMA).iter_errors(src.data) for p in _problem(err, src, schema, unknown)]
    problems += _cross_field(src)
    problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.json_path or ""))
    for p in problems[:hints]:
        if id(p) in unknown:
            p.hint = _unknown_key_hint(*unknown[id(p)], schema)
    return problems


def _unknown_key_hint(key: str, allowed: list[str], schema: dict[str, Any]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    home = [k for k, v in schema["properties"].items() if key in v.get("properties", {})]
    if close:
        return f"did you mean `{close[0]}`?"
    if home:
        return f"`{key}` belongs under `{home[0]}`"
    return f"allowed keys here: {', '.join(allowed)}"


def _cross_field(src: yamlsource.Source) -> list[Problem]:
    """Rules that JSON Schema cannot say plainly: combinations of keys that are each valid alone."""
    data = src.data
    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    out = []
    if training.get("packing") is True and data.get("task") in ("seq2seq", "classification", "pretrain", "dpo"):
        line, col = src.where(("training", "packing"))
        why = "group_by_length already keeps padding low for this task"
        if data["task"] == "pretrain":
            why = "pretrain always packs its documents into max_length blocks"
        out.append(
            Problem(
                f"packing works for task sft only, not {data['task']}",
                src.path,
                line,
                col,
                "$.training.packing",
                f"remove `packing: true`; {why}",
            )
        )
    if data.get("classifier") == "label_tokens" and data.get("task") != "classification":
        line, col = src.where(("classifier",))
        hint = "remove `classifier: label_tokens`; sft, seq2seq and pretrain train on tokens already"
        out.append(Problem(f"classifier works for task classification only, not {data.get('task')}", src.path,
                           line, col, "$.classifier", hint))  # fmt: skip
    if data.get("label_tokens") and data.get("classifier") != "label_tokens":
        line, col = src.where(("label_tokens",))
        hint = "add `classifier: label_tokens`, or remove `label_tokens`"
        out.append(Problem("label_tokens is read by `classifier: label_tokens` only", src.path, line, col,
                           "$.label_tokens", hint))  # fmt: skip
    return out + _streaming_problems(src) + _slice_problems(src)


def _streaming_problems(src: yamlsource.Source) -> list[Problem]:
    """`data.streaming` needs max_steps (an iterable has no length to count epochs by) and a task that encodes row
    by row (pretrain packs documents across rows; dpo's TRL trainer tokenizes the whole split itself)."""
    data = src.data
    if not (isinstance(data.get("data"), dict) and data["data"].get("streaming") is True):
        return []
    line, col = src.where(("data", "streaming"))
    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    out = []
    if training.get("max_steps") is None:
        out.append(Problem("data.streaming needs training.max_steps: a stream has no length to count epochs by",
                           src.path, line, col, "$.data.streaming",
                           "set `training: {max_steps: N}` (steps x batch_size x gradient_accumulation_steps rows "
                           "are read), or remove `streaming: true`"))  # fmt: skip
    if data.get("task") in ("pretrain", "dpo"):
        out.append(Problem(f"data.streaming works for tasks sft, seq2seq and classification, not {data['task']}",
                           src.path, line, col, "$.data.streaming", "remove `streaming: true`"))  # fmt: skip
    return out


def _slice_problems(src: yamlsource.Source) -> list[Problem]:
    """Slice expressions (eval.slice_by, eval.slices) and gate rules that do not parse, each where it is written."""
    data = src.data
    ecfg = data.get("eval") if isinstance(data.get("eval"), dict) else {}
    texts: list[tuple[tuple[str | int, ...], str]] = []
    for section in ("slice_by", "slices"):
        items = ecfg.get(section)
        texts += [(("eval", section, i), t) for i, t in enumerate(items if isinstance(items, list) else [])]
    gates = data.get("gates")
    texts += [(("gates", i), t) for i, t in enumerate(gates if isinstance(gates, list) else [])]
    if not texts:
        return []
    from .compare.gates import parse_rule  # numpy: only for configs that have slices or gates
    from .evaluate.slices import SliceSyntaxError, parse_expression

    out = []
    for path, text in texts:
        if not isinstance(text, str) or not text.strip():
            continue  # the schema reports it
        try:
            parse_rule(text, "gates") if path[0] == "gates" else parse_expression(text, "config")
        except VerifilyError as e:
            message = e.message
            if isinstance(e, SliceSyntaxError):
                message = f"bad slice expression {text!r}: {e.why} at position {e.position}"
            if e.problems:  # the expression with a caret under the position
                message += "\n" + e.problems[0].message
            line, col = src.where(path)
            out.append(Problem(message, src.path, line, col, yamlsource.format_json_path(path), e.hint))
    return out


def _schema_at(schema: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    node = schema
    for part in path:
        props = node.get("properties", {})
        if isinstance(part, str) and part in props:
            node = props[part]
        elif isinstance(part, int) and "items" in node:
            node = node["items"]
        else:
            return {}
    return node


def _problem(
    err: Any, src: yamlsource.Source, schema: dict[str, Any], unknown: dict[int, tuple[str, list[str]]]
) -> list[Problem]:
    path = tuple(err.absolute_path)
    sub = _schema_at(schema, path)
    desc = sub.get("description")

    def at(p: tuple[str | int, ...], message: str, hint: str | None) -> Problem:
        line, col = src.where(p)
        return Problem(message, src.path, line, col, yamlsource.format_json_path(p), hint)

    if err.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        extra = [k for k in err.instance if k not in sub.get("properties", {})]
        out = []
        for key in extra:
            p = at((*path, key), f"unknown key `{key}`", None)
            unknown[id(p)] = (str(key), allowed)
            out.append(p)
        return out
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        msub = sub.get("properties", {}).get(missing, {})
        return [at(path, f"missing required key `{missing}`", msub.get("description"))]
    if err.validator == "enum":
        allowed = [str(v) for v in err.validator_value]
        close = difflib.get_close_matches(str(err.instance), allowed, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return [at(path, f"{err.instance!r} is not one of: {', '.join(allowed)}", hint + (desc or "").strip() or None)]
    if err.validator == "type":
        want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        got = _json_type(err.instance)
        return [at(path, f"expected {' or '.join(want)}, got {got} {err.instance!r}", desc)]
    if err.validator == "oneOf" and path and path[-1] == "target_modules":
        return [at(path, f"{err.instance!r} is neither `auto` nor a list of module names", desc)]
    return [at(path, err.message, desc)]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def resolve_path(config: TrainConfig, value: str) -> Path:
    """A path from the config, relative to the config file's folder."""
    p = Path(value)
    if p.is_absolute() or config.source_path is None:
        return p
    return Path(config.source_path).resolve().parent / p
