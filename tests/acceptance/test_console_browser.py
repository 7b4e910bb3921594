"""The console in a real browser: Debian's Chromium driven by Playwright, against ``schemasaga serve``
and ``schemasaga worker`` processes. One service for the module; each test its own tables.

Every request the browser makes to a host other than the service is aborted and fails the test (no
CDN, no font, no beacon). With ``SCHEMASAGA_SCREENSHOTS=<dir>``, the table page with its history and an
event's causation chain are saved there (the README's pictures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.acceptance.conftest import FAST_ENV, Proc, clean_env, start_server
from tests.conftest import create_database, drop_database, pg_sqlalchemy_url, with_dbname
from tests.integration.test_saga_flow import run_sql

pytestmark = pytest.mark.acceptance

CHROMIUM = "/usr/bin/chromium"
# Under CI nothing here may skip: a missing Playwright or Chromium fails the run.
if os.environ.get("CI"):
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip(f"no {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@dataclass
class Service:
    url: str
    env: dict[str, str]
    byodb: str
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def worker(self) -> None:
        """Start the worker (once): until then, whatever is accepted stays in flight."""
        if not any(p.name == "worker" for p in self.procs):
            self.procs.append(Proc("worker", ["worker"], self.env, self.log_dir))


@pytest.fixture(scope="module")
def service(
    pg_server: str, core_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    core = create_database(pg_server, template=core_template)
    byodb = create_database(pg_server)
    log_dir = tmp_path_factory.mktemp("console-browser")
    env = clean_env(
        SCHEMASAGA_DATABASE_URL=with_dbname(pg_server, core),
        SCHEMASAGA_BYODB_URL=pg_sqlalchemy_url(with_dbname(pg_server, byodb)),
        SCHEMASAGA_SECRET_KEY=Fernet.generate_key().decode("ascii"),
        **FAST_ENV,
    )
    procs: list[Proc] = []

    def spawn(name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, args, env, log_dir)
        procs.append(proc)
        return proc

    try:
        _, url = start_server(spawn, env, "--no-worker")
        service = Service(
            url=url, env=env, byodb=pg_sqlalchemy_url(with_dbname(pg_server, byodb)), log_dir=log_dir
        )
        service.procs = procs
        yield service
    finally:
        for proc in reversed(procs):
            proc.stop()
        drop_database(pg_server, core)
        drop_database(pg_server, byodb)


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_api.Browser]:
    with playwright_api.sync_playwright() as p:
        # Root in a container: Chromium's sandbox needs user namespaces it may not have.
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: playwright_api.Browser, service: Service) -> Iterator[playwright_api.Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=service.url)
    own = urlsplit(service.url).netloc
    foreign: list[str] = []

    def guard(route: playwright_api.Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations: yes
    yield page
    context.close()
    assert foreign == [], f"requests to other hosts: {foreign}"


def screenshot(page: playwright_api.Page, name: str) -> None:
    folder = os.environ.get("SCHEMASAGA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_table_from_the_form_to_its_history_its_causes_and_its_drift(
    page: playwright_api.Page, service: Service
) -> None:
    expect = playwright_api.expect
    page.goto("/console")
    page.get_by_label("Name", exact=True).fill("browsed")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/console/tables/*")
    table_url = page.url
    status = page.locator(".facts .status")
    expect(status).to_have_text("in flight")  # no worker yet

    # The worker confirms it; the page shows it without a reload (the marker would be gone).
    page.evaluate("window.__stayed = true")
    service.worker()
    expect(page.locator(".facts .status")).to_have_text("synced", timeout=30_000)
    assert page.evaluate("window.__stayed === true")
    expect(page.locator("main")).not_to_have_attribute("data-follow", "2")

    # Add a column through the form; it appears, confirmed, again without a reload.
    page.get_by_label("New column").fill("age")
    page.get_by_label("Type").select_option("integer")
    page.get_by_role("button", name="Add column").click()
    page.wait_for_url(table_url)
    expect(page.locator(".facts .status")).to_have_text("synced", timeout=30_000)
    expect(page.locator("#columns ~ div th[scope=row] code", has_text="age")).to_have_count(1)
    history = page.locator("#history ~ ol.timeline li")
    expect(history.filter(has_text="TableChangeConfirmed")).to_have_count(1)
    screenshot(page, "console-table.png")

    # Time travel: one version back at a time (keyboard on the slider) until `age` is gone.
    slider = page.get_by_label("Show the table at version")
    current = int(slider.input_value())
    while True:
        slider.focus()
        page.keyboard.press("ArrowLeft")
        page.get_by_role("button", name="Show").click()
        page.wait_for_load_state()
        slider = page.get_by_label("Show the table at version")
        shown = int(slider.input_value())
        assert shown < current
        current = shown
        if page.locator("th[scope=row] code", has_text="age").count() == 0:
            break
    expect(page.locator(".diff .added")).to_contain_text("age")

    # The causation chain of the column's event: the request, then each step down to its outcome.
    page.goto(table_url)
    page.locator("#history ~ ol.timeline li", has_text="TableChanged").get_by_role(
        "link", name="TableChanged"
    ).click()
    chain = page.locator("#causation")
    expect(chain).to_contain_text("Request")
    expect(chain.locator("li.current > .node > a")).to_have_text("TableChanged")
    expect(chain.locator("li.current li a", has_text="TableChangeConfirmed")).to_have_count(1)
    screenshot(page, "console-causation.png")
    chain.get_by_role("link", name="TableChangeConfirmed").click()
    expect(page.locator("h1")).to_have_text("Event TableChangeConfirmed")

    # Drift: a column added behind the service's back; the report shows it, adopt takes it in.
    run_sql(service.byodb, "ALTER TABLE browsed ADD COLUMN sneaked text")
    page.goto("/console/databases")
    page.get_by_role("link", name="drift report of default", exact=True).click()
    row = page.locator("tbody tr", has_text="browsed")
    expect(row).to_contain_text("sneaked")
    row.get_by_role("button", name="Adopt browsed").click()  # confirmed by the dialog handler
    page.wait_for_url(table_url)
    expect(page.locator(".facts .status")).to_have_text("synced", timeout=30_000)
    expect(page.locator("th[scope=row] code", has_text="sneaked")).to_have_count(1)
    page.goto("/console/databases/default/drift")
    expect(page.locator("main")).to_contain_text("No drift")

    # Phone width: the same page, nothing wider than the screen (wide tables scroll in their own box).
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(table_url)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_event_payload_with_markup_is_shown_as_text(page: playwright_api.Page, service: Service) -> None:
    hostile = "<script>window.__pwned = 1</script>"
    with httpx.Client(base_url=service.url) as client:
        body = {"name": "escaped", "columns": [{"name": "motto", "type": "text", "default": hostile}]}
        r = client.post(
            "/v1/tables", json=body, headers={"X-Actor": '<img src="/x" onerror="window.__pwned=2">'}
        )
        assert r.status_code == 202, r.text
        events = client.get(f"/v1/tables/{r.json()['table_id']}/events").json()
    page.goto(f"/console/events/{events[0]['event_id']}")
    expect = playwright_api.expect
    expect(page.locator("main pre").first).to_contain_text(hostile)
    expect(page.locator("main")).to_contain_text('<img src="/x"')
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("window.__pwned === undefined")
    # Keyboard: the skip link is the first stop, and it leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_the_api_pages_render_with_nothing_from_another_host(page: playwright_api.Page) -> None:
    expect = playwright_api.expect
    page.goto("/")
    expect(page).to_have_url(page.url.split("/console")[0] + "/console")
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("schemasaga")
    page.goto("/redoc")
    expect(page.locator("h1").first).to_contain_text("schemasaga")
