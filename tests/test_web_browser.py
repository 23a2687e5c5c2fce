"""The explorer pages in a real browser (Debian's chromium driven by Playwright) against a real 4-node
devnet anchoring to a real Anvil, loaded with `--demo` data.

Every page test also checks that the page made no request outside the node that served it and raised
no script error (the `page` fixture). The tests screenshot each page: into docs/screenshots/ with
`LEDGER_SCREENSHOTS=1` (how the committed ones were made), else into a temporary folder, so a test
run leaves the working tree unchanged.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import zxingcpp
from PIL import Image

from devnet.processes import stop_pid, wait_healthy
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.market.appraisals import Appraise
from ledger.market.credits import CreditsIssue
from ledger.market.trading import MarketBuy, MarketList, MarketRoyalty
from ledger.nft.assets import AssetMint
from ledger.resolver.registry import IdRegister, ValueSpec
from tests.browser import INSTALL_HINT, find_chromium
from tests.devnetutil import devnet_down, devnet_up, ledger, wait_until

CHROMIUM = find_chromium()  # chromium, chromium-browser, Chrome, or $CHROMIUM
try:
    from playwright.sync_api import BrowserContext, Page, ViewportSize, sync_playwright
except ImportError:  # pragma: no cover - the skip below says why
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=INSTALL_HINT),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not importable: `make install` installs it"),
    pytest.mark.slow,
]

# The network here is closed: nothing in the browser may try to reach out by itself.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP: ViewportSize = {"width": 1200, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 740}
SHOTS = (Path(__file__).resolve().parent.parent / "docs" / "screenshots" if os.environ.get("LEDGER_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / f"ledger-screenshots-{os.getpid()}")
ITEM = "88.100.1/EQ-2024-000001"  # the demo's fully described identifier
TWIN = "https://twin.org1.example/twins/EQ-2024-000001"
TOKEN = "PUMP-2024-000001"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("web-devnet"), 4, "--ethereum", "anvil", "--demo")
    try:
        url = data["nodes"][0]["http"]
        record = httpx.get(f"{url}/v1/resolve/{ITEM}", timeout=10).json()["record"]

        def anchor_covering() -> dict[str, Any] | None:
            r = httpx.get(f"{url}/v1/anchors/latest", timeout=10)
            return r.json() if r.status_code == 200 and r.json()["height"] >= record["updated_height"] else None

        # The devnet anchors every 5 s of new work: wait for one that covers the demo's last change.
        data["anchor"] = wait_until(anchor_covering, 60, "an Ethereum anchor covering the demo data")
        data["url"] = url
        yield data
    finally:
        devnet_down(data)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=DESKTOP,
            accept_downloads=True)
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


def _origin(url: str) -> str:
    """scheme://host:port of a request; a blob: URL belongs to the origin inside it."""
    parts = urlsplit(url[len("blob:"):] if url.startswith("blob:") else url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def page(browser: BrowserContext, net: dict[str, Any]) -> Iterator[Page]:
    """A tab that records every request it makes and every script error it raises."""
    tab = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("pageerror", lambda e: errors.append(str(e)))
    # A page that breaks its own Content-Security-Policy (inline style, foreign source) says so here.
    tab.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield tab
    tab.close()
    assert any("/v1/" in u for u in requests), "the page made no API request: nothing was checked"
    foreign = [u for u in requests if not u.startswith("data:") and _origin(u) != net["url"]]
    assert foreign == [], f"requests left the node: {foreign}"
    assert errors == [], f"script errors: {errors}"


def _shot(target: Page | Any, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    if full_page:
        target.screenshot(path=str(SHOTS / name), full_page=True)
    else:
        target.screenshot(path=str(SHOTS / name))


def _search(page: Page, text: str) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")  # keyboard only


def _open_anchored_answer(page: Page, net: dict[str, Any]) -> str:
    """Search the demo item and get to a proof that reaches Ethereum; the id of its download button. The
    head is a block newer than the latest anchor, but the demo record has not changed since an anchored
    block, so the panel shows the anchored proof of the same record next to the head's proof."""
    page.goto(net["url"] + "/")
    _search(page, ITEM)
    page.wait_for_selector("#proof .anchor-status")
    link = page.query_selector("#proof a.anchored-answer")
    if link is not None:  # the record changed after the latest anchor: only an older answer is anchored
        link.click()
        page.wait_for_url(re.compile(r"\?height=\d+$"))
    page.wait_for_selector("#proof .anchor-tx")
    return "#download-anchored-proof" if page.query_selector("#download-anchored-proof") else "#download-proof"


def test_resolve_shows_twin_token_and_proof_with_signers_and_anchor(page: Page, net: dict[str, Any]) -> None:
    page.goto(net["url"] + "/")
    _search(page, ITEM)
    page.wait_for_url(f"**/resolve/{ITEM}")
    _pin(page, net["genesis"])  # as a user does once per node: then the answer is checked in this browser
    page.wait_for_selector("#proof")  # the panel comes last
    assert page.get_attribute("#proof", "data-state") == "ok"
    assert page.locator(".twin a").get_attribute("href") == TWIN
    # The twin link comes before the values, the token and the proof.
    order = page.evaluate("""['.twin', '.values', '.token', '.provenance', '#proof'].map(
        s => document.querySelector(s)).every((el, i, all) => i === 0 ||
        (all[i - 1].compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING))""")
    assert order is True
    token = page.inner_text(".token")
    assert TOKEN in token and "org1" in token and "equipment" in token
    assert "org3" in page.inner_text(".licences")  # the active sublicence; the revoked one is not listed
    assert "Token bound to it" in page.inner_text(".provenance")
    signers = page.locator("#proof ul.signers li strong").all_inner_texts()
    assert len(signers) >= 3 and set(signers) <= {f"node{i}" for i in range(4)}  # 2f+1 of 4, by name
    height = int(page.inner_text("#proof dd a").removeprefix("block "))
    block = httpx.get(f"{net['url']}/v1/blocks/{height}", timeout=10).json()
    assert page.inner_text("#proof .block-hash") == block["hash"]

    # The current answer's panel shows the Ethereum anchor itself (the record is unchanged since it).
    assert _open_anchored_answer(page, net) == "#download-anchored-proof"
    assert page.url.endswith(f"/resolve/{ITEM}")
    anchored = int(page.inner_text("#proof a.anchor-height").removeprefix("block "))
    anchor = httpx.get(f"{net['url']}/v1/anchors/{anchored}", timeout=10).json()
    assert page.inner_text("#proof .anchor-tx") == anchor["tx_hash"]
    assert page.inner_text("#proof .anchor-chain") == str(net["ethereum"]["chain_id"]) == "31337"
    assert page.inner_text(".twin a") == TWIN  # the same record, proven at the anchored height
    _shot(page, "resolve.png")
    _shot(page.locator("#proof"), "proof-panel.png", full_page=False)


def test_downloaded_proof_is_what_ledger_verify_accepts(page: Page, net: dict[str, Any], tmp_path: Path) -> None:
    button = _open_anchored_answer(page, net)
    with page.expect_download() as download:
        page.click(button)
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    genesis = net["genesis"]
    result = ledger("verify", str(path), "--genesis", genesis, "--rpc", net["ethereum"]["rpc"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    verified = json.loads(result.stdout)
    assert verified["valid"] and verified["present"] and verified["key"] == f"id/{ITEM}"
    assert verified["anchor"]["checked_on_chain"] is True  # the root is in the contract on Anvil
    # The same file with the record altered is refused: the check is real.
    doc = json.loads(path.read_text())
    doc["record"]["values"][0]["value"] = "https://evil.example/"
    path.write_text(json.dumps(doc))
    assert ledger("verify", str(path), "--genesis", genesis, check=False).returncode == 1


def test_unknown_identifier_says_not_found_with_a_proof_of_absence(page: Page, net: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    page.goto(net["url"] + "/")
    _search(page, "88.100.1/NO-SUCH-EQUIPMENT")
    banner = page.locator("#not-found").inner_text()
    assert "Not found" in banner and "not registered" in banner
    assert "absence" in page.inner_text("#proof .verdict")
    with page.expect_download() as download:
        page.click("#download-proof")
    path = tmp_path / "absence.json"
    download.value.save_as(path)
    result = ledger("verify", str(path), "--genesis", net["genesis"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["present"] is False


def test_past_height_shows_the_record_before_its_token(page: Page, net: dict[str, Any]) -> None:
    record = httpx.get(f"{net['url']}/v1/resolve/{ITEM}", timeout=10).json()["record"]
    page.goto(net["url"] + "/")
    page.click("summary")  # "As of a past height or date"
    page.fill("#height", str(record["created_height"]))
    _search(page, ITEM)
    page.wait_for_url(f"**/resolve/{ITEM}?height={record['created_height']}")
    page.wait_for_selector("#proof")
    assert "Past answer" in page.inner_text("main")
    assert page.locator(".values tr[data-type]").count() == 3 and page.locator('tr[data-type="NFT"]').count() == 0
    assert page.locator(".token").count() == 0


def test_past_date_resolves_at_the_last_block_before_it(page: Page, net: dict[str, Any]) -> None:
    record = httpx.get(f"{net['url']}/v1/resolve/{ITEM}", timeout=10).json()["record"]
    registered = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["created_at"] // 1000))
    at = f"{registered}.{record['created_at'] % 1000:03d}Z"  # the block time of its registration
    page.goto(f"{net['url']}/resolve/{ITEM}?at={at}")
    page.wait_for_selector("#proof")
    assert "Past answer" in page.inner_text("main") and page.locator('tr[data-type="NFT"]').count() == 0
    assert int(page.inner_text("#proof dd a").removeprefix("block ")) < record["updated_height"]  # before the mint


@pytest.mark.parametrize("typed", [
    "urn:epc:id:sgtin:9506000.013437.12345",  # EPC URN
    "https://id.example/01/09506000134376/21/12345",  # GS1 Digital Link URI (another resolver's host)
    "/01/09506000134376/21/12345",  # Digital Link path
    "(01)09506000134376(21)12345",  # element string
    "{url}/resolve/gs1/01/09506000134376/21/12345",  # a scanned label of this explorer
])
def test_search_takes_every_identifier_form_to_one_stable_url(page: Page, net: dict[str, Any], typed: str) -> None:
    page.goto(net["url"] + "/")
    _search(page, typed.format(url=net["url"]))
    page.wait_for_selector("#proof")
    assert page.url == f"{net['url']}/resolve/gs1/01/09506000134376/21/12345"
    assert page.locator(".twin a").get_attribute("href") == "https://twin.org1.example/twins/09506000134376-12345"
    assert page.inner_text("h1") == "(01)09506000134376(21)12345"


def test_token_page_shows_history_and_the_revoked_licence(page: Page, net: dict[str, Any]) -> None:
    page.goto(f"{net['url']}/resolve/{ITEM}")
    page.click("a.token-link")
    page.wait_for_url(f"**/token/{TOKEN}")
    page.wait_for_selector("#licences ul.tree")
    assert page.locator('tr[data-event="mint"]').count() == 1
    facts = page.inner_text("main")
    assert "equipment" in facts and "org1" in facts and "not locked" in facts
    revoked = page.locator(".licence.revoked")
    assert revoked.count() == 1
    assert revoked.inner_text().startswith("Revoked") and "org3" in revoked.inner_text()
    assert page.locator(".licence.active").count() == 2
    # The revoked licence is a sublicence: drawn inside its parent's branch.
    assert page.locator("ul.tree > li > ul .licence.revoked").count() == 1
    _shot(page, "token.png")


def test_token_page_shows_the_market_listing_sales_chart_and_appraisals(page: Page, net: dict[str, Any]) -> None:
    client = LedgerClient(net["url"])
    org1, org2, admin = (Signer(SigningKey.load(net["keys"][n]), client) for n in ("org1", "org2", "admin"))
    now = int(time.time() * 1000)
    admin.send("credits.issue", CreditsIssue(org2.member_id, 1000))
    org1.send("asset.mint", AssetMint("DATA-WEB", "data", "https://d.example/web", bytes(32), "", ""))
    org1.send("market.royalty", MarketRoyalty("DATA-WEB", 500))
    org1.send("market.list", MarketList("DATA-WEB", 200, now + 86_400_000))
    org2.send("market.buy", MarketBuy("DATA-WEB", 200))
    org2.send("market.list", MarketList("DATA-WEB", 300, now + 86_400_000))
    admin.send("market.appraise", Appraise("DATA-WEB", 260, "income approach", now, bytes(32)))
    client.close()
    page.goto(f"{net['url']}/token/DATA-WEB")
    page.wait_for_selector("#market .price-chart svg")
    market = page.inner_text("#market")
    assert "300 credits" in market and "For sale" in market and "5% of every later sale" in market, market
    assert page.locator("#market tr[data-sale]").count() == 1
    assert page.locator("#market .price-chart circle.sale").count() == 1
    assert page.locator("#market tr[data-appraisal]").count() == 1 and "income approach" in market
    _shot(page.locator("#market"), "token-market.png", full_page=False)


def _load(net: dict[str, Any], batches: int = 3, size: int = 100) -> None:
    """Some committed transactions for the live chart (under org2's prefix, away from the labels' 88.100.1)."""
    client = LedgerClient(net["url"])
    signer = Signer(SigningKey.load(net["keys"]["org2"]), client)
    for b in range(batches):
        txs = [signer.sign("id.register", IdRegister(f"88.100.2/LOAD-{b}-{n}", (ValueSpec(1, "URL", "https://x"),)))
               for n in range(size)]
        assert all(r.get("ok") for r in client.submit(txs, wait=True))
        time.sleep(0.5)
    client.close()


def test_network_page_shows_every_validator_and_links_to_blocks(page: Page, net: dict[str, Any]) -> None:
    _load(net)
    page.goto(net["url"] + "/network")
    # Every peer's height comes from what this node heard from it (messages and a probe).
    # (Predicates are functions: an expression string would be eval'd in the page, which its CSP forbids.)
    page.wait_for_function("""() => { const cells = [...document.querySelectorAll('tr[data-validator] td.height')];
        return cells.length === 4 && cells.every(td => /^[0-9]+$/.test(td.textContent)); }""")
    status = httpx.get(net["url"] + "/v1/status", timeout=10).json()
    rows = page.locator("tr[data-validator]")
    assert rows.count() == 4
    assert {rows.nth(i).get_attribute("data-validator") for i in range(4)} == set(status["validators"])
    heights = [int(h) for h in page.locator("tr[data-validator] td.height").all_inner_texts()]
    assert min(heights) >= 15 and max(heights) - min(heights) <= 3  # the demo and the load, everywhere
    primary = page.locator("tr[data-validator]:has(.badge.primary)")
    assert primary.count() == 1 and primary.get_attribute("data-validator") == status["primary"]
    assert primary.locator(".badge.primary").inner_text() == "Primary"
    committed = re.search(r"(\d+) transactions", page.inner_text("#activity figcaption"))
    assert committed is not None and int(committed[1]) >= 300  # the load above, at least
    assert page.locator("#activity svg rect.bar").count() >= 1
    assert "31337" in page.inner_text("#anchoring")
    _shot(page, "network.png")
    page.locator("#latest-blocks a").first.click()
    page.wait_for_url(re.compile(r"/block/\d+$"))
    page.wait_for_selector("h2#txs-title")
    assert page.inner_text("h1").startswith("Block ")
    assert "of 4 validators" in page.inner_text("main")
    page.goto(f"{net['url']}/block/{page.inner_text('h1').split()[1]}")  # a stable URL: same page on reload
    page.wait_for_selector("h2#header-title")
    recent = httpx.get(f"{net['url']}/v1/blocks?limit=50", timeout=10).json()["blocks"]
    busiest = max(recent, key=lambda b: b["tx_count"])
    page.goto(f"{net['url']}/block/{busiest['height']}")
    page.wait_for_selector("table.txs")
    assert page.locator("table.txs tbody tr").count() == busiest["tx_count"]
    _shot(page, "block.png", full_page=False)  # the top: a hundred rows of transactions follow


def _decode_qr(png: bytes) -> list[str]:
    """The texts of the QR codes in a PNG image, read by a real decoder (ZXing)."""
    with Image.open(io.BytesIO(png)) as image:
        return [result.text for result in zxingcpp.read_barcodes(image.convert("L"))]


def test_labels_carry_a_qr_code_that_leads_back_to_the_answer(page: Page, net: dict[str, Any]) -> None:
    page.goto(net["url"] + "/labels")
    page.fill("#prefix", "88.100.1")
    page.click("button[type=submit]")
    page.wait_for_selector(".label img.qr")
    labels = page.locator("article.label")
    assert labels.count() == 3
    first = labels.first
    assert first.locator(".label-id").inner_text() == ITEM
    assert first.locator(".holder").inner_text() == "Holder: org1"
    shown_url = first.locator(".label-url").inner_text()
    assert shown_url == f"{net['url']}/resolve/{ITEM}"
    # Every QR image loaded (a broken image has no natural width).
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.qr')].every(i => i.complete && i.naturalWidth > 0)")
    # The QR code as the browser renders it, decoded (what a phone's camera does), is the printed URL.
    decoded = _decode_qr(first.locator("img.qr").screenshot())
    assert decoded == [shown_url]
    _shot(page, "labels.png")
    # Following it opens the answer page.
    page.goto(decoded[0])
    assert page.locator(".twin a").get_attribute("href") == TWIN
    # The print layout is A4 with 90 x 45 mm labels.
    page.goto(net["url"] + f"/labels?id={ITEM}&id=/01/09506000134376/21/12345")
    page.wait_for_selector("article.label >> nth=1")
    page.emulate_media(media="print")
    width_mm = page.evaluate("document.querySelector('article.label').getBoundingClientRect().width * 25.4 / 96")
    assert abs(width_mm - 90) < 1
    assert page.locator("form.search").is_hidden()
    page.emulate_media(media="screen")


# Every visible text node's colour against the first opaque background behind it (WCAG 2 relative
# luminance): at least 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold).
LOW_CONTRAST_JS = """(() => {
  const rgba = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || el.closest("svg")) continue;
    const [l1, l2] = [lum(rgba(style.color)), lum(background(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = node.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) out.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)} "${text}"`);
  }
  return out;
})()"""


def test_phone_width_keyboard_and_labelled_controls(page: Page, net: dict[str, Any]) -> None:
    page.set_viewport_size(PHONE)
    paths = [f"/resolve/{ITEM}", "/resolve/88.100.1/NO-SUCH-EQUIPMENT", f"/token/{TOKEN}", "/network", "/block/5",
             "/labels?prefix=88.100.1", "/"]
    for path in paths:
        page.goto(net["url"] + path)
        page.wait_for_selector("main h1")
        if path == "/network":
            page.wait_for_selector("#activity svg")
        else:
            page.wait_for_load_state("networkidle")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1] == 360, f"{path} scrolls sideways: {width}"
        unlabelled = page.evaluate("""[...document.querySelectorAll('input, textarea, select')]
            .filter(el => el.type !== 'hidden' && el.labels.length === 0).map(el => el.id || el.name)""")
        assert unlabelled == [], f"{path}: controls without a label: {unlabelled}"
        low = page.evaluate(LOW_CONTRAST_JS)
        assert low == [], f"{path}: text below WCAG AA contrast: {low[:5]}"
    # Keyboard only: the skip link comes first, then the search box answers Enter.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.focus("#q")
    page.keyboard.type(ITEM)
    page.keyboard.press("Enter")
    page.wait_for_selector("#proof")
    assert page.evaluate("document.activeElement.tagName") == "H1"  # focus moved to the new page
    _shot(page, "resolve-phone.png")


# --- answers checked in the browser (docs/proofs.md; ledger/web/static/verify/) ---------------------------

VECTORS = Path(__file__).resolve().parent / "vectors" / "proofs"


def _pin(tab: Page, genesis: str) -> None:
    """Pin the chain's genesis file in this browser (once per origin), as a user does: the file chooser."""
    tab.wait_for_selector("#verdict")
    if tab.get_attribute("#verdict", "data-state") == "unpinned":
        tab.set_input_files("#genesis-file", genesis)
    tab.wait_for_selector('#verdict:not([data-state="unpinned"])')


def test_answers_are_checked_in_this_browser_against_the_pinned_genesis(page: Page, net: dict[str, Any]) -> None:
    page.goto(f"{net['url']}/resolve/{ITEM}")
    _pin(page, net["genesis"])
    assert page.get_attribute("#verdict", "data-state") == "ok"
    assert page.inner_text("#verdict").startswith("Checked in this browser")
    page.wait_for_selector("#proof")
    # The pinned genesis is shown with its hash, which is block 0's prev_hash.
    block0 = httpx.get(f"{net['url']}/v1/blocks/0", timeout=10).json()
    assert page.inner_text("#proof .genesis-hash") == block0["header"]["prev_hash"]
    # The token and its provenance are checked with the token's own proof.
    assert page.get_attribute(".token", "data-check") == "ok"
    assert page.locator('li[data-source="token"][data-checked="yes"]').count() >= 1
    # A proof of absence and a token page are checked too.
    page.goto(f"{net['url']}/resolve/88.100.1/NO-SUCH-EQUIPMENT")
    page.wait_for_selector("#not-found")
    assert page.get_attribute("#verdict", "data-state") == "ok"
    page.goto(f"{net['url']}/token/{TOKEN}")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#verdict", "data-state") == "ok"
    # Unpinned, nothing is checked; the node's own genesis can be pinned instead of a file, shown by its hash.
    page.goto(f"{net['url']}/resolve/{ITEM}")
    page.click("#genesis-unpin")
    page.wait_for_selector('#verdict[data-state="unpinned"]')
    assert page.get_attribute("#proof", "data-state") == "unpinned"
    page.click("#genesis-from-node")
    page.wait_for_selector('#verdict[data-state="ok"]')
    assert page.inner_text("#proof .genesis-hash") == block0["header"]["prev_hash"]


def test_known_answer_vectors_give_the_same_verdicts_in_the_browser(page: Page, net: dict[str, Any]) -> None:
    """Every vector through the page's own verifier, once with WebCrypto's Ed25519 and once with the fallback."""
    files = sorted(VECTORS.glob("[0-9]*.json"))
    expected = [json.loads(f.read_text())["expected"] for f in files]
    page.goto(f"{net['url']}/resolve/{ITEM}")
    page.wait_for_selector("#verdict")
    out = page.evaluate("""async ({ genesis, vectors }) => {
        const v = await import("/web/verify/verifier.js");
        const c = await import("/web/verify/codec.js");
        const e = await import("/web/verify/ed25519.js");
        const g = new v.Genesis(genesis);
        const result = { webcrypto: await e.hasWebCryptoEd25519(), verdicts: [] };
        for (const fallback of [false, true]) {
          for (const text of vectors) {
            const got = await v.verifyDocument(c.parseJson(text).document, g, { fallback });
            result.verdicts.push(got.valid ? { valid: true, kind: got.kind, height: got.height, key: got.key,
              present: got.present, unproven: got.unproven } : { valid: false, reason: got.reason });
          }
        }
        return result;
    }""", {"genesis": (VECTORS / "genesis.json").read_text(), "vectors": [f.read_text() for f in files]})
    assert out["webcrypto"] is True  # Debian's Chromium verifies Ed25519 through WebCrypto
    names = [f.stem for f in files]
    webcrypto, fallback = out["verdicts"][:len(files)], out["verdicts"][len(files):]
    assert [(n, v) for n, v, e in zip(names, webcrypto, expected, strict=True) if v != e] == []
    assert [(n, v) for n, v, e in zip(names, fallback, expected, strict=True) if v != e] == []


def test_a_node_serving_a_tampered_answer_gets_a_red_verdict(browser: BrowserContext, net: dict[str, Any]) -> None:
    """Node 3 restarted in test mode (tests/tampering_node.py): a real validator whose resolution answers lie."""
    node = net["nodes"][3]
    stop_pid(node["pid"])
    log = Path(net["dir"]) / "logs" / "tampering.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tampering_node", "--home", node["home"]],
            env={**os.environ, "LEDGER_TEST_TAMPER": "https://evil.example/"}, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=Path(__file__).resolve().parent.parent)
    net["extra_pids"].append(proc.pid)
    wait_healthy(node["http"], proc, log)
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.goto(f"{node['http']}/resolve/{ITEM}")
        _pin(tab, net["genesis"])
        assert tab.get_attribute("#verdict", "data-state") == "failed"
        assert tab.get_attribute("#verdict", "data-reason") == "answer_record"
        assert tab.inner_text("#verdict").startswith("Check failed")
        tab.wait_for_selector("#proof")
        assert tab.get_attribute("#proof", "data-state") == "failed"
        assert "https://evil.example/" in tab.inner_text(".values")  # the lie is shown, under the red verdict
    finally:
        tab.close()
    assert errors == []


def test_proofs_after_validator_set_changes_give_the_same_verdicts_in_the_browser(page: Page, net: dict[str, Any]
                                                                                  ) -> None:
    """Version-3 proofs (validator_sets) from an in-process chain whose set changed twice, valid and broken,
    through the page's own verifier: the verdicts of `ledger.proofs` (tests/test_validator_set.py)."""
    from ledger.genesis import genesis_to_plain
    from tests.test_validator_set import proofs_after_changes

    genesis, cases = proofs_after_changes()
    page.goto(f"{net['url']}/resolve/{ITEM}")
    page.wait_for_selector("#verdict")
    out = page.evaluate("""async ({ genesis, docs }) => {
        const v = await import("/web/verify/verifier.js");
        const c = await import("/web/verify/codec.js");
        const g = new v.Genesis(genesis);
        const verdicts = [];
        for (const text of docs) {
          const got = await v.verifyDocument(c.parseJson(text), g, {});
          verdicts.push(got.valid ? "valid" : got.reason);
        }
        return verdicts;
    }""", {"genesis": json.dumps(genesis_to_plain(genesis)), "docs": [json.dumps(d) for d, _ in cases]})
    assert out == [expected for _, expected in cases]
