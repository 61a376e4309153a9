"""The web pages in a real browser (headless Chromium through Playwright): the job page fills its
grid from the events while the job runs, then shows the answers side by side, the refusal and the
similarity heat map. A screenshot is saved under the test's tmp directory (and /tmp/beacon-job-page.png)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.support import wait_for

CHROMIUM = "/usr/bin/chromium"
QUESTIONS = ["tiananmen_neutral", "taiwan_status"]


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}"}


def test_the_recent_jobs_page_lists_a_job(fresh):
    job_id = fresh.submit(questions=["math_basic"])
    fresh.wait_terminal(job_id)
    page = requests.get(f"{fresh.api}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert f'href="/jobs/{job_id}"' in page.text and "completed" in page.text
    api = requests.get(f"{fresh.api}/api/v1/jobs/{job_id}", timeout=10)
    assert api.headers["Content-Security-Policy"] == "default-src 'none'"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/test installs it)")
def test_the_job_page_live_in_a_browser(fresh, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    units = 3 * len(QUESTIONS)
    fresh.control(hang_next=units)  # every call waits until released: the job stays running
    job_id = fresh.submit(questions=QUESTIONS)
    wait_for(lambda: sum(1 for r in fresh.served() if r["finished"] is None) == units, timeout=60,
             what="every unit's call in flight")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{fresh.api}/jobs/{job_id}")
            # Locators, never page-side eval: the page's CSP has no 'unsafe-eval'
            expect(page.locator(".cell[data-status=running]")).to_have_count(units, timeout=30000)
            expect(page.locator("#live-state")).to_have_text("(live)")
            fresh.reset()  # release the calls: the answers arrive, the cells turn complete from the events
            expect(page.locator(".cell[data-status=completed]")).to_have_count(units, timeout=60000)
            page.wait_for_selector("#answers", timeout=60000)  # the page reloads once the job is sealed
            assert page.locator(".cell[data-status=completed]").count() == units
            assert page.locator("#job-status").inner_text() == "completed"
            tiananmen = page.locator("article.question", has_text="tiananmen_neutral")
            assert tiananmen.locator(".answer").count() == 3
            refusal = tiananmen.locator(".answer.refusal")
            assert refusal.count() == 1 and refusal.get_attribute("data-region") == "APAC"
            assert refusal.locator(".refusal-badge").inner_text() == "refused"
            assert tiananmen.locator(".answer:not(.refusal) mark").count() > 0  # the words that differ
            heat = tiananmen.locator("table.heat")
            assert heat.locator("tbody tr").count() == 3 and heat.locator("td[class^=heat-]").count() == 9
            assert page.locator("#evidence").inner_text().count("beacon verify bundle.json") == 1
            shot = tmp_path / "beacon-job-page.png"
            page.screenshot(path=str(shot), full_page=True)
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(f"{fresh.api}/jobs/{job_id}")
            phone.screenshot(path=str(tmp_path / "beacon-job-page-phone.png"), full_page=True)
        finally:
            browser.close()
    shutil.copy(shot, "/tmp/beacon-job-page.png")
    assert not errors, errors  # no CSP violation, no script error
