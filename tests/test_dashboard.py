"""The web dashboard (``/dashboard``).

In the Flask test client under ``auth = jwt``: the page is a shell holding no data,
served with a Content-Security-Policy, and the data its script reads is refused without a
token. In a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``), against
the platform as ``abaco up`` starts it: an actor's row, its workers, queue and plots, an
execution's log appearing while the execution still runs, the exit codes, an actor in
ERROR with its reason, and the sign-in prompt of a ``jwt`` API. Screenshots go to
``$ABACO_TEST_ARTIFACTS`` (else the test's ``tmp_path``); their paths are printed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jobs.settings import Settings
from tests.conftest import ROOT, need
from tests.http_helpers import execution, ready_actor, result
from tests.jwt_users import as_user, token
from tests.waits import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TICKER = "abaco-test-dashboard-ticker"
# Prints a line a second for $ticks seconds, then exits $exit_code.
TICKER_SCRIPT = """
i=1
while [ $i -le "${ticks:-6}" ]; do
  echo "tick $i of ${ticks:-6}: $MSG"
  i=$((i+1))
  sleep 1
done
exit "${exit_code:-0}"
"""
# An actor name a careless page would run as markup.
HOSTILE_NAME = 'dash <img src=x onerror="document.title=1"> & co'


# -- the page itself (Flask test client, auth = jwt) ------------------------------------
def test_the_page_is_a_shell_with_a_content_security_policy(client):  # type: ignore[no-untyped-def]
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    text = page.get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.S)
    assert scripts and all('src="/dashboard/assets/' in attrs and not body.strip()
                           for attrs, body in scripts), "no inline script"
    assert "style=" not in text and "<style" not in text
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = client.get(f"/dashboard/assets/{name}")
        assert asset.status_code == 200 and asset.mimetype == kind
        assert asset.headers["Content-Security-Policy"] == csp
    script = client.get("/dashboard/assets/dashboard.js").get_data(as_text=True)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "eval(" not in script and "document.write" not in script
    for path in ("/dashboard/assets/index.html", "/dashboard/assets/..%2Fdashboard.py",
                 "/dashboard/assets/nothing.js"):
        assert client.get(path).status_code == 404, path


def test_under_jwt_the_data_the_page_reads_needs_a_token(client):  # type: ignore[no-untyped-def]
    alice = as_user("alice")
    actor = client.post("/actors", json={"image": "abaco-test-echo", "name": "alice-secret-name"},
                        headers=alice).get_json()["result"]
    aid = actor["id"]
    page = client.get("/dashboard")  # the shell needs none, and shows nothing of anyone's
    assert page.status_code == 200 and b"alice-secret-name" not in page.data
    reads = ["/actors", f"/actors/{aid}", f"/actors/{aid}/messages", f"/actors/{aid}/workers",
             f"/actors/{aid}/executions", f"/actors/{aid}/executions?offset=0&limit=2000"]
    for path in reads:
        refused = client.get(path)
        assert refused.status_code == 401, (path, refused.data)
        assert b"alice-secret-name" not in refused.data
        assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    # the two ways the page sends a token: Bearer (tenant from the claim), or Abaco's header
    for headers in ({"Authorization": f"Bearer {token('alice')}"}, alice):
        for path in reads:
            assert client.get(path, headers=headers).status_code == 200, path
    # another user's token reads nothing of alice's
    assert client.get(f"/actors/{aid}", headers=as_user("bob")).status_code == 403
    listed = client.get("/actors", headers=as_user("bob")).get_json()["result"]
    assert aid not in [a["id"] for a in listed]


# -- the browser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver; loopback only."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    need(not missing, f"{' and '.join(missing)} (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (the test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1360,1100", "--no-first-run", "--no-default-browser-check",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--disable-domain-reliability",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--lang=en-US"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("ABACO_TEST_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def shot(driver: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def page_problems(driver: Any) -> list[str]:
    """Errors the page logged: a CSP refusal, an exception, a failed load."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def wait_for(driver: Any, probe: Callable[[Any], Any], timeout_s: float, what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d: Any) -> Any:
        try:
            return probe(d)
        except StaleElementReferenceException:  # the page redrew it meanwhile
            return False

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(safe)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}") from None


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


@pytest.fixture(scope="module")
def ticker(docker_client) -> str:  # type: ignore[no-untyped-def]
    """A test image that prints a line a second (a log that grows while it runs)."""
    sys.path.insert(0, str(ROOT / "images"))
    from build import DOCKERFILE, build_context, static_busybox  # type: ignore[import-not-found]

    context = build_context({"run.sh": TICKER_SCRIPT.encode(), "Dockerfile": DOCKERFILE.encode()},
                            {"busybox": static_busybox()})
    docker_client.images.build(fileobj=context, custom_context=True, tag=TICKER, rm=True)
    return TICKER


@pytest.fixture(scope="module")
def site(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}"


def send(base: str, actor_id: str, message: str, **env: str) -> str:
    reply = requests.post(f"{base}/{actor_id}/messages", params=env,
                          data={"message": message}, timeout=10)
    return str(result(reply)["executionId"])


def test_an_actor_its_executions_and_a_live_log(browser, site: str, ticker: str,
                                                artifacts: Path):
    from selenium.webdriver.common.by import By

    base = f"{site}/actors"
    actor = ready_actor(base, image=ticker, name=HOSTILE_NAME)
    aid = actor["id"]

    browser.get(f"{site}/dashboard#/")
    row = f'#actors tr[data-actor-id="{aid}"]'
    wait_for(browser, lambda d: "READY" in text_of(d, f"{row} .status"), 30, "the actor's row")
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td a").text == HOSTILE_NAME
    assert not browser.find_elements(By.CSS_SELECTOR, "#actors img"), "a name ran as markup"
    assert browser.title == "abaco-nx dashboard"
    assert re.fullmatch(r"\d+", text_of(browser, f"{row} .queued"))
    assert re.match(r"\d+", text_of(browser, f"{row} .workers"))

    browser.find_element(By.CSS_SELECTOR, f"{row} td a").click()
    wait_for(browser, lambda d: "READY" in text_of(d, "#actor-status"), 15, "the actor's page")
    assert re.fullmatch(r"\d+", text_of(browser, "#queued"))
    assert "No executions yet" in text_of(browser, "#executions")

    # a message whose run prints a line a second for 8 s: its log shows while it runs
    nonce = uuid.uuid4().hex[:8]
    eid = send(base, aid, f"hello {nonce}", ticks="8")
    browser.get(f"{site}/dashboard#/actors/{aid}/executions/{eid}")
    wait_for(browser, lambda d: f"tick 1 of 8: hello {nonce}" in text_of(d, "#log"), 30,
             "the first log line")
    live = text_of(browser, "#log")
    assert "tick 8 of 8" not in live, "the log appeared only once the run had ended"
    assert execution(base, aid, eid)["status"] == "RUNNING"
    assert browser.find_element(By.ID, "log-mode").get_attribute("data-mode") == "streaming"
    wait_for(browser, lambda d: "RUNNING" in text_of(d, "#execution-status"), 10,
             "the execution RUNNING in the page")
    wait_for(browser, lambda d: "tick 3 of 8" in text_of(d, "#log"), 15, "the log growing")
    shot(browser, artifacts, "live-log")
    wait_for(browser, lambda d: "COMPLETE" in text_of(d, "#execution-status"), 40,
             "the execution COMPLETE in the page")
    wait_for(browser, lambda d: "tick 8 of 8" in text_of(d, "#log"), 10, "the whole log")
    assert text_of(browser, '#execution dd[data-field="exit_code"]') == "0"
    wait_for(browser, lambda d: d.find_element(By.ID, "log-mode").get_attribute("data-mode")
             == "ended", 10, "the log marked complete")

    # a few more runs, one failing: the table, the exit codes and the plots
    failed = send(base, aid, "this one fails", ticks="1", exit_code="3")
    for i in range(3):
        send(base, aid, f"quick {i}", ticks="1")
    browser.get(f"{site}/dashboard#/actors/{aid}")
    fail_row = f'#executions tr[data-execution-id="{failed}"]'
    wait_for(browser, lambda d: text_of(d, f"{fail_row} .exit-code") == "3", 60,
             "the failed run's exit code")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#executions tr[data-"
                                                    "execution-id]")) == 5, 10, "five rows")
    wait_for(browser, lambda d: all("COMPLETE" in r.text for r in d.find_elements(
        By.CSS_SELECTOR, "#executions tr[data-execution-id] .status")), 60, "every run done")
    first_row = f'#executions tr[data-execution-id="{eid}"]'
    assert text_of(browser, f"{first_row} .exit-code") == "0"
    record = execution(base, aid, eid)
    assert text_of(browser, f"{first_row} .runtime").endswith(" s")
    assert float(text_of(browser, f"{first_row} .runtime").split()[0]) == pytest.approx(
        record["runtime"], abs=0.01)
    assert text_of(browser, f"{first_row} .queue-time").endswith(" s")
    assert text_of(browser, "#executions-count") == "5"
    bars = browser.find_elements(By.CSS_SELECTOR, "#plot-per-minute rect.bar")
    assert sum(float(b.get_attribute("height")) > 0 for b in bars) >= 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-queue-time rect.bar")) == 5
    wait_for(browser, lambda d: re.match(r"[1-9]", text_of(d, "#workers-count")), 10,
             "a warm worker listed")
    assert browser.find_elements(By.CSS_SELECTOR, "#workers tr[data-worker-id]")
    shot(browser, artifacts, "actor")
    assert page_problems(browser) == []


def test_the_log_is_read_every_second_where_it_cannot_be_streamed(browser, site: str,
                                                                  ticker: str, artifacts: Path):
    """A proxy that buffers, a browser without streams: here the follow request fails (a
    script the browser runs before the page's own makes it), and the page reads the log
    every second instead."""
    from selenium.webdriver.common.by import By

    base = f"{site}/actors"
    aid = ready_actor(base, image=ticker, name="no-streams")["id"]
    added = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        const realFetch = window.fetch;
        window.fetch = (url, init) => String(url).includes('follow=true')
          ? Promise.reject(new TypeError('streaming refused by the test'))
          : realFetch(url, init);"""})
    try:
        eid = send(base, aid, "polled", ticks="6")
        browser.get("about:blank")  # a new document: the script runs before the page's
        browser.get(f"{site}/dashboard#/actors/{aid}/executions/{eid}")
        wait_for(browser, lambda d: "tick 1 of 6: polled" in text_of(d, "#log"), 30,
                 "the first line, polled")
        assert "tick 6 of 6" not in text_of(browser, "#log")
        assert browser.find_element(By.ID, "log-mode").get_attribute("data-mode") == "polling"
        wait_for(browser, lambda d: "tick 6 of 6" in text_of(d, "#log"), 30, "the whole log")
        wait_for(browser, lambda d: d.find_element(By.ID, "log-mode").get_attribute(
            "data-mode") == "ended", 10, "the log marked complete")
        shot(browser, artifacts, "polled-log")
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": added["identifier"]})


def test_an_actor_in_error_shows_why(browser, site: str, artifacts: Path):
    from selenium.webdriver.common.by import By

    base = f"{site}/actors"
    image = f"abaco-test-nowhere-{uuid.uuid4().hex[:6]}:1"
    actor = result(requests.post(base, json={"image": image, "name": "broken"}, timeout=10))
    aid = actor["id"]
    browser.get(f"{site}/dashboard#/actors/{aid}")
    wait_for(browser, lambda d: image in text_of(d, "#actor-error"), 90,
             "the actor's ERROR and its reason")
    assert "ERROR" in text_of(browser, "#actor-status")
    reason = result(requests.get(f"{base}/{aid}", timeout=10))["statusMessage"]
    assert text_of(browser, "#actor-status-message") == reason
    shot(browser, artifacts, "error")
    browser.get(f"{site}/dashboard#/")
    row = f'#actors tr[data-actor-id="{aid}"]'
    wait_for(browser, lambda d: image in text_of(d, f"{row} .status-message"), 15,
             "the reason in the list")
    assert browser.find_elements(By.CSS_SELECTOR, f"{row} .status .badge.status-error")
    assert page_problems(browser) == []


# -- the browser against an API under auth = jwt ------------------------------------------
@pytest.fixture
def jwt_site(jwt_settings: Settings) -> Iterator[str]:
    """The API app under auth = jwt, served on a loopback port of its own."""
    from werkzeug.serving import make_server

    from api.app import create_app

    server = make_server("127.0.0.1", 0, create_app(jwt_settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_under_jwt_the_page_asks_for_a_token(browser, jwt_site: str, artifacts: Path):
    from selenium.webdriver.common.by import By

    mine = result(requests.post(f"{jwt_site}/actors", headers=as_user("carol"), timeout=10,
                                json={"image": "abaco-test-echo", "name": "carols-actor"}))
    theirs = result(requests.post(f"{jwt_site}/actors", headers=as_user("dave"), timeout=10,
                                  json={"image": "abaco-test-echo", "name": "daves-actor"}))
    browser.get(f"{jwt_site}/dashboard#/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    wait_for(browser, lambda d: d.find_element(By.ID, "login").is_displayed(), 15,
             "the sign-in prompt")
    assert "carols-actor" not in browser.page_source
    shot(browser, artifacts, "sign-in")

    browser.find_element(By.ID, "token-input").send_keys("not a token")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(browser, lambda d: "printable" in text_of(d, "#login-reason"), 5, "a refusal")

    field = browser.find_element(By.ID, "token-input")
    field.clear()
    field.send_keys(token("carol"))
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    row = f'#actors tr[data-actor-id="{mine["id"]}"]'
    wait_for(browser, lambda d: "carols-actor" in text_of(d, row), 15, "carol's actors")
    assert not browser.find_element(By.ID, "login").is_displayed()
    assert "daves-actor" not in text_of(browser, "#actors") and theirs["id"] not in (
        browser.page_source)
    assert browser.execute_script("return sessionStorage.getItem('abaco.token')")

    # a token that stops working (here: signed out) brings the prompt back, data gone
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "login").is_displayed(), 15,
             "the prompt again")
    assert "carols-actor" not in text_of(browser, "#view")
    # Abaco's own header: the tenant named, X-Jwt-Assertion-DEV sent
    browser.find_element(By.ID, "token-input").send_keys(token("carol"))
    browser.find_element(By.ID, "tenant-input").send_keys("dev")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(browser, lambda d: "carols-actor" in text_of(d, row), 15, "carol's actors again")
    assert [p for p in page_problems(browser) if "401" not in p] == []


def test_readme_screenshot(browser, site: str, ticker: str, tmp_path: Path):
    """``docs/dashboard.png``, made again when ``ABACO_DASHBOARD_SCREENSHOT`` names a path:
    a busy actor's page (executions, plots, workers)."""
    target = os.environ.get("ABACO_DASHBOARD_SCREENSHOT")
    if not target:
        pytest.skip("set ABACO_DASHBOARD_SCREENSHOT=docs/dashboard.png to make it again")
    from selenium.webdriver.common.by import By

    base = f"{site}/actors"
    actor = ready_actor(base, image=ticker, name="image-resizer", minWorkers=1,
                        description="Resizes uploaded images (a demo)")
    aid = actor["id"]
    eids = [send(base, aid, f"job {i}", ticks=str(1 + i % 3),
                 exit_code="0" if i % 5 else "2") for i in range(10)]
    wait_until(lambda: all(execution(base, aid, e)["status"] in ("COMPLETE", "ERROR")
                           for e in eids), 120, "the demo runs")
    send(base, aid, "one more", ticks="30")
    browser.get(f"{site}/dashboard#/actors/{aid}")
    wait_for(browser, lambda d: "RUNNING" in text_of(d, "#executions"), 30, "a run in progress")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR,
                                                    "#plot-queue-time rect.bar")) >= 10,
             15, "the plots")
    size = browser.get_window_size()
    browser.set_window_size(1280, 1480)
    try:
        wait_for(browser, lambda d: "RUNNING" in text_of(d, "#executions"), 10, "redrawn")
        path = shot(browser, tmp_path, "readme")
    finally:
        browser.set_window_size(size["width"], size["height"])
    shutil.copyfile(path, ROOT / target if not os.path.isabs(target) else target)

