"""The web console in a real browser: Debian's headless Chromium driven by Selenium against
the real API (uvicorn, test Postgres) holding ground-truth batches. One browser and one
API for the module, signed in once; a screenshot of each view goes to $TTCQ_SCREENSHOTS
(default: screenshots/ at the top of the checkout). scripts/browser.sh installs Chromium."""

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.utils.api_factories import ALICE, api_settings, auth, running_api
from tests.utils.console_data import (
    FAILURE_MESSAGE,
    MARKUP_STEP,
    ConsoleData,
    store_console_batches,
)
from ttcq.worker.service import SessionFactory

pytestmark = pytest.mark.browser
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REDIS_URL = os.environ.get("TTCQ_TEST_REDIS", "redis://127.0.0.1:6379/15")
TOKENS = ("prompt_tokens", "completion_tokens", "verifier_tokens")  # a job's tokens, summed
SHOTS = Path(os.environ.get("TTCQ_SCREENSHOTS", Path(__file__).parents[1] / "screenshots"))


@pytest.fixture(scope="module")
def data(fast_sessions: SessionFactory) -> ConsoleData:
    return store_console_batches(fast_sessions)


@pytest.fixture(scope="module")
def base_url(pg_url: str, data: ConsoleData) -> Iterator[str]:
    with running_api(api_settings(pg_url, REDIS_URL)) as (_, url):
        yield url


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[WebDriver]:
    """Chromium signed in with alice's token (kept in the tab's sessionStorage)."""
    if not Path(CHROMEDRIVER).exists():
        pytest.fail("chromium-driver is not installed: run scripts/browser.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(base_url + "/")
        token = _wait(driver, lambda d: d.find_element(By.ID, "token"))
        assert token.is_displayed() and not d_main_visible(driver)
        token.send_keys(ALICE)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        yield driver
    finally:
        driver.quit()


def d_main_visible(driver: WebDriver) -> bool:
    return driver.find_element(By.ID, "main").is_displayed()


def _wait(driver: WebDriver, until, timeout: float = 10):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout).until(until)


def _open(browser: WebDriver, url: str) -> str:
    """Open a page and wait until it has drawn: "1", or "404" for not found."""
    browser.get(url)
    return str(_wait(browser, lambda d: d.find_element(By.TAG_NAME, "body")
                     .get_attribute("data-ready")))


def _shot(browser: WebDriver, name: str) -> None:
    """The whole page (the window stretched to its height for the shot), top first."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(int(height), 1000), 2400))
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    browser.set_window_size(1400, 1000)


def _node(browser: WebDriver, node_id: int) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f'li[data-node-id="{node_id}"]')


def test_the_batch_list_shows_the_callers_batches_with_progress(
    browser: WebDriver, base_url: str, data: ConsoleData
) -> None:
    assert _open(browser, base_url + "/") == "1"
    rows = browser.find_elements(By.CSS_SELECTOR, "#batches tbody tr")
    shown = {row.get_attribute("data-batch-id") for row in rows}
    assert shown == {str(data.beam_batch), str(data.majority_batch), str(data.waiting_batch)}
    beam = browser.find_element(By.CSS_SELECTOR, f'tr[data-batch-id="{data.beam_batch}"]')
    assert "4 / 4" in beam.text and "beam_search" in beam.text and "succeeded 4" in beam.text
    _shot(browser, "batches")


def test_requeue_and_cancel_call_the_api(browser: WebDriver, base_url: str,
                                         data: ConsoleData) -> None:
    _open(browser, base_url + "/")
    assert browser.find_element(By.ID, "live").text == "live"  # polling: jobs are queued
    row = f'tr[data-batch-id="{data.waiting_batch}"]'
    browser.find_element(By.CSS_SELECTOR, f"{row} button[title^='send queued']").click()
    _wait(browser, lambda d: "requeue:" in d.find_element(By.ID, "message").text)
    browser.find_element(By.CSS_SELECTOR, f"{row} .actions button").click()  # Cancel
    _wait(browser, lambda d: "cancelled 2" in d.find_element(By.CSS_SELECTOR, row).text)
    assert browser.find_element(By.ID, "live").text == ""  # nothing left to follow
    with httpx.Client(base_url=base_url, headers=auth()) as client:
        batch = client.get(f"/v1/batches/{data.waiting_batch}").json()
    assert (batch["cancel_requested"], batch["counts"]["cancelled"]) == (True, 2)


def test_a_batch_shows_config_failures_curves_cost_and_problems(
    browser: WebDriver, base_url: str, data: ConsoleData
) -> None:
    assert _open(browser, f"{base_url}/batches/{data.majority_batch}") == "1"
    assert "strategy: majority" in browser.find_element(By.ID, "config").text
    assert FAILURE_MESSAGE in browser.find_element(By.ID, "failures").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure svg polyline")) == 2
    assert "tokens per correct" in browser.find_element(By.ID, "cost").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#problems tbody tr")) == 4
    _shot(browser, "batch")
    browser.find_element(By.CSS_SELECTOR, "#outcome option[value='']").click()
    browser.find_element(By.XPATH, "//select[@id='outcome']/option[.='failed']").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#problems tbody tr")) == 1)


def test_a_beam_search_job_shows_a_pruned_nodes_score_and_the_chosen_path(
    browser: WebDriver, base_url: str, data: ConsoleData
) -> None:
    with httpx.Client(base_url=base_url, headers=auth()) as client:
        tree = client.get(f"/v1/jobs/{data.beam_job}/tree").json()
    assert _open(browser, f"{base_url}/jobs/{data.beam_job}") == "1"
    pruned = _node(browser, data.markup_node)
    assert "status-pruned" in str(pruned.get_attribute("class"))
    pruned.find_element(By.CSS_SELECTOR, ".row").click()
    score = _wait(browser, lambda d: _node(d, data.markup_node).find_element(
        By.CSS_SELECTOR, ".details .step-score"))
    node = next(n for n in tree["nodes"] if n["node_id"] == data.markup_node)
    assert score.text == f"{node['step_score']:.3f}"
    browser.find_element(By.CSS_SELECTOR, "button.follow").click()
    on_path = [int(str(li.get_attribute("data-node-id")))
               for li in browser.find_elements(By.CSS_SELECTOR, "li.on-path")]
    assert on_path == tree["chosen_path"]
    leaf = _node(browser, tree["chosen_path"][-1])
    assert leaf.is_displayed() and "status-selected" in str(leaf.get_attribute("class"))
    _shot(browser, "job")


def test_a_step_with_markup_shows_as_text_and_runs_no_script(
    browser: WebDriver, base_url: str, data: ConsoleData
) -> None:
    _open(browser, f"{base_url}/jobs/{data.beam_job}")
    node = _node(browser, data.markup_node)
    node.find_element(By.CSS_SELECTOR, ".row").click()
    text = _wait(browser, lambda d: _node(d, data.markup_node).find_element(
        By.CSS_SELECTOR, ".details .step-text"))
    assert text.text == MARKUP_STEP
    assert "<b>bold</b>" in node.find_element(By.CSS_SELECTOR, ".preview").text
    assert node.find_elements(By.CSS_SELECTOR, "b, script, img") == []
    assert browser.execute_script("return window.__xss === undefined") is True


def test_another_owners_batch_is_not_found(browser: WebDriver, base_url: str,
                                           data: ConsoleData) -> None:
    assert _open(browser, f"{base_url}/batches/{data.bob_batch}") == "404"
    assert browser.find_element(By.ID, "not-found").is_displayed()
    assert not d_main_visible(browser)
    assert browser.find_element(By.ID, "batch-name").get_attribute("textContent") == ""
    _shot(browser, "not-found")


def test_a_job_is_compared_with_its_problem_under_another_strategy(
    browser: WebDriver, base_url: str, data: ConsoleData
) -> None:
    assert _open(browser, f"{base_url}/jobs/{data.beam_job}") == "1"
    twins = browser.find_elements(By.CSS_SELECTOR, "#compare-with tbody tr")
    assert {row.get_attribute("data-job-id") for row in twins} == {
        str(data.majority_job), str(data.waiting_job)}  # alice's only, not bob's
    twin = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{data.majority_job}"]')
    assert "majority" in twin.text and ("correct" in twin.text or "wrong" in twin.text)
    twin.find_element(By.CSS_SELECTOR, "a.compare-link").click()
    _wait(browser, lambda d: "/compare?" in d.current_url
          and d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert browser.current_url.endswith(f"?a={data.beam_job}&b={data.majority_job}")
    for pane, strategy in (("job-a", "beam_search"), ("job-b", "majority")):
        view = browser.find_element(By.ID, pane)
        assert strategy in view.find_element(By.TAG_NAME, "h1").text
        assert view.find_elements(By.CSS_SELECTOR, "li.on-path")
    stop = browser.find_element(By.CSS_SELECTOR, "#job-b li.kind-stop.note")  # stopped early
    assert "stop" in stop.text
    _assert_summary(browser, base_url, [str(data.beam_job), str(data.majority_job)])
    _shot(browser, "compare")


def _assert_summary(browser: WebDriver, base_url: str, jobs: list[str]) -> None:
    """Strategy, answer, grade, tokens and nodes of both jobs, above the trees, as the API
    has them; the rows that differ are marked."""
    with httpx.Client(base_url=base_url, headers=auth()) as client:
        trees = [client.get(f"/v1/jobs/{job}/tree").json() for job in jobs]
    summary = browser.find_element(By.ID, "summary")
    assert summary.location["y"] < browser.find_element(By.ID, "job-a").location["y"]
    facts = {row.get_attribute("data-fact"): [c.text for c in row.find_elements(
        By.TAG_NAME, "td")] for row in summary.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert facts["strategy"] == [t["batch"]["strategy"] for t in trees]
    assert facts["answer"] == [t["job"]["answer"] or "–" for t in trees]
    assert facts["correct"] == [{True: "correct", False: "wrong", None: "–"}[t["job"]["correct"]]
                                for t in trees]
    assert facts["nodes"] == [f"{len(t['nodes']):,}" for t in trees]
    assert facts["tokens"] == [f"{sum(t['cost'][k] for k in TOKENS):,}" for t in trees]
    assert "differs" in str(summary.find_element(
        By.CSS_SELECTOR, 'tr[data-fact="strategy"]').get_attribute("class"))


def test_the_pages_logged_no_errors(browser: WebDriver) -> None:
    """Nothing the policy (CSP) blocked and no script error, on any page opened so far;
    the API's 404 for another owner's batch is the one expected error."""
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [m for m in logged if "404" not in m] == []
