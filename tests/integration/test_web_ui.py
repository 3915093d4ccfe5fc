"""The master's web UI in a real headless browser (Debian's chromium driven by
chromium-driver through selenium) against a live `juggler up` cluster running
a task and two apps: every page renders the cluster's live data, a task's
logs link gives its output, and the browser logs no error. A screenshot of
each page is kept under $JUGGLER_TEST_ARTIFACTS (default tests/artifacts/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from juggler.testing import secure
from juggler.testing.etcd_server import EtcdNotInstalled, etcd_binary
from tests.conftest import free_ports, juggler_up, needs_root, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("JUGGLER_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")


def _get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def _post_app(apps: str, definition: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{apps}/v2/apps", data=json.dumps(definition).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status in (200, 201), r.read()


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("requires selenium (pip install -e '.[dev]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.skip(f"requires {path} (Debian's chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--disable-extensions",
                # The suite's TLS mode: the master's certificate is of a test CA
                # this browser has no store for; its API is reached by token.
                *(["--ignore-certificate-errors"] if secure.enabled() else [])):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _sign_in(driver: Any, base: str, home: Path) -> None:
    """In the suite's TLS mode (rules on), give the UI the admin token `juggler
    up --tls` wrote to `home` as a person answering its prompt would: in the
    origin's localStorage (master/ui/ui.js), set by a script the DevTools
    protocol runs in each page before the page's own (no prompt, nothing else
    loaded). Nothing in plain text."""
    if not secure.enabled():
        return
    token = (home / "tls" / "token").read_text().strip()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": f"if (location.origin === {json.dumps(base)}) "
                  f"localStorage.setItem('juggler.token', {json.dumps(token)});"})


def _show(driver: Any, base: str, page: str, wants: list[str], shot: str = "") -> str:
    """Open `page`, wait until its tables hold every string of `wants`, keep a
    screenshot; the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/#{page}")

    def shown(d: Any) -> str | bool:
        if d.find_element(By.TAG_NAME, "body").get_attribute("data-page") != page:
            return False
        text = d.find_element(By.ID, "page").text
        return text if all(w in text for w in wants) else False

    try:
        text = WebDriverWait(driver, 30, poll_frequency=0.2).until(shown)
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{shot or 'web-ui-' + page}.png"
        driver.save_screenshot(str(path))
        print(f"screenshot of the {page} page: {path}")
    return str(text)


def _selection_survives_refreshes(driver: Any, selector: str) -> None:
    """Select the text of the first `selector` element (as a user copying a
    task id would): the page is not rebuilt while it is selected (a skipped
    refresh marks body data-held), and is again once it is unselected."""
    from selenium.webdriver.support.ui import WebDriverWait

    selected = driver.execute_script(
        "const cell = document.querySelector(arguments[0]);"
        "const range = document.createRange(); range.selectNodeContents(cell);"
        "const s = window.getSelection(); s.removeAllRanges(); s.addRange(range);"
        "window.heldCell = cell; return s.toString();", selector)
    assert selected
    WebDriverWait(driver, 30, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.body.dataset.held") == "selection")
    assert driver.execute_script(
        "return window.heldCell.isConnected && window.getSelection().toString()") == selected
    driver.execute_script("window.getSelection().removeAllRanges()")
    WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: d.execute_script(
        "return document.body.dataset.held === undefined && !window.heldCell.isConnected"))


def test_every_page_shows_the_live_cluster(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    needs_root()
    port, http, apps_port = free_ports(1, 1, 1)
    apps = secure.url(f"127.0.0.1:{apps_port}")
    with juggler_up("--agents", "1", "--port", str(port), "--metrics-port", str(http),
                    "--apps-port", str(apps_port), "--work-dir", str(tmp_path / "work"),
                    "--docker-socket", str(tmp_path / "d.sock"),
                    home=tmp_path / "home") as (_, line):
        master = line.split("master at ", 1)[1].split()[0]
        base = secure.url(f"127.0.0.1:{http}")
        _sign_in(browser, base, tmp_path / "home")
        _post_app(apps, {"id": "/ui-web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                         "instances": 2})
        # Never placed (no such host): its deployment stays in progress.
        _post_app(apps, {"id": "/ui-waiting", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                         "instances": 1,
                         "constraints": [["hostname", "CLUSTER", "no-such-host"]]})
        run = juggler_run(tmp_path / "home", master,
                          "echo ui-stdout-marker; echo ui-stderr-marker >&2")
        assert run.returncode == 0, run.stderr

        def apps_running() -> dict[str, Any] | None:
            services = json.loads(_get(f"{base}/api/apps")[1])["services"]
            by_id = {a["id"]: a for s in services for a in s["apps"]}
            web = by_id.get("/ui-web")
            return services[0] if web and web["running"] == 2 and services[0][
                "deployments"] else None

        service = wait_for(apps_running, timeout=60, interval=0.2,
                           what="/ui-web running 2 instances, a deployment in progress")
        (waiting,) = [d["id"] for d in service["deployments"] if d["apps"] == ["/ui-waiting"]]
        state = json.loads(_get(f"{base}/api/state")[1])
        (agent,) = state["agents"]
        (task,) = [t for t in state["tasks"] if t["name"].startswith("run-")]
        web_tasks = [t["id"] for t in state["tasks"] if t["name"] == "ui-web"]
        assert len(web_tasks) == 2

        text = _show(browser, base, "overview", [master, "LEADER", "cpus", "ports"])
        assert "this master" in text
        _show(browser, base, "agents", [agent["hostname"], agent["id"], "ACTIVE", "NONE"])
        metrics = browser.find_element(By.LINK_TEXT, "metrics").get_attribute("href")
        assert metrics == agent["metrics_url"] and metrics.endswith("/metrics")
        _show(browser, base, "frameworks", ["juggler-apps", "SUBSCRIBED", "RUNNING 2", apps])
        text = _show(browser, base, "tasks", [*web_tasks, task["id"], "RUNNING", "FINISHED",
                                              "COMMAND_EXITED"])
        row = browser.find_element(
            By.CSS_SELECTOR, f'table[data-table="completed-tasks"] tr[data-id$="/{task["id"]}"]')
        links = {a.text: a.get_attribute("href") for a in row.find_elements(By.TAG_NAME, "a")}
        assert _get(links["stdout"]) == (200, "ui-stdout-marker\n")
        assert _get(links["stderr"]) == (200, "ui-stderr-marker\n")
        _selection_survives_refreshes(
            browser, f'table[data-table="completed-tasks"] tr[data-id$="/{task["id"]}"] td')
        _show(browser, base, "apps", ["/ui-web", "2 / 2", "/ui-waiting", "0 / 1", waiting,
                                      "StartApplication /ui-waiting",
                                      "/ui-waiting: 0 of 1 instances running"])

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


def test_a_standby_shows_the_leaders_cluster(browser: Any, tmp_path: Path) -> None:
    """`juggler up --masters 3`: a standby master's UI follows the leader."""
    from selenium.webdriver.common.by import By

    needs_root()
    try:
        etcd_binary()
    except EtcdNotInstalled as e:
        pytest.skip(str(e))
    port, http, apps = free_ports(3, 3, 3)   # up --masters 3 takes P, P+1, P+2 of each
    with juggler_up("--masters", "3", "--agents", "1", "--port", str(port), "--metrics-port",
                    str(http), "--apps-port", str(apps), "--no-apps",
                    "--work-dir", str(tmp_path / "work"),
                    "--docker-socket", str(tmp_path / "d.sock"), home=tmp_path / "home"):

        def elected() -> dict[str, Any] | None:
            try:
                _, body = _get(secure.url(f"127.0.0.1:{http}/api/state"))
            except OSError:   # 503 while the election runs
                return None
            state = json.loads(body)
            return state if state["agents"] else None

        state = wait_for(elected, timeout=60, interval=0.2, what="a leader with an agent")
        leader = state["master"]["leader"]
        # `juggler up` counts both ports up by one per master.
        standby = next(a for a in state["master"]["masters"] if a != leader)
        standby_http = http + int(standby.rsplit(":", 1)[1]) - port
        base = secure.url(f"127.0.0.1:{standby_http}")
        _sign_in(browser, base, tmp_path / "home")
        (agent,) = state["agents"]
        _show(browser, base, "agents", [agent["hostname"], agent["id"], "ACTIVE"],
              shot="web-ui-standby-agents")
        banner = browser.find_element(By.ID, "leader").text
        assert banner == f"standby {standby} · following the leader {leader}"
        text = _show(browser, base, "overview", [leader, standby, "LEADER", "standby"],
                     shot="web-ui-standby-overview")
        assert "this master" in text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


def juggler_run(home: Path, master: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", "run", "--master", master,
                           "--", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, JUGGLER_HOME=str(home)))
