"""`verifily dataset …`: versioned datasets (init, hash, verify, info, diff).

Each command takes a dataset reference: `name@version` under `--datasets-root` (else $VERIFILY_DATASETS, else
./datasets) or the path of a manifest (or of its folder). Problems exit 2 with every one listed; `--json` prints
machine-readable output (errors too, with the same exit code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ..errors import Problem, VerifilyError

dataset_app = typer.Typer(
    help="Versioned datasets: manifests, hashes, checks, diffs.", no_args_is_help=True, rich_markup_mode=None
)

ROOT_HELP = "Folder holding <name>/<version>/manifest.yaml (default: $VERIFILY_DATASETS, else ./datasets)."
REF_HELP = "A dataset: name@version, or the path of a manifest (or its folder)."


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


def _emit_json(value: dict[str, Any]) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


@contextmanager
def _json_errors(as_json: bool) -> Iterator[None]:
    """With --json, print a VerifilyError as JSON on stdout (same exit code) instead of text on stderr."""
    try:
        yield
    except VerifilyError as e:
        if not as_json:
            raise
        _emit_json({"ok": False, **e.to_dict()})
        raise typer.Exit(code=e.exit_code) from None


@dataset_app.command()
def init(
    folder: Path = typer.Argument(..., help="Folder holding the JSONL files; each file becomes a split (its stem)."),
    name: str = typer.Option(None, "--name", help="Dataset name (default: the parent folder's name)."),
    version: str = typer.Option(None, "--version", help="Version label (default: the folder's name)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing manifest."),
) -> None:
    """Scaffold manifest.yaml from the JSONL files in FOLDER: infer field roles and tag keys, record hashes."""
    from ..datasets.scaffold import init_manifest

    m = init_manifest(folder, name=name, version=version, force=force)
    typer.echo(f"wrote {m.path} ({m.ref})")
    typer.echo(f"  task: {m.task or '(unknown)'}; fields: " + ", ".join(f"{r}={k}" for r, k in m.fields.items() if k))
    typer.echo(f"  tag keys: {', '.join(m.tag_keys) or '(none)'}")
    for split, files in m.splits.items():
        typer.echo(f"  {split}: " + ", ".join(f"{f.path} ({f.rows} rows)" for f in files))
    typer.echo("next: fill in description, provenance and license, then `verifily dataset verify " + f"{m.path}`")


@dataset_app.command("hash")
def hash_(
    ref: str = typer.Argument(..., help=REF_HELP),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
    check: bool = typer.Option(False, "--check", help="Only report what would change; write nothing (exit 2 if any)."),
) -> None:
    """Write every file's sha256 and row count into the manifest (YAML comments are not kept)."""
    from ..datasets import resolve
    from ..datasets.scaffold import hash_manifest

    m = resolve(ref, datasets_root)
    new, changes = hash_manifest(m, write=not check)
    changed = [(s, old, n) for s, old, n in changes if (old.sha256, old.rows) != (n.sha256, n.rows)]
    for split, old, n in changes:
        mark = "changed" if (old.sha256, old.rows) != (n.sha256, n.rows) else "unchanged"
        typer.echo(f"{split}: {n.path} sha256 {n.sha256} rows {n.rows} ({mark})")
    if check and changed:
        raise VerifilyError(f"{len(changed)} file entr{'ies' if len(changed) != 1 else 'y'} of {m.ref} out of date")
    typer.echo(f"{'checked' if check else 'wrote'} {m.path}; dataset hash {new.dataset_hash()}")


@dataset_app.command()
def verify(
    ref: str = typer.Argument(..., help=REF_HELP),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Also fail (exit 2) on data-check findings."),
) -> None:
    """Check hashes, every row against the field mapping, and the data checks (empty texts, duplicates, leakage)."""
    from ..datasets import check_data, resolve
    from ..datasets.loading import check_files

    with _json_errors(as_json):
        m = resolve(ref, datasets_root)
        problems: list[Problem] = []
        for split in m.splits:
            try:
                check_files(m, split)
            except VerifilyError as e:
                problems.extend(e.problems)
        # the row scan checks each file's row count against the manifest's, except where the hash already failed
        report = check_data(m, hash_failed={p.file for p in problems if p.file})
        # a missing file is already reported by the hash check; the row scan notes it too
        missing = {(p.file, p.message) for p in problems}
        row_problems = [p for p in report.row_problems if (p.file, p.message) not in missing]
        problems.extend(row_problems)
        total = (
            len(problems)
            - len(row_problems)
            + report.row_problem_total
            - (len(report.row_problems) - len(row_problems))
        )
        ok = total == 0 and (report.findings == 0 or not strict)
        if as_json:
            _emit_json(
                {
                    "ok": ok,
                    "problem_total": total,
                    "problems": [p.to_dict() for p in problems],
                    "data_report": report.to_dict(),
                }
            )
            if not ok:
                raise typer.Exit(code=2)
            return
        for w in report.warnings:
            typer.echo(f"warning: {w.render()}", err=True)
        if total:
            shown = f" (first {len(problems)} shown)" if total > len(problems) else ""
            raise VerifilyError(
                f"dataset {m.ref} failed verification: {total} problem{'s' * (total != 1)}{shown}",
                hint="fix the files listed; after an intended change, make a new version and run "
                "`verifily dataset hash`",
                problems=problems,
            )
        typer.echo(f"{m.ref}: hashes match ({sum(len(f) for f in m.splits.values())} files), rows valid")
        for line in report.summary_lines():
            typer.echo(f"  {line}")
        for f in report.examples:
            typer.echo(f"  {f.check}: {f.file}:{f.line}: {f.detail}")
        if report.findings:
            msg = f"{report.findings} data-check finding{'s' * (report.findings != 1)}"
            if strict:
                raise VerifilyError(f"dataset {m.ref}: {msg}", hint="remove them or run without --strict")
            typer.echo(f"warning: {msg} (recorded in the run metadata by `train`; --strict makes them fail)")
        typer.echo(f"dataset hash {m.dataset_hash()}")


@dataset_app.command()
def info(
    ref: str = typer.Argument(..., help=REF_HELP),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Rows per split, per tag value (rows without a tag key count as `(none)`) and per label."""
    from ..datasets import resolve
    from ..datasets.info import dataset_info

    with _json_errors(as_json):
        d = dataset_info(resolve(ref, datasets_root))
    if as_json:
        _emit_json(d)
        return
    typer.echo(f"{d['ref']}  (parent: {d['parent'] or '-'}, task: {d['task'] or '-'})")
    typer.echo(f"manifest: {d['manifest']}")
    typer.echo(f"dataset hash: {d['dataset_hash']}")
    if d["description"]:
        typer.echo(f"description: {d['description']}")
    rows = [("split", "key", "value", "rows")]
    for split, s in d["splits"].items():
        ok = "verified" if all(f["verified"] for f in s["files"]) else "HASH MISMATCH"
        rows.append((split, "", "(all)", f"{s['rows']}  [{ok}]"))
        for key, values in s["tags"].items():
            rows.extend((split, key, v, str(n)) for v, n in values.items())
        rows.extend((split, "label", v, str(n)) for v, n in s["labels"].items())
    _table(rows)


@dataset_app.command()
def diff(
    a: str = typer.Argument(..., help="The old version (name@version or manifest path)."),
    b: str = typer.Argument(..., help="The new version."),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Rows added, removed and changed from A to B, per split and per tag value, matched by example id."""
    from ..datasets import resolve
    from ..datasets.info import dataset_diff

    with _json_errors(as_json):
        d = dataset_diff(resolve(a, datasets_root), resolve(b, datasets_root))
    if as_json:
        _emit_json(d)
        return
    typer.echo(f"{d['a']} -> {d['b']}")
    for key, label in (("splits_only_in_a", "removed"), ("splits_only_in_b", "added")):
        for s in d[key]:
            typer.echo(f"split {s}: {label} entirely")
    rows = [("split", "tag", "value", "added", "removed", "changed", "unchanged")]
    for split, s in d["splits"].items():
        rows.append((split, "", "(all)", *(str(s[k]) for k in ("added", "removed", "changed", "unchanged"))))
        for key, values in s["by_tag"].items():
            for v, c in values.items():
                rows.append((split, key, v, *(str(c[k]) for k in ("added", "removed", "changed", "unchanged"))))
    _table(rows)
    for split, s in d["splits"].items():
        if s["changed_fields"]:
            typer.echo(f"{split}: changed fields " + ", ".join(f"{k} ({n})" for k, n in s["changed_fields"].items()))


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@dataset_app.command()
def derive(
    ref: str = typer.Argument(..., help="The parent version (name@version or manifest path)."),
    to: str = typer.Option(..., "--to", help="The new version's label (a folder beside the parent's)."),
    drop_ids: Path = typer.Option(
        None, "--drop-ids", help="File of ids to drop: one per line, or JSONL rows with `id` (e.g. rows.jsonl)."
    ),
    drop_below: float = typer.Option(
        None, "--drop-below", help="Drop the train rows whose attribution value is below this (needs --run)."
    ),
    run: Path = typer.Option(None, "--run", help="The run whose attribution --drop-below reads."),
    method: str = typer.Option("knn-shapley", "--method", help="The attribution method --drop-below reads."),
    split: str = typer.Option(None, "--split", help="The split to drop rows from (default: the run's train split)."),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
) -> None:
    """Make a new version without some rows (an ids file, or the rows an attribution valued below a threshold);
    its manifest records the parent and why."""
    from ..datasets import resolve
    from ..datasets.derive import Drop, ids_below, ids_from_file
    from ..datasets.derive import derive as derive_version

    if (drop_ids is None) == (drop_below is None):
        raise VerifilyError(
            "give exactly one of --drop-ids FILE and --drop-below VALUE",
            hint="e.g. --drop-below 0 --run runs/<name> (after `verifily attribute`)",
        )
    if drop_below is not None and run is None:
        raise VerifilyError("--drop-below needs --run RUN", hint="the run whose attribution valued the rows")
    if drop_ids is not None and run is not None:
        raise VerifilyError("--run goes with --drop-below, not --drop-ids")
    parent = resolve(ref, datasets_root)
    if drop_ids is not None:
        drop = Drop(split or "train", ids_from_file(drop_ids), f"ids listed in {drop_ids.name}")
    else:
        ids, source = ids_below(run, method, drop_below)
        drop = Drop(split or "train", ids, f"{method} value < {drop_below:g}", source)
    new = derive_version(parent, to, drop)
    typer.echo(f"wrote {new.path} ({new.ref}): {len(drop.ids)} {drop.split} row(s) dropped from {parent.ref}")
    typer.echo(f"dataset hash {new.dataset_hash()}")
