"""`data: {streaming: true}`: train from an iterable over the split's verified JSONL files, never the whole split.

Before training: every file's sha256 is verified (train split and eval split, as `load_split` would), then the data
checks (`datasets.check_data`) run in one streaming pass over both splits, which also gathers the label set
(classification). That pass keeps 3 x 8 bytes per row in numpy-ready arrays (content key, text key, file:line) and,
for rows with an explicit id, 16 more (its hash and location) to find duplicates and leakage by sorting; the labels
are a set. Rows themselves are never kept: a row problem fails the run like `load_split` does.

Training reads the rows again, lazily: `datasets.IterableDataset.from_generator` over the files (one shard per
file), `shuffle(seed, buffer_size)` (a seeded buffer of `data.shuffle_buffer` rows; pass p over the data uses seed
training.seed + p, the shard order shuffled too) and `map` tokenizing MAP_ROWS rows at a time with `train.data.encode`,
the same encoding as a loaded split. `Stream` turns the passes into one endless iterable, so the Trainer sees a
single epoch whose position is its step count: a resumed run skips exactly the batches it had trained on (the
Trainer's `skip_first_batches` reads them again) and ends with the weights of an uninterrupted run.

Truncation counts cover the rows training tokenized (what it consumed, rounded up to MAP_ROWS, plus the batch the
dataloader prefetches), recorded when training ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..datasets import check_data
from ..datasets.loading import check_files, display_path, features_for, merge_fields, row_spec
from ..datasets.rows import Collector, RowSpec, scan_file
from ..errors import VerifilyError
from . import label_tokens
from .data import TokenStats, build_label_map, encode
from .plan import Plan, fields_override

MAP_ROWS = 1000  # rows tokenized together: large enough for the fast tokenizer's batching, small next to memory


class Batch:
    """A batch of rows (column -> list) with the little of `datasets.Dataset`'s interface `train.data.encode` reads."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    def __len__(self) -> int:
        return len(self.columns["id"])


def read_rows(files: list[tuple[str, str]], spec: RowSpec) -> Iterator[dict[str, Any]]:
    """The canonical rows of `files` ((path, shown) pairs; one shard each), validated again as they are read: the
    check pass found none invalid, so a problem now means a file changed since (refused, not skipped)."""
    for path, shown in files:
        col = Collector()
        for _line, row in scan_file(Path(path), shown, spec, col):
            yield row
        if col.total:
            p = col.problems[0]
            raise VerifilyError(f"{shown} changed while training streamed it: {p.message}", hint="train again")


class Stream:
    """The encoded training rows, pass after pass without end (a torch IterableDataset, made one in `__new__` so
    torch is imported only when a stream is built)."""

    def __init__(self, files: list[tuple[str, str]], spec: RowSpec, *, seed: int, buffer: int, encoder: Any):
        self.files, self.spec, self.seed, self.buffer, self.encoder = files, spec, seed, buffer, encoder

    def dataset(self) -> Any:
        import datasets

        features = features_for(self.spec)
        ds = datasets.IterableDataset.from_generator(
            read_rows, features=features, gen_kwargs={"files": self.files, "spec": self.spec}
        )
        ds = ds.shuffle(seed=self.seed, buffer_size=self.buffer)
        return ds.map(self.encoder, batched=True, batch_size=MAP_ROWS, remove_columns=list(features))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds = self.dataset()
        p = 0
        while True:
            ds.set_epoch(p)  # the shuffle's seed for this pass: seed + p
            n = 0
            for example in ds:
                n += 1
                yield example
            if n == 0:
                raise VerifilyError(
                    "no trainable rows in the streamed split", hint="; ".join(self.encoder.notes()) or None
                )
            p += 1


def torch_stream(stream: Stream) -> Any:
    import torch

    class _Iterable(torch.utils.data.IterableDataset):
        def __iter__(self) -> Iterator[dict[str, Any]]:
            return iter(stream)

    return _Iterable()


class Encoder:
    """`train.data.encode` for one batch of rows at a time, adding up what tokenization did."""

    def __init__(self, task: str, tokenizer: Any, max_length: int, label_map: Any, verbalizers: Any) -> None:
        self.args = (task, tokenizer, max_length, label_map, verbalizers)
        self.stats = TokenStats(max_length=max_length)

    def __call__(self, rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        task, tokenizer, max_length, label_map, verbalizers = self.args
        enc = encode(task, Batch(rows), tokenizer, max_length, label_map, verbalizers)
        s = self.stats
        s.rows += enc.stats.rows
        s.truncated += enc.stats.truncated
        s.dropped += enc.stats.dropped
        s.tokens += enc.stats.tokens
        s.longest = max(s.longest, enc.stats.longest)
        return enc.columns

    def notes(self) -> list[str]:
        s = self.stats
        out = [f"{s.truncated} of {s.rows} streamed rows were truncated to max_length"] if s.truncated else []
        return out + ([f"{s.dropped} streamed rows had nothing to learn"] if s.dropped else [])


def prepare(plan: Plan, run_dir: Path, meta: dict[str, Any], echo: Any) -> dict[str, Any]:
    """Verify, check (one pass) and set up the stream; returns `job.train_from`'s keyword arguments."""
    from ..runs.folder import update_meta
    from .models import load_tokenizer

    cfg = plan.cfg
    fields = fields_override(cfg)
    manifest, split = plan.manifest, cfg.train_split
    if cfg.task == "classification" and merge_fields(manifest, fields) != manifest.fields:
        raise VerifilyError(
            "data.streaming reads the label set in the data-check pass, which maps fields as the manifest does; "
            "this config's `fields:` maps them otherwise",
            hint=f"move the `fields:` mapping into {manifest.path}, or remove `streaming: true`",
        )
    checked_files = check_files(manifest, split)
    has_eval = cfg.eval_split in plan.eval_manifest.splits
    if has_eval:
        check_files(plan.eval_manifest, cfg.eval_split)
    splits = [s for s in (split, cfg.eval_split) if s in manifest.splits]
    others: list[tuple[Any, str]] = []
    if cfg.eval_dataset and has_eval:
        splits, others = [split], [(plan.eval_manifest, cfg.eval_split)]
    eval_label = cfg.eval_split if not others else f"{plan.eval_manifest.ref}:{cfg.eval_split}"
    labels: dict[str, set[str]] = {split: set(), eval_label: set()}
    eval_counts: dict[str, int] = {}

    def on_row(label: str, row: dict[str, Any]) -> None:
        if cfg.task == "classification" and label in labels and row.get("label") is not None:
            labels[label].add(str(row["label"]))
            if label == eval_label:
                eval_counts[str(row["label"])] = eval_counts.get(str(row["label"]), 0) + 1

    # ids unique within each split, what `load_split` refuses (the in-memory run's report also lists, without
    # refusing them, ids shared by its train and eval splits)
    report = check_data(manifest, splits=splits, others=others, on_row=on_row, ids_per_split=True)
    if report.row_problem_total:
        n = report.row_problem_total
        raise VerifilyError(
            f"dataset {manifest.ref}: {n} problem{'s' * (n != 1)} in the rows of the splits used",
            hint="fix the rows listed (file:line); `verifily dataset verify` reports them all",
            problems=list(report.row_problems),
            omitted=n - len(report.row_problems),
        )
    notes: list[str] = list(meta.get("notes") or [])
    tokenizer, tok_notes = load_tokenizer(plan.model)
    notes += tok_notes
    label_map = unseen = None
    if cfg.task == "classification":
        label_map = build_label_map(sorted(labels[split]))
        unseen = {lab: c for lab, c in sorted(eval_counts.items()) if lab not in label_map} or None
        if unseen:
            notes.append(
                f"{sum(unseen.values())} eval rows have labels the train split never has: "
                + ", ".join(f"{lab!r} ({c})" for lab, c in unseen.items())
            )
    for note in notes[len(meta.get("notes") or []) :] + report.notes():
        echo(f"note: {note}")
    verbalizers = label_tokens.for_config(cfg, tokenizer, label_map)
    encoder = Encoder(cfg.task, tokenizer, cfg.training.max_length, label_map, verbalizers)
    spec = row_spec(manifest, fields)
    files = [(str(vf.path), display_path(manifest, vf.entry)) for vf in checked_files]
    stream = Stream(files, spec, seed=cfg.training.seed, buffer=cfg.data.shuffle_buffer, encoder=encoder)
    unverified = any(f.sha256 is None for f in manifest.splits[split]) or (
        has_eval and any(f.sha256 is None for f in plan.eval_manifest.splits[cfg.eval_split])
    )
    meta = update_meta(
        run_dir,
        data_report=report.to_dict(),
        unverified_data=unverified,
        label_map=label_map,
        truncation=None,
        unseen_eval_labels=unseen,
        notes=notes,
    )
    echo(f"streaming {split} of {manifest.ref}: {report.rows.get(split, 0)} rows checked in one pass")

    def late() -> dict[str, Any]:
        return {"truncation": {split: encoder.stats.to_dict()}, "notes": notes + encoder.notes()}

    return {
        "meta": meta,
        "train_ds": torch_stream(stream),
        "tokenizer": tokenizer,
        "label_map": label_map,
        "late": late,
    }
