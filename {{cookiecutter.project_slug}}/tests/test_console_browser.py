"""The console in headless Chromium, against a real receiver (gunicorn), worker and console.

Set `CONSOLE_SCREENSHOTS=<dir>` to save a PNG of each page there (the ones in
`docs/console/` were taken this way); normal runs write nothing.
"""

import contextlib
import json
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from console_handlers import BROKEN_KEY
from external_tools import require
from processes import PACKAGE, gunicorn, project_env, running, wait_for, wait_until_up, worker

from {{ cookiecutter.package_name }} import event_status, tallies
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.testing import make_event, signed_headers

pytestmark = pytest.mark.e2e
WINDOW = (1200, 800)
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> "quotes" ünïcødé'


BROWSER = ("chromium", "google-chrome")  # the first on PATH; Debian's, or GitHub runners'


def start_chromium(downloads: Path):
    """Headless Chromium from the system's packages; Selenium never downloads anything."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require(*BROWSER)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=Service(require("chromedriver")))
    width, height = WINDOW  # the page's own size, whatever the window adds around it
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.downloads = downloads
    return driver


@pytest.fixture
def starting_browser(tmp_path):
    """A future of the browser: it starts while the test starts its processes."""
    # Skip (or fail) here when a program is missing, not in the thread.
    require(*BROWSER)
    require("chromedriver")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(start_chromium, downloads)
        try:
            yield future
        finally:
            future.result().quit()


@contextlib.contextmanager
def console(env, log: Path):
    port = free_port()
    command = [sys.executable, "-m", PACKAGE, "console", "--port", str(port)]
    with running(command, env, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/", process, log)
        yield base


def deliver(url: str, event: dict) -> None:
    body = json.dumps(event).encode()
    request = urllib.request.Request(url, data=body, headers=signed_headers(body), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_see_filter_open_retry_and_export_in_a_browser(
    starting_browser, redis_url, redis_conn, tmp_path
):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="console_handlers",
        TW_CAPTURE_MAX_EVENTS="100",
        TW_RETRY_MAX="0",
    )
    redis_conn.set(BROKEN_KEY, 1)
    hostile = make_event("order.created", {"id": "ord_1", "note": HOSTILE})
    cancelled = make_event("order.cancelled", {"id": "ord_2", "status": "cancelled"})
    prices = [make_event("price.updated", {"listingId": f"lst_{n}"}) for n in range(3)]
    events = [hostile, *prices, cancelled]
    with (
        gunicorn(env, tmp_path / "web.log", workers=1) as web,
        worker(env, tmp_path / "worker.log"),
        console(env, tmp_path / "console.log") as base,
    ):
        for event in events:
            deliver(web + "{{ cookiecutter.webhook_path }}", event)
        wait_for(lambda: list(event_status.failed_ids(redis_conn)) == [cancelled["id"]])
        browser = starting_browser.result()
        # The processes send their counts every few seconds; the charts need them.
        wait_for(
            lambda: (
                sum(sum(c.values()) for _m, c in tallies.read(redis_conn, tallies.HANDLERS, 2))
                and sum(c.get("accepted", 0) for _m, c in tallies.read(redis_conn, "deliveries", 2))
                == len(events)
            ),
            timeout=tallies.FLUSH_SECONDS * 3,
        )

        # The overview: one failed event, and the last hour in charts.
        browser.get(base + "/")
        cards = {c.text.replace("\n", " ") for c in browser.find_elements(By.CSS_SELECTOR, ".card")}
        assert "1 failed events" in cards and "1 workers alive" in cards
        assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bad")
        screenshot(browser, "overview")

        # Events, filtered by type through the form.
        browser.get(base + "/events")
        browser.find_element(By.NAME, "type").send_keys("price.*")
        browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
        wait_for(lambda: "type=price.*" in browser.current_url.replace("%2A", "*"))
        shown = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "td.id a")]
        assert sorted(shown) == sorted(event["id"] for event in prices)
        browser.get(base + "/events")
        screenshot(browser, "events")

        # One event, opened from the list: its hostile payload is text, nothing ran.
        browser.find_element(By.LINK_TEXT, hostile["id"]).click()
        # A click starts the next page's load and returns: wait for that page's element.
        envelope = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "pre"))[0].text
        assert json.loads(envelope) == hostile
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        assert browser.execute_script("return document.images.length") == 0
        assert browser.execute_script("return document.scripts.length") == 0

        # The failed event: its traceback, then a retry from the failed page.
        browser.get(base + f"/events/{cancelled['id']}")
        assert "refund service unreachable" in browser.page_source
        screenshot(browser, "event")
        browser.get(base + "/failed")
        screenshot(browser, "failed")
        redis_conn.delete(BROKEN_KEY)
        browser.find_element(By.CSS_SELECTOR, f'input[value="{cancelled["id"]}"]').click()
        browser.find_element(By.XPATH, "//button[text()='Retry selected']").click()
        done = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".done"), timeout=10)
        assert "Requeued 1 event(s)" in done[0].text

        def processed():
            browser.get(base + f"/events/{cancelled['id']}")
            return browser.find_element(By.CSS_SELECTOR, "dd .status").text == "processed"

        wait_for(processed, timeout=15, interval=0.5)

        # Captured events, exported as JSON Lines through the browser's download.
        browser.get(base + "/captured")
        screenshot(browser, "captured")
        browser.find_element(By.XPATH, "//button[text()='Export as JSON Lines']").click()
        done = wait_for(lambda: [p for p in browser.downloads.glob("*.jsonl")], timeout=10)
        lines = done[0].read_text().splitlines()
        assert [json.loads(line) for line in lines] == events
