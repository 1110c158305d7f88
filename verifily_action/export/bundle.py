"""Export a run: check it, build the output in a hidden folder beside OUT, rename it into place.

  * refused before anything is written: an OUT that is a file, a folder that is not empty, or inside the run; a
    missing run, a run not completed (failed, interrupted, running), a run whose hash chain does not hold
    (`runs.verify.verify_run`, the check of `reproduce --verify-only`), a base model whose files differ from the ones
    the run recorded;
  * `merged`: the base model with the adapter folded in (`evaluate.inference.load_for_eval(merge=True)`, PEFT's
    `merge_and_unload`, on the CPU so the weights keep the base model's dtype), saved as safetensors; a
    classification model's config carries the run's label map (id2label, label2id);
  * `adapter`: the adapter folder as it is (weights, config, label_map.json, its model card);
  * both: the run's tokenizer files (chat template included) beside the weights, and for `merged` a model card
    (README.md) naming the run, its run key and root hash, the base model, dataset and task.
The run's lock is held shared throughout (an evaluation cannot swap the run mid-export; copies can run alongside).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..runs.files import read_json
from ..runs.folder import Run, load_run
from ..runs.layout import ADAPTER, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS, HASHES, RUN_META, TOKENIZER
from ..runs.lock import run_lock
from ..runs.verify import verify_run

KINDS = ("merged", "adapter")
CARD = "README.md"  # the merged model's card (the adapter keeps the one training wrote)
MODEL_ENTRY = "model:"  # hashes.json entries of the base model's files: `model:<file name>`
Echo = Callable[[str], None]


@dataclass
class Exported:
    out: Path
    kind: str
    run_id: str
    root_hash: str
    files: list[str]  # relative paths written under `out`


def export_run(run_dir: str | Path, out: str | Path, kind: str, echo: Echo = print) -> Exported:
    """Export the run at `run_dir` into the new folder `out` (`kind`: "merged" or "adapter")."""
    assert kind in KINDS, kind
    d, out = Path(run_dir), Path(out)
    if not d.is_dir():
        raise VerifilyError(
            f"no run folder at {d}", hint="give the folder of a run written by `verifily train` (e.g. runs/<name>/)"
        )
    check_output(out, d)
    with run_lock(d, "exporting", shared=True):
        run = verified_run(d)
        target = Path(os.path.abspath(out))  # "." or "x/.." has no name of its own to put a folder beside
        created = _make_parents(target.parent)
        scratch = target.parent / f".{target.name}.export-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)  # this process's own leftover, if any
        try:
            scratch.mkdir()
            if kind == "merged":
                write_merged(run, scratch, echo)
            else:
                _copy_files(run.dir / ADAPTER, scratch)
                _copy_files(run.dir / TOKENIZER, scratch)
            files = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
            _sync(scratch)
            _place(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            for folder in reversed(created):  # parents this export made, deepest first, while empty
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
    return Exported(out, kind, run.id, str(run.meta.get("root_hash")), files)


# ---------------------------------------------------------------- checks


def check_output(out: Path, run_dir: Path) -> None:
    """OUT must be new (or an empty folder) and outside the run."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise VerifilyError(f"{out} exists and is not a folder", hint="choose another output folder")
        if any(out.iterdir()):
            raise VerifilyError(
                f"{out} exists and is not empty: nothing was exported",
                hint=f"choose another output folder, or remove {out} first",
            )
    run, target = run_dir.resolve(), out.resolve()
    if target == run or run in target.parents:
        raise VerifilyError(
            f"{out} is inside the run folder {run_dir}",
            hint="a sealed run is never changed (its hash chain would break): export to a folder outside it",
        )


def verified_run(d: Path) -> Run:
    """The run at `d`, completed and intact; else one VerifilyError saying what, where and what to do."""
    if not (d / RUN_META).is_file():
        load_run(d)  # raises its error: not a run folder (with the `.partial` hint when there is one)
    try:
        meta = read_json(d / RUN_META)
    except (OSError, ValueError) as e:
        raise VerifilyError(f"{d / RUN_META} cannot be read: {e}", hint="the run folder is damaged; train again") from e
    status, error = (meta.get("status"), meta.get("error")) if isinstance(meta, dict) else (None, None)
    if status != "completed":
        hints = {
            "failed": f"a failed run has no sealed adapter: fix what failed{f' ({error})' if error else ''} and "
            "train again",
            "interrupted": f"resume it (`verifily train --resume {d}`) and export the completed run",
            "running": "wait for its training to end (resume it with `verifily train --resume` if its process died) "
            "and export the completed run",
        }
        raise VerifilyError(
            f"run {d} cannot be exported: its status is {status!r}, not completed (in {d / RUN_META})",
            hint=hints.get(str(status), "export a completed run written by `verifily train`"),
        )
    report = verify_run(d)
    if not report.ok:
        raise VerifilyError(
            f"run {d} fails its hash check ({len(report.problems)} problem(s)): nothing was exported",
            problems=report.problems,
            hint="the run folder was changed after it was sealed: restore it (or download it again) or train again; "
            f"`verifily reproduce --verify-only {d}` shows the same check",
        )
    run = load_run(d, require_completed=True)
    if not (run.dir / ADAPTER / ADAPTER_CONFIG_FILE).is_file():
        raise VerifilyError(
            f"run {d} has no adapter ({run.dir / ADAPTER / ADAPTER_CONFIG_FILE} is missing)",
            hint="export a completed run folder written by `verifily train`",
        )
    return run


def check_base_model(run: Run, folder: str) -> None:
    """The base model about to be merged into is the one the run trained on: every file recorded in the run's chain
    hashes the same in `folder`. (When `folder` is the recorded model_path, `verify_run` has just checked it.)"""
    from ..hashing import sha256_file

    recorded = str(run.meta.get("model_path") or "")
    if recorded and Path(recorded).resolve() == Path(folder).resolve():
        return
    entries = read_json(run.dir / HASHES).get("entries", {})
    problems = []
    for name, want in sorted(entries.items()):
        if not name.startswith(MODEL_ENTRY) or name == f"{MODEL_ENTRY}revision":
            continue
        f = Path(folder) / name[len(MODEL_ENTRY) :]
        if not f.is_file():
            problems.append(Problem(f"{name}: the base model file is missing", file=str(f)))
        elif sha256_file(f) != want:
            problems.append(Problem(f"{name} differs from the file the run trained on", file=str(f)))
    if problems:
        raise VerifilyError(
            f"the base model at {folder} is not the one run {run.dir} trained on: nothing was exported",
            problems=problems,
            hint=f"put the run's base model back at {recorded or f'the path {RUN_META} records'}",
        )


# ---------------------------------------------------------------- writing


def write_merged(run: Run, dest: Path, echo: Echo) -> None:
    """The merged model (safetensors + config), the run's tokenizer and the model card, into `dest`."""
    from ..evaluate.inference import load_for_eval
    from ..evaluate.runner import base_model_dir

    base = base_model_dir(run)
    check_base_model(run, base)
    task = str(run.meta.get("task") or run.config.task)
    echo(f"merging {run.dir / ADAPTER} into {base} ({task})")
    lm = load_for_eval(task, base, run.dir / ADAPTER, run.dir / TOKENIZER, merge=True, device="cpu")
    lm.model.save_pretrained(str(dest), safe_serialization=True)
    _copy_files(run.dir / TOKENIZER, dest)
    adapter_sha = read_json(run.dir / HASHES).get("entries", {}).get(ADAPTER_WEIGHTS)
    (dest / CARD).write_text(merged_card(run, lm.label_map, adapter_sha), encoding="utf-8")


AUTO_CLASS = {
    "sft": "AutoModelForCausalLM",
    "pretrain": "AutoModelForCausalLM",
    "dpo": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "classification": "AutoModelForSequenceClassification",  # with a head; label_tokens runs are causal LMs
}


def merged_card(run: Run, label_map: dict[str, int] | None, adapter_sha: str | None) -> str:
    meta: dict[str, Any] = run.meta
    ds = meta.get("dataset") or {}
    task = str(meta.get("task"))
    auto = AUTO_CLASS[task]
    by_tokens = task == "classification" and run.config.classifier == "label_tokens"
    if by_tokens:  # a causal LM that writes the label (train/label_tokens.py): no classification head
        auto = "AutoModelForCausalLM"
    lines = [
        "---",
        "library_name: transformers",
        f"base_model: {meta.get('model')}",
        "tags: [verifily, lora, merged]",
        "---",
        f"# {task} model: `{meta.get('model')}` with a LoRA adapter trained on `{ds.get('ref')}`, merged",
        "",
        f"- Run: `{meta.get('id')}`, run key `{meta.get('run_key')}`",
        f"- Root hash: `{meta.get('root_hash')}` (the run's hash chain, checked before this export; check the run "
        f"again with `verifily reproduce --verify-only <run folder>`)",
        f"- Base model: `{meta.get('model')}`",
        f"- Dataset: `{ds.get('ref')}` split `{ds.get('split')}`, dataset hash `{ds.get('hash')}`",
        f"- Task: `{task}`",
        f"- Adapter weights (sha256 `{adapter_sha}`) merged into the base weights with PEFT's `merge_and_unload` "
        "by `verifily export --merged`",
    ]
    if label_map:
        lines += ["", "## Labels", ""] + [f"- {i}: `{lab}`" for lab, i in sorted(label_map.items(), key=lambda x: x[1])]
    if by_tokens:
        from ..evaluate.inference import read_verbalizers

        verbs = read_verbalizers(run.dir / ADAPTER) or {}
        lines += ["", "Classified by label tokens: the prediction is the label whose text below has the highest "
                  "summed log-probability after the prompt `<text>` + `\\nLabel:` (probabilities: a softmax over the "
                  "labels' sums)."] + [f"- `{lab}`: {text!r}" for lab, text in sorted(verbs.items())]  # fmt: skip
    lines += [
        "",
        "## Use",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        f"model = {auto}.from_pretrained('<this folder>')",
        "tokenizer = AutoTokenizer.from_pretrained('<this folder>')",
        "```",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- folders


def _copy_files(src: Path, dest: Path) -> None:
    """Every file under `src` into `dest` (same relative paths), byte for byte; never over a file already there."""
    if not src.is_dir():
        raise VerifilyError(f"{src} is missing", hint="export a completed run folder written by `verifily train`")
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dest / f.relative_to(src)
        if target.exists():
            raise VerifilyError(
                f"{f.relative_to(src)} is in both the run's {ADAPTER}/ and {TOKENIZER}/ folders: the export would hold "
                "one of them only",
                hint="export with --merged, or copy the run's folders by hand",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)


def _make_parents(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; returns the ones made, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _sync(folder: Path) -> None:
    """Flush the files and folders under `folder` to disk before the rename makes them the export."""
    for p in [*sorted(folder.rglob("*")), folder]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _place(scratch: Path, out: Path) -> None:
    """Rename the finished export to `out` (which may be an empty folder: a rename replaces one)."""
    try:
        os.rename(scratch, out)
    except OSError as e:
        raise VerifilyError(
            f"cannot move the export into {out}: {e.strerror or e}",
            hint=f"{out} must not exist or be an empty folder; choose another output folder",
        ) from e
