"""Every staff page, as each role sees it, checked with axe-core in real Chromium.

axe-core (tests/browser/vendor/axe-core/, from the npm registry, MPL-2.0) is injected into each
page; the staff CSP allows no inline or foreign script, so these browser contexts bypass the
CSP, and only these. Every page is checked against WCAG 2.1 A and AA and axe's best practices
at 1280×800; the queue and a report also at 390×844, a phone. The statistics charts must fit
the viewport with one month of data (the demo's first case), on a laptop and on a phone.

Each role logs in once, so each account proves one one-time code (tests/browser/test_staff_ui.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize

from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import demo_logins, invite, log_in_demo

pytestmark = pytest.mark.serve

AXE_SCRIPT = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
LAPTOP = ViewportSize(width=1280, height=800)
SMALL_LAPTOP = ViewportSize(width=1280, height=720)
PHONE = ViewportSize(width=390, height=844)
CHART_SHARE_OF_VIEWPORT = 0.6

RUN_AXE = """async (tags) => {
  const results = await axe.run(document, {runOnly: tags, resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary || ""})),
  }));
}"""

# Every text cell that is a date or a time stamp, and whether it is drawn on more than one line.
WRAPPED_DATES = r"""() => {
  const date = /^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?( UTC)?$/;
  const wrapped = [];
  for (const cell of document.querySelectorAll("main td, main dd")) {
    const text = cell.textContent.trim();
    if (!date.test(text)) continue;
    const range = document.createRange();
    range.selectNodeContents(cell);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (lines.size > 1) wrapped.push(text);
  }
  return wrapped;
}"""

# Tables that scroll sideways (in their wrapper, or themselves): none should at 1280px.
SCROLLING_TABLES = """() => [...document.querySelectorAll("main table")].map((table) => {
  const box = table.closest(".table-wrap, .table-scroll") || table;
  return box.scrollWidth > box.clientWidth + 1 ? `${table.className} ${box.scrollWidth}px` : null;
}).filter(Boolean)"""

# A checkbox label whose words sit far from the box (a text-field width on the checkbox).
DISTANT_CHECKBOXES = """() => [...document.querySelectorAll("main label")].flatMap((label) => {
  const box = label.querySelector("input[type=checkbox], input[type=radio]");
  if (!box) return [];
  const range = document.createRange();
  range.selectNodeContents(label);
  range.setStartAfter(box);
  const words = [...range.getClientRects()].find((r) => r.width > 0);
  if (!words) return [];
  // The box is drawn at about 13px wherever the input is wider, so measure from its left edge.
  const drawn = box.getBoundingClientRect();
  const gap = words.left - (drawn.left + Math.min(drawn.width, 20));
  return gap > 16 ? [`${label.textContent.trim().slice(0, 40)}: ${Math.round(gap)}px`] : [];
})"""


@contextmanager
def axe_page(browser: Browser, viewport: ViewportSize = LAPTOP) -> Iterator[Page]:
    """A member's browser with JavaScript on, where the CSP does not stop the injected axe."""
    context = browser.new_context(bypass_csp=True, viewport=viewport)
    try:
        yield context.new_page()
    finally:
        context.close()


def visit(page: Page, served: ServedDemo, path: str, status: int = 200) -> None:
    response = page.goto(f"{served.staff_url}{path}")
    assert response is not None, path
    assert response.status == status, f"{path}: {response.status}\n{page.content()[:2000]}"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE_SCRIPT))
    violations: list[dict[str, Any]] = page.evaluate(RUN_AXE, AXE_TAGS)
    return violations


class Findings:
    """Violations by page, reported all at once: one run shows every page's problems."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, page: Page, where: str) -> None:
        for violation in axe_violations(page):
            for node in violation["nodes"]:
                self.lines.append(
                    f"{where}: {violation['id']} ({violation['impact']}) at {node['target']}: "
                    f"{violation['help']}. {node['summary']}".replace("\n", " ")
                )
        wrapped: list[str] = page.evaluate(WRAPPED_DATES)
        for text in wrapped:
            self.lines.append(f"{where}: the date {text!r} wraps onto two lines")
        distant: list[str] = page.evaluate(DISTANT_CHECKBOXES)
        for label in distant:
            self.lines.append(f"{where}: a checkbox sits far from its words ({label})")
        viewport = page.viewport_size
        if viewport is not None and viewport["width"] >= LAPTOP["width"]:
            scrolling: list[str] = page.evaluate(SCROLLING_TABLES)
            for table in scrolling:
                self.lines.append(f"{where}: a table scrolls sideways at {viewport['width']}px ({table})")

    def check_path(self, page: Page, served: ServedDemo, role: str, path: str, status: int = 200) -> None:
        visit(page, served, path, status)
        self.check(page, f"{role} {path}")

    def report(self) -> str:
        return f"{len(self.lines)} accessibility problems:\n" + "\n".join(self.lines)


def csrf_token(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def post_form(page: Page, served: ServedDemo, path: str, **fields: str) -> str:
    """A staff form posted with the page's cookies and CSRF token; returns the final URL."""
    response = page.request.post(f"{served.staff_url}{path}", form={"csrf_token": csrf_token(page), **fields})
    assert response.ok, f"{path}: {response.status}\n{response.text()[:2000]}"
    return response.url


def hrefs(page: Page, selector: str) -> list[str]:
    return [href for link in page.locator(selector).all() if (href := link.get_attribute("href"))]


def first_href(page: Page, selector: str) -> str:
    found = hrefs(page, selector)
    assert found, f"no {selector} on {page.url}"
    return found[0]


def pages_for(page: Page, *details: str) -> list[str]:
    """Every page in the role's navigation (new pages are checked as soon as they are linked),
    then the given pages behind them, each once."""
    navigation = hrefs(page, "header [data-nav]")
    assert navigation, page.content()
    return list(dict.fromkeys([*navigation, *details]))


def open_a_case(caseworker: Page, lead: Page, served: ServedDemo) -> tuple[str, str, str]:
    """The first demo report verified (caseworker proposes, lead confirms) and made a case.

    Returns the verified report's path, a report still open, and the case's path.
    """
    visit(caseworker, served, "/tips")
    reports = hrefs(caseworker, 'main a[href^="/tips/"]')
    assert len(reports) >= 2, caseworker.content()
    verified, still_open = reports[0], reports[1]
    post_form(caseworker, served, f"{verified}/claim")
    post_form(caseworker, served, f"{verified}/propose")
    visit(lead, served, verified)
    post_form(lead, served, f"{verified}/confirm")
    case_url = post_form(
        lead,
        served,
        "/cases",
        title="Calls from a station to families",
        summary="Relatives phoned on Sundays.",
        tip_ids=verified.removeprefix("/tips/"),
        tactics="family_pressure",
        host_country="IE",
    )
    case_path = case_url.removeprefix(served.staff_url)
    assert re.fullmatch(r"/cases/[0-9a-f-]{36}", case_path), case_url
    return verified, still_open, case_path


def test_every_staff_page_passes_axe_for_every_role(
    browser: Browser, served_demo: ServedDemo, tmp_path: Path
) -> None:
    served = served_demo
    findings = Findings()
    missing = f"/tips/{uuid.uuid4()}"

    with axe_page(browser) as anonymous:
        findings.check_path(anonymous, served, "anonymous", "/login")
        login = demo_logins(served)["lead"]
        anonymous.fill("#username", login["username"])
        anonymous.fill("#password", "not the password")
        anonymous.fill("#otp", "000000")
        with anonymous.expect_navigation():
            anonymous.click("main button[type=submit]")
        findings.check(anonymous, "anonymous /login (refused)")
        anonymous.set_viewport_size(PHONE)
        findings.check_path(anonymous, served, "anonymous (phone)", "/login")

    with axe_page(browser) as caseworker, axe_page(browser) as lead:
        log_in_demo(caseworker, served, "caseworker")
        log_in_demo(lead, served, "lead")
        verified, still_open, case = open_a_case(caseworker, lead, served)

        for role, page in (("caseworker", caseworker), ("lead", lead)):
            visit(page, served, "/stations")
            station = first_href(page, "main a[data-station]")
            paths = pages_for(
                page,
                "/tips?status=new",
                verified,
                still_open,
                "/cases/new",
                case,
                "/stations/map",
                station,
                "/statistics?print=1",
            )
            assert {"/tips", "/cases", "/stations", "/statistics", "/account"} <= set(paths), paths
            for path in paths:
                findings.check_path(page, served, role, path)
            findings.check_path(page, served, role, "/admin/accounts", status=403)
            findings.check_path(page, served, role, missing, status=404)

            page.set_viewport_size(PHONE)
            for path in ("/tips", verified, still_open):
                findings.check_path(page, served, f"{role} (phone)", path)
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > PHONE["width"]:
                    findings.lines.append(f"{role} (phone) {path}: the page scrolls sideways ({width}px)")
            page.screenshot(path=str(tmp_path / f"{role}-phone.png"), full_page=True)
            page.set_viewport_size(LAPTOP)

    with axe_page(browser) as admin:
        log_in_demo(admin, served, "admin")
        visit(admin, served, "/admin/accounts")
        link = invite(admin, "a11y-caseworker", "caseworker")
        findings.check(admin, "admin /admin/accounts (link issued)")
        visit(admin, served, "/admin/accounts")
        account = first_href(admin, 'main a[href^="/admin/accounts/"]')
        visit(admin, served, "/stations")
        station = first_href(admin, "main a[data-station]")
        paths = pages_for(admin, account, "/stations", station)
        assert {"/admin/accounts", "/admin/login-policy", "/admin/witnesses", "/account"} <= set(paths), paths
        for path in paths:
            findings.check_path(admin, served, "admin", path)
        findings.check_path(admin, served, "admin", "/tips", status=403)

    with axe_page(browser) as newcomer:
        opened = newcomer.goto(link)
        assert opened is not None
        assert opened.status == 200, newcomer.content()
        findings.check(newcomer, "invited member /link/…")

    with axe_page(browser) as auditor:
        log_in_demo(auditor, served, "auditor")
        for path in pages_for(auditor, "/stations"):
            findings.check_path(auditor, served, "auditor", path)
        findings.check_path(auditor, served, "auditor", "/admin/accounts", status=403)

    assert not findings.lines, findings.report()


@pytest.mark.parametrize("viewport", [SMALL_LAPTOP, PHONE], ids=["1280x720", "390x844"])
def test_statistics_charts_fit_the_viewport_with_one_month_of_data(
    browser: Browser, served_demo: ServedDemo, viewport: ViewportSize
) -> None:
    with axe_page(browser, viewport) as caseworker, axe_page(browser, viewport) as lead:
        log_in_demo(caseworker, served_demo, "caseworker")
        log_in_demo(lead, served_demo, "lead")
        open_a_case(caseworker, lead, served_demo)
        visit(lead, served_demo, "/statistics")

        sections = lead.locator("main section.chart")
        assert sections.count() == 3
        for index in range(3):
            section = sections.nth(index)
            heading = (section.locator("h2").text_content() or "").strip()
            assert heading, "every chart has a visible heading"
            assert section.locator("h2").is_visible()
            chart = section.locator("svg[role=img]")
            assert chart.count() == 1, heading
            name = chart.evaluate(
                "svg => document.getElementById(svg.getAttribute('aria-labelledby')).textContent"
            )
            assert name == heading
            assert chart.locator("rect.bar").count() == 1, heading  # one tactic, one country, one month
            box = chart.bounding_box()
            assert box is not None
            assert box["height"] <= viewport["height"] * CHART_SHARE_OF_VIEWPORT + 1, (heading, box)
            assert box["width"] <= viewport["width"], (heading, box)
            section_box = section.bounding_box()
            assert section_box is not None
            assert section_box["height"] <= viewport["height"], (heading, section_box)
            # The largest (only) value reaches the top of the axis, which reads 1.
            ticks = [t.strip() for t in chart.locator("text.tick").all_text_contents()]
            assert ticks == ["0", "1"], (heading, ticks)
            # Text in the chart is drawn at an ordinary size, not blown up with the chart.
            sizes = chart.locator("text").evaluate_all(
                "texts => texts.map(t => t.getBoundingClientRect().height)"
            )
            assert max(sizes) < 40, (heading, sizes)
        width = lead.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"]


FOCUS_STYLE = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  const box = element.getBoundingClientRect();
  return {
    tag: element.tagName.toLowerCase(),
    text: element.textContent.trim(),
    href: element.getAttribute("href"),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth),
    outlineColor: style.outlineColor,
    visible: box.width > 1 && box.height > 1 && box.top >= 0 && box.left >= 0
      && box.bottom <= innerHeight && box.right <= innerWidth,
  };
}"""


def relative_luminance(rgb: str) -> float:
    channels = [int(value) / 255 for value in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_keyboard_users_skip_to_the_content_and_always_see_where_they_are(
    browser: Browser, served_demo: ServedDemo
) -> None:
    with axe_page(browser) as page:
        log_in_demo(page, served_demo, "auditor")
        visit(page, served_demo, "/audit")
        page.keyboard.press("Tab")
        first = page.evaluate(FOCUS_STYLE)
        assert (first["tag"], first["text"], first["href"]) == ("a", "Skip to content", "#main")
        assert first["visible"], "the skip link shows when it has focus"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        page.keyboard.press("Tab")
        after_skip = page.evaluate(FOCUS_STYLE)
        assert page.evaluate("document.querySelector('main').contains(document.activeElement)"), after_skip

        # Every control on the page, reached by Tab, has a solid outline of at least 2px with
        # 3:1 contrast against the white page.
        visit(page, served_demo, "/account")
        seen = 0
        for _ in range(60):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUS_STYLE)
            if focused["tag"] == "body":
                break
            seen += 1
            assert focused["outlineStyle"] == "solid", focused
            assert focused["outlineWidth"] >= 2, focused
            contrast = 1.05 / (relative_luminance(focused["outlineColor"]) + 0.05)
            assert contrast >= 3, focused
        assert seen >= 10
