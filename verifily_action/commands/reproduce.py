"""`verifily reproduce`: verify a run's hash chain (--verify-only), or retrain it and compare the metrics.

Exit codes: 0 the chain holds / the reproduction matches; 1 a hash differs / a metric moved beyond the tolerance;
2 bad input (not a run folder, dataset not found).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from ..tags import slice_label


def _print_verify(report) -> None:  # report: runs.verify.VerifyReport
    if report.ok:
        signed = ""
        if report.signed_by:
            trust = {True: "trusted", False: "NOT trusted", None: "not checked against trusted keys"}[report.trusted]
            signed = f", signed by key {report.signed_by[:16]} ({trust})"
        if report.keyless_identity:
            signed += f", signed keyless by {report.keyless_identity} (Sigstore, verified)"
        typer.echo(
            f"{report.run_dir}: intact: {report.checked} hashes recomputed, root {str(report.root_hash)[:16]}{signed}"
        )
    for note in report.notes:
        typer.echo(f"note: {note}")


def _trusted_keys(require: bool, given: list[str] | None) -> list[str] | None:
    """Key ids a signature must come from: --trusted-key values, else (with --require-signature) the key
    VERIFILY_SIGNING_KEY names; None when no signature is required."""
    from ..errors import VerifilyError
    from ..runs.signature import ENV, own_trusted_ids, trusted_id

    if given:
        return [trusted_id(k) for k in given]
    if not require:
        return None
    own = own_trusted_ids()
    if not own:
        raise VerifilyError(
            "--require-signature needs a key to trust",
            hint=f"give --trusted-key PUB (the signer's signing_key.pub.pem or its key id), or set {ENV} to check "
            "runs you signed yourself",
        )
    return own


def register(app: typer.Typer) -> None:
    @app.command(name="reproduce")
    def reproduce(
        run: Path = typer.Argument(..., help="The run folder (runs/<name>)."),
        verify_only: bool = typer.Option(
            False,
            "--verify-only",
            help="Recompute every hash of the run's chain from disk (run files, config, run_meta, and the dataset "
            "and base model when at hand) and report each mismatch by file; retrain nothing.",
        ),
        tolerance: float = typer.Option(
            0.0, "--tolerance", min=0.0, help="Largest allowed |reproduced - original| of any metric (default 0)."
        ),
        output_dir: Path = typer.Option(
            None, "--output-dir", help="Where the new run goes (default: beside the original, as <name>-repro)."
        ),
        run_name: str = typer.Option(None, "--run-name", help="Name of the new run (default <name>-repro)."),
        datasets_root: str = typer.Option(
            None, "--datasets-root", help="Folder of <name>/<version>/manifest.yaml (else the recorded one)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        require_signature: bool = typer.Option(
            False,
            "--require-signature",
            help="With --verify-only: the run must carry a valid signature of its root hash by a trusted key "
            "(--trusted-key, else the key VERIFILY_SIGNING_KEY names).",
        ),
        trusted_key: list[str] = typer.Option(
            None,
            "--trusted-key",
            metavar="PUB",
            help="A public key file (signing_key.pub.pem) or key id whose signature is trusted; repeatable. "
            "Implies --require-signature.",
        ),
        trusted_identity: list[str] = typer.Option(
            None,
            "--trusted-identity",
            metavar="URI",
            help="With --verify-only: the run must carry a Sigstore keyless signature (sigstore.json) of its root "
            "hash whose certificate names this identity, e.g. "
            "https://github.com/OWNER/REPO/.github/workflows/verifily.yml@refs/heads/main; repeatable.",
        ),
        oidc_issuer: str = typer.Option(
            None,
            "--oidc-issuer",
            metavar="URL",
            help="The OIDC issuer --trusted-identity is checked for (default: GitHub Actions', "
            "https://token.actions.githubusercontent.com).",
        ),
    ) -> None:
        """Verify a run's hash chain (--verify-only), or retrain it from its recorded config and data and compare
        every metric with the original's (exit 1 on any difference beyond --tolerance)."""
        from ..errors import GateFailure, Problem

        if (require_signature or trusted_key or trusted_identity or oidc_issuer) and not verify_only:
            from ..errors import VerifilyError

            raise VerifilyError(
                "--require-signature, --trusted-key, --trusted-identity and --oidc-issuer go with --verify-only",
                hint=f"verify the run first: verifily reproduce --verify-only {run} --require-signature",
            )
        if verify_only:
            from ..runs.verify import verify_run

            if oidc_issuer and not trusted_identity:
                from ..errors import VerifilyError

                raise VerifilyError(
                    "--oidc-issuer needs --trusted-identity", hint="name the identity the issuer vouches for"
                )
            report = verify_run(
                run,
                datasets_root,
                trusted_keys=_trusted_keys(require_signature, trusted_key),
                trusted_identities=trusted_identity or None,
                oidc_issuer=oidc_issuer,
            )
            if as_json:
                typer.echo(json.dumps(report.to_dict(), indent=2))
            else:
                _print_verify(report)
            if not report.ok:
                raise GateFailure(
                    f"{run}: the hash chain does not hold: {len(report.problems)} problem(s)",
                    problems=report.problems,
                )
            return

        from ..runs.reproduce import reproduce as run_reproduce

        # Libraries print to stdout while training (transformers' wandb notice): keep stdout for the report.
        with contextlib.redirect_stdout(sys.stderr):
            out = run_reproduce(
                run,
                tolerance=tolerance,
                output_dir=output_dir,
                run_name=run_name,
                datasets_root=datasets_root,
                echo=lambda s: typer.echo(s, err=True),
            )
        if as_json:
            typer.echo(json.dumps(out.to_dict(), indent=2))
        else:
            typer.echo(f"reproduction: {out.reproduction}")
            typer.echo(f"run key {'identical' if out.same_run_key else 'DIFFERENT (data, config or model changed)'}")
            typer.echo(f"adapter weights {'bit-identical' if out.same_weights else 'differ'}")
            for name, n in out.changed_predictions.items():
                typer.echo(f"{name}: {n} example(s) predicted differently")
            worst = max((abs((c.reproduced or 0) - c.original) for c in out.checks), default=0.0)
            typer.echo(
                f"{len(out.checks)} metric values compared, largest difference {worst:.6g} (tolerance {tolerance:g})"
            )
        bad = [c for c in out.checks if not c.ok]
        if bad:
            raise GateFailure(
                f"the reproduction differs from {run}: {len(bad)} metric value(s) beyond the tolerance {tolerance:g}",
                problems=[
                    Problem(
                        f"{c.eval_name} {slice_label(c.slice)} {c.metric}: "
                        f"{c.original:.6g} originally, {'missing' if c.reproduced is None else f'{c.reproduced:.6g}'}"
                        " now"
                    )
                    for c in bad
                ],
            )
