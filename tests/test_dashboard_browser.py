"""The dashboard in a real headless Chromium (tests/chromium.py) against a real `verifily server` (SQLite, one per
module) holding two real runs (tests/compare_real.py: all-MiniLM-L6-v2 + LoRA on ds_demo v1 and v2) and both dataset
versions: login through the form, every page loads without a console error, the comparison chart's bars are the
deltas `compare` computes for the same two runs, and `verifily report --html` draws the same chart from one file
offline. Screenshots go to docs/screenshots/latest/ (not committed; docs/dashboard.png is one of them)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests

from verifily_action.compare import compare

from . import chromium
from .compare_real import shared_runs
from .paths import REPO
from .server_proc import init_server

pytestmark = pytest.mark.integration

SHOTS = REPO / "docs" / "screenshots" / "latest"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def server(tmp_path_factory, runs):

    store = tmp_path_factory.mktemp("dashboard") / "store"
    srv = init_server(f"sqlite:///{store.parent / 'verifily.db'}", store).start()
    r = requests.post(
        srv.url + "/api/v1/tokens",
        json={"org": "acme", "scope": "write"},
        headers={"Authorization": f"Bearer {srv.admin_token}"},
        timeout=30,
    )
    srv.write_token = r.json()["token"]  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pushed(server, runs, tmp_path_factory):
    """Both runs and both dataset versions on the server, by the CLI; their root hashes."""
    from .cli_runner import run_cli

    env = {"VERIFILY_SERVER": server.url, "VERIFILY_TOKEN": server.write_token}
    env["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    for version in ("v1", "v2"):
        got = run_cli("dataset", "push", f"ds_demo@{version}", "--datasets-root", str(runs["datasets"]), env=env)
        assert got.returncode == 0, got.stderr
    roots = {}
    for version in ("v1", "v2"):
        got = run_cli("push", "--run", str(runs[version]), env=env)
        assert got.returncode == 0, got.stderr
        roots[version] = re.search(r"[0-9a-f]{64}", got.stdout)[0]
    return roots


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            b = chromium.launch(p)
        except RuntimeError as e:
            pytest.skip(str(e))
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, server):
    """One logged-in page (the login form, as a person does it), with its console watched."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    console = chromium.Console()
    pg = console.watch(context.new_page())
    pg.goto(server.url + "/ui/")
    assert pg.url.endswith("/ui/login")  # no session: sent to the login form
    pg.fill("input[name=token]", server.write_token)
    pg.click("button[type=submit]")
    pg.wait_for_url(server.url + "/ui/")
    pg.console = console
    yield pg
    context.close()


def _charts_drawn(pg) -> None:
    pg.wait_for_function(
        "() => window.Chart && [...document.querySelectorAll('canvas[data-chart]')].every(c => Chart.getChart(c))"
    )


BARS = """() => [...document.querySelectorAll('canvas[data-chart=delta]')].map(c => {
  const ch = Chart.getChart(c);
  return {labels: ch.data.labels, series: ch.data.datasets.map((d, i) => ({label: d.label, data: d.data,
          bars: ch.getDatasetMeta(i).data.map(b => ({y: b.y, base: b.base}))}))};
})"""


def _expected_bars(baseline: Path, run: Path) -> list[dict]:
    """What `compare` computes for the two runs: per metric, each slice's change (None where not compared)."""
    from verifily_action.report.summary import slice_name

    cmp = compare([baseline, run])
    slices = list(dict.fromkeys(slice_name(r["slice"]) for r in cmp["rows"]))
    out = []
    for metric in cmp["metrics"]:
        by_slice = {slice_name(r["slice"]): r["deltas"][0] for r in cmp["rows"] if r["metric"] == metric}
        out.append({"labels": slices, "data": [by_slice[s]["delta"] for s in slices]})
    return out


def _assert_bars(drawn: list[dict], expected: list[dict]) -> None:
    assert len(drawn) == len(expected) >= 1
    for chart, want in zip(drawn, expected, strict=True):
        assert chart["labels"] == want["labels"]
        (series,) = chart["series"]
        assert series["data"] == pytest.approx(want["data"], abs=1e-12)
        for value, bar in zip(series["data"], series["bars"], strict=True):
            # drawn the right way: a gain rises above the zero line, a loss hangs below it (canvas y grows down)
            assert (bar["y"] < bar["base"]) if value > 0 else (bar["y"] > bar["base"]) if value < 0 else True


def test_pages_need_a_session_and_the_cookie_is_locked_down(server, pushed):
    s = requests.Session()
    for path in ("/ui/", f"/ui/runs/{pushed['v1']}", "/ui/compare", "/ui/datasets", "/ui/datasets/ds_demo/diff"):
        r = s.get(server.url + path, allow_redirects=False, timeout=30)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    form = s.get(server.url + "/ui/login", timeout=30)
    assert "script-src 'self'" in form.headers["content-security-policy"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)[1]
    # a form posted without this site's CSRF value (another site's page) logs nobody in
    forged = requests.post(server.url + "/ui/login", data={"token": server.write_token, "csrf": "x"}, timeout=30)
    assert forged.status_code == 401 and "vf_session" not in forged.headers.get("set-cookie", "")
    r = s.post(server.url + "/ui/login", data={"token": server.write_token, "csrf": csrf}, allow_redirects=False)
    assert r.status_code == 303
    cookie = next(c for c in r.headers["set-cookie"].split(", vf_") if "vf_session=" in c or c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/ui" in cookie
    assert s.get(server.url + "/ui/", timeout=30).status_code == 200
    # the API never takes the cookie: a cross-site request carrying it reaches no endpoint
    assert s.get(server.url + "/api/v1/whoami", timeout=30).status_code == 401
    # a revoked token logs the browser out at once
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    made = requests.post(server.url + "/api/v1/tokens", json={"org": "acme", "scope": "read"}, headers=admin).json()
    reader = requests.Session()
    csrf2 = re.search(r'name="csrf" value="([^"]+)"', reader.get(server.url + "/ui/login").text)[1]
    reader.post(server.url + "/ui/login", data={"token": made["token"], "csrf": csrf2})
    assert reader.get(server.url + "/ui/", allow_redirects=False).status_code == 200
    requests.delete(server.url + f"/api/v1/tokens/{made['id']}", headers=admin, timeout=30)
    assert reader.get(server.url + "/ui/", allow_redirects=False).status_code == 303
    # another organization's session sees none of acme's runs or datasets
    other = requests.post(server.url + "/api/v1/tokens", json={"org": "globex", "scope": "read"}, headers=admin)
    outsider = requests.Session()
    csrf3 = re.search(r'name="csrf" value="([^"]+)"', outsider.get(server.url + "/ui/login").text)[1]
    outsider.post(server.url + "/ui/login", data={"token": other.json()["token"], "csrf": csrf3})
    assert pushed["v1"][:16] not in outsider.get(server.url + "/ui/").text
    assert outsider.get(server.url + f"/ui/runs/{pushed['v1']}").status_code == 404
    assert "ds_demo" not in outsider.get(server.url + "/ui/datasets").text
    assert outsider.get(server.url + "/ui/datasets/ds_demo/diff?a=v1&b=v2").status_code == 404
    cmp = outsider.get(server.url + f"/ui/compare?baseline={pushed['v1']}&run={pushed['v2']}")
    assert cmp.status_code == 404
    assert f"/ui/runs/{pushed['v1']}" in s.get(server.url + "/ui/").text  # acme's own session lists it


def test_every_page_loads_without_console_errors(page, server, pushed):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "runs": "/ui/",
        "run": f"/ui/runs/{pushed['v2']}",
        "datasets": "/ui/datasets",
        "dataset-diff": "/ui/datasets/ds_demo/diff?a=v1&b=v2",
        "compare-pick": "/ui/compare",
    }
    for name, path in pages.items():
        response = page.goto(server.url + path)
        assert response.status == 200, (path, response.status)
        _charts_drawn(page)
        assert page.console.take() == [], path
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.goto(server.url + f"/ui/runs/{pushed['v2']}")
    assert page.locator("canvas[data-chart=loss]").count() == 1  # the loss curve of train_log.jsonl
    assert page.locator("table.hard tbody tr").count() >= 1  # hard examples
    page.goto(server.url + "/ui/datasets/ds_demo/diff?a=v1&b=v2")
    assert "ds_demo@v1 → ds_demo@v2" in page.locator("h1").inner_text()


def test_the_comparison_chart_shows_the_deltas_compare_computes(page, server, pushed, runs):
    page.goto(server.url + "/ui/compare")
    page.select_option("select[name=baseline]", pushed["v1"])
    page.select_option("select[name=run]", pushed["v2"])
    page.click("form.pick button[type=submit]")
    page.wait_for_selector("canvas[data-chart=delta]")
    _charts_drawn(page)
    assert page.console.take() == []
    _assert_bars(page.evaluate(BARS), _expected_bars(runs["v1"], runs["v2"]))
    rows = page.locator("table.comparison-table tbody tr").count()
    assert rows == len(compare([runs["v1"], runs["v2"]])["rows"])
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_the_static_report_draws_the_same_chart_offline(browser, runs, tmp_path):
    from .cli_runner import run_cli

    out = tmp_path / "report.html"
    got = run_cli("report", "--run", str(runs["v2"]), "--baseline", str(runs["v1"]), "--html", str(out))
    assert got.returncode == 0, got.stderr
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", text)  # everything inlined: nothing to fetch
    context = browser.new_context(offline=True)
    console = chromium.Console()
    pg = console.watch(context.new_page())
    pg.goto(out.as_uri())
    _charts_drawn(pg)
    assert console.take() == []  # the CSP's hashes admit the inlined blocks
    _assert_bars(pg.evaluate(BARS), _expected_bars(runs["v1"], runs["v2"]))
    assert pg.locator("canvas[data-chart=loss]").count() == 2  # the run's loss curve and the baseline's
    pg.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    context.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
