"""Load on the Verifily server (issue 20): N concurrent clients push and pull dataset versions for S seconds against
SQLite and against PostgreSQL; requests/s, p50/p99 latency per request, errors, and every pulled file verified.

    python bench/server_load.py                      # 50 clients, 60 s, sqlite then postgresql
    python bench/server_load.py --clients 10 --seconds 20 --db sqlite

Each database gets a fresh server (`verifily server` in a subprocess, Uvicorn on 127.0.0.1) and, for PostgreSQL, a
throwaway cluster (tests/pg_server.py). Each client has its own write token (so the per-token rate limit is not what
is measured) and loops: push a new version of its own dataset (one new ~4 KB file: missing, upload state, chunk,
complete, manifest = 5 requests), then pull a version pushed before the clock started (the manifest and its two files,
each checked against its sha256 and row count). Clients are threads in this process, on the same 2 cores as the
server, so the numbers are for the pair, not the server alone.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import pg_server  # noqa: E402
from tests.builders import cls_rows, write_dataset  # noqa: E402
from tests.server_proc import init_server  # noqa: E402
from verifily_action.datasets.manifest import load_manifest  # noqa: E402
from verifily_action.remote.client import Client  # noqa: E402
from verifily_action.remote.pull import pull  # noqa: E402
from verifily_action.remote.push import push  # noqa: E402


class TimedClient(Client):
    """A Client that records each request's latency and failures."""

    def __init__(self, url: str, token: str, latencies: list[float], errors: list[str]) -> None:
        super().__init__(url, token)
        self.latencies, self.errors = latencies, errors

    def call(self, method: str, path: str, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return super().call(method, path, **kw)
        except Exception as e:
            self.errors.append(f"{method} {path}: {e}")
            raise
        finally:
            self.latencies.append(time.perf_counter() - t)


def _token(url: str, admin: str, org: str, scope: str) -> str:
    return Client(url, admin).call("POST", "/api/v1/tokens", json={"org": org, "scope": scope})["token"]


def run_one(kind: str, clients: int, seconds: float, work: Path) -> dict[str, Any]:
    pg = pg_server.start() if kind == "postgresql" else None
    try:
        db = pg.create_database("load") if pg else f"sqlite:///{work / kind / 'verifily.db'}"
        srv = init_server(db, work / kind / "store").start()
        try:
            tokens = [_token(srv.url, srv.admin_token, "bench", "write") for _ in range(clients)]
            seed = work / kind / "seed"
            write_dataset(seed, "shared", "v1", {"train": cls_rows(300), "eval": cls_rows(100, seed=1)})
            push(load_manifest(seed / "shared" / "v1" / "manifest.yaml"), Client(srv.url, tokens[0]))
            lat: list[list[float]] = [[] for _ in range(clients)]
            errs: list[list[str]] = [[] for _ in range(clients)]
            counts = [{"push": 0, "pull": 0, "verified_files": 0} for _ in range(clients)]
            deadline = time.monotonic() + seconds

            def client(i: int) -> None:
                c = TimedClient(srv.url, tokens[i], lat[i], errs[i])
                home = work / kind / f"client-{i}"
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    try:
                        rows = [{**r, "id": f"{i}-{n}-{r['id']}"} for r in cls_rows(40, seed=n)]
                        write_dataset(home, f"c{i}", f"v{n}", {"train": rows})
                        push(load_manifest(home / f"c{i}" / f"v{n}" / "manifest.yaml"), c)
                        counts[i]["push"] += 1
                        dest = home / "pulled" / str(n)
                        m, _ = pull(c, "shared", "v1", dest)  # pull() checks every file's sha256 and rows
                        counts[i]["pull"] += 1
                        counts[i]["verified_files"] += sum(len(f) for f in m.splits.values())
                        shutil.rmtree(dest)
                    except Exception as e:  # noqa: BLE001 - counted (TimedClient recorded the request that failed)
                        if not errs[i]:
                            errs[i].append(f"{type(e).__name__}: {e}")

            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - t0
        finally:
            srv.stop()
    finally:
        if pg:
            pg.stop()
    all_lat = sorted(x for xs in lat for x in xs)
    q = statistics.quantiles(all_lat, n=100) if len(all_lat) > 1 else [float("nan")] * 99
    return {
        "db": kind,
        "clients": clients,
        "wall_s": wall,
        "requests": len(all_lat),
        "requests_per_s": len(all_lat) / wall,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "pushes": sum(c["push"] for c in counts),
        "pulls": sum(c["pull"] for c in counts),
        "verified_files": sum(c["verified_files"] for c in counts),
        "errors": sum(len(e) for e in errs),
        "first_error": next((e[0] for e in errs if e), None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    work = Path(tempfile.mkdtemp(prefix="verifily-load-"))
    try:
        print(
            "| database | clients | s | requests | req/s | p50 ms | p99 ms | pushes | pulls | files verified | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind in kinds:
            r = run_one(kind, args.clients, args.seconds, work)
            print(
                f"| {r['db']} | {r['clients']} | {r['wall_s']:.0f} | {r['requests']:,} | {r['requests_per_s']:.0f} "
                f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['pushes']:,} | {r['pulls']:,} "
                f"| {r['verified_files']:,} | {r['errors']} |",
                flush=True,
            )
            if r["first_error"]:
                print(f"first error ({r['db']}): {r['first_error']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
