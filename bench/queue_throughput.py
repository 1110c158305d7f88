"""The job queue's throughput (issue 21): R runners lease no-op jobs as fast as they can, against SQLite and
PostgreSQL; leases per second and the queue latency (a job's created_at to its lease's start, both server clock).

    python bench/queue_throughput.py                         # 2000 jobs, 16 runners, sqlite then postgresql
    python bench/queue_throughput.py --jobs 500 --db sqlite
    python bench/queue_throughput.py --db postgresql://verifily@127.0.0.1:5432/bench   # a database of your own

Each database gets a fresh server (`verifily server`, Uvicorn on 127.0.0.1, rate limit off) and, for `postgresql`, a
throwaway cluster (tests/pg_server.py). One tiny dataset version is pushed once; every job names it. A runner is a
thread with its own runner token, looping: `POST /runner/lease` (204: sleep 50 ms), then `POST /leases/L/finish`
with outcome `failed`, retry false — the outcome that needs no run upload, so the queue alone is measured.
Two phases per database:
  backlog: all jobs queued first, then the runners drain them: leases/s = jobs / drain time; latency = waiting in
           the backlog (it grows with the queue's length).
  steady:  a quarter as many jobs, submitted at half the backlog rate while the runners poll: the latency a job sees
           when runners keep up (the 50 ms idle poll is part of it).
Runners and the submitter are threads of this process on the same cores as the server: the numbers are for the pair.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import pg_server  # noqa: E402
from tests.queue_http import Api  # noqa: E402
from tests.server_proc import init_server  # noqa: E402

IDLE = 0.05  # seconds a runner sleeps after a 204


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Bench:
    def __init__(self, api: Api, runners: int) -> None:
        self.api = api
        self.org = api.org("bench", "write")
        self.tokens = [api.token(self.org["org"], "runner") for _ in range(runners)]
        self.created: dict[str, float] = {}
        self.submit_errors: list[str] = []
        self.lock = threading.Lock()

    def submit(self, n: int, threads: int = 8, rate: float | None = None) -> None:
        def one(count: int) -> None:
            mine = Api(self.api.srv)
            for _ in range(count):
                t0 = time.perf_counter()
                try:
                    r = mine.submit(self.org["write"])
                    job = r.json()["job"]
                except (requests.RequestException, KeyError, ValueError) as e:
                    self.submit_errors.append(repr(e)[:200])
                    continue
                with self.lock:
                    self.created[job["id"]] = ts(job["created_at"])
                if rate:
                    time.sleep(max(0.0, threads / rate - (time.perf_counter() - t0)))

        share = [n // threads + (i < n % threads) for i in range(threads)]
        pool = [threading.Thread(target=one, args=(c,)) for c in share]
        for th in pool:
            th.start()
        for th in pool:
            th.join()

    def run(self, producer: threading.Thread | None = None) -> dict[str, Any]:
        """Until every job submitted (before, or by `producer` meanwhile) has been leased and finished."""
        before = len(self.created)
        expected = len(self.created) if producer is None else 1 << 62
        leased: list[tuple[str, float]] = []
        errors: list[str] = []
        done = threading.Event()

        def runner(token: str, name: str) -> None:
            mine = Api(self.api.srv)
            while not done.is_set():
                try:
                    r = mine.lease(token, runner=name)
                    if r.status_code == 204:
                        time.sleep(IDLE)
                        continue
                    got = r.json()
                    start = ts(got["lease"]["expires_at"]) - got["lease"]["ttl_seconds"]
                    f = mine.finish(token, got["lease"]["id"], "failed", error="no-op", retry=False)
                    if f.status_code != 200:
                        errors.append(f"finish {f.status_code}: {f.text[:200]}")
                    with self.lock:
                        leased.append((got["job"]["id"], start))  # created_at is read at the end: a job can be
                        if len(leased) >= expected:  # leased before its submitter has recorded it
                            done.set()
                except (requests.RequestException, KeyError, ValueError) as e:
                    errors.append(repr(e)[:200])

        pool = [threading.Thread(target=runner, args=(t, f"bench-{i}")) for i, t in enumerate(self.tokens)]
        t0 = time.perf_counter()
        for th in pool:
            th.start()
        if producer is not None:
            producer.start()
            producer.join()
            with self.lock:
                expected = len(self.created) - before
                if len(leased) >= expected:
                    done.set()
        done.wait()
        seconds = time.perf_counter() - t0
        for th in pool:
            th.join()
        latencies = [start - self.created[job] for job, start in leased]
        q = statistics.quantiles(latencies, n=100)
        return {
            "leases": len(latencies),
            "s": seconds,
            "per_s": len(latencies) / seconds,
            "p50": q[49],
            "p99": q[98],
            "errors": len(errors),
            "first_error": errors[0] if errors else "",
        }


def measure(label: str, db: str, jobs: int, runners: int) -> list[tuple[str, str, dict[str, Any]]]:
    folder = Path(tempfile.mkdtemp(prefix="verifily-qbench-"))
    srv = init_server(db, folder / "store").start("--rate-limit", "100000000")
    try:
        api = Api(srv)
        bench = Bench(api, runners)
        api.push(bench.org["write"], folder / "data")
        t0 = time.perf_counter()
        bench.submit(jobs)
        print(f"{label}: queued {jobs} jobs in {time.perf_counter() - t0:.1f} s", flush=True)
        backlog = bench.run()
        print(f"{label} backlog: {fmt(backlog)}", flush=True)
        n = max(100, jobs // 4)
        rate = backlog["per_s"] / 2
        producer = threading.Thread(target=bench.submit, args=(n, 4, rate))
        steady = bench.run(producer)
        print(f"{label} steady ({rate:.0f} jobs/s offered): {fmt(steady)}", flush=True)
        if "Traceback" in srv.log():
            print(srv.log()[-6000:], file=sys.stderr)
        return [(label, "backlog", backlog), (label, f"steady {rate:.0f}/s", steady)]
    except BaseException:
        print(srv.log()[-4000:], file=sys.stderr)
        raise
    finally:
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)


def fmt(r: dict[str, Any]) -> str:
    return (
        f"{r['leases']} leases in {r['s']:.1f} s = {r['per_s']:.1f}/s, queue latency p50 {r['p50'] * 1000:.0f} ms "
        f"p99 {r['p99'] * 1000:.0f} ms, errors {r['errors']} {r['first_error']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--runners", type=int, default=16)
    ap.add_argument("--db", default="all", help="sqlite, postgresql, all, or a postgresql:// URL of your own")
    args = ap.parse_args()
    rows = []
    kinds = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    for kind in kinds:
        if kind == "sqlite":
            path = Path(tempfile.mkdtemp(prefix="verifily-qbench-db-")) / "verifily.db"
            rows += measure("sqlite", f"sqlite:///{path}", args.jobs, args.runners)
        elif kind == "postgresql":
            pg = pg_server.start()
            try:
                rows += measure(
                    "postgresql", pg.create_database(f"bench_{secrets.token_hex(3)}"), args.jobs, args.runners
                )
            finally:
                pg.stop()
        else:
            rows += measure("postgresql (given)", kind, args.jobs, args.runners)
    print("\n| database | phase | runners | leases | s | leases/s | queue latency p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, phase, r in rows:
        print(
            f"| {label} | {phase} | {args.runners} | {r['leases']:,} | {r['s']:.1f} | {r['per_s']:.1f} | "
            f"{r['p50'] * 1000:.0f} | {r['p99'] * 1000:.0f} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
