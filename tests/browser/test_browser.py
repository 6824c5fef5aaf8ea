"""The browser client in a real Chromium against a real `vechat-rls serve` and PostgreSQL.

The page and its ES modules as served (hashed URLs, caching, the policy). Two users of one
organisation chat in two browser contexts: live delivery without reload, the typing indicator,
read ticks, reload with history; a user of another organisation with the same numeric ids sees
none of it; markup in a message stays text; replies (and their quotes following edits and
deletions), search, location and voice messages. The header names the organisation (the `org_name`
claim, else its id) and the user at 1280 and 375 px; keyboard focus rings are whole; the
conversation header fits one line each at 375 px.
Chromium is Debian's package (`make browser` installs it; this module installs it too when
missing, it never skips); its fake microphone stands in for a real one.

The tests are one scenario, in file order, sharing the signed-in users (`chats`): the first one
opens the conversation the later ones use, so run the module, not a single test.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    Route,
    WebSocketRoute,
    expect,
    sync_playwright,
)
from playwright.sync_api import (
    TimeoutError as PlaywrightTimeoutError,
)

from tests.support.api import wait_ready
from tests.support.fixtures import Database
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls.auth import mint_token
from vechat_rls.pgserver import free_port

pytestmark = pytest.mark.slow

SECRET = "browser-test-secret-long-enough-for-hs256"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A microphone for the voice-message test: Chromium's fake device (a beep), no prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# Set to a directory to keep screenshots of the chat for a look by eye.
SCREENSHOTS = os.environ.get("VECHAT_BROWSER_SCREENSHOTS")
# The policy, written out: loading the client as modules must not loosen it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
IMMUTABLE = "public, max-age=31536000, immutable"
# Any relative specifier in a served module: each must be a module's hashed URL.
RELATIVE_SPECIFIER = re.compile(r"""["'](\.\.?/[^"']*)["']""")
MODULES = sorted(
    entry.name
    for entry in (importlib.resources.files("vechat_rls") / "web").iterdir()
    if entry.name.endswith(".js")
)

ORG1_NAME = "Velosi Logistics"

# Where an element is drawn, whether all of its text shows, and whether the page scrolls sideways.
PLACEMENT = """(node) => {
  const box = node.getBoundingClientRect();
  return {
    left: box.left, right: box.right, top: box.top, bottom: box.bottom,
    cut_short: node.scrollWidth > node.clientWidth,
    scroll_width: node.scrollWidth, client_width: node.clientWidth, text: node.textContent,
    window_width: innerWidth, window_height: innerHeight,
    page_width: document.documentElement.scrollWidth,
  };
}"""
# The keyboard focus ring of `node` (its outline) and the clip rectangles it must fit in: the
# window's, and the padding box of every ancestor whose overflow is not visible. The node is
# first scrolled to the middle of its scrolling ancestors, as far as they scroll, so that only a
# ring that can never fit counts as cut.
FOCUS_RING = """(node) => {
  node.scrollIntoView({ block: "center", inline: "nearest" });
  const style = getComputedStyle(node);
  const width = style.outlineStyle === "none" ? 0 : parseFloat(style.outlineWidth);
  const grow = (parseFloat(style.outlineOffset) || 0) + width;
  const box = node.getBoundingClientRect();
  const ring = { left: box.left - grow, top: box.top - grow,
                 right: box.right + grow, bottom: box.bottom + grow };
  const clips = [{ name: "the window", left: 0, top: 0, right: innerWidth, bottom: innerHeight }];
  for (let up = node.parentElement; up; up = up.parentElement) {
    const s = getComputedStyle(up);
    if (s.overflowX === "visible" && s.overflowY === "visible") continue;
    const r = up.getBoundingClientRect();
    const left = r.left + up.clientLeft, top = r.top + up.clientTop;
    clips.push({ name: `${up.tagName.toLowerCase()}#${up.id}.${up.className}`,
                 left, top, right: left + up.clientWidth, bottom: top + up.clientHeight });
  }
  const cut_by = clips.filter((c) => ring.left < c.left - 0.5 || ring.top < c.top - 0.5
    || ring.right > c.right + 0.5 || ring.bottom > c.bottom + 0.5).map((c) => c.name);
  const text = (node.textContent || "").trim().slice(0, 24);
  return {
    element: `${node.tagName.toLowerCase()}#${node.id}.${node.className} ${text}`,
    focus_visible: node.matches(":focus-visible"), style: style.outlineStyle, width,
    color: style.outlineColor, cut_by,
  };
}"""
# An element's height and its line height: equal when its text takes exactly one line.
LINES = """(node) => ({
  height: node.getBoundingClientRect().height,
  line_height: parseFloat(getComputedStyle(node).lineHeight),
  right: node.getBoundingClientRect().right,
})"""

INSERT_CONTACT = """
INSERT INTO public.vechat_contacts
    (organisation_id, user_id, user_type, display_name, email, role, assigned_personnel)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


@dataclass(frozen=True)
class Person:
    organisation_id: int
    user_id: int
    user_type: str
    name: str
    email: str
    role: str | None = None
    assigned: tuple[int, ...] = ()
    org_name: str | None = None  # the optional claim the page shows; nothing else reads it

    @functools.cached_property
    def token(self) -> str:
        """Minted once: the page keeps exactly this one."""
        return mint_token(
            organisation_id=self.organisation_id,
            user_id=self.user_id,
            user_type=self.user_type,
            key=SECRET,
            role=self.role,
            name=self.name,
            extra={"org_name": self.org_name} if self.org_name is not None else None,
        )


@dataclass(frozen=True)
class Cast:
    """Org 1: a client and the personnel assigned to it. Org 2: the same ids, other people.

    Org 1's tokens carry `org_name`; org 2's do not, so its page names it by its id.
    """

    client: Person
    staff: Person
    colleague: Person
    other_client: Person
    other_staff: Person


def _ensure_chromium() -> str:
    """Debian's Chromium, installed now if it is missing: this test never skips for want of it."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True)
        found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
        found = shutil.which("chromium")
    assert found, "chromium could not be installed"
    return found


@pytest.fixture(scope="module")
def cast(migrated_database: Database) -> Iterator[Cast]:
    org1, org2 = new_organisation_ids(2)
    people = Cast(
        client=Person(
            org1, 3, "client", "Chloé Dubois", "chloe@client.example", assigned=(2,),
            org_name=ORG1_NAME,
        ),
        staff=Person(
            org1, 2, "personnel", "Bruno Lefèvre", "bruno@velosi.example", "commercial",
            org_name=ORG1_NAME,
        ),
        colleague=Person(
            org1, 1, "personnel", "Alice Martin", "alice@velosi.example", org_name=ORG1_NAME
        ),
        other_client=Person(org2, 3, "client", "Eva Schmidt", "eva@client.example", assigned=(2,)),
        other_staff=Person(
            org2, 2, "personnel", "Dmitri Ivanov", "dmitri@acme.example", "commercial"
        ),
    )
    with psycopg.connect(migrated_database.admin_url) as conn:
        everyone = (people.client, people.staff, people.colleague)
        for p in (*everyone, people.other_client, people.other_staff):
            conn.execute(
                INSERT_CONTACT,
                (p.organisation_id, p.user_id, p.user_type, p.name, p.email, p.role,
                 list(p.assigned)),
            )
    try:
        yield people
    finally:
        purge_organisations(migrated_database.admin_url, [org1, org2])


@pytest.fixture(scope="module")
def server(
    migrated_database: Database, cast: Cast, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`vechat-rls serve` as a subprocess on a free port; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "VECHAT_DATABASE_URL": migrated_database.app_url,
        "VECHAT_JWT_SECRET": SECRET,
        "VECHAT_POOL_MIN": "0",
        "VECHAT_RATE_LIMIT_PER_MIN": "1000",  # the history test sends more than 60 a minute
    }
    # A file, not a pipe nobody reads: a chatty server must never block on a full pipe.
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vechat_rls.cli", "serve", "--port", str(port),
             "--workers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log.read_text)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=_ensure_chromium(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Chat:
    """One signed-in user in a browser context of their own: what they do and what they see."""

    def __init__(
        self,
        browser: Browser,
        base: str,
        person: Person,
        *,
        width: int = 1100,
        height: int = 720,
    ) -> None:
        self.person = person
        self.base = base
        self.context: BrowserContext = browser.new_context(
            viewport={"width": width, "height": height}
        )
        self.page: Page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.console_errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        self.page.on("console", self._on_console)

    def _on_console(self, message: ConsoleMessage) -> None:
        # A Content-Security-Policy violation means the page broke its own policy.
        if message.type == "error" and "Content Security Policy" in message.text:
            self.console_errors.append(message.text)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()

    def sign_in(self) -> None:
        self.page.goto(f"{self.base}/?access_token={self.person.token}")
        expect(self.page.locator("#me-name")).to_have_text(self.person.name)
        expect(self.page.locator("#connection")).to_have_text("Live")

    def conversation_with(self, name: str) -> Any:
        return self.page.locator(".conversation-item", has_text=name)

    def start_conversation(self, search: str, name: str) -> None:
        self.page.get_by_role("button", name="New chat").click()
        self.page.get_by_label("Search contacts").fill(search)
        self.page.locator(".contact-item", has_text=name).click()
        expect(self.page.locator("#peer-name")).to_have_text(name)

    def open(self, name: str) -> None:
        self.conversation_with(name).click()
        expect(self.page.locator("#peer-name")).to_have_text(name)

    def type(self, text: str) -> None:
        self.page.get_by_label("Message", exact=True).press_sequentially(text)

    def send(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        box.press("Enter")
        expect(self.own_message(text).locator(".status")).to_have_text(re.compile("Sent|Read"))

    def own_message(self, text: str) -> Any:
        return self.page.locator(".msg.own", has=self.page.locator(".body", has_text=text))

    def their_message(self, text: str) -> Any:
        return self.page.locator(".msg.theirs", has=self.page.locator(".body", has_text=text))

    def act(self, message: Any, action: str) -> None:
        """Click one of a message's actions (shown on hover): Reply, Edit, Delete for me, …."""
        button = message.get_by_role("button", name=action)
        for attempt in range(3):
            # A message re-rendered under the pointer (a receipt, an edit arriving) loses its
            # hover, and the hidden actions let the click through to the list: hover again.
            message.hover()
            try:
                button.click(timeout=5000)
                return
            except PlaywrightTimeoutError:
                if attempt == 2:
                    raise

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def chats(browser: Browser, server: str, cast: Cast) -> Iterator[dict[str, Chat]]:
    """The three users signed in, each in a fresh browser context."""
    opened = {
        "client": Chat(browser, server, cast.client),
        "staff": Chat(browser, server, cast.staff),
        "other": Chat(browser, server, cast.other_staff),
    }
    for chat in opened.values():
        chat.sign_in()
    yield opened
    for chat in opened.values():
        assert chat.console_errors == [], chat.console_errors
        chat.close()


# ------------------------------------------------------------------------------------------------


def test_page_is_public_with_a_strict_content_security_policy(server: str) -> None:
    page = httpx.get(server + "/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"
    script = re.search(r'src="(/static/app\.js\?v=[0-9a-f]+)"', page.text)
    assert script, page.text
    asset = httpx.get(server + script[1], timeout=5)
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert "immutable" in asset.headers["cache-control"]
    again = httpx.get(server + "/", headers={"If-None-Match": page.headers["etag"]}, timeout=5)
    assert again.status_code == 304
    missing = httpx.get(server + "/static/nothing.js", timeout=5)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


def _module_version(server: str) -> str:
    """The version in the page's URL of its entry module, which every module URL shares."""
    page = httpx.get(server + "/", timeout=5).text
    entry = re.search(r'<script type="module" src="/static/app\.js\?v=([0-9a-f]{16})">', page)
    assert entry, page
    return entry[1]


def test_every_module_the_page_loads_has_a_hashed_immutably_cached_url(
    browser: Browser, server: str
) -> None:
    """Chromium follows the imports from app.js: each module once, by its hashed URL."""
    context = browser.new_context()
    page = context.new_page()
    loaded: list[Response] = []
    errors: list[str] = []
    page.on("response", lambda r: loaded.append(r) if ".js" in urlsplit(r.url).path else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server + "/")
    # Shown by app.js, which runs only once every module it imports has loaded.
    expect(page.locator("#signed-out")).to_be_visible()
    responses = [(r.url, r.status, r.all_headers()) for r in loaded]
    context.close()
    version = _module_version(server)
    urls = [urlsplit(url) for url, _, _ in responses]
    assert sorted(u.path for u in urls) == [f"/static/{name}" for name in MODULES]
    assert {u.query for u in urls} == {f"v={version}"}, [url for url, _, _ in responses]
    for url, status, headers in responses:
        assert status == 200, url
        assert headers["cache-control"] == IMMUTABLE, url
        assert headers["content-type"].startswith("text/javascript"), url
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
    assert errors == []


def test_module_urls_keep_the_policy_and_revalidate_without_the_current_hash(server: str) -> None:
    assert httpx.get(server + "/", timeout=5).headers["content-security-policy"] == (
        CONTENT_SECURITY_POLICY
    )
    version = _module_version(server)
    with httpx.Client(base_url=server, timeout=5) as http:
        for name in MODULES:
            current = http.get(f"/static/{name}?v={version}")
            assert current.status_code == 200 and current.headers["cache-control"] == IMMUTABLE
            assert current.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert current.headers["referrer-policy"] == "no-referrer"
            assert current.headers["etag"] == f'"{version}"'
            # Every import names a module by the same hashed URL.
            for specifier in RELATIVE_SPECIFIER.findall(current.text):
                assert re.fullmatch(rf"\./[a-z-]+\.js\?v={version}", specifier), (name, specifier)
            for stale in (f"/static/{name}", f"/static/{name}?v=0000000000000000"):
                assert http.get(stale).headers["cache-control"] == "no-cache", stale
            again = http.get(f"/static/{name}", headers={"If-None-Match": current.headers["etag"]})
            assert again.status_code == 304


def test_an_unknown_module_is_404(server: str) -> None:
    version = _module_version(server)
    with httpx.Client(base_url=server, timeout=5) as http:
        for path in (
            f"/static/nothing.js?v={version}",
            "/static/App.js",
            "/static/app.mjs",
            "/static/index.html",
            "/static/web.py",
        ):
            missing = http.get(path)
            assert missing.status_code == 404, path
            assert missing.headers["content-type"].startswith("application/problem+json"), path


def test_without_a_token_the_page_asks_for_a_sign_in_link(browser: Browser, server: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server + "/")
    expect(page.locator("#signed-out")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    context.close()


def test_sign_in_link_token_leaves_the_address_bar(chats: dict[str, Chat]) -> None:
    page = chats["client"].page
    assert "access_token" not in page.url
    assert page.evaluate("sessionStorage.getItem('vechat.token')") == chats["client"].person.token


def test_message_appears_live_with_typing_and_read_ticks(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    client.start_conversation("bruno", "Bruno Lefèvre")
    client.send("Bonjour Bruno, where is shipment VL-1042?")

    # The staff member's list gets the new conversation, unread, without a reload.
    item = staff.conversation_with("Chloé Dubois")
    expect(item.locator(".preview")).to_have_text("Bonjour Bruno, where is shipment VL-1042?")
    expect(item.locator(".badge")).to_have_text("1")
    staff.open("Chloé Dubois")
    expect(staff.their_message("where is shipment VL-1042?")).to_be_visible()
    expect(item.locator(".badge")).to_have_count(0)

    # Opening the pane read the message: the sender sees the tick turn to read.
    expect(client.own_message("where is shipment VL-1042?").locator(".status")).to_have_text(
        "✓✓ Read"
    )

    staff.type("It left Mars")
    expect(client.page.locator("#typing")).to_have_text("Bruno Lefèvre is typing…")
    staff.page.get_by_label("Message", exact=True).press("Enter")
    expect(client.their_message("It left Mars")).to_be_visible()
    expect(client.page.locator("#typing")).to_have_text("")
    # The client's pane is open and visible: the reply is read at once.
    expect(staff.own_message("It left Mars").locator(".status")).to_have_text("✓✓ Read")
    client.screenshot("client-chat")
    staff.screenshot("staff-chat")


def test_markup_in_a_message_is_shown_as_text(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    xss = "<img src=x onerror=alert(1)>"
    staff.send(xss)
    shown = client.their_message(xss).locator(".body")
    expect(shown).to_have_text(xss)
    assert client.page.locator(".message-list img").count() == 0
    assert client.dialogs == [] and staff.dialogs == []


def test_other_organisation_with_the_same_ids_sees_nothing(chats: dict[str, Chat]) -> None:
    other = chats["other"]
    assert other.person.user_id == chats["staff"].person.user_id
    other.page.reload()
    expect(other.page.locator("#connection")).to_have_text("Live")
    expect(other.page.locator(".conversation-item")).to_have_count(0)
    other.page.get_by_role("button", name="New chat").click()
    expect(other.page.locator(".contact-item")).to_have_count(1)
    expect(other.page.locator(".contact-item")).to_have_text(re.compile("Eva Schmidt"))
    chats["client"].send("Only for Bruno of organisation one")
    chats["staff"].their_message("Only for Bruno of organisation one").wait_for()
    body = other.page.locator("body").inner_text()
    assert "Chloé" not in body and "VL-1042" not in body and "Only for Bruno" not in body


def _organisation_shown(person: Person) -> str:
    return person.org_name or f"Organisation {person.organisation_id}"


@pytest.mark.parametrize("width", [1280, 375])
def test_the_header_names_the_organisation_and_the_user_at_every_width(
    browser: Browser, server: str, cast: Cast, width: int
) -> None:
    """The token's `org_name` when it has one, else "Organisation <id>"; whole and in sight."""
    for person in (cast.staff, cast.other_staff):  # with org_name, without
        chat = Chat(browser, server, person, width=width)
        chat.sign_in()
        for selector, text in (
            ("#org-name", _organisation_shown(person)),
            ("#me-name", person.name),
        ):
            shown = chat.page.locator(selector)
            expect(shown).to_have_text(text)
            expect(shown).to_be_visible()
            at = shown.evaluate(PLACEMENT)
            where = f"{width} px, {selector}: {at}"
            assert not at["cut_short"], where
            assert 0 <= at["left"] < at["right"] <= at["window_width"], where
            assert 0 <= at["top"] < at["bottom"] <= at["window_height"], where
            assert at["page_width"] <= at["window_width"], where
        chat.screenshot(f"header-{width}-{'named' if person.org_name else 'unnamed'}")
        assert chat.console_errors == [], chat.console_errors
        chat.close()


def test_two_organisations_have_two_page_titles(chats: dict[str, Chat]) -> None:
    staff, other = chats["staff"], chats["other"]
    assert staff.person.org_name and other.person.org_name is None
    # "(2) …" counts unread messages in front; the organisation is always there.
    expect(staff.page).to_have_title(re.compile(r"^(\(\d+\) )?Velosi Logistics — vechat$"))
    expect(other.page).to_have_title(
        re.compile(rf"^(\(\d+\) )?Organisation {other.person.organisation_id} — vechat$")
    )


def test_reload_resumes_and_shows_history(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    client.page.goto("about:blank")  # the client is away: its socket is closed
    staff.send("Sent while you were away")
    client.page.goto(client.base + "/")
    expect(client.page.locator("#connection")).to_have_text("Live")
    expect(client.page.locator("#peer-name")).to_have_text("Bruno Lefèvre")
    for text in ("where is shipment VL-1042?", "It left Mars", "Sent while you were away"):
        expect(client.page.locator(".msg", has_text=text)).to_have_count(1)
    assert "access_token" not in client.page.url
    seq = client.page.evaluate(
        "Object.keys(sessionStorage).filter((k) => k.startsWith('vechat.seq.')).length"
    )
    assert seq == 1
    expect(staff.own_message("Sent while you were away").locator(".status")).to_have_text(
        "✓✓ Read"
    )


def test_a_dropped_socket_resumes_with_since(
    browser: Browser, server: str, cast: Cast, chats: dict[str, Chat]
) -> None:
    """A second tab of the client loses its socket; what was sent meanwhile arrives by replay."""
    tab = Chat(browser, server, cast.client)
    urls: list[str] = []
    live: list[WebSocketRoute] = []
    down = [False]

    def route(socket: WebSocketRoute) -> None:
        urls.append(socket.url)
        if down[0]:
            socket.close(code=1012, reason="test: server away")
            return
        live.append(socket.connect_to_server())
        live.append(socket)

    tab.context.route_web_socket(re.compile(r"/api/v1/ws"), route)
    tab.sign_in()
    tab.open("Bruno Lefèvre")
    down[0] = True
    for socket in reversed(live):
        socket.close(code=1012, reason="test: dropped")
    expect(tab.page.locator("#connection")).to_have_text(re.compile("Offline"))
    chats["staff"].send("Sent while the socket was down")
    down[0] = False
    expect(tab.page.locator("#connection")).to_have_text("Live", timeout=15_000)
    expect(tab.their_message("Sent while the socket was down")).to_have_count(1)
    assert "since=" not in urls[0] and re.search(r"since=\d+", urls[-1]), urls
    tab.close()


def test_presence_choice_reaches_the_peer(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    dot = staff.conversation_with("Chloé Dubois").locator(".presence-dot")
    expect(dot).to_have_attribute("data-status", "online")
    client.page.get_by_label("My status").select_option("busy")
    expect(dot).to_have_attribute("data-status", "busy")
    client.page.get_by_label("My status").select_option("online")
    expect(dot).to_have_attribute("data-status", "online")


def test_archived_conversation_comes_back_with_a_new_message(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    staff.open("Chloé Dubois")
    staff.page.get_by_role("button", name="Archive").click()
    expect(staff.conversation_with("Chloé Dubois")).to_have_count(0)
    staff.page.get_by_label("Show archived").check()
    expect(staff.conversation_with("Chloé Dubois")).to_have_count(1)
    staff.page.get_by_label("Show archived").uncheck()
    client.send("Are you still there?")
    expect(staff.conversation_with("Chloé Dubois")).to_have_count(1)
    expect(staff.page.get_by_role("button", name="Archive")).to_be_visible()
    staff.page.get_by_role("button", name="Mute").click()
    expect(staff.conversation_with("Chloé Dubois").locator(".muted-tag")).to_have_count(1)
    staff.page.get_by_role("button", name="Unmute").click()
    expect(staff.conversation_with("Chloé Dubois").locator(".muted-tag")).to_have_count(0)


def test_keyboard_focus_on_a_conversation_draws_a_whole_ring(chats: dict[str, Chat]) -> None:
    """The first conversation touches the scrolling list's edges: its ring must not be cut."""
    page = chats["staff"].page
    page.get_by_label("Show archived").focus()
    page.keyboard.press("Tab")
    item = page.locator(".conversation-item:focus")
    expect(item).to_have_count(1)
    ring = item.evaluate(FOCUS_RING)
    assert ring["focus_visible"] and ring["style"] != "none" and ring["width"] >= 2, ring
    assert ring["color"] not in ("transparent", "rgba(0, 0, 0, 0)"), ring
    assert ring["cut_by"] == [], f"{ring['element']}: its ring is cut by {ring['cut_by']}"
    page.keyboard.press("Shift+Tab")


def _tab_through(page: Page) -> list[dict[str, Any]]:
    """The focus ring at every stop of Tab, from the top bar to the end of the page."""
    page.mouse.move(0, 0)  # nothing is open because the pointer happens to rest on it
    page.locator("#presence-select").focus()
    rings = []
    for _ in range(300):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement === document.body"):
            return rings
        rings.append(page.evaluate(f"({FOCUS_RING})(document.activeElement)"))
    raise AssertionError(f"Tab never reached the end of the page: {rings[-3:]}")


@pytest.mark.parametrize("width", [1280, 375])
def test_every_keyboard_stop_shows_a_whole_focus_ring(
    browser: Browser, server: str, cast: Cast, chats: dict[str, Chat], width: int
) -> None:
    """The list and the open conversation, every element Tab reaches, messages' actions too."""
    chat = Chat(browser, server, cast.staff, width=width)
    chat.sign_in()
    in_list = _tab_through(chat.page)
    chat.open("Chloé Dubois")
    expect(chat.page.locator(".msg .actions").first).to_be_attached()
    in_conversation = _tab_through(chat.page)
    stops = [r["element"] for r in in_list + in_conversation]
    assert any("conversation-item" in stop for stop in stops), stops
    # Every message's actions are Tab stops, also where they open under the bubble (narrow).
    replies = chat.page.locator(".msg .actions button", has_text="Reply").count()
    assert replies > 0 and sum(stop.endswith(" Reply") for stop in stops) == replies, stops
    bad = [
        f"{r['element']}: focus-visible {r['focus_visible']}, outline {r['style']} {r['width']}px,"
        f" cut by {r['cut_by']}"
        for r in in_list + in_conversation
        if not r["focus_visible"] or r["style"] == "none" or r["width"] < 2 or r["cut_by"]
    ]
    assert bad == [], "\n".join(bad)
    assert chat.console_errors == [], chat.console_errors
    chat.close()


def test_the_conversation_header_keeps_name_and_status_on_one_line_at_375_px(
    browser: Browser, server: str, cast: Cast, chats: dict[str, Chat]
) -> None:
    chat = Chat(browser, server, cast.staff, width=375)
    chat.sign_in()
    chat.open("Chloé Dubois")
    actions = chat.page.locator(".conversation-actions").bounding_box()
    assert actions
    for selector in ("#peer-name", "#peer-status"):
        shown = chat.page.locator(selector)
        expect(shown).not_to_be_empty()
        size = shown.evaluate(LINES)
        assert abs(size["height"] - size["line_height"]) < 1, (selector, size)
        assert size["right"] <= actions["x"], (selector, size, actions)
    # A name too long for the width is cut short on its line, not wrapped under it.
    size = chat.page.locator("#peer-name").evaluate(
        "(node) => { node.textContent = 'Maximilian-Alexander von Hohenzollern-Sigmaringen';"
        f" return ({LINES})(node); }}"
    )
    assert abs(size["height"] - size["line_height"]) < 1, size
    assert size["right"] <= actions["x"], (size, actions)
    chat.screenshot("conversation-header-375")
    assert chat.console_errors == [], chat.console_errors
    chat.close()


def test_a_refused_message_shows_the_problem_detail(
    chats: dict[str, Chat], cast: Cast, server: str
) -> None:
    client = chats["client"]
    too_long = "x" * 4001
    headers = {"Authorization": f"Bearer {cast.client.token}"}
    conversation_id = httpx.get(
        server + "/api/v1/conversations", headers=headers, timeout=5
    ).json()["items"][0]["id"]
    refused = httpx.post(
        f"{server}/api/v1/conversations/{conversation_id}/messages",
        json={"body": too_long},
        headers=headers,
        timeout=5,
    )
    assert refused.status_code in (400, 422), refused.text
    box = client.page.get_by_label("Message", exact=True)
    box.fill(too_long)
    box.press("Enter")
    expect(client.page.get_by_role("alert")).to_have_text(re.compile(re.escape(
        refused.json()["detail"]
    )))
    failed = client.page.locator(".msg.pending", has_text="Not sent")
    expect(failed).to_have_count(1)
    failed.get_by_role("button", name="Discard").click()
    expect(failed).to_have_count(0)
    client.page.get_by_role("button", name="Dismiss the error").click()
    expect(client.page.get_by_role("alert")).to_be_hidden()


def test_edit_and_delete_for_everyone(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    client.send("Container 7 is late")
    mine = client.own_message("Container 7 is late")
    client.act(mine, "Edit")
    editor = client.page.get_by_label("Edit the message")
    editor.fill("Container 8 is late")
    editor.press("Enter")
    expect(staff.their_message("Container 8 is late").locator(".edited")).to_have_text("edited")
    edited = client.own_message("Container 8 is late")
    client.act(edited, "Delete for everyone")
    expect(staff.page.locator(".msg.theirs .tombstone")).to_have_count(1)
    expect(staff.page.locator(".msg", has_text="Container 8")).to_have_count(0)
    assert client.dialogs == ["Delete this message for everyone?"]
    client.dialogs.clear()


def test_reply_quotes_the_message_for_both_and_is_kept(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    client.send("Where is container 9?")
    question = staff.their_message("Where is container 9?")
    staff.act(question, "Reply")
    bar = staff.page.locator("#reply-bar")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("Where is container 9?")
    staff.screenshot("staff-replying")
    # Escape drops the reply; choosing it again brings it back.
    staff.page.get_by_label("Message", exact=True).press("Escape")
    expect(bar).to_be_hidden()
    staff.act(question, "Reply")
    staff.send("At dock 4")
    expect(bar).to_be_hidden()
    quote = "↪ Where is container 9?"
    expect(staff.own_message("At dock 4").locator(".reply")).to_have_text(quote)
    expect(client.their_message("At dock 4").locator(".reply")).to_have_text(quote)
    # The server kept it: a reload shows the quote from the stored message.
    client.page.reload()
    expect(client.page.locator("#connection")).to_have_text("Live")
    expect(client.their_message("At dock 4").locator(".reply")).to_have_text(quote)
    # A message sent afterwards answers nothing.
    staff.send("Anything else?")
    expect(client.their_message("Anything else?").locator(".reply")).to_have_count(0)
    staff.screenshot("staff-reply")


def test_a_quote_follows_the_edit_and_the_deletion_of_its_message(
    chats: dict[str, Chat],
) -> None:
    """Live for both sides, and the same after a reload: the new text, then the deleted marker."""
    client, staff = chats["client"], chats["staff"]
    client.send("Pallet 12 waits at gate B")
    staff.act(staff.their_message("Pallet 12 waits at gate B"), "Reply")
    staff.send("Which truck takes it?")
    quotes = (
        staff.own_message("Which truck takes it?").locator(".reply"),
        client.their_message("Which truck takes it?").locator(".reply"),
    )
    for quote in quotes:
        expect(quote).to_have_text("↪ Pallet 12 waits at gate B")

    client.act(client.own_message("Pallet 12 waits at gate B"), "Edit")
    editor = client.page.get_by_label("Edit the message")
    editor.fill("Pallet 12 waits at gate C")
    editor.press("Enter")
    for quote in quotes:
        expect(quote).to_have_text("↪ Pallet 12 waits at gate C")

    client.act(client.own_message("Pallet 12 waits at gate C"), "Delete for everyone")
    for quote in quotes:
        expect(quote).to_have_text("↪ Message deleted")
        expect(quote).to_have_class(re.compile(r"\breply-deleted\b"))
    assert client.dialogs == ["Delete this message for everyone?"]
    client.dialogs.clear()
    staff.screenshot("staff-quote-deleted")

    # The server's reply_to of a deleted message has no preview: the same marker after a reload.
    for chat in (client, staff):
        chat.page.reload()
        expect(chat.page.locator("#connection")).to_have_text("Live")
    for quote in quotes:
        expect(quote).to_have_text("↪ Message deleted")
    for chat in (client, staff):
        assert "Pallet 12" not in chat.page.locator("#message-list").inner_text()


def test_a_quote_the_api_marks_deleted_shows_the_marker(chats: dict[str, Chat]) -> None:
    """`reply_to.deleted: true` (tests/api/test_messages.py) wins over any preview it has."""
    staff = chats["staff"]
    history = re.compile(r"/api/v1/conversations/\d+/messages")

    def marked_deleted(route: Route) -> None:
        response = route.fetch()
        page = response.json()
        for item in page["items"]:
            if item.get("reply_to") and item.get("body") == "At dock 4":
                item["reply_to"] = {**item["reply_to"], "deleted": True}
        route.fulfill(response=response, json=page)

    quote = staff.own_message("At dock 4").locator(".reply")
    expect(quote).to_have_text("↪ Where is container 9?")
    staff.page.route(history, marked_deleted)
    try:
        staff.page.reload()
        expect(staff.page.locator("#connection")).to_have_text("Live")
        expect(quote).to_have_text("↪ Message deleted")
    finally:
        staff.page.unroute(history, marked_deleted)
    staff.page.reload()
    expect(quote).to_have_text("↪ Where is container 9?")


def test_message_search_finds_opens_and_stays_in_the_organisation(
    chats: dict[str, Chat],
) -> None:
    client, staff, other = chats["client"], chats["staff"], chats["other"]
    staff.send("The tarpaulins for dock 4 are ordered")
    # Delivered live first: a loaded server paces delivery (up to 1 s), and a result newer than
    # the open conversation's messages is not paged to, so the click would race the delivery.
    expect(client.their_message("The tarpaulins for dock 4")).to_have_count(1)
    box = client.page.get_by_label("Search messages")
    box.fill("tarpaulins")
    box.press("Enter")
    found = client.page.locator(".search-item")
    expect(found).to_have_count(1)
    expect(found).to_contain_text("Bruno Lefèvre")
    expect(found).to_contain_text("The tarpaulins for dock 4 are ordered")
    expect(client.page.locator("#conversation-list")).to_be_hidden()
    client.screenshot("client-search")
    found.click()
    opened = client.their_message("The tarpaulins for dock 4")
    expect(opened).to_have_class(re.compile(r"\bfound\b"))
    # The same search by a user of another organisation (same numeric ids) finds nothing.
    other_box = other.page.get_by_label("Search messages")
    other_box.fill("tarpaulins")
    other_box.press("Enter")
    expect(other.page.locator("#search-empty")).to_be_visible()
    expect(other.page.locator(".search-item")).to_have_count(0)
    other_box.press("Escape")
    # Esc goes back to the chats.
    box.press("Escape")
    expect(client.page.locator("#search-results")).to_be_hidden()
    expect(client.conversation_with("Bruno Lefèvre")).to_be_visible()


def test_location_is_shared_only_after_asking(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    client.context.grant_permissions(["geolocation"], origin=client.base)
    client.context.set_geolocation({"latitude": 43.29695, "longitude": 5.38107, "accuracy": 25})
    client.page.get_by_role("button", name="Share your location").click()
    shared = staff.page.locator(".msg.theirs .location").last
    expect(shared).to_contain_text("Location: 43.29695, 5.38107")
    expect(shared.get_by_role("link", name="Open map")).to_have_attribute(
        "href", re.compile(r"^https://www\.openstreetmap\.org/\?mlat=43\.29695&mlon=5\.38107")
    )
    expect(client.page.locator(".msg.own .location").last).to_contain_text("43.29695, 5.38107")
    assert client.dialogs == ["Share your current location with Bruno Lefèvre?"]
    client.dialogs.clear()


def test_voice_message_is_recorded_sent_and_playable(
    chats: dict[str, Chat], server: str
) -> None:
    client, staff = chats["client"], chats["staff"]
    client.context.grant_permissions(["microphone"], origin=client.base)
    client.page.get_by_role("button", name="Record a voice message").click()
    expect(client.page.locator("#record-time")).to_have_text(re.compile(r"^● 0:0[1-9]"))
    client.page.get_by_role("button", name="Stop and send the voice message").click()
    expect(client.page.locator("#record-time")).to_be_hidden()
    played = staff.page.locator(".msg.theirs audio.inline-media").last
    expect(played).to_have_attribute("src", re.compile("^blob:"))
    expect(staff.conversation_with("Chloé Dubois").locator(".preview")).to_have_text(
        "Voice message"
    )
    assert played.evaluate(
        "(a) => new Promise((done) => a.readyState >= 1 ? done(a.duration)"
        " : a.addEventListener('loadedmetadata', () => done(a.duration)))"
    ) > 0
    # The server sniffed the upload as audio and kept the duration the recording took.
    headers = {"Authorization": f"Bearer {client.person.token}"}
    with httpx.Client(base_url=server + "/api/v1", headers=headers, timeout=10) as http:
        conversation = next(c for c in http.get("/conversations").json()["items"]
                            if c["peer"]["display_name"] == "Bruno Lefèvre")
        last = http.get(f"/conversations/{conversation['id']}/messages?limit=1").json()["items"][0]
    assert last["message_type"] == "audio" and last["audio"]["duration_s"] >= 1, last
    assert last["attachment"]["file_type"].startswith("audio/"), last
    # Esc drops a recording: nothing is sent.
    client.page.get_by_role("button", name="Record a voice message").click()
    expect(client.page.locator("#record-time")).to_be_visible()
    client.page.keyboard.press("Escape")
    expect(client.page.locator("#record-time")).to_be_hidden()
    client.page.wait_for_timeout(500)
    expect(staff.page.locator(".msg.theirs audio.inline-media")).to_have_count(1)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small solid PNG, made here so the test needs no fixture file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def test_image_attachment_is_shown_inline_to_both(chats: dict[str, Chat]) -> None:
    client, staff = chats["client"], chats["staff"]
    client.page.locator("#attach-input").set_input_files(
        {"name": "dock.png", "mimeType": "image/png", "buffer": _png(48, 32, (37, 99, 235))}
    )
    for chat in (client, staff):
        image = chat.page.locator(".msg img.inline-image[alt='dock.png']")
        expect(image).to_be_visible()
        expect(image).to_have_attribute("src", re.compile("^blob:"))
        assert image.evaluate("(img) => img.complete && img.naturalWidth") == 48
    staff.screenshot("staff-image")


def test_history_pages_back_with_before(chats: dict[str, Chat], cast: Cast, server: str) -> None:
    colleague, staff = cast.colleague, chats["staff"]
    headers = {"Authorization": f"Bearer {colleague.token}"}
    with httpx.Client(base_url=server + "/api/v1", headers=headers, timeout=10) as http:
        peer = {"user_id": staff.person.user_id, "user_type": staff.person.user_type}
        created = http.post("/conversations", json={"peer": peer})
        assert created.status_code in (200, 201), created.text
        conversation_id = created.json()["id"]
        for n in range(1, 61):
            sent = http.post(
                f"/conversations/{conversation_id}/messages",
                json={"client_id": f"history-{n}", "body": f"History line {n}"},
            )
            assert sent.status_code == 201, sent.text
    staff.open("Alice Martin")
    bodies = staff.page.locator(".msg.theirs .body")
    expect(bodies.last).to_have_text("History line 60")
    expect(bodies).to_have_count(50)
    expect(bodies.first).to_have_text("History line 11")
    # Pressed where it is: scrolling it into view first (as a click does) would itself page back,
    # the log loads older messages near its top, and hide the button before the click lands.
    staff.page.get_by_role("button", name="Load older messages").dispatch_event("click")
    expect(bodies).to_have_count(60)
    expect(bodies.first).to_have_text("History line 1")
    expect(staff.page.get_by_role("button", name="Load older messages")).to_be_hidden()

    # A search result older than the newest page: opening it pages back to it.
    staff.page.reload()
    expect(staff.page.locator("#connection")).to_have_text("Live")
    expect(bodies).to_have_count(50)
    box = staff.page.get_by_label("Search messages")
    box.fill("History line 7")
    box.press("Enter")
    staff.page.locator(".search-item", has_text="History line 7").click()
    expect(staff.their_message("History line 7")).to_have_class(re.compile(r"\bfound\b"))
    expect(staff.their_message("History line 7")).to_be_in_viewport()
    box.press("Escape")

    # Deleting the conversation is for the staff member only.
    staff.page.get_by_role("button", name="Delete", exact=True).click()
    expect(staff.conversation_with("Alice Martin")).to_have_count(0)
    expect(staff.page.locator("#pane-empty")).to_be_visible()
    assert staff.dialogs[-1].startswith("Delete the conversation with Alice Martin")
    with httpx.Client(base_url=server + "/api/v1", headers=headers, timeout=10) as http:
        kept = http.get(f"/conversations/{conversation_id}/messages").json()["items"]
    assert len(kept) == 50  # Alice keeps everything (the newest page of it)


def test_a_found_message_keeps_its_highlight_when_it_is_drawn_again(
    browser: Browser, server: str, cast: Cast
) -> None:
    """Opened from a search, unread: reading it and a new message redraw its node meanwhile.

    The page's clock is paused, so the highlight's 2 s pass only when the test says so.
    """
    colleague = cast.colleague
    headers = {"Authorization": f"Bearer {colleague.token}"}
    with httpx.Client(base_url=server + "/api/v1", headers=headers, timeout=10) as http:
        peer = {"user_id": cast.staff.user_id, "user_type": cast.staff.user_type}
        created = http.post("/conversations", json={"peer": peer})
        assert created.status_code in (200, 201), created.text
        conversation_id = created.json()["id"]
        sent = http.post(
            f"/conversations/{conversation_id}/messages",
            json={"body": "Crane 5 is booked for Tuesday"},
        )
        assert sent.status_code == 201, sent.text
        chat = Chat(browser, server, cast.staff)
        chat.page.clock.install()
        chat.sign_in()
        expect(chat.conversation_with("Alice Martin").locator(".badge")).to_have_text("1")
        box = chat.page.get_by_label("Search messages")
        box.fill("crane")
        box.press("Enter")
        result = chat.page.locator(".search-item", has_text="Crane 5 is booked")
        expect(result).to_have_count(1)
        chat.page.clock.pause_at(chat.page.evaluate("Date.now()") + 1000)
        result.click()
        found = chat.their_message("Crane 5 is booked for Tuesday")
        expect(found).to_have_class(re.compile(r"\bfound\b"))
        found.evaluate("(node) => { node.drawnBefore = true; }")
        chat.page.clock.run_for(500)  # the pane reads it: the message changed
        expect(chat.conversation_with("Alice Martin").locator(".badge")).to_have_count(0)
        sent = http.post(
            f"/conversations/{conversation_id}/messages", json={"body": "And crane 6 on Wednesday"}
        )
        assert sent.status_code == 201, sent.text
    expect(chat.their_message("And crane 6 on Wednesday")).to_have_count(1)
    assert found.evaluate("(node) => node.drawnBefore === undefined"), "not drawn again"
    expect(found).to_have_class(re.compile(r"\bfound\b"))
    chat.page.clock.run_for(2000)
    expect(found).not_to_have_class(re.compile(r"\bfound\b"))
    chat.page.clock.resume()
    assert chat.console_errors == [], chat.console_errors
    chat.close()
