"""docker/compose.yaml, the team set-up, read without a Docker engine (no image registry is reachable here, so
PostgreSQL's image cannot be pulled; tests/test_container.py runs the same `server init` and `server` commands in
the cpu image against a real PostgreSQL): every command it runs is one the CLI accepts, the order is database ->
migrations -> server, the database is not published, the password is required, and README shows the three commands."""

from __future__ import annotations

import re

import pytest
import yaml

from .cli_runner import run_cli
from .paths import REPO

pytestmark = pytest.mark.unit

COMPOSE = REPO / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_services_start_in_order_and_postgres_stays_inside(spec):
    db, init, server = (spec["services"][k] for k in ("db", "init", "server"))
    assert init["depends_on"] == {"db": {"condition": "service_healthy"}} and "healthcheck" in db
    assert server["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert "ports" not in db and server["ports"] == ["8080:8080"]
    assert "${POSTGRES_PASSWORD:?" in db["environment"]["POSTGRES_PASSWORD"]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for svc in (init, server):
        assert svc["build"] == {"context": "..", "target": "cpu"} and " AS cpu\n" in dockerfile
        assert (COMPOSE.parent / svc["build"]["context"] / "Dockerfile").resolve() == REPO / "Dockerfile"


@pytest.mark.parametrize("service", ["init", "server"])
def test_each_command_is_one_the_cli_accepts(spec, service):
    """Each `--option` of the service's command is in that command's `--help`, and the database is the db service."""
    command = spec["services"][service]["command"]
    words = [w for w in command if not w.startswith("-") and "/" not in w and not w[0].isdigit()]
    help_text = run_cli(*words, "--help").stdout
    for option in (w for w in command if w.startswith("--")):
        assert option in help_text, (service, option)
    db = command[command.index("--db") + 1]
    assert re.fullmatch(r"postgresql://verifily:\$\{POSTGRES_PASSWORD:\?\}@db:5432/verifily", db)


def test_readme_shows_the_team_set_up_in_three_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("### Team set-up in three commands", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 3
    assert "docker compose -f docker/compose.yaml up" in lines[0] and "POSTGRES_PASSWORD" in lines[0]
    assert "logs init" in lines[1] and lines[2].startswith("verifily login http://localhost:8080")
