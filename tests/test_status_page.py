"""The status page (issue 7) in a real browser: headless Chromium driven by Selenium, against
a 2-node cluster of real ``xdnsd serve`` processes, ns1 with the HTTP API and a Route 53
target (moto) mirroring one of its two zones.

A replication conflict is made across a cut link (both nodes replace the same RRset while they
cannot talk), then the page is loaded and signed in to:

* the matrix shows both zones against ns1, ns2 and r53, every cell naming its state (r53 only
  where it mirrors the zone);
* the conflict is listed with a keep button per node; a read-only token pressing one gets a
  visible error and the conflict stays; the read-write token's press resolves it: it leaves the
  page, ``GET /api/v1/conflicts`` is empty, and both nodes serve the side that was kept.

A screenshot goes to ``test-artifacts/status-page.png``, and with ``XDNSD_UPDATE_SCREENSHOT=1``
also to ``docs/status-page.png`` (the README's).  Chromium and its driver are Debian's
(``scripts/setup``); without them the test fails, it does not skip.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.query
import pytest

from tests.fakes.moto import CREDENTIALS, MotoServer
from tests.harness import ROOT, LinkProxy, XdnsdProcess, free_port, nsupdate

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
SECRET = base64.b64encode(b"status page test tsig key, 32 b!").decode()
PEER_KEY = base64.b64encode(b"status page test peer key, 32 b!").decode()
READER = "reader-token-status-page"
OPS = "ops-token-status-page-rw"
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
WAIT = 30.0
T = TypeVar("T")


def browser() -> Any:
    """Headless Chromium through Debian's chromedriver, named explicitly (Selenium Manager
    never looks for, let alone downloads, a driver or a browser)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: the status page test needs Debian's chromium and "
            "chromium-driver (scripts/setup installs them: apt-get install chromium "
            "chromium-driver)",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(
            "the selenium package is missing: .venv/bin/pip install -e '.[test]'", pytrace=False
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER))
    return webdriver.Chrome(service=service, options=options)


class Cluster:
    """ns1 (the API, the Route 53 target's owner) and ns2; ns1 reaches ns2 through a proxy
    (the lower id dials), so cutting the proxy cuts the pair's one link."""

    def __init__(self, directory: Path, moto: MotoServer) -> None:
        moto.reset()
        zone_id = moto.create_zone("example.test.")
        example = directory / "example.test.zone"
        example.write_text(ZONE + "www A 192.0.2.80\n")
        other = directory / "other.test.zone"
        other.write_text(ZONE)
        self.dns = {n: free_port() for n in ("ns1", "ns2")}
        peer = {n: free_port() for n in ("ns1", "ns2")}
        self.api_port = free_port()
        self.proxy = LinkProxy(peer["ns2"])
        self.proxy.start()
        via = {"ns1": self.proxy.port, "ns2": peer["ns1"]}  # where each node reaches the other
        self.procs: dict[str, XdnsdProcess] = {}
        self.configs: dict[str, Path] = {}
        for node, other_node in (("ns1", "ns2"), ("ns2", "ns1")):
            d = directory / node
            d.mkdir()
            api = (
                f'[api]\nlisten = "127.0.0.1:{self.api_port}"\n'
                f'[api.tokens.reader]\nsecret = "{READER}"\n'
                f'[api.tokens.ops]\nsecret = "{OPS}"\nrole = "read-write"\n'
                if node == "ns1"
                else ""
            )
            self.configs[node] = d / "xdnsd.toml"
            self.configs[node].write_text(
                f'[server]\nlisten = ["127.0.0.1:{self.dns[node]}"]\ndata_dir = "{d / "var"}"\n'
                f'[node]\nid = "{node}"\npeer_listen = "127.0.0.1:{peer[node]}"\n'
                f'[[peers]]\nid = "{other_node}"\naddress = "127.0.0.1:{via[node]}"\n'
                f'key = "{PEER_KEY}"\n'
                f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
                f"{api}"
                f'[targets.r53]\nkind = "route53"\nowner = "ns1"\nhosted_zone_id = "{zone_id}"\n'
                f'endpoint_url = "{moto.url}"\n'
                f'access_key_id = "{CREDENTIALS["aws_access_key_id"]}"\n'
                f'secret_access_key = "{CREDENTIALS["aws_secret_access_key"]}"\n'
                "reconcile_every = 5\n"
                f'[[zones]]\nname = "example.test"\nfile = "{example}"\n'
                'update_policy = ["grant upd zonesub ANY"]\ntargets = ["r53"]\n'
                f'[[zones]]\nname = "other.test"\nfile = "{other}"\n'
            )
        for node in ("ns1", "ns2"):
            self.procs[node] = XdnsdProcess(self.configs[node], self.dns[node])
        for proc in self.procs.values():
            proc.wait_ready("example.test")

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in self.procs.items())

    def api(self, path: str, token: str = READER) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    def nsupdate(self, node: str, commands: str) -> None:
        nsupdate(self.dns[node], commands, f"hmac-sha256:upd:{SECRET}")

    def served(self, node: str, name: str) -> list[str]:
        query = dns.message.make_query(name, "A")
        answer = dns.query.udp(query, "127.0.0.1", port=self.dns[node], timeout=2)
        return sorted(str(rd) for rrset in answer.answer for rd in rrset)

    def stop(self) -> dict[str, int]:
        self.proxy.cut()
        statuses = {}
        for name, proc in self.procs.items():  # every node is stopped, whatever another did
            try:
                statuses[name] = proc.stop()
            except AssertionError:
                proc.kill()
                statuses[name] = -1
        return statuses


@pytest.fixture
def cluster(tmp_path: Path, moto: MotoServer) -> Iterator[Cluster]:
    c = Cluster(tmp_path, moto)
    try:
        yield c
    finally:
        statuses = c.stop()
        assert all(s == 0 for s in statuses.values()), (statuses, c.logs())


def until(what: str, check: Callable[[], T | None], details: Callable[[], str]) -> T:
    """``check()``'s first truthy answer within WAIT seconds (a failed look is a miss)."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + WAIT
    last: object = None
    while True:
        try:
            found = check()
            if found:
                return found
            last = found
        except (AssertionError, OSError, WebDriverException, dns.exception.DNSException) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT} s (last: {last!r})\n{details()}")
        time.sleep(0.1)


# what the page shows, read in one script (no stale elements between calls)
READ_PAGE = """
const q = (sel) => Array.from(document.querySelectorAll(sel));
const shown = (id) => { const e = document.getElementById(id); return !!e && !e.hidden; };
return {
  signedIn: shown("dashboard"),
  login: shown("login"),
  error: shown("error") ? document.getElementById("error").textContent : null,
  columns: q("#matrix thead th.column").map((th) => th.dataset.column),
  cells: q("#matrix td.cell").map((td) =>
    [td.dataset.zone, td.dataset.column, td.dataset.state, td.textContent.trim()]),
  nodes: q("#nodes tr[data-node]").map((tr) => [tr.dataset.node, tr.dataset.connected]),
  targets: q("#targets tr[data-target]").map((tr) => [tr.dataset.target, tr.dataset.state]),
  conflicts: q("#conflicts .conflict").map((c) => ({
    id: c.dataset.conflictId,
    kind: c.dataset.kind,
    keep: Array.from(c.querySelectorAll("button.keep")).map((b) => b.dataset.keep),
    text: c.textContent})),
  noConflicts: !!document.getElementById("no-conflicts"),
  changes: q("#changes tr.change").length,
  syncs: q("#syncs tr.sync").length,
  action: shown("action-result") ?
    [document.getElementById("action-result").dataset.outcome,
     document.getElementById("action-result").textContent] : null,
};
"""


def test_status_page(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.nsupdate("ns1", "update add api.example.test 300 A 192.0.2.10\n")
    until(
        "the link up (a change at ns2)",
        lambda: cluster.served("ns2", "api.example.test") == ["192.0.2.10"],
        cluster.logs,
    )
    # both nodes replace www's A RRset while they cannot talk: ns2 last, so its is served
    cluster.proxy.cut()
    for node, address in (("ns1", "192.0.2.81"), ("ns2", "192.0.2.82")):
        cluster.nsupdate(
            node,
            f"update delete www.example.test A\nupdate add www.example.test 300 A {address}\n",
        )
        time.sleep(0.01)
    cluster.proxy.start()
    (conflict,) = until("the conflict", lambda: cluster.api("/api/v1/conflicts"), cluster.logs)
    until(
        "both serve the provisional winner",
        lambda: (
            cluster.served("ns1", "www.example.test")
            == cluster.served("ns2", "www.example.test")
            == ["192.0.2.82"]
        ),
        cluster.logs,
    )

    driver = browser()
    try:
        driver.set_page_load_timeout(15)
        base = f"http://127.0.0.1:{cluster.api_port}/"

        def page() -> dict[str, Any]:
            return dict(driver.execute_script(READ_PAGE))

        def details() -> str:
            try:
                state = json.dumps(page(), indent=1)
            except Exception as exc:
                state = repr(exc)
            return f"page: {state}\n{cluster.logs()}"

        def sign_in(token: str) -> None:
            from selenium.webdriver.common.by import By

            until("the sign-in form", lambda: page()["login"], details)
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "login-button").click()
            until("signed in", lambda: page()["signedIn"] and not page()["login"], details)

        def keep(node: str) -> None:
            from selenium.webdriver.common.by import By

            selector = f'.conflict[data-conflict-id="{conflict["id"]}"] button[data-keep="{node}"]'
            until(
                f"the keep {node} button",
                lambda: driver.find_element(By.CSS_SELECTOR, selector).is_enabled(),
                details,
            )
            driver.find_element(By.CSS_SELECTOR, selector).click()

        driver.get(base)  # no token needed for the page itself
        assert driver.title == "xdnsd status"
        # a wrong token is refused with a visible message, and the form comes back
        sign_in_bad = "not-a-token-0123456789"
        from selenium.webdriver.common.by import By

        driver.find_element(By.ID, "token").send_keys(sign_in_bad)
        driver.find_element(By.ID, "login-button").click()
        error = until("the refusal", lambda: page()["error"], details)
        assert "unknown token" in error and page()["login"], error

        # the read-only token: it sees everything, resolving is refused visibly
        sign_in(READER)

        def matrix_settled() -> bool:
            shown = page()
            cells = {(z, c): (s, text) for z, c, s, text in shown["cells"]}
            return (
                shown["columns"] == ["ns1", "ns2", "r53"]
                and cells.get(("example.test.", "ns1")) == ("in-sync", "in-sync")
                and cells.get(("example.test.", "ns2")) == ("in-sync", "in-sync")
                and cells.get(("example.test.", "r53")) == ("in-sync", "in-sync")
                and cells.get(("other.test.", "ns1")) == ("in-sync", "in-sync")
                and cells.get(("other.test.", "ns2")) == ("in-sync", "in-sync")
                and cells.get(("other.test.", "r53"), ("",))[0] == "n/a"  # not mirrored there
                and shown["syncs"] > 0
            )

        until("the matrix: everything in sync", matrix_settled, details)
        shown = page()
        assert ["ns2", "true"] in shown["nodes"], shown["nodes"]
        assert shown["targets"] == [["r53", "in-sync"]], shown["targets"]
        assert shown["changes"] > 0
        (listed,) = shown["conflicts"]
        assert listed["id"] == conflict["id"] and listed["kind"] == conflict["kind"], listed
        assert listed["keep"] == ["ns2", "ns1"], listed  # one per node, the served side first
        assert "www.example.test." in listed["text"] and "192.0.2.81" in listed["text"]
        keep("ns1")
        outcome = until("the refusal to resolve", lambda: page()["action"], details)
        assert outcome[0] == "error" and "may only read" in outcome[1], outcome
        assert "403" in outcome[1], outcome
        assert [c["id"] for c in page()["conflicts"]] == [conflict["id"]]

        # the read-write token: the screenshot, then keep ns1's side
        driver.find_element(By.ID, "logout").click()
        sign_in(OPS)
        until("the conflict listed", lambda: page()["conflicts"], details)
        until("the matrix again", matrix_settled, details)
        screenshot(driver)
        keep("ns1")
        outcome = until("the resolution", lambda: page()["action"], details)
        assert outcome[0] == "ok" and conflict["id"] in outcome[1], outcome
        until("the conflict gone from the page", lambda: page()["noConflicts"], details)
        assert cluster.api("/api/v1/conflicts") == []
        until(
            "both serve the side kept",
            lambda: (
                cluster.served("ns1", "www.example.test")
                == cluster.served("ns2", "www.example.test")
                == ["192.0.2.81"]
            ),
            details,
        )
        assert not cluster.api("/api/v1/conflicts"), "it came back"
        # the token is kept for the tab: a reload shows the page, signed in, with no form
        driver.refresh()
        until("signed in after a reload", lambda: page()["signedIn"], details)
        assert not page()["login"]
    finally:
        driver.quit()
    print(f"status page test: {time.monotonic() - started:.1f} s")


def screenshot(driver: Any) -> None:
    """The whole page (the window grown to its height) to test-artifacts/, and to docs/ when
    XDNSD_UPDATE_SCREENSHOT=1."""
    metrics = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics["height"] = max(600, min(height, 4000))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    time.sleep(0.3)  # a frame after the resize
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "status-page.png"
    assert driver.save_screenshot(str(path)), "no screenshot"
    if os.environ.get("XDNSD_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / "status-page.png")
