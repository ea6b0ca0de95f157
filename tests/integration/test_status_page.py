"""The support desks' page (agents/status_page.py) in a real headless browser, on two live workers.

Debian's chromium driven through its chromedriver (installed by `./run test`'s setup; Selenium is
pointed at /usr/bin/chromedriver so it never downloads a browser or driver). The page is opened on
one worker and asked about a person that worker owns and one the other worker owns (Faust's table
routing forwards the API calls); what it shows must be what the API answers, decisions in
`mynapoint explain`'s words. A wrong token and a My Number are refused; the page must be usable
with the keyboard alone, its inputs labelled, and fit a 390 px phone screen. Screenshots go to
var/test-artifacts/ (kept after the run).
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients.connect import run_blocking
from clients.produce import produce_lines
from devtools.demo import generate
from schemas.outcomes import Decision, Grant
from streams.audit.explain import CAMPAIGN_LABELS, decision_text, grant_text
from streams.audit.simulate import run
from streams.core.config import load_config
from tests.integration.test_status_api import (
    DEMO_CONFIG,
    PARTITIONS,
    TOKEN,
    http,
    published_outcomes,
    unsettled_points,
    wait_until,
)
from tests.integration.workers import partition_of, worker_group

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "var" / "test-artifacts"
#: Waiting for the page to show an answer: a condition polled, generous for a loaded machine.
ANSWER_TIMEOUT = 60
CONFIG = load_config(DEMO_CONFIG)


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are missing: run ./run test (its setup "
                    "installs Debian's chromium and chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--lang=ja", "--window-size=1280,1000", "--no-first-run",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def two_workers(fresh_broker, tmp_path, worker_engine):
    with worker_group(fresh_broker, tmp_path, 2, partitions=PARTITIONS, config=DEMO_CONFIG,
                      app_id="mynapoint-status-page-it", extra_args=["--status-token", TOKEN],
                      engine=worker_engine) as workers:
        yield workers


def _decision(o: dict[str, Any]) -> Decision:
    return msgspec.convert({k: v for k, v in o.items() if k != "kind"}, Decision)


def _grant(o: dict[str, Any]) -> Grant:
    return msgspec.convert({k: v for k, v in o.items() if k != "kind"}, Grant)


def test_status_page_in_a_browser_on_two_workers(fresh_broker, two_workers, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    workers = two_workers
    here, there = workers  # the page is opened on `here`

    def web_servers_up() -> str | None:
        for w in workers:
            status, _ = http(w.web_port, "/openapi.json")
            if status != 200:
                return f"port {w.web_port} answered {status}"
        return None

    wait_until(web_servers_up, 120, "both web servers", workers)

    lines = list(generate(people=80, seed=31, bad_ratio=0.0))
    expected_ids = {o.outcome_id for batch in run(lines, CONFIG)
                    for o in batch if type(o) is Decision}
    report = run_blocking(produce_lines(lines, fresh_broker.bootstrap, partitions=PARTITIONS,
                                        timeout=120))
    assert report.total_sent == len(lines)
    outcomes = published_outcomes(fresh_broker.bootstrap, len(expected_ids), timeout=600,
                                  workers=workers)
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in outcomes:
        by_person[o["person_id"]].append(o)

    # Someone with points and a refused decision on every partition, so each worker owns some.
    def refused(person: str) -> bool:
        return any(o["kind"] == "decision" and not o["accepted"] for o in by_person[person])

    def earning(person: str) -> bool:
        return any(o["kind"] == "grant" for o in by_person[person])

    candidates = []
    for p in range(PARTITIONS):
        on_p = sorted(x for x in by_person if partition_of(x, PARTITIONS) == p
                      and refused(x) and earning(x))
        assert on_p, f"no person with points and a refused decision on partition {p}"
        candidates.append(on_p[0])

    owner: dict[str, str] = {}

    def stable() -> str | None:
        for person in candidates:
            docs = [http(w.web_port, f"/persons/{person}") for w in workers]
            if any(status != 200 for status, _ in docs):
                return f"{person}: {[status for status, _ in docs]}"
            if docs[0][1]["served_by"] != docs[1][1]["served_by"]:
                return f"{person}: the workers name different owners"
            # The page is compared with settled state: every published outcome readable.
            unsettled = unsettled_points(person, docs[0][1], by_person[person])
            if unsettled is not None:
                return unsettled
            status, history = http(here.web_port, f"/persons/{person}/history")
            if status != 200 or len(history["outcomes"]) != len(by_person[person]):
                return (f"{person}: history {status}, {len(history.get('outcomes', []))} "
                        f"outcomes of {len(by_person[person])} published")
            owner[person] = docs[0][1]["served_by"]["worker"]
        return None

    wait_until(stable, 300, "both workers to agree on every person's owner and points", workers)
    url = {w: f"http://127.0.0.1:{w.web_port}" for w in workers}
    local = next(x for x in candidates if owner[x] == url[here])
    forwarded = next(x for x in candidates if owner[x] == url[there])

    # The page is served without the token, as a fixed HTML document with a strict policy.
    with urllib.request.urlopen(f"{url[here]}/status", timeout=20) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        page = resp.read().decode("utf-8")
    assert local not in page and TOKEN not in page
    assert http(here.web_port, f"/persons/{local}", token=None)[0] == 401  # the data is not

    driver = browser
    driver.get(f"{url[here]}/status")
    assert "申込状況の確認" in driver.title

    # Labelled inputs (their accessible names, as the browser computes them).
    token_input = driver.find_element(By.ID, "token")
    id_input = driver.find_element(By.ID, "person-id")
    assert "アクセストークン" in token_input.accessible_name
    assert "Access token" in token_input.accessible_name
    assert "person_id" in id_input.accessible_name
    assert driver.find_element(By.CSS_SELECTOR, "label[for=person-id]").is_displayed()

    def active_id() -> str:
        return driver.switch_to.active_element.get_attribute("id") or ""

    def message() -> Any:
        return driver.find_element(By.ID, "message")

    def shown_for(person: str):
        def check(d: Any) -> bool:
            result = d.find_element(By.ID, "result")
            return result.is_displayed() and person in result.find_element(
                By.ID, "result-title").text
        return check

    def refused_shown(d: Any) -> bool:
        return message().get_attribute("class") == "error" and message().text != ""

    # Keyboard only: Tab to the token, Tab to the person_id, Enter submits.
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert active_id() == "token"
    driver.switch_to.active_element.send_keys(TOKEN, Keys.TAB)
    assert active_id() == "person-id"
    driver.switch_to.active_element.send_keys(local, Keys.ENTER)
    WebDriverWait(driver, ANSWER_TIMEOUT).until(shown_for(local))
    assert active_id() == "result-title"  # focus moves to the answer, for screen readers too

    def check_shown(person: str, owner_url: str) -> int:
        status = http(here.web_port, f"/persons/{person}")[1]
        history = http(here.web_port, f"/persons/{person}/history")[1]
        result = driver.find_element(By.ID, "result")
        assert owner_url in result.text  # the owner answered
        mykey = driver.find_element(By.ID, "mykey").text
        assert ("設定済み" in mykey) == status["mykey_set"]
        for name, c in status["campaigns"].items():
            item = result.find_element(By.CSS_SELECTOR, f"li[data-campaign={name}]")
            assert CAMPAIGN_LABELS[name][0] in item.text and CAMPAIGN_LABELS[name][1] in item.text
            assert item.find_element(By.CLASS_NAME, "points").text == (
                f"{c['points']:,} / {c['cap']:,}")
            if c["linked"] is not None:
                assert c["linked"]["service_account_hint"] in item.text
        if status["card"] is not None:
            assert status["card"]["applied_on"] in result.text
        shown = result.find_elements(By.CSS_SELECTOR, "#outcomes > li")
        decisions = [o for o in reversed(history["outcomes"]) if o["kind"] == "decision"]
        assert 0 < len(shown) <= len(decisions)
        assert [li.get_attribute("data-outcome-id") for li in shown] == [
            o["outcome_id"] for o in decisions[:len(shown)]]
        by_id = {o["outcome_id"]: o for o in history["outcomes"]}
        grants_shown = 0
        for li, d in zip(shown, decisions, strict=False):
            # The reason in plain words: exactly what `mynapoint explain` says of that decision.
            ja, en = decision_text(_decision(d))
            assert ja in li.text and en in li.text, (li.text, ja, en)
            for g in li.find_elements(By.CLASS_NAME, "grant-text"):
                grant = by_id[g.get_attribute("data-outcome-id")]
                assert grant["kind"] == "grant" and grant["event_id"] == d["event_id"]
                assert g.text == " ".join(grant_text(_grant(grant), CONFIG)), g.text
                grants_shown += 1
        return grants_shown

    grants_shown = check_shown(local, url[here])

    # A person on the other worker's partition, asked on the same page: found through routing.
    id_input = driver.find_element(By.ID, "person-id")
    id_input.clear()
    id_input.send_keys(forwarded, Keys.ENTER)
    WebDriverWait(driver, ANSWER_TIMEOUT).until(shown_for(forwarded))
    grants_shown += check_shown(forwarded, url[there])
    assert grants_shown > 0  # both people earned points: some grant is among the newest

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, height + 200)
    driver.save_screenshot(str(ARTIFACTS / "status-page.png"))

    # A phone: no sideways scrolling; the form and the answer still there.
    driver.set_window_size(390, 844)
    width, inner = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page is {width} px wide on a {inner} px screen"
    assert driver.find_element(By.ID, "check").is_displayed()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(390, height + 200)
    driver.save_screenshot(str(ARTIFACTS / "status-page-phone.png"))
    driver.set_window_size(1280, 1000)

    # A My Number is refused in the page, in any shape, and never sent.
    driver.execute_script(
        "window.__calls = 0; const f = window.fetch;"
        "window.fetch = function () { window.__calls++; return f.apply(this, arguments); };")
    for my_number in ("123456789012", "1234 5678 9012", "1234-5678-9012", "１２３４５６７８９０１２"):
        driver.execute_script("const m = document.getElementById('message');"
                              "m.className = ''; m.replaceChildren();")
        id_input = driver.find_element(By.ID, "person-id")
        id_input.clear()
        id_input.send_keys(my_number, Keys.ENTER)
        WebDriverWait(driver, ANSWER_TIMEOUT).until(refused_shown)
        assert "マイナンバー" in message().text and "My Number" in message().text
        assert message().get_attribute("role") == "alert"
        assert id_input.get_attribute("value") == ""
        assert not driver.find_element(By.ID, "result").is_displayed()
        assert my_number not in driver.find_element(By.TAG_NAME, "body").text
    assert driver.execute_script("return window.__calls") == 0
    # The form still works after a refusal (and the counter sees that request).
    id_input.send_keys(local, Keys.ENTER)
    WebDriverWait(driver, ANSWER_TIMEOUT).until(shown_for(local))
    assert driver.execute_script("return window.__calls") == 2

    # A wrong token: refused with a message, nothing of the person shown.
    token_input = driver.find_element(By.ID, "token")
    token_input.clear()
    token_input.send_keys("not-the-token")
    id_input = driver.find_element(By.ID, "person-id")
    id_input.clear()
    id_input.send_keys(local, Keys.ENTER)
    WebDriverWait(driver, ANSWER_TIMEOUT).until(refused_shown)
    assert "アクセストークンが正しくありません" in message().text
    assert not driver.find_element(By.ID, "result").is_displayed()
    assert driver.find_elements(By.ID, "campaigns") == []
    assert active_id() == "token"
    assert driver.execute_script("return sessionStorage.getItem('mynapoint-status-token')") is None
