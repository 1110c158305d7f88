"""Find the base branch's run to compare with, and fetch its run folder from the workflow artifact.

The baseline is the newest *successful* run of the same workflow on the base branch, in this repository (a fork
can open a pull request from a branch named `main`: its runs list under `branch=main` too, so each run's
`head_repository` is checked), that still has a non-expired artifact of the configured name. A run whose head
commit is the pull request's merge base is preferred: it measures exactly what the pull request changed. It is
asked for by commit (`head_sha` and `event=push` on the workflow runs API, both in GitHub's OpenAPI description),
so it is found however many runs came after it, not only among the newest MAX_RUNS. When the compare API that
finds the merge base fails (5xx, network), the newest run is used and the reason says so.
When none qualifies, or the chosen artifact cannot be fetched (`fetch_baseline`), the result carries a reason
string for the comment; the job does not fail.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..report.escape import code_span
from . import workflow as wf
from .archive import UnsafeArchive, safe_extract
from .client import GitHubClient, GitHubError

MAX_RUNS = 100  # newest runs examined; older baselines are stale anyway
MAX_DOWNLOAD = 2 * 1024**3


@dataclass
class Baseline:
    run_id: int
    run_url: str
    head_sha: str
    head_branch: str | None
    artifact_id: int
    artifact_name: str
    merge_base: bool  # True when head_sha is the pull request's merge base
    dir: Path | None = None  # where the artifact was extracted

    def describe(self) -> str:
        """One markdown line naming the baseline: run link, commit, branch."""
        kind = "merge-base commit" if self.merge_base else "newest successful run"
        branch = code_span(self.head_branch)
        return f"Baseline: [run {self.run_id}]({self.run_url}) on `{branch}` at `{self.head_sha[:12]}` ({kind})"


@dataclass
class BaselineResult:
    baseline: Baseline | None
    reason: str  # why this baseline, or why there is none


def workflow_file(workflow_ref: str | None) -> str | None:
    """`owner/repo/.github/workflows/eval.yml@refs/pull/1/merge` (GITHUB_WORKFLOW_REF) -> `eval.yml`, which the
    runs API accepts as a workflow id."""
    if not workflow_ref:
        return None
    path = workflow_ref.split("@", 1)[0]
    m = re.search(r"\.github/workflows/([^/]+)$", path)
    return m.group(1) if m else None


def merge_base(client: GitHubClient, repo: str, base: str, head: str) -> str | None:
    """The merge base of two commits via the compare API; None when GitHub cannot tell (e.g. a deleted fork).
    Other failures raise GitHubError (`resolve_baseline` falls back to the newest run on a 5xx or network error)."""
    try:
        data = client.get_json(f"repos/{repo}/compare/{base}...{head}", params={"per_page": 1})
    except GitHubError as e:
        if e.status in (404, 422):
            return None
        raise
    return (data.get("merge_base_commit") or {}).get("sha")


def artifact_names(name: str) -> tuple[str, str]:
    """The names a run's folder is uploaded under: the Action's `name`, and `<name>-fallback`, which the example
    workflow's actions/upload-artifact step writes when the Action's own upload failed (.github/workflows)."""
    return name, f"{name}-fallback"


def usable_artifact(client: GitHubClient, repo: str, run_id: int, name: str) -> tuple[dict | None, str]:
    """The run's newest non-expired artifact called `name` or `<name>-fallback`, or None and why. Newest by
    `created_at`, then by id: a rerun's artifact replaces the earlier attempt's, and a fallback upload comes after
    a failed one."""
    names = artifact_names(name)
    listed = client.paginate(f"repos/{repo}/actions/runs/{run_id}/artifacts", key="artifacts", max_items=1000)
    found = [a for a in listed if a.get("name") in names]
    if not found:
        return None, "no artifact"
    live = [a for a in found if not a.get("expired")]
    if not live:
        return None, "artifact expired"
    live.sort(key=lambda a: (a.get("created_at") or "", int(a.get("id") or 0)), reverse=True)
    return live[0], ""


def _same_repo(run: dict[str, Any], repo: str) -> bool:
    head = str((run.get("head_repository") or {}).get("full_name") or "")
    return bool(head) and head.lower() == repo.lower()


def find_baseline(
    client: GitHubClient,
    repo: str,
    workflow_id: str | int,
    base_branch: str,
    artifact_name: str,
    *,
    merge_base_sha: str | None = None,
    exclude_run_id: int | None = None,
    max_runs: int = MAX_RUNS,
) -> BaselineResult:
    """Pick the baseline run (see the module docstring); nothing is downloaded here."""
    path = f"repos/{repo}/actions/workflows/{workflow_id}/runs"
    query = {"branch": base_branch, "status": "success", "exclude_pull_requests": "true"}
    at_base: list[dict[str, Any]] = []
    if merge_base_sha:  # the merge base's own push run, however old: asked for by commit
        at_base = list(
            client.paginate(
                path, {**query, "event": "push", "head_sha": merge_base_sha}, key="workflow_runs", max_items=max_runs
            )
        )
    runs = at_base + list(client.paginate(path, query, key="workflow_runs", max_items=max_runs))
    runs = list({r.get("id"): r for r in runs}.values())  # one entry per run
    where = f"workflow `{workflow_id}` on branch `{base_branch}` of {repo}"
    if not runs:
        return BaselineResult(None, f"no successful run of {where} yet (push to `{base_branch}` to create one)")
    own = [
        r for r in runs if _same_repo(r, repo) and r.get("id") != exclude_run_id and r.get("conclusion") == "success"
    ]
    if not own:
        return BaselineResult(None, f"the successful runs of {where} all come from forks; none can be trusted")
    own.sort(key=lambda r: r.get("created_at") or "", reverse=True)
    if merge_base_sha:  # stable sort: merge-base runs first, each group newest first
        own.sort(key=lambda r: r.get("head_sha") != merge_base_sha)
    skipped: list[str] = []
    for run in own:
        artifact, why = usable_artifact(client, repo, int(run["id"]), artifact_name)
        if artifact is None:
            skipped.append(f"run {run['id']}: {why}")
            continue
        is_mb = merge_base_sha is not None and run.get("head_sha") == merge_base_sha
        b = Baseline(
            run_id=int(run["id"]),
            run_url=run.get("html_url") or "",
            head_sha=run.get("head_sha") or "",
            head_branch=run.get("head_branch"),
            artifact_id=int(artifact["id"]),
            artifact_name=artifact_name,
            merge_base=is_mb,
        )
        reason = "the run at the merge base" if is_mb else "the newest successful run with an artifact"
        if merge_base_sha and not is_mb:
            reason += f" (no usable run at the merge base {merge_base_sha[:12]})"
        return BaselineResult(b, reason)
    shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return BaselineResult(
        None, f"{len(own)} successful run(s) of {where}, but none has a usable artifact `{artifact_name}` ({shown})"
    )


def run_baseline(client: GitHubClient, repo: str, run_id: int, artifact_name: str) -> BaselineResult:
    """The `baseline: <run id>` input: that run, if it is this repository's and has the artifact."""
    try:
        run = client.get_json(f"repos/{repo}/actions/runs/{run_id}")
    except GitHubError as e:
        if e.status == 404:
            return BaselineResult(None, f"run {run_id} does not exist in {repo}")
        raise
    if not _same_repo(run, repo):
        return BaselineResult(None, f"run {run_id} was made from a fork; it cannot be used as a baseline")
    artifact, why = usable_artifact(client, repo, run_id, artifact_name)
    if artifact is None:
        return BaselineResult(None, f"run {run_id} has no usable artifact `{artifact_name}` ({why})")
    b = Baseline(
        run_id,
        run.get("html_url") or "",
        run.get("head_sha") or "",
        run.get("head_branch"),
        int(artifact["id"]),
        artifact_name,
        merge_base=False,
    )
    return BaselineResult(b, f"run {run_id}, as configured")


def download_artifact(
    client: GitHubClient, repo: str, artifact_id: int, dest: str | Path, max_bytes: int = MAX_DOWNLOAD
) -> Path:
    """Download an artifact's zip and extract it safely into `dest`. Raises GitHubError or UnsafeArchive."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="verifily-artifact-") as tmp:
        zip_path = client.download(f"repos/{repo}/actions/artifacts/{artifact_id}/zip", Path(tmp) / "a.zip", max_bytes)
        safe_extract(zip_path, dest, max_total=max_bytes)
    return dest


def download_baseline(
    client: GitHubClient, repo: str, baseline: Baseline, dest: str | Path, max_bytes: int = MAX_DOWNLOAD
) -> Path:
    """Download the baseline's artifact and extract it safely into `dest`; sets and returns `baseline.dir`."""
    baseline.dir = download_artifact(client, repo, baseline.artifact_id, dest, max_bytes)
    return baseline.dir


def fetch_baseline(client: GitHubClient, repo: str, res: BaselineResult, dest: str | Path) -> BaselineResult:
    """`download_baseline` for a found baseline, where failing is "no baseline", never a failed job: the artifact
    expired or was deleted between listing and download (404/410), the network, GitHub or its storage failed after
    retries, GitHub rate-limits the token, or the zip is unsafe or broken (zip-slip, links, oversize, a zip bomb,
    encrypted or clashing members). The reason names the run, never the token or a signed URL's query."""
    b = res.baseline
    if b is None:
        return res
    try:
        download_baseline(client, repo, b, dest)
    except (GitHubError, UnsafeArchive) as e:
        shutil.rmtree(dest, ignore_errors=True)  # an unsafe archive may have been half written
        b.dir = None
        what = f"the artifact `{b.artifact_name}` of run {b.run_id}"
        if isinstance(e, GitHubError) and e.rate_limited:
            return BaselineResult(None, f"{client.redact(e.message)}, fetching {what}")
        return BaselineResult(None, f"{what} could not be fetched: {client.redact(e.message)}")
    return res


def _merge_base_or_why(client: GitHubClient, repo: str, base_sha: str, head_sha: str) -> tuple[str | None, str]:
    """The merge base, or None and why it is unknown when the compare API failed on GitHub's side (5xx after
    retries, the network): then the newest base-branch run is the baseline, said once in the log as a notice and
    in the report's reason. A refusal (403, a rate limit) is raised: the runs cannot be listed either."""
    if not (base_sha and head_sha):
        return None, ""
    try:
        return merge_base(client, repo, base_sha, head_sha), ""
    except GitHubError as e:
        if e.rate_limited or (e.status is not None and e.status < 500):
            raise
        why = f"the merge base is unknown, the compare API failed: {client.redact(e.message)}"
        wf.notice(f"{why}; comparing with the newest successful run of the base branch instead")
        return None, why


def resolve_baseline(
    client: GitHubClient,
    repo: str,
    value: str,
    *,
    workflow: str,
    artifact_name: str,
    workspace: Path,
    base: tuple[str, str, str],
    exclude_run_id: int | None,
    dest: Path,
) -> BaselineResult:
    """The Action's `baseline` input (auto | none | a run id | a path) resolved to a run folder on disk, or a
    reason. `base` is the pull request's (base ref, base sha, head sha). A run that was found but cannot be
    fetched is a workflow warning and "no baseline"; a path that does not exist is the user's error."""
    if value == "none":
        return BaselineResult(None, "baseline comparison is turned off (`baseline: none`)")
    if value not in ("auto", "none") and not value.isdigit():
        path = (workspace / value).resolve()
        if not path.is_dir():
            raise VerifilyError(f"baseline folder {value} does not exist", hint="use auto, none, a run id or a path")
        b = Baseline(0, "", "", None, 0, "", merge_base=False, dir=path)
        return BaselineResult(b, f"the run folder `{value}`")
    try:
        if value.isdigit():
            res = run_baseline(client, repo, int(value), artifact_name)
        else:
            base_ref, base_sha, head_sha = base
            mb, unknown = _merge_base_or_why(client, repo, base_sha, head_sha)
            res = find_baseline(
                client, repo, workflow, base_ref, artifact_name, merge_base_sha=mb, exclude_run_id=exclude_run_id
            )
            if unknown and res.baseline is not None:
                res.reason += f" ({unknown})"
    except GitHubError as e:  # listing runs or artifacts failed after retries (or `actions: read` is missing)
        why = f"the base branch's runs could not be looked up: {client.redact(e.message)}"
        if e.rate_limited:  # the real reason first: not a permission, not an outage
            why = f"{client.redact(e.message)}, looking up the base branch's runs"
        wf.warning(f"no baseline: {why}" + (f" ({e.hint})" if e.hint else ""))
        return BaselineResult(None, why)
    if res.baseline is None:
        return res
    fetched = fetch_baseline(client, repo, res, dest)
    if fetched.baseline is None:
        wf.warning(f"no baseline: {fetched.reason}")
    return fetched
