"""The portal, the tracker, the API reference and the compliance report in a real headless
Chromium: the text a person sees, no console errors, links that resolve, no request leaving
the gateway; a screenshot of each page is kept under the test's temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.http.app_keys import STORE
from gateway.service.audit.report import build_report
from gateway.service.audit.report_html import render_html
from tests.browser.cdp import Browser, Tab, chromium_path, launch
from tests.onboarding_helpers import decide, new_key, submit_request
from tests.served import Served

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path / "data")
    yield served
    served.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    assert CHROMIUM is not None
    async with launch(CHROMIUM, tmp_path / "profile") as browser:
        yield browser


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the screenshots go (kept with pytest's temporary directories)."""
    path = tmp_path / "screenshots"
    path.mkdir()
    return path


async def _seed(session: Any) -> dict[str, Any]:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(session, [jwk], organisation="Browser Chat")
    await decide(session, created["id"], "approve", reason="Meets the reference offer")
    return created


async def _check_page(
    tab: Tab, served: Served, path: str, expected: list[str], shot: Path
) -> list[str]:
    """Open `path`; check text, errors and requests; keep a screenshot; return its links."""
    visit = await tab.open(served.base_url + path)
    text = await tab.evaluate("document.body.innerText")
    for phrase in expected:
        assert phrase in text, f"{path}: {phrase!r} not shown"
    assert visit.errors == [], f"{path}: console errors {visit.errors}"
    assert visit.failed == [], f"{path}: failed loads {visit.failed}"
    outside = [u for u in visit.requests if not u.startswith((served.base_url, "data:"))]
    assert outside == [], f"{path}: requests leaving the gateway {outside}"
    assert all(status < 400 for status in visit.statuses.values()), visit.statuses
    assert await tab.evaluate("document.documentElement.lang") == "en"
    await tab.screenshot(shot)
    assert shot.stat().st_size > 1000
    links: list[str] = await tab.evaluate(
        "Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
    )
    return links


async def test_the_portal_pages_in_a_browser(
    served: Served, browser: Browser, shots: Path
) -> None:
    created = served.call(served.with_client(_seed))
    tab = await browser.new_tab()
    links: set[str] = set()
    pages = [
        ("/", ["Messaging interoperability gateway", "WhatsApp", "voice_calls", "2028-03-01"]),
        ("/requests", ["Interop request tracker", "Browser Chat", "approved"]),
        (f"/requests/{created['id']}", ["Deadlines", "Eligibility decision", "Communications"]),
        ("/problems/validation", ["Validation failed", "422"]),
    ]
    for i, (path, expected) in enumerate(pages):
        links |= set(await _check_page(tab, served, path, expected, shots / f"page-{i}.png"))
    # Every link of these pages resolves (fragments aside) on the gateway itself.
    ours = sorted({link.split("#")[0] for link in links if link.startswith(served.base_url)})
    assert len(ours) >= 5
    for link in ours:
        visit = await tab.open(link)
        assert visit.statuses.get(link, 200) < 400, link
    # The requester's page: the status token typed into the form shows the full log.
    await tab.open(f"{served.base_url}/requests/{created['id']}")
    assert "Meets the reference offer" not in await tab.evaluate("document.body.innerText")
    await tab.evaluate(
        f"document.getElementById('status_token').value = {created['status_token']!r};"
        "document.querySelector('form').submit(); true"
    )
    await tab.wait_for("document.body.innerText.includes('Show the full log') === false")
    await tab.wait_for("document.readyState === 'complete'")
    shown = await tab.evaluate("document.body.innerText")
    assert "gatekeeper · approved: Meets the reference offer" in shown
    assert tab.visit.errors == []
    await tab.screenshot(shots / "requester.png")
    # On a phone the portal needs no sideways scrolling.
    await tab.viewport(390, 844, mobile=True)
    await tab.open(served.base_url + "/")
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await tab.screenshot(shots / "portal-phone.png")


async def test_the_api_reference_renders_offline(
    served: Served, browser: Browser, shots: Path
) -> None:
    tab = await browser.new_tab()
    await _check_page(tab, served, "/docs", ["API reference"], shots / "docs-initial.png")
    count = await tab.wait_for("document.querySelectorAll('.opblock').length")
    assert count > 40
    text = await tab.evaluate("document.body.innerText")
    assert "/v1/interop-requests" in text and "/v1/messages" in text
    assert tab.visit.errors == []
    outside = [u for u in tab.visit.requests if not u.startswith((served.base_url, "data:"))]
    assert outside == []
    await tab.screenshot(shots / "docs.png")


async def test_the_compliance_report_prints(
    served: Served, browser: Browser, shots: Path, tmp_path: Path
) -> None:
    served.call(served.with_client(_seed))
    report = served.call(build_report(served.app[STORE], load_config(env={})))
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    tab = await browser.new_tab()
    visit = await tab.open(page.as_uri())
    text = await tab.evaluate("document.body.innerText")
    for phrase in ("compliance report", "Exchange matrix", "Request deadlines, per phase"):
        assert phrase in text
    assert visit.errors == []
    assert [u for u in visit.requests if not u.startswith("file:")] == []
    # Chart labels never run into the bars.
    overlaps = await tab.evaluate(
        """Array.from(document.querySelectorAll('svg')).flatMap(svg => {
             const labels = Array.from(svg.querySelectorAll('text[text-anchor=end]'));
             const bars = Array.from(svg.querySelectorAll('rect'));
             if (!bars.length) return [];
             const left = Math.min(...bars.map(b => b.getBoundingClientRect().left));
             return labels.filter(t => t.getBoundingClientRect().right > left + 0.5)
                          .map(t => t.textContent);
           })"""
    )
    assert overlaps == []
    await tab.screenshot(shots / "report.png")
    pdf = await tab.pdf()
    assert pdf.startswith(b"%PDF")
    (shots / "report.pdf").write_bytes(pdf)
