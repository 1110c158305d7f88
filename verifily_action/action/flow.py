"""The GitHub Action's flow; `entrypoint.py` (the docker action's command) calls `main()`.

Two modes (input `mode`):
- `train-eval` (pull_request / push): validate the config, train, evaluate, find and fetch the base branch's run,
  compare, upload the run folder as an artifact (so the report can link it), then write the job summary, post the
  sticky comment (same-repository pull requests only) and set the outputs; the `fail-on` gate decides the exit
  code last. A baseline that cannot be fetched or compared, and a failed upload, are warnings, never failures.
- `comment` (a `workflow_run` job with a write token): download the finished run's artifact as data, check that
  its pull request really has that head commit, compare with the baseline and post the comment. This is how fork
  pull requests, whose own jobs get a read-only token, still get a comment — also when their job failed on a gate,
  since it uploads the artifact before the gates decide.

The stages that belong to other parts of the package (train, evaluate, compare; `action.stages`) go through
`PIPELINE`, so tests can substitute their own; the report's markdown is made in `report/`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import telemetry
from ..compare.gates import GateRuleError
from ..errors import EXIT_INTERNAL, EXIT_OK, VerifilyError
from ..github import workflow as wf
from ..github.baseline import BaselineResult, resolve_baseline
from ..github.baseline import workflow_file as _workflow_file
from ..github.comments import marker, upsert_sticky
from ..github.events import Event, load_event
from ..github.server import NO_BASELINE_ON_GHES, ghes_notice, is_ghes
from ..report import pr
from ..runs.files import read_json
from ..runs.layout import EVAL_RESULTS, RUN_META
from . import html_report, ownership, signing
from .artifact import PR_CONTEXT, check_run, fetch_run, read_pr_context
from .comment_checks import DEPENDABOT, comment_inputs, confirmed_pull_request
from .inputs import Inputs, check_fail_on, fail_on_rules, read_inputs
from .stages import Outcome, Pipeline

__all__ = ["PIPELINE", "Inputs", "Outcome", "Pipeline", "main", "read_inputs"]

COMPARISON = "verifily-comparison.json"  # the comparison, added to the artifact beside the run
WORKSPACE = "/github/workspace"


PIPELINE = Pipeline()


@dataclass
class Context:
    env: Mapping[str, str]
    event: Event
    repo: str
    workspace: Path
    workflow: str  # workflow file name, the runs API's workflow id

    @property
    def ghes(self) -> bool:  # GitHub Enterprise Server: no artifacts v4 (github/server.py)
        return is_ghes(self.env.get("GITHUB_SERVER_URL"))

    def run_url(self, run_id: int | str | None = None) -> str:
        """A workflow run's page; by default this job's own run."""
        server = self.env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{self.repo}/actions/runs/{run_id or self.env.get('GITHUB_RUN_ID', '')}"


def _client(inputs: Inputs, ctx: Context):
    from ..github.client import GitHubClient

    return GitHubClient(inputs.token or None, ctx.env.get("GITHUB_API_URL"))


def _baseline(client, ctx: Context, inputs: Inputs, base: tuple[str, str, str], dest: Path) -> BaselineResult:
    """The `baseline` input resolved for this pull request (base ref, base sha, head sha); see resolve_baseline."""
    if ctx.ghes and (inputs.baseline == "auto" or inputs.baseline.isdigit()):
        return BaselineResult(None, NO_BASELINE_ON_GHES)
    return resolve_baseline(
        client,
        ctx.repo,
        inputs.baseline,
        workflow=ctx.workflow,
        artifact_name=inputs.artifact_name,
        workspace=ctx.workspace,
        base=base,
        exclude_run_id=int(ctx.env.get("GITHUB_RUN_ID") or 0) or None,
        dest=dest,
    )


def _compare(run_dir: Path, base: BaselineResult, inputs: Inputs) -> tuple[Outcome, BaselineResult]:
    """Compare with the baseline. A downloaded baseline that is no usable run for this one (not a run, no
    evaluation, another task) becomes "no baseline" with a warning; to tell that from a problem of this run's own,
    this run is then reported alone, which raises when the problem is its own. A `baseline:` path the user gave
    is theirs to fix: its problems fail the job."""
    b = base.baseline
    folder = b.dir if b is not None else None
    if b is None or folder is None or not b.run_id:  # no baseline, or a path the user gave
        return PIPELINE.compare(run_dir, folder, inputs), base
    untrusted = signing.untrusted(folder, inputs.trusted_keys, inputs.trusted_identities)
    if untrusted:
        why = f"run {b.run_id}'s artifact `{b.artifact_name}` is not a run signed by a trusted key or identity: "
        why += untrusted
        wf.warning(f"no baseline: {why}")
        return PIPELINE.compare(run_dir, None, inputs), BaselineResult(None, why)
    try:
        return PIPELINE.compare(run_dir, folder, inputs), base
    except GateRuleError:
        raise
    except VerifilyError as e:
        outcome = PIPELINE.compare(run_dir, None, inputs)
        why = f"run {b.run_id}'s artifact `{b.artifact_name}` cannot be compared with this run: "
        why += e.message.replace(str(folder), "the baseline folder")
        wf.warning(f"no baseline: {why}")
        return outcome, BaselineResult(None, why)


def compose_report(
    outcome: Outcome,
    baseline: BaselineResult,
    ctx: Context,
    inputs: Inputs,
    *,
    run_id: int | None = None,
    artifact_id: int | None = None,
    note: str = "",
    run_dir: Path | None = None,
    html: str | None = None,
) -> str:
    """The comment and the job summary (report.pr): `run_id` is the run that made the artifact, by default this one;
    `artifact_id` None when the upload failed; `run_dir` the reported run, whose root hash is shown when its chain
    holds."""
    from ..runs.chain import verified_root

    b = baseline.baseline
    line = pr.baseline_line(b.describe() if b is not None and b.run_id else None, baseline.reason, found=b is not None)
    return pr.compose(
        outcome.markdown,
        line,
        run_url=ctx.run_url(run_id),
        artifact_name=inputs.artifact_name,
        artifact_id=artifact_id,
        note=note,
        root_hash=verified_root(run_dir) if run_dir is not None else None,
        html=html,
    )


def _run_key(run_dir: Path) -> str:
    try:
        return str(read_json(run_dir / RUN_META).get("run_key") or "")
    except (OSError, ValueError):
        return ""


def _post(client, ctx: Context, config: str, number: int, report: str, author: str | None = None) -> str:
    """Post or update the sticky comment (one per workflow + config); a read-only token is a warning, never a
    failure. `author`: the comment-author input, whose comments are ours when GraphQL cannot say."""
    from ..github.client import GitHubError

    try:
        res = upsert_sticky(client, ctx.repo, number, report, marker(ctx.workflow, config), author)
    except GitHubError as e:
        if e.rate_limited:
            wf.warning(f"could not post the pull request comment: {e.message}; the report is in the job summary")
            return ""
        if e.status in (403, 404):
            wf.warning(f"could not post the pull request comment ({e.status}); the report is in the job summary")
            return ""
        raise
    print(f"{res.status} comment {res.url}")
    return res.url


def _shown(path: Path | None, ctx: Context) -> str:
    """A path for the outputs: relative to the workspace when inside it (a later step, e.g. actions/upload-artifact,
    runs on the host where the workspace is mounted elsewhere), else as is; empty for None."""
    if path is None:
        return ""
    full = Path(path).resolve()
    return full.relative_to(ctx.workspace).as_posix() if full.is_relative_to(ctx.workspace) else str(path)


def train_eval(inputs: Inputs, ctx: Context) -> int:
    ev = ctx.event
    with wf.group("Validate config"):
        check_fail_on(inputs.fail_on)
        PIPELINE.validate(Path(inputs.config))
    with wf.group("Train"):
        run_dir = PIPELINE.train(inputs)
    with wf.group("Evaluate"):
        eval_dir = PIPELINE.evaluate(run_dir, inputs)
    if inputs.keyless_signing != "false":
        with wf.group("Sign (Sigstore keyless)"):
            signing.sign_keyless(run_dir, inputs)
    outputs = {"run-dir": _shown(run_dir, ctx), "run-key": _run_key(run_dir)}
    wf.set_outputs(outputs)  # early, so a failing later step still hands the run to actions/upload-artifact
    client = _client(inputs, ctx)
    pr = ev.pull_request
    with tempfile.TemporaryDirectory(prefix="verifily-baseline-") as tmp:
        with wf.group("Baseline"):
            if pr is None:
                base = BaselineResult(None, f"a {ev.name} run is itself the baseline for later pull requests")
            else:
                base = _baseline(client, ctx, inputs, (pr.base_ref, pr.base_sha, pr.head_sha), Path(tmp) / "baseline")
            print(base.reason)
        with wf.group("Compare"):
            outcome, base = _compare(run_dir, base, inputs)
        html = html_report.build(run_dir, base, outcome.comparison_json)  # the baseline folder lives until here
    # before the report, which links the artifact; a failed upload is a warning and leaves `artifact-id` empty
    with wf.group("Upload artifact"):
        artifact_id = _upload(run_dir, inputs, ctx, outcome.comparison_json, html)
    wf.set_outputs({"artifact-id": str(artifact_id or "")})  # at once: a later failure must not upload it again
    html_file = html_report.REPORT_FILE if html and artifact_id else None
    report = compose_report(outcome, base, ctx, inputs, artifact_id=artifact_id, run_dir=run_dir, html=html_file)
    wf.append_summary(report)
    comment_url = ""
    if pr is not None and inputs.comment:
        if pr.is_fork or ctx.env.get("GITHUB_ACTOR") == DEPENDABOT:  # a read-only token either way
            who = "a fork" if pr.is_fork else "Dependabot (a read-only token)"
            wf.notice(f"pull request from {who}: the comment is posted by the workflow_run job (mode: comment)")
        else:
            comment_url = _post(client, ctx, inputs.config, pr.number, report, inputs.comment_author)
    metrics_json = outcome.metrics_json or (eval_dir / EVAL_RESULTS if eval_dir else None)
    outputs.update(
        {
            "metrics-json": _shown(metrics_json, ctx),
            "comparison-json": _shown(outcome.comparison_json, ctx),
            "comment-url": comment_url,
            "regressions": str(outcome.regressions),
        }
    )
    wf.set_outputs({k: v for k, v in outputs.items() if k not in ("run-dir", "run-key")})
    # the gates last: the comment, summary, artifact and outputs are all written when the job fails on them
    if outcome.gate_failed:
        wf.error(outcome.gate_message or "a fail-on rule matched a regression")
        return 1
    return EXIT_OK


def _upload(run_dir: Path, inputs: Inputs, ctx: Context, comparison: Path | None, html: bytes | None) -> int | None:
    """Upload the run folder (plus the comparison and the PR context) as the artifact; its id, or None (with a
    warning) when the upload failed: the report, the summary and the outputs do not depend on it."""
    from ..github.artifacts import upload_artifact

    if ctx.ghes:  # said once at the start (ghes_notice): the run-dir output is the way to keep the run there
        return None
    extra = {}
    if comparison is not None and comparison.is_file():
        extra[COMPARISON] = comparison.read_bytes()  # next to the run folder, not in it: the run stays sealed
    if html:
        extra[html_report.REPORT_FILE] = html
    pr = ctx.event.pull_request
    if pr is not None:
        extra[PR_CONTEXT] = json.dumps(
            {
                "schema_version": 1,
                "repository": ctx.repo,
                "pr_number": pr.number,
                "head_sha": pr.head_sha,
                "base_ref": pr.base_ref,
                "base_sha": pr.base_sha,
                "workflow": ctx.workflow,
                "config": inputs.config,
                "run_name": run_dir.name,
                "fail_on": fail_on_rules(inputs.fail_on),  # the comment job checks the same gates
                "slice_by": list(inputs.slice_by),
            },
            indent=2,
        ).encode()
    try:
        res = upload_artifact(inputs.artifact_name, run_dir, extra=extra)
    except (VerifilyError, OSError) as e:
        text = e.message if isinstance(e, VerifilyError) else f"{type(e).__name__}: {e}"
        wf.warning(
            f"artifact upload failed: {text}; add an actions/upload-artifact step with "
            f"path: ${{{{ steps.<id>.outputs.run-dir }}}} to keep the run"
        )
        return None
    print(f"uploaded artifact {res.name} (id {res.id}, {res.size:,} bytes, {res.digest})")
    return res.id or None


def comment_mode(inputs: Inputs, ctx: Context) -> int:
    from ..github.baseline import usable_artifact

    wr = ctx.event.workflow_run
    if wr is None:
        raise VerifilyError(
            "mode: comment runs from a workflow_run event", hint="see .github/workflows/verifily-comment.yml"
        )
    # a failed run still gets its comment when it got as far as the artifact (the gates decide after the upload);
    # a cancelled or skipped one has nothing finished to report
    if wr.conclusion not in ("success", "failure"):
        wf.notice(f"the triggering run concluded {wr.conclusion}; nothing to comment")
        return EXIT_OK
    client = _client(inputs, ctx)
    with tempfile.TemporaryDirectory(prefix="verifily-comment-") as tmp:
        art, why = usable_artifact(client, ctx.repo, wr.id, inputs.artifact_name)
        if art is None:
            wf.notice(f"run {wr.id} has no usable artifact `{inputs.artifact_name}` ({why}); nothing to comment")
            return EXIT_OK
        name = inputs.artifact_name
        run_dir = fetch_run(client, ctx.repo, wr.id, int(art["id"]), name, Path(tmp) / "artifact" / "run")
        info = read_pr_context(run_dir, wr.id)
        if info is None:
            wf.notice(f"the artifact has no readable {PR_CONTEXT}: not a pull request run; nothing to comment")
            return EXIT_OK
        number = int(info["pr_number"])
        if info.get("run_name"):  # label the run as its own job did (the schema's pattern keeps it one safe name)
            run_dir = run_dir.rename(run_dir.with_name(info["run_name"]))
        check_run(PIPELINE, run_dir, wr.id, name)
        # the producing workflow (from the event, not the artifact) owns the baseline runs and the sticky marker
        ctx.workflow = _workflow_file(f"{ctx.repo}/{wr.path}") or ctx.workflow
        pr = confirmed_pull_request(client, ctx.repo, number, wr)  # the artifact may be a fork's: ask the API
        if pr is None:  # its head moved on: the newer commit's run comments
            return EXIT_OK
        inputs = comment_inputs(inputs, info, run_dir)  # the pull request job's gates and slices, and the base's
        with wf.group("Baseline"):
            refs = (pr["base"]["ref"], pr["base"]["sha"], wr.head_sha)
            base = _baseline(client, ctx, inputs, refs, Path(tmp) / "baseline")
            print(base.reason)
        with wf.group("Compare"):
            outcome, base = _compare(run_dir, base, inputs)
        note = ""
        if wr.conclusion == "failure":
            note = f"⚠️ [The workflow run]({ctx.run_url(wr.id)}) failed (a gate, or a later step); see its log."
        html = html_report.in_artifact(run_dir)  # the dashboard's page the pull request's job added
        report = compose_report(
            outcome, base, ctx, inputs, run_id=wr.id, artifact_id=int(art["id"]), note=note, run_dir=run_dir, html=html
        )
    wf.append_summary(report)
    url = _post(client, ctx, str(info["config"]), number, report, inputs.comment_author) if inputs.comment else ""
    wf.set_outputs({"comment-url": url, "regressions": str(outcome.regressions)})
    return EXIT_OK


def _annotate(e: VerifilyError, workspace: Path) -> None:
    """Every problem as an annotation on its file and line (paths relative to the repository, as GitHub wants)."""
    if not e.problems:
        wf.error(e.message + (f" ({e.hint})" if e.hint else ""))
    for p in e.problems:
        file = None
        if p.file:
            full = Path(p.file).resolve()
            file = os.path.relpath(full, workspace) if full.is_relative_to(workspace) else p.file
        wf.error(
            p.message + (f" (hint: {p.hint})" if p.hint else ""), file=file, line=p.line, col=p.column, title=e.message
        )


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    workspace = Path(env.get("GITHUB_WORKSPACE") or WORKSPACE).resolve()
    telemetry.turn_off()  # the process's environment, which the training libraries read
    try:
        return _main(env, workspace)
    finally:
        ownership.hand_back(workspace)  # the container runs as root: the next job's checkout must clean up


def _main(env: Mapping[str, str], workspace: Path) -> int:
    try:
        inputs = read_inputs(env)
        if inputs.token:
            wf.add_mask(inputs.token)  # first thing printed: every later log line is masked
        signing.use_signing_key(inputs)
        os.chdir(workspace / inputs.working_directory)
        event = load_event(env)
        ctx = Context(
            env,
            event,
            env.get("GITHUB_REPOSITORY") or event.repository,
            workspace,
            _workflow_file(env.get("GITHUB_WORKFLOW_REF")) or env.get("GITHUB_WORKFLOW", ""),
        )
        if ctx.ghes:
            wf.notice(ghes_notice(env.get("GITHUB_SERVER_URL", ""), inputs.mode))
            if inputs.mode == "comment":
                return EXIT_OK
        return comment_mode(inputs, ctx) if inputs.mode == "comment" else train_eval(inputs, ctx)
    except VerifilyError as e:
        _annotate(e, workspace)
        print(e.render(), file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - the boundary of the Action: a clean annotation, no traceback leak
        token = env.get("INPUT_GITHUB-TOKEN", "").strip()
        text = f"internal error: {type(e).__name__}: {e}"
        wf.error(text.replace(token, "***") if token else text)
        if env.get("VERIFILY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        return EXIT_INTERNAL
