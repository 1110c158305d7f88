"""Leases that run out, over real HTTP against SQLite and a real PostgreSQL (a server per database with a 3 s lease):
an expired lease sends its job back to the queue (or fails it after max_attempts, or cancels it when a cancel was
asked) and every call on it answers 410, uploads and finish included; heartbeats keep a lease alive; the next lease
carries the last checkpoint; GPU-seconds sum the leases; runners lease only their org's jobs (the `admin` fleet
every org's); without --managed there is no job limit."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from verifily_action.server.database import make_engine
from verifily_action.server.job_models import Lease
from verifily_action.server.queue import utc
from verifily_action.server.settings import FREE_JOBS_PER_MONTH

from .queue_http import Api
from .server_proc import init_on

pytestmark = pytest.mark.integration
TTL = 3.0  # seconds: the server's --lease-ttl here


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, tmp_path_factory):
    srv = init_on(request, tmp_path_factory, "leases").start("--lease-ttl", str(TTL))
    yield Api(srv)
    srv.stop()


def _leases(api: Api, job_id: str) -> list[Lease]:
    engine = make_engine(api.srv.db)
    try:
        with Session(engine) as s:
            return list(s.scalars(select(Lease).where(Lease.job_id == job_id).order_by(Lease.started_at)))
    finally:
        engine.dispose()


def test_an_expired_lease_requeues_fails_or_cancels_its_job_and_refuses_every_call(api, tmp_path):
    t = api.org("expiry", "read", "write", "runner")
    api.push(t["write"], tmp_path)
    ids = [api.submit(t["write"], max_attempts=n).json()["job"]["id"] for n in (3, 1, 3, 3)]
    leases = [api.leased(t["runner"], runner=f"r{i}", gpus=2) for i in range(4)]
    assert [x["job"]["id"] for x in leases] == ids  # oldest first
    lost, single, cancelled, alive = (x["lease"]["id"] for x in leases)
    assert leases[0]["lease"]["heartbeat_seconds"] == TTL / 3
    ckpt = api.upload(t["runner"], lost, b"checkpoint at step 7")
    assert api.on("PUT", lost, "checkpoint", t["runner"], json={"sha256": ckpt, "step": 7}).status_code == 200
    assert api.on("POST", lost, "heartbeat", t["runner"], json={"log": ["step 7"]}).status_code == 200
    api.call("POST", f"/api/v1/jobs/{ids[2]}/cancel", t["write"])
    time.sleep(TTL * 2 / 3)
    assert api.on("POST", alive, "heartbeat", t["runner"], json={}).status_code == 200  # moved its expiry on
    time.sleep(TTL * 2 / 3)  # past every other lease's expiry, well within the heartbeated one's

    assert api.on("POST", alive, "heartbeat", t["runner"], json={}).status_code == 200
    sha = "3" * 64
    for method, tail, kw in [
        ("POST", "heartbeat", {"json": {"log": ["late"]}}),
        ("POST", "blobs/missing", {"json": {"hashes": [sha]}}),
        ("GET", f"uploads/{sha}", {}),
        ("PUT", f"uploads/{sha}?offset=0", {"data": b"late bytes"}),
        ("POST", f"uploads/{sha}/complete", {}),
        ("GET", f"blobs/{ckpt}", {}),
        ("PUT", "checkpoint", {"json": {"sha256": ckpt, "step": 8}}),
        ("POST", "finish", {"json": {"outcome": "failed", "retry": True}}),
    ]:
        r = api.on(method, lost, tail, t["runner"], **kw)
        assert r.status_code == 410 and "went back to the queue" in r.json()["error"], (tail, r.status_code, r.text)
    assert api.on("POST", cancelled, "finish", t["runner"], json={"outcome": "failed"}).status_code == 410
    jobs = [api.job(t["read"], i) for i in ids]
    assert [j["state"] for j in jobs] == ["queued", "failed", "cancelled", "running"]
    assert jobs[1]["error"].startswith("lease lost 1 times") and jobs[0]["attempts"] == 1
    assert jobs[0]["checkpoint_step"] == 7 and jobs[2]["billed_minutes"] == 0

    again = api.leased(t["runner"], runner="r9", gpus=1)  # the next runner resumes from the checkpoint
    assert again["job"]["id"] == ids[0] and again["job"]["attempt"] == 2
    assert again["job"]["checkpoint"] == {"sha256": ckpt, "step": 7}
    fetched = api.on("GET", again["lease"]["id"], f"blobs/{ckpt}", t["runner"])
    assert fetched.status_code == 200 and fetched.content == b"checkpoint at step 7"
    retried = api.finish(t["runner"], again["lease"]["id"], "failed", error="NCCL timeout", retry=True).json()
    assert retried["state"] == "queued" and retried["error"] == "NCCL timeout"
    last = api.leased(t["runner"], runner="r9", gpus=1)
    assert last["job"]["attempt"] == 3
    out = api.finish(t["runner"], last["lease"]["id"], "failed", error="NCCL timeout", retry=True).json()
    assert out["state"] == "failed" and out["attempts"] == 3  # no attempts left

    rows = _leases(api, ids[0])
    assert [r.outcome for r in rows] == ["expired", "failed", "failed"] and [r.gpus for r in rows] == [2, 1, 1]
    ends = [utc(r.last_heartbeat) if r.outcome == "expired" else utc(r.ended_at) for r in rows]
    seconds = [(end - utc(r.started_at)).total_seconds() for r, end in zip(rows, ends, strict=True)]
    assert out["wall_seconds"] == pytest.approx(sum(seconds))
    assert out["gpu_seconds"] == pytest.approx(sum(r.gpus * s for r, s in zip(rows, seconds, strict=True)))
    assert out["billed_minutes"] == 0  # failed: metered, not billed

    released = api.finish(t["runner"], alive, "released").json()  # a runner shutting down hands its job back
    assert released["state"] == "queued" and released["attempts"] == 1
    back = api.leased(t["runner"])
    assert back["job"]["id"] == ids[3] and back["job"]["attempt"] == 2
    api.call("POST", f"/api/v1/jobs/{ids[3]}/cancel", t["write"])
    assert api.on("POST", back["lease"]["id"], "heartbeat", t["runner"], json={}).json()["cancel"] is True
    failed = api.finish(t["runner"], back["lease"]["id"], "failed", retry=True).json()
    assert failed["state"] == "cancelled"  # a cancel asked for wins over a retry


def test_runners_lease_only_their_orgs_jobs_and_the_admin_fleet_every_orgs(api, tmp_path):
    a, b = api.org("north", "write", "runner", "read"), api.org("south", "write", "runner")
    fleet = api.token("admin", "runner")
    api.push(a["write"], tmp_path / "a")
    api.push(b["write"], tmp_path / "b")
    theirs = api.submit(b["write"]).json()["job"]["id"]  # the older job
    ours = api.submit(a["write"]).json()["job"]["id"]
    got = api.leased(a["runner"])
    assert got["job"]["id"] == ours and got["job"]["org"] == a["org"]
    assert api.lease(a["runner"]).status_code == 204
    api.finish(a["runner"], got["lease"]["id"], "cancelled")
    fleet_got = api.leased(fleet, runner="fleet-1", labels=("gpu",))
    assert fleet_got["job"]["id"] == theirs and fleet_got["job"]["org"] == b["org"]
    ds = fleet_got["job"]["datasets"][0]["manifest"]["splits"]["train"]["files"][0]["sha256"]
    assert api.on("GET", fleet_got["lease"]["id"], f"blobs/{ds}", fleet).status_code == 200  # the job's org's file
    api.finish(fleet, fleet_got["lease"]["id"], "cancelled")
    assert api.submit(a["write"], labels=["gpu"]).json()["warnings"] == []  # the admin fleet's runner counts
    assert api.job(a["read"], ours)["state"] == "cancelled"


def test_without_managed_mode_there_is_no_job_limit(api, tmp_path):
    t = api.org("selfhost", "read", "write")
    api.push(t["write"], tmp_path)
    codes = {api.submit(t["write"]).status_code for _ in range(FREE_JOBS_PER_MONTH + 1)}
    assert codes == {201}
    assert api.call("GET", "/api/v1/usage", t["read"]).json()["managed"] is False


def test_a_sqlite_queue_transaction_holds_the_write_lock_from_its_begin(tmp_path):
    """What keeps two SQLite leasers apart (`database.writer`): its transactions take the write lock at BEGIN, before
    their first read, so a second one cannot even start (here: refused at once, with no busy wait); a plain
    transaction still reads meanwhile."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from verifily_action.server.database import writer

    engine = make_engine(f"sqlite:///{tmp_path / 'lock.db'}")
    try:
        with engine.begin() as c:
            c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        first = writer(engine).connect()
        first.begin()
        assert first.execute(text("SELECT count(*) FROM t")).scalar() == 0  # a read, nothing written yet
        second = writer(engine).connect()
        second.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
        with pytest.raises(OperationalError, match="database is locked"):
            second.begin()
        with engine.connect() as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0
        second.close()
        first.commit()
        first.close()
        with writer(engine).begin() as again:  # free again once the first committed
            again.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        engine.dispose()
