"""The server's defaults, in one place: the CLI's options and the app read them from here."""

from __future__ import annotations

from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_STORE = "verifily-server"  # relative to the working directory: the blob folder and the default SQLite file
DB_FILE = "verifily.db"  # the default database: <store>/verifily.db
RATE_LIMIT_PER_MINUTE = 1200  # requests per token per rolling minute; the 1,201st gets 429 with Retry-After
MAX_CHUNK_BYTES = 16 * 1024 * 1024  # the largest body one upload request may carry
CHUNK_BYTES = 8 * 1024 * 1024  # what the client sends per request (files larger than this go in several chunks)
ADMIN_ORG = "admin"  # the organization of the first token (`server init`): its admin tokens manage every org
# The job queue (server/queue.py): a runner's lease lives LEASE_TTL_SECONDS past its last heartbeat (`server
# --lease-ttl` overrides it); runners heartbeat every HEARTBEAT_SECONDS (at most a third of the lease's life).
LEASE_TTL_SECONDS = 30
HEARTBEAT_SECONDS = 5
MAX_ATTEMPTS = 3  # leases a job may use before it is `failed` (a submission may ask for another number)
MAX_ATTEMPTS_LIMIT = 20  # the most a submission may ask for
RUNNER_SEEN_SECONDS = 600  # a runner seen this recently counts as "could lease it" (else the submit warns)
FREE_JOBS_PER_MONTH = 100  # managed mode (`server --managed`): completed + queued + running jobs of a free org
PLANS = ("free", "paid")  # org_plans.plan; an org without a row is on the first
LOG_LINES_PER_PAGE = 1000  # GET /jobs/{id}/logs returns at most this many lines per call
LOG_LINE_CHARS = 8192  # a longer log line is cut here
LOG_LINES_PER_HEARTBEAT = 5000
MAX_CONFIG_BYTES = 1024 * 1024  # a submitted train.yaml


def default_db_url(store: str | Path) -> str:
    return f"sqlite:///{(Path(store) / DB_FILE).resolve()}"
