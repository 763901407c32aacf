"""xdnsd as a secondary: it takes a zone from a primary (RFC 1034 4.3.5, RFC 1995, RFC 1996).

The pure parts first: reading an IXFR answer (RFC 1995 4: AXFR-style, a single SOA, sequences
condensed into one difference) and the keeper's SOA timers (refresh, retry, expire, kept across
restarts), with the network call replaced by a function returning what a primary would.

Then a real BIND ``named`` is the primary (``test_bind_primary``): xdnsd starts before it and
answers SERVFAIL for the zone it does not hold yet; it loads the zone by AXFR once BIND is up;
changes made at BIND with signed UPDATEs reach xdnsd by NOTIFY + IXFR (xdnsd's status and log
say IXFR); the zones are compared record by record, SOA serial included; each transfer is a
change in xdnsd's history and journal (an IXFR from xdnsd gives the same difference); NOTIFY
from a stranger is REFUSED; ``xdnsd zone retransfer`` takes a full copy; with BIND stopped the
zone expires (SERVFAIL) after the SOA's expire time, and comes back when BIND returns.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest

from tests.harness import XdnsdProcess, free_port, run_cli, write_config
from tests.named import NAMED, named_options
from xdnsd.config import ListenAddress
from xdnsd.model import RR
from xdnsd.server.secondary import (
    Fetched,
    SecondaryKeeper,
    SecondarySpec,
    TransferFormError,
    read_axfr,
    read_ixfr,
    status_key,
)
from xdnsd.store import Store
from xdnsd.zonefile import parse_zone_text

ORIGIN = dns.name.from_text("example.test.")
SECRET = base64.b64encode(b"secondary test key of 32 octets!").decode()
KEY = dns.tsig.Key("xfr-key.", SECRET, dns.tsig.HMAC_SHA256)
HOST = "127.0.0.1"


def rr(text: str) -> RR:
    """``owner ttl type rdata`` with owner relative to example.test."""
    owner, ttl, rdtype, rdata = text.split(None, 3)
    name = dns.name.from_text(owner, ORIGIN)
    return RR(name, int(ttl), dns.rdata.from_text("IN", rdtype, rdata, origin=ORIGIN))


def soa(serial: int, refresh: int = 3600, retry: int = 600, expire: int = 86400) -> RR:
    return rr(f"@ 300 SOA ns1 host {serial} {refresh} {retry} {expire} 60")


# --------------------------------------------------------------------------- reading IXFR


def test_ixfr_sequences_condense_to_one_difference() -> None:
    answer = [
        soa(12),
        soa(10),
        rr("a 300 A 192.0.2.1"),
        soa(11),
        rr("b 300 A 192.0.2.2"),
        rr("c 300 A 192.0.2.3"),
        soa(11),
        rr("c 300 A 192.0.2.3"),  # added in 11, removed in 12: nothing
        soa(12),
        rr("d 300 A 192.0.2.4"),
        soa(12),
    ]
    got = read_ixfr(ORIGIN, answer)
    assert got.kind == "IXFR" and got.base == 10 and got.serial == 12
    assert got.removed == [rr("a 300 A 192.0.2.1")]
    assert sorted(r.to_text() for r in got.added) == sorted(
        [rr("b 300 A 192.0.2.2").to_text(), rr("d 300 A 192.0.2.4").to_text()]
    )


def test_ixfr_single_soa_and_axfr_style() -> None:
    assert read_ixfr(ORIGIN, [soa(5)]).kind == "current"
    full = read_ixfr(ORIGIN, [soa(7), rr("@ 300 NS ns1"), rr("ns1 300 A 192.0.2.1"), soa(7)])
    assert full.kind == "AXFR" and full.records is not None
    assert [r.rdtype for r in full.records] == [6, 2, 1]
    empty = read_ixfr(ORIGIN, [soa(7), soa(7)])  # a zone of just its SOA, AXFR-style
    assert empty.kind == "AXFR" and empty.records == [soa(7)]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ([rr("a 300 A 192.0.2.1")], "start with the SOA"),
        ([soa(3), soa(1), rr("a 300 A 192.0.2.1")], "end with the current SOA"),
        ([soa(3), soa(1), rr("a 300 A 192.0.2.1"), soa(3)], "no new SOA"),
        ([soa(3), soa(1), soa(2), soa(1), soa(3), soa(3)], "do not follow"),
        ([soa(3), soa(1), soa(2), soa(3)], "does not end at the current serial"),
        ([soa(3), soa(1), soa(3), rr("x.example.org. 300 A 192.0.2.1"), soa(3)], "outside"),
    ],
)
def test_bad_ixfr_is_refused_whole(answer: list[RR], problem: str) -> None:
    with pytest.raises(TransferFormError, match=problem):
        read_ixfr(ORIGIN, answer)


def test_bad_axfr_is_refused_whole() -> None:
    with pytest.raises(TransferFormError, match="outside"):
        read_axfr(ORIGIN, [soa(1), rr("www.example.org. 300 A 192.0.2.1"), soa(1)])
    with pytest.raises(TransferFormError, match="second, different SOA"):
        read_axfr(ORIGIN, [soa(1), rr("www 300 A 192.0.2.1"), soa(2)])


# --------------------------------------------------------------------------- the keeper's timers


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


ZONE = """\
$TTL 300
@ SOA ns1 host {serial} 10 5 30 60
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.{last}
"""


def axfr_of(serial: int, last: int = 80) -> Fetched:
    records = parse_zone_text(ZONE.format(serial=serial, last=last), ORIGIN)
    head = next(r for r in records if r.rdtype == dns.rdatatype.SOA)
    return Fetched(ORIGIN, "192.0.2.53:53", "AXFR", head, records=records)


class Primary:
    """What the fetcher sees: the answers a primary gives, or an error while it is down."""

    def __init__(self) -> None:
        self.serial = 2024010101
        self.last = 80
        self.up = True
        self.calls: list[tuple[int | None, bool]] = []

    def __call__(self, spec: SecondarySpec, ours: int | None, full: bool) -> Fetched:
        self.calls.append((ours, full))
        if not self.up:
            return Fetched(ORIGIN, error="192.0.2.53:53: SOA query failed: timed out")
        if ours == self.serial and not full:
            return Fetched(ORIGIN, "192.0.2.53:53", "current", axfr_of(self.serial).soa)
        return axfr_of(self.serial, self.last)


def make_keeper(store: Store, clocks: Clocks, primary: Primary) -> SecondaryKeeper:
    spec = SecondarySpec(ORIGIN, (ListenAddress("192.0.2.53", 53),))
    return SecondaryKeeper(
        store, {ORIGIN: spec}, clock=lambda: clocks.mono, wall=lambda: clocks.wall, fetcher=primary
    )


def settle(keeper: SecondaryKeeper, timeout: float = 5.0) -> None:
    """Run the keeper's loop until its checks in flight are done (the fetcher returns at once)."""
    deadline = time.monotonic() + timeout
    keeper.tick()
    while any(z.running is not None for z in keeper._zones.values()):
        assert time.monotonic() < deadline
        time.sleep(0.005)
        keeper.readable(keeper.sockets[0])


def served(store: Store) -> tuple[int, bool, str]:
    with store.snapshot() as snap:
        zone = snap.zone(ORIGIN)
        www = zone.rrsets_at(dns.name.from_text("www", ORIGIN))
    found = store.zone_for(ORIGIN)  # what the query path sees
    assert found is not None and found.expired == zone.meta.expired
    return zone.meta.serial, zone.meta.expired, www[1][0].to_text()


def test_timers_refresh_retry_expire(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", "n1")
    clocks, primary = Clocks(), Primary()
    keeper = make_keeper(store, clocks, primary)
    try:
        settle(keeper)  # first check at start: AXFR, the zone is created with BIND's serial
        assert served(store) == (2024010101, False, "192.0.2.80")
        assert primary.calls == [(None, False)]
        with store.snapshot() as snap:
            assert snap.history(ORIGIN)[0]["origin"] == "xfr:192.0.2.53:53"
        # nothing until refresh (10 s); then a check that finds the same serial
        clocks.advance(9)
        settle(keeper)
        assert len(primary.calls) == 1
        clocks.advance(1)
        settle(keeper)
        assert primary.calls[-1] == (2024010101, False)
        # a newer serial at the primary is picked up at the next refresh, as the difference
        primary.serial, primary.last = 2024010102, 81
        clocks.advance(10)
        settle(keeper)
        assert served(store) == (2024010102, False, "192.0.2.81")
        with store.snapshot() as snap:
            entry = snap.history(ORIGIN)[0]
        assert (entry["added"], entry["removed"]) == (1, 1)  # www changed, nothing else
        # the primary goes away: retries every 5 s, and at 30 s after the last good check
        # the zone expires (SERVFAIL), as the SOA says
        primary.up = False
        for _ in range(5):
            clocks.advance(5)
            settle(keeper)
            assert not served(store)[1]
        status = store.status(status_key(ORIGIN))
        assert status is not None and "timed out" in status["error"]
        clocks.advance(5)
        settle(keeper)
        assert served(store)[1], "the zone should have expired"
        assert (store.status(status_key(ORIGIN)) or {})["expired"] is True
        # a restart keeps it expired (the deadline is in the store)
        keeper.close()
        keeper = make_keeper(store, clocks, primary)
        assert served(store)[1]
        # the primary returns: the next retry brings the zone back
        primary.up = True
        clocks.advance(5)
        settle(keeper)
        assert served(store) == (2024010102, False, "192.0.2.81")
        status = store.status(status_key(ORIGIN)) or {}
        assert status["error"] is None and status["expired"] is False
    finally:
        keeper.close()
        store.close()


def test_restart_past_the_deadline_expires_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", "n1")
    clocks, primary = Clocks(), Primary()
    keeper = make_keeper(store, clocks, primary)
    try:
        settle(keeper)
        keeper.close()
        clocks.advance(31)  # xdnsd was stopped past the expire time
        primary.up = False
        keeper = make_keeper(store, clocks, primary)
        assert served(store)[1]
    finally:
        keeper.close()
        store.close()


def test_notify_checks_now_unless_up_to_date(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", "n1")
    clocks, primary = Clocks(), Primary()
    keeper = make_keeper(store, clocks, primary)
    try:
        settle(keeper)
        calls = len(primary.calls)
        assert keeper.notify(ORIGIN, 2024010101, "192.0.2.53") == dns.rcode.NOERROR
        settle(keeper)
        assert len(primary.calls) == calls  # the serial we hold: nothing to do
        primary.serial = 2024010105
        assert keeper.notify(ORIGIN, 2024010105, "192.0.2.53") == dns.rcode.NOERROR
        settle(keeper)
        assert len(primary.calls) == calls + 1
        assert served(store)[0] == 2024010105
        other = dns.name.from_text("other.test.")
        assert keeper.notify(other, 1, "192.0.2.53") == dns.rcode.NOTAUTH
    finally:
        keeper.close()
        store.close()


def test_ixfr_from_another_base_falls_back_to_axfr(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", "n1")
    clocks, primary = Clocks(), Primary()
    keeper = make_keeper(store, clocks, primary)
    try:
        settle(keeper)
        bad = Fetched(
            ORIGIN,
            "192.0.2.53:53",
            "IXFR",
            soa(2024010109, 10, 5, 30),
            base=2024010100,  # not what we hold
            added=[rr("new 300 A 192.0.2.9")],
        )
        keeper._zones[ORIGIN].running = None
        keeper._finish(keeper._zones[ORIGIN], bad)
        assert served(store)[0] == 2024010101  # nothing applied
        assert keeper._zones[ORIGIN].full  # the next check asks for the whole zone
        clocks.advance(5)
        settle(keeper)
        assert primary.calls[-1] == (2024010101, True)
    finally:
        keeper.close()
        store.close()


# --------------------------------------------------------------------------- BIND as the primary

PRIMARY_ZONE = """\
$TTL 300
@ SOA ns1 hostmaster 2024060101 2 1 6 60
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.80
mail A 192.0.2.25
@ MX 10 mail
txt TXT "hello" "world"
"""

NAMED_PRIMARY = """\
key "xfr-key" {{ algorithm hmac-sha256; secret "{secret}"; }};
{options}controls {{ }};
zone "example.test" {{
    type primary;
    file "{dir}/example.test.db";
    allow-update {{ key "xfr-key"; }};
    allow-transfer {{ key "xfr-key"; }};
    notify explicit;
    notify-delay 0;
    also-notify {{ 127.0.0.1 port {secondary_port}; }};
}};
"""


class NamedPrimary:
    def __init__(self, directory: Path, port: int, secondary_port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = port
        zone = directory / "example.test.db"
        if not zone.exists():
            zone.write_text(PRIMARY_ZONE)
        self.conf = directory / "named.conf"
        self.conf.write_text(
            NAMED_PRIMARY.format(
                options=named_options(
                    directory,
                    port,
                    "notify-source 127.0.0.1;",
                    "transfer-source 127.0.0.1;",
                    "notify-rate 1000;",  # (at 20/s a NOTIFY may wait 500 ms in BIND)
                ),
                dir=directory,
                secret=SECRET,
                secondary_port=secondary_port,
            )
        )
        self.log_path = directory / "named.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [NAMED, "-g", "-n", "1", "-c", str(self.conf)], stdout=log, stderr=log
        )
        log.close()
        wait_for(lambda: serial_at(self.port, key=None) is not None, "BIND answering", self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def update(self, *ops: tuple[str, str, str, str]) -> None:
        update = dns.update.UpdateMessage("example.test")
        for op, name, rdtype, data in ops:
            if op == "add":
                update.add(name, 300, rdtype, data)
            elif data:
                update.delete(name, rdtype, data)
            else:
                update.delete(name, rdtype)
        update.use_tsig(KEY)
        response = dns.query.tcp(update, HOST, port=self.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR, response


def query(
    port: int, name: str, rdtype: str, key: dns.tsig.Key | None = None
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if key is not None:
        q.use_tsig(key)
    return dns.query.udp(q, HOST, port=port, timeout=1)


def serial_at(port: int, key: dns.tsig.Key | None = None) -> int | None:
    try:
        r = query(port, "example.test", "SOA", key)
    except (dns.exception.DNSException, OSError):
        return None
    if r.rcode() != dns.rcode.NOERROR or not r.answer:
        return None
    return int(r.answer[0][0].serial)


def is_serial(port: int, serial: int) -> bool:
    return serial_at(port) == serial


def rcode_at(port: int, name: str = "www.example.test", rdtype: str = "A") -> int | None:
    try:
        return int(query(port, name, rdtype).rcode())
    except (dns.exception.DNSException, OSError):
        return None


def wait_for(
    check: Callable[[], bool], what: str, log: Callable[[], str], limit: float = 20
) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            raise AssertionError(f"{what}: not within {limit} s\n{log()}")
        time.sleep(0.02)
    return time.monotonic() - started


def zone_records(port: int) -> set[tuple[str, int, str, str]]:
    """The zone by AXFR (signed), SOA included, in canonical form."""
    messages = dns.query.xfr(
        HOST,
        "example.test",
        port=port,
        keyring={KEY.name: KEY},
        keyname=KEY.name,
        relativize=False,
        lifetime=10,
    )
    out = set()
    for message in messages:
        for rrset in message.answer:
            for rdata in rrset:
                out.add(
                    (
                        rrset.name.to_text().lower(),
                        rrset.ttl,
                        dns.rdatatype.to_text(rdata.rdtype),
                        rdata.to_digestable(dns.name.root).hex(),
                    )
                )
    return out


def zone_status(config: Path) -> dict[str, object]:
    listed = json.loads(run_cli("zone", "list", "--json", config=config).stdout)
    (row,) = [z for z in listed if z["zone"] == "example.test."]
    return dict(row)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[NamedPrimary, XdnsdProcess]]:
    port, bind_port = free_port(), free_port()
    while bind_port == port:
        bind_port = free_port()
    options = (
        f'primaries = ["127.0.0.1:{bind_port}"]\nprimary_key = "xfr-key"\n'
        'allow_transfer = ["key xfr-key"]'
    )
    (tmp_path / "x").mkdir()
    config = write_config(
        tmp_path / "x",
        {"example.test": None},
        port=port,
        keys={"xfr-key": ("hmac-sha256", SECRET)},
        zone_options={"example.test": options},
    )
    bind = NamedPrimary(tmp_path / "bind", bind_port, port)
    server = XdnsdProcess(config, port)
    try:
        yield bind, server
    finally:
        bind.stop()
        if server.proc.poll() is None:
            assert server.stop() == 0, server.log()
        else:
            server.kill()


@pytest.mark.slow
def test_bind_primary(pair: tuple[NamedPrimary, XdnsdProcess]) -> None:
    bind, server = pair
    both_logs = lambda: f"xdnsd:\n{server.log()}\nnamed:\n{bind.log()}"  # noqa: E731
    # xdnsd first: the zone is configured but not transferred yet, so SERVFAIL (not REFUSED)
    wait_for(lambda: rcode_at(server.port) is not None, "xdnsd answering", both_logs)
    assert rcode_at(server.port) == dns.rcode.SERVFAIL
    assert zone_status(server.config)["records"] == 0
    # BIND comes up: xdnsd's next try (1, 2, 4 s ...) loads the zone by AXFR, BIND's serial kept
    bind.start()
    wait_for(lambda: serial_at(server.port) == 2024060101, "xdnsd loads the zone", both_logs)
    assert zone_records(server.port) == zone_records(bind.port)
    status = zone_status(server.config)
    assert status["kind"] == "secondary" and status["serial"] == 2024060101
    transfer = status["transfer"]
    assert isinstance(transfer, dict) and transfer["transfer"] == "AXFR"

    # changes at BIND reach xdnsd by NOTIFY and IXFR
    delays = []
    for i in range(3):
        bind.update(("add", f"n{i}", "A", f"192.0.2.{100 + i}"), ("delete", "www", "A", ""))
        want = 2024060102 + i
        delays.append(wait_for(partial(is_serial, server.port, want), "IXFR", both_logs))
    bind.update(("add", "www", "AAAA", "2001:db8::80"), ("add", "txt", "TXT", '"more"'))
    wait_for(lambda: serial_at(server.port) == 2024060105, "the last IXFR", both_logs)
    assert zone_records(server.port) == zone_records(bind.port)
    log = server.log()
    assert "NOTIFY for zone example.test. serial 2024060102 from 127.0.0.1: checking now" in log
    assert log.count("zone example.test.: IXFR from 127.0.0.1") == 4, log
    transfer = zone_status(server.config)["transfer"]
    assert isinstance(transfer, dict) and transfer["transfer"] == "IXFR"
    # each transfer is a change of its own in xdnsd's history, and journalled for IXFR out
    history = json.loads(
        run_cli("zone", "history", "example.test", "--json", config=server.config).stdout
    )
    assert [h["origin"] for h in history[:5]] == [f"xfr:127.0.0.1:{bind.port}"] * 5
    assert [h["serial_to"] for h in history[:4]] == [2024060105, 2024060104, 2024060103, 2024060102]
    ixfr = dns.message.make_query("example.test", "IXFR")
    old_soa_text = "ns1.example.test. h. 2024060104 0 0 0 0"
    ixfr.authority.append(dns.rrset.from_text("example.test.", 0, "IN", "SOA", old_soa_text))
    ixfr.use_tsig(KEY)
    answer = dns.query.tcp(ixfr, HOST, port=server.port, timeout=5, one_rr_per_rrset=True)
    texts = [f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {r[0]}" for r in answer.answer]
    new_soa = "example.test. SOA ns1.example.test. hostmaster.example.test. 2024060105 2 1 6 60"
    old_soa = new_soa.replace("2024060105", "2024060104")
    assert texts[:3] == [new_soa, old_soa, new_soa] and texts[-1] == new_soa, texts
    assert sorted(texts[3:-1]) == [
        'txt.example.test. TXT "more"',
        "www.example.test. AAAA 2001:db8::80",
    ], texts

    # NOTIFY is taken from the primary only; updates go to the primary, not here
    notify = dns.message.make_query("example.test", "SOA")
    notify.flags = dns.flags.AA  # (the opcode lives in the flags: set it after them)
    notify.set_opcode(dns.opcode.NOTIFY)
    stranger = dns.query.udp(notify, HOST, port=server.port, timeout=2, source="127.0.0.2")
    assert stranger.rcode() == dns.rcode.REFUSED
    assert "NOTIFY for zone example.test. refused: unsigned from 127.0.0.2" in server.log()
    ok = dns.query.udp(notify, HOST, port=server.port, timeout=2, source="127.0.0.1")
    assert ok.rcode() == dns.rcode.NOERROR and ok.flags & dns.flags.AA
    assert ok.opcode() == dns.opcode.NOTIFY
    notify_other = dns.message.make_query("other.test", "SOA")
    notify_other.set_opcode(dns.opcode.NOTIFY)
    assert (
        dns.query.udp(notify_other, HOST, port=server.port, timeout=2).rcode() == dns.rcode.NOTAUTH
    )
    update = dns.update.UpdateMessage("example.test")
    update.add("local", 300, "A", "192.0.2.7")
    update.use_tsig(KEY)
    assert dns.query.tcp(update, HOST, port=server.port, timeout=5).rcode() == dns.rcode.REFUSED

    # a full copy on demand
    result = run_cli("zone", "retransfer", "example.test", "--timeout", "20", config=server.config)
    assert (
        "example.test.: AXFR from 127.0.0.1" in result.stdout
        and "serial 2024060105" in result.stdout
    )
    assert zone_records(server.port) == zone_records(bind.port)
    listed = run_cli("zone", "list", config=server.config).stdout
    assert "secondary" in listed and "AXFR from 127.0.0.1" in listed, listed

    # BIND stops: the SOA says retry 1 s, expire 6 s; then SERVFAIL, for transfers too
    bind.stop()
    stopped = time.monotonic()
    assert rcode_at(server.port) == dns.rcode.NOERROR
    wait_for(lambda: rcode_at(server.port) == dns.rcode.SERVFAIL, "expiry", both_logs, limit=15)
    assert time.monotonic() - stopped > 4  # not before the expire time (6 s after the last check)
    assert "zone example.test. expired" in server.log()
    status = zone_status(server.config)
    assert status["expired"] is True
    with pytest.raises(dns.exception.DNSException):
        zone_records(server.port)
    assert "EXPIRED" in run_cli("zone", "list", config=server.config).stdout
    # BIND returns: the next retry brings the zone back
    bind.start()
    wait_for(lambda: rcode_at(server.port) == dns.rcode.NOERROR, "recovery", both_logs)
    assert zone_records(server.port) == zone_records(bind.port)
    print(f"BIND change to served by xdnsd: {[round(d * 1000) for d in delays]} ms")
