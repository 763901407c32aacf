"""Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995) to real secondaries: BIND and Knot.

One xdnsd for the whole module serves three zones:

* ``example.test``, generated into the test directory (``generate_zone``): 467 records of many
  types (A, AAAA, MX, TXT with long strings, SRV, CNAME, a delegation with glue and DS, a
  wildcard, CAA, NAPTR, SSHFP, TLSA, PTR, HINFO), 88 KB of wire, so that a transfer spans
  several messages; ``allow_transfer = ["key xfr-key"]`` and an update policy for the same key;
* ``closed.test`` without ``allow_transfer`` (no transfer at all: REFUSED);
* ``negated.test`` with ``allow_transfer = ["!key other-key", "127.0.0.1"]``.

A real BIND ``named`` and a real ``knotd`` are started as secondaries of ``example.test`` (TSIG
``xfr-key``).  NOTIFY out is not implemented, so they pull by themselves: at start, and on
``rndc refresh`` / ``knotc zone-refresh``.  The tests check:

* xdnsd's own AXFR (signed with ``xfr-key``; the first and last message at least, RFC 8945
  5.3.1) holds exactly the records of ``xdnsd zone export``, SOA serial included, in several
  messages; its IXFR is the difference sequence record by record (RFC 1995 4), a single SOA
  for a current or newer serial (RFC 1995 2), the whole zone AXFR-style for a serial the journal
  does not reach (RFC 1995 4), and over UDP, when the answer does not fit, the SOA alone
  (RFC 1995 2);
* each secondary loads the zone and then serves, by AXFR, exactly xdnsd's records;
* after two signed UPDATEs at xdnsd (the first replacing 45 long TXT records, so that the IXFR
  is over 64 KB, and adding a record the second deletes again), a refresh makes the secondary
  pull by IXFR: its log must say so (BIND: "got incremental response", Knot: "IXFR, incoming"
  with no AXFR fallback) and name more than one message; the zones are then equal again.  Each
  secondary is two or more changes behind when it refreshes, so one IXFR spans several
  difference sequences;
* transfers the ACL does not allow are REFUSED, signed when the request was signed with a key
  the server knows (RFC 8945 5.3), and a BIND secondary without the key logs the refusal and
  never serves the zone.

Records are compared in canonical form (owner names and names inside RDATA lowercased, RFC 4034
6.2): Knot lowercases names, xdnsd and BIND keep the case of the zone file.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig
import dns.update
import dns.xfr
import dns.zone
import pytest

from tests.harness import XdnsdProcess, free_port, run_cli, running_xdnsd
from tests.named import NAMED, named_options

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
ORIGIN = dns.name.from_text("example.test.")
RNDC = shutil.which("rndc") or "/usr/sbin/rndc"
KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KNOTC = shutil.which("knotc") or "/usr/sbin/knotc"
WAIT = 20.0  # seconds a secondary may take to load or refresh the zone
TIMEOUT = 5.0  # seconds for one query or transfer

XFR_SECRET = base64.b64encode(b"xfr-secondaries test key, 32 oct").decode()
OTHER_SECRET = base64.b64encode(b"another key, not allowed to xfr!").decode()
RNDC_SECRET = base64.b64encode(b"rndc key of the BIND secondary..").decode()
XFR_KEY = dns.tsig.Key("xfr-key.", XFR_SECRET, dns.tsig.HMAC_SHA256)
OTHER_KEY = dns.tsig.Key("other-key.", OTHER_SECRET, dns.tsig.HMAC_SHA256)
KEYS = {"xfr-key": ("hmac-sha256", XFR_SECRET), "other-key": ("hmac-sha256", OTHER_SECRET)}

SOA_FIELDS = "ns1 hostmaster {serial} 3600 600 1209600 300"
SERIAL = 2024060101


# --- the zones -----------------------------------------------------------------------------------


def generate_zone(path: Path) -> None:
    """example.test: ~500 records, > 64 KB on the wire (the long TXT records alone ~80 KB)."""
    lines = [
        "$ORIGIN example.test.",
        "$TTL 3600",
        f"@ SOA {SOA_FIELDS.format(serial=SERIAL)}",
        "@ NS ns1",
        "@ NS ns2",
        "@ MX 10 mail",
        "@ MX 20 mail2",
        '@ TXT "v=spf1 mx -all"',
        '@ CAA 0 issue "ca.example.net"',
        "ns1 A 192.0.2.1",
        "ns2 A 192.0.2.2",
        "ns2 AAAA 2001:db8::2",
        "mail A 192.0.2.3",
        "mail2 300 A 192.0.2.4",
        "MixedCase A 192.0.2.5",
        # a delegation with glue (in and out of the child zone) and a DS
        "sub NS ns1.sub",
        "sub NS ns.outside.test.",
        "sub DS 12345 13 2 " + "3a" * 32,
        "ns1.sub A 192.0.2.60",
        "ns1.sub AAAA 2001:db8::60",
        # a wildcard
        "*.wild A 192.0.2.50",
        '*.wild TXT "wildcard"',
        "*.wild MX 10 mail",
        "www.wild A 192.0.2.51",
        '_sip._tcp NAPTR 100 10 "U" "E2U+sip" "!^.*$!sip:info@example.test!" .',
        "h000 SSHFP 1 1 " + "0f" * 20,
        "_443._tcp.h000 TLSA 3 1 1 " + "5e" * 32,
        "1.2.0.192.in-addr PTR h001",
        'h002 HINFO "PC" "Linux"',
    ]
    for i in range(150):
        lines.append(f"h{i:03d} A 10.0.{i}.1")
        lines.append(f"h{i:03d} {300 if i % 7 == 0 else 3600} AAAA 2001:db8:0:{i:x}::1")
    for i in range(100):
        lines.append(f"t{i:03d} TXT {long_txt(i)}")
    for i in range(20):
        service = ("_sip._tcp", "_sip._udp", "_xmpp-server._tcp", "_ldap._tcp")[i % 4]
        lines.append(f"{service} SRV {i % 3} {10 * i} {5000 + i} h{i:03d}")
        lines.append(f"c{i:03d} CNAME h{i * 7:03d}")
    path.write_text("\n".join(lines) + "\n")


def long_txt(i: int) -> str:
    """Three strings of 255 octets."""
    return " ".join(f'"{i:03d}-{k}-' + chr(97 + (i + k) % 26) * 249 + '"' for k in range(3))


SMALL_ZONE = """\
$TTL 3600
@ SOA ns1 hostmaster 7 3600 600 1209600 300
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.10
"""


# --- records --------------------------------------------------------------------------------------

Record = tuple[str, int, str, str]  # owner, TTL, type, RDATA: all canonical (RFC 4034 6.2)


def record(name: dns.name.Name, ttl: int, rd: dns.rdata.Rdata) -> Record:
    wire = rd.to_digestable(ORIGIN)
    canonical = dns.rdata.from_wire(rd.rdclass, rd.rdtype, wire, 0, len(wire))
    return (
        name.derelativize(ORIGIN).canonicalize().to_text(),
        ttl,
        dns.rdatatype.to_text(rd.rdtype),
        canonical.to_text(),
    )


def flatten(messages: list[dns.message.Message]) -> list[Record]:
    """The answer RRs of a transfer, in order."""
    return [
        record(rrset.name, rrset.ttl, rd)
        for message in messages
        for rrset in message.answer
        for rd in rrset
    ]


def is_soa(r: Record) -> bool:
    return r[2] == "SOA"


def soa_serial_of(r: Record) -> int:
    return int(r[3].split()[2])


def transfer(
    port: int,
    zone: str = "example.test.",
    *,
    rdtype: str = "AXFR",
    serial: int = 0,
    key: dns.tsig.Key | None = XFR_KEY,
) -> list[dns.message.Message]:
    """All the messages of a zone transfer from HOST:port (raises dns.xfr.TransferError on an
    error rcode); dnspython checks the TSIG of every message against the request's key."""
    keyring = {key.name: key} if key is not None else None
    messages = list(
        dns.query.xfr(
            HOST,
            zone,
            rdtype=rdtype,
            port=port,
            serial=serial,
            keyring=keyring,
            keyname=key.name if key is not None else None,
            keyalgorithm=key.algorithm if key is not None else dns.tsig.default_algorithm,
            relativize=False,
            timeout=TIMEOUT,
            lifetime=3 * TIMEOUT,
        )
    )
    if key is not None:
        # RFC 8945 5.3.1: the first and the last message must be signed (dnspython verifies
        # every TSIG it gets, but does not insist on one in the messages of a transfer)
        assert messages[0].had_tsig and messages[-1].had_tsig, "transfer not signed"
    return messages


@dataclass(frozen=True)
class Axfr:
    records: set[Record]
    soa: Record
    messages: int


def axfr(port: int, key: dns.tsig.Key | None = XFR_KEY) -> Axfr:
    messages = transfer(port, key=key)
    rrs = flatten(messages)
    assert len(rrs) >= 2 and is_soa(rrs[0]) and rrs[-1] == rrs[0], (
        f"an AXFR starts and ends with the zone's SOA (RFC 5936 2.2): {rrs[:1]} ... {rrs[-1:]}"
    )
    body = rrs[:-1]
    duplicates = sorted({r for r in body if body.count(r) > 1})
    assert not duplicates, f"records sent twice in one AXFR: {duplicates[:5]}"
    assert [r for r in body if is_soa(r)] == [rrs[0]], "the SOA only at the start and the end"
    return Axfr(set(body), rrs[0], len(messages))


def export_records(xdnsd: XdnsdProcess) -> set[Record]:
    """The zone as xdnsd's store holds it (``xdnsd zone export``, not the transfer code)."""
    text = run_cli("zone", "export", "example.test", config=xdnsd.config).stdout
    zone = dns.zone.from_text(text, origin=ORIGIN, relativize=False)
    return {
        record(name, rdataset.ttl, rd)
        for name, node in zone.nodes.items()
        for rdataset in node
        for rd in rdataset
    }


def diff(want: set[Record], got: set[Record], want_name: str, got_name: str) -> str:
    def show(recs: set[Record]) -> str:
        return "\n".join(f"    {n} {t} {ty} {r[:100]}" for n, t, ty, r in sorted(recs)[:20])

    return (
        f"{len(want - got)} records only in {want_name}:\n{show(want - got)}\n"
        f"{len(got - want)} records only in {got_name}:\n{show(got - want)}"
    )


def soa_serial(port: int, zone: str = "example.test.") -> int | None:
    """The zone's serial as HOST:port serves it authoritatively, else None."""
    query = dns.message.make_query(zone, "SOA")
    with contextlib.suppress(dns.exception.DNSException, OSError):
        answer = dns.query.udp(query, HOST, port=port, timeout=0.5)
        if answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA:
            for rrset in answer.answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    rd = rrset[0]
                    assert isinstance(rd, dns.rdtypes.ANY.SOA.SOA)
                    return int(rd.serial)
    return None


def update(port: int, *ops: tuple[str, str, str]) -> int:
    """A signed UPDATE of example.test. over TCP; ops ``("add", owner, "TYPE RDATA")``,
    ``("delete", owner, "TYPE RDATA")`` (one RR), ``("delete", owner, "TYPE")`` (the RRset),
    ``("delete", owner, "")`` (the name).  Returns the serial after it."""
    message = dns.update.UpdateMessage(ORIGIN, keyring={XFR_KEY.name: XFR_KEY})
    for verb, owner, data in ops:
        name = dns.name.from_text(owner, ORIGIN)
        rdtype, *text = data.split(None, 1) or [""]
        if verb == "add":
            message.add(name, 3600, dns.rdata.from_text("IN", rdtype, text[0], ORIGIN))
        elif text:
            message.delete(name, dns.rdata.from_text("IN", rdtype, text[0], ORIGIN))
        elif rdtype:
            message.delete(name, rdtype)
        else:
            message.delete(name)
    before = soa_serial(port)
    response = dns.query.tcp(message, HOST, port=port, timeout=TIMEOUT)
    assert response.rcode() == dns.rcode.NOERROR, f"UPDATE {ops}: {response}"
    serial = soa_serial(port)
    assert before is not None and serial == before + 1, (before, serial)
    return serial


# --- secondaries ---------------------------------------------------------------------------------


class Secondary(abc.ABC):
    """A secondary server (BIND or Knot) started on a free loopback port."""

    kind = ""

    def __init__(self, directory: Path, port: int, argv: list[str]) -> None:
        self.directory = directory
        self.port = port
        self.log_path = directory / f"{self.kind}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def log(self, since: int = 0) -> str:
        return self.log_path.read_bytes()[since:].decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def serial(self) -> int | None:
        return soa_serial(self.port)

    def wait(self, check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.kind} exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind}: {what} within {timeout} s; log:\n{self.log()}")
            time.sleep(0.05)

    def wait_serial(self, serial: int) -> None:
        self.wait(lambda: self.serial() == serial, f"does not serve example.test serial {serial}")

    @abc.abstractmethod
    def refresh(self) -> None:
        """Make the secondary check its primary now (rndc refresh / knotc zone-refresh)."""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_tool(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, f"{argv} failed: {result.stdout}{result.stderr}"


NAMED_CONF = """\
{options}key "xfr-key" {{ algorithm hmac-sha256; secret "{xfr_secret}"; }};
key "rndc-key" {{ algorithm hmac-sha256; secret "{rndc_secret}"; }};
controls {{
    inet 127.0.0.1 port {rndc_port} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }};
}};
zone "example.test" {{
    type secondary;
    primaries {{ 127.0.0.1 port {primary_port}{key}; }};
    file "{dir}/example.test.db";
    masterfile-format text;
}};
"""

RNDC_CONF = """\
key "rndc-key" {{ algorithm hmac-sha256; secret "{rndc_secret}"; }};
options {{ default-key "rndc-key"; default-server 127.0.0.1; default-port {rndc_port}; }};
"""


class BindSecondary(Secondary):
    kind = "named"

    def __init__(self, directory: Path, primary_port: int, *, with_key: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        port = self.rndc_port = free_port()
        while self.rndc_port == port:
            self.rndc_port = free_port()
        fields = {
            "dir": directory,
            "port": port,
            "xfr_secret": XFR_SECRET,
            "rndc_secret": RNDC_SECRET,
            "rndc_port": self.rndc_port,
            "primary_port": primary_port,
            "key": ' key "xfr-key"' if with_key else "",
        }
        conf = directory / "named.conf"
        options = named_options(
            directory,
            port,
            "allow-transfer { 127.0.0.1; };",
            "transfer-source 127.0.0.1;",
            "query-source address 127.0.0.1;",
        )
        conf.write_text(NAMED_CONF.format(options=options, **fields))
        self.rndc_conf = directory / "rndc.conf"
        self.rndc_conf.write_text(RNDC_CONF.format(**fields))
        # -d 3: xfer-in then logs "requesting IXFR for serial N" and "got incremental response"
        # (or "got nonincremental response", an AXFR-style answer: RFC 1995 4)
        argv = [NAMED, "-g", "-d", "3", "-n", "1", "-c", str(conf)]
        super().__init__(directory, port, argv)

    def refresh(self) -> None:
        run_tool([RNDC, "-c", str(self.rndc_conf), "refresh", "example.test"])


KNOT_CONF = """\
server:
    listen: 127.0.0.1@{port}
    rundir: {dir}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: {dir}/knot.sock
key:
  - id: xfr-key
    algorithm: hmac-sha256
    secret: {xfr_secret}
remote:
  - id: xdnsd
    address: 127.0.0.1@{primary_port}
    key: xfr-key
acl:
  - id: local-transfer
    address: 127.0.0.1
    action: transfer
database:
    storage: {dir}
template:
  - id: default
    storage: {dir}
    zonefile-sync: -1
    journal-content: changes
log:
  - target: stderr
    any: info
zone:
  - domain: example.test
    master: xdnsd
    acl: local-transfer
"""


class KnotSecondary(Secondary):
    kind = "knotd"

    def __init__(self, directory: Path, primary_port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.conf = directory / "knot.conf"
        self.conf.write_text(
            KNOT_CONF.format(
                dir=directory, port=port, xfr_secret=XFR_SECRET, primary_port=primary_port
            )
        )
        super().__init__(directory, port, [KNOTD, "-c", str(self.conf)])

    def refresh(self) -> None:
        run_tool([KNOTC, "-c", str(self.conf), "-b", "-t", "10", "zone-refresh", "example.test"])


@contextlib.contextmanager
def started(secondary: Secondary) -> Iterator[Secondary]:
    try:
        yield secondary
    finally:
        secondary.stop()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xdnsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdnsdProcess]:
    directory = tmp_path_factory.mktemp("xfr")
    zone = directory / "example.test.zone"
    generate_zone(zone)
    small = directory / "small.zone"
    small.write_text(SMALL_ZONE)
    with running_xdnsd(
        directory,
        {"example.test": zone, "closed.test": small, "negated.test": small},
        keys=KEYS,
        zone_options={
            "example.test": 'allow_transfer = ["key xfr-key"]\n'
            'update_policy = ["grant xfr-key zonesub ANY"]',
            "negated.test": 'allow_transfer = ["!key other-key", "127.0.0.1"]',
        },
    ) as server:
        yield server


@pytest.fixture(scope="module")
def bind(xdnsd: XdnsdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secondary]:
    with started(BindSecondary(tmp_path_factory.mktemp("named"), xdnsd.port)) as secondary:
        yield secondary


@pytest.fixture(scope="module")
def knot(xdnsd: XdnsdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secondary]:
    with started(KnotSecondary(tmp_path_factory.mktemp("knot"), xdnsd.port)) as secondary:
        yield secondary


# --- xdnsd's own transfers -----------------------------------------------------------------------


def test_axfr_holds_the_zone_as_stored(xdnsd: XdnsdProcess) -> None:
    stored = export_records(xdnsd)
    assert len(stored) > 400
    got = axfr(xdnsd.port)
    assert got.records == stored, diff(stored, got.records, "the store (export)", "the AXFR")
    serial = soa_serial(xdnsd.port)
    assert serial is not None and soa_serial_of(got.soa) == serial
    # 88 KB of records: at least two messages (RFC 5936 2.2); signed (checked in transfer())
    assert got.messages >= 2


def test_ixfr_is_incremental(xdnsd: XdnsdProcess) -> None:
    """RFC 1995 4: the difference sequences, oldest first; 2: a current serial gets one SOA."""
    before = soa_serial(xdnsd.port)
    assert before is not None
    after = update(
        xdnsd.port,
        ("delete", "h010", "A 10.0.10.1"),
        ("add", "h010", "A 10.0.10.2"),
        ("add", "ixfr-probe", 'TXT "one"'),
    )
    assert after == before + 1
    messages = transfer(xdnsd.port, rdtype="IXFR", serial=before)
    rrs = flatten(messages)
    soa = [r for r in rrs if is_soa(r)]
    assert [soa_serial_of(r) for r in soa] == [after, before, after, after], (
        f"IXFR from {before} to {after}: expected SOA {after}, SOA {before}, deletions, "
        f"SOA {after}, additions, SOA {after}; got:\n" + "\n".join(map(str, rrs[:20]))
    )
    first_delete, first_add = [i for i, r in enumerate(rrs) if is_soa(r)][1:3]
    owner = "h010.example.test."
    assert rrs[first_delete + 1 : first_add] == [(owner, 3600, "A", "10.0.10.1")]
    assert set(rrs[first_add + 1 : -1]) == {
        (owner, 3600, "A", "10.0.10.2"),
        ("ixfr-probe.example.test.", 3600, "TXT", '"one"'),
    }
    for serial in (after, after + 10):  # RFC 1995 2: the same or a newer serial: one SOA
        response = ixfr_one_message(xdnsd.port, serial)
        assert response.rcode() == dns.rcode.NOERROR and response.had_tsig, str(response)
        rrs = flatten([response])
        assert len(rrs) == 1 and is_soa(rrs[0]) and soa_serial_of(rrs[0]) == after, str(response)


def test_ixfr_from_an_unknown_serial_is_a_full_zone(xdnsd: XdnsdProcess) -> None:
    """RFC 1995 4: no difference sequence from that serial in the journal: the whole zone,
    AXFR-style (SOA, the records, SOA), equal to the AXFR."""
    full = axfr(xdnsd.port)
    rrs = flatten(transfer(xdnsd.port, rdtype="IXFR", serial=SERIAL - 100))
    assert rrs[0] == full.soa and rrs[-1] == full.soa and not is_soa(rrs[1]), rrs[:3]
    assert set(rrs[:-1]) == full.records and len(rrs) == len(full.records) + 1


@pytest.mark.parametrize("payload", [None, 1232], ids=["no-edns", "edns-1232"])
def test_ixfr_over_udp_that_does_not_fit_gets_the_soa(
    xdnsd: XdnsdProcess, payload: int | None
) -> None:
    """RFC 1995 2: "If the UDP reply does not fit, the query is responded to with a single SOA
    record of the server's current version" (here: the whole zone would be due, RFC 1995 4)."""
    query = xfr_query(ORIGIN, "IXFR", SERIAL - 100, payload=payload)
    try:
        response = dns.query.udp(query, HOST, port=xdnsd.port, timeout=2, one_rr_per_rrset=True)
    except dns.exception.Timeout:
        raise AssertionError(
            f"no answer to an IXFR over UDP (EDNS payload {payload}) whose answer does not fit"
        ) from None
    current = soa_serial(xdnsd.port)
    rrs = flatten([response])
    assert response.rcode() == dns.rcode.NOERROR and response.had_tsig, str(response)
    assert len(rrs) == 1 and is_soa(rrs[0]) and soa_serial_of(rrs[0]) == current, str(response)


def xfr_query(
    zone: str | dns.name.Name,
    rdtype: str,
    serial: int,
    key: dns.tsig.Key | None = XFR_KEY,
    payload: int | None = None,
) -> dns.message.Message:
    """An AXFR or IXFR query (an IXFR with the client's SOA in the authority section)."""
    query = dns.message.make_query(
        zone, rdtype, use_edns=False if payload is None else 0, payload=payload or 1232
    )
    if rdtype == "IXFR":
        query.authority.append(dns.rrset.from_text(zone, 0, "IN", "SOA", f". . {serial} 0 0 0 0"))
    if key is not None:
        query.use_tsig(key)
    return query


def ixfr_one_message(port: int, serial: int) -> dns.message.Message:
    """An IXFR (signed, over TCP) whose answer is expected to fit in one message."""
    return dns.query.tcp(xfr_query(ORIGIN, "IXFR", serial), HOST, port=port, timeout=TIMEOUT)


# --- the secondaries -----------------------------------------------------------------------------


def _assert_same_zone(secondary: Secondary, xdnsd: XdnsdProcess) -> None:
    stored = export_records(xdnsd)
    mine = axfr(xdnsd.port)
    theirs = axfr(secondary.port, key=None)
    assert mine.records == stored, diff(stored, mine.records, "xdnsd's store", "xdnsd's AXFR")
    assert theirs.records == mine.records, diff(
        mine.records, theirs.records, "xdnsd", f"the {secondary.kind} secondary"
    )


def test_bind_secondary_loads_the_zone(bind: Secondary, xdnsd: XdnsdProcess) -> None:
    serial = soa_serial(xdnsd.port)
    assert serial is not None
    bind.wait_serial(serial)
    _assert_same_zone(bind, xdnsd)
    log = bind.log()
    assert "TSIG xfr-key" in log, "BIND's transfer is signed with xfr-key"
    done = re.findall(r"Transfer completed: (\d+) messages, (\d+) records", log)
    assert done and int(done[0][0]) >= 2, f"one multi-message AXFR expected:\n{log}"


def test_knot_secondary_loads_the_zone(knot: Secondary, xdnsd: XdnsdProcess) -> None:
    serial = soa_serial(xdnsd.port)
    assert serial is not None
    knot.wait_serial(serial)
    _assert_same_zone(knot, xdnsd)
    # Knot does not log the key; example.test's ACL admits only xfr-key, so it was used
    assert re.search(r"AXFR, incoming, remote 127\.0\.0\.1@\d+.*finished", knot.log()), knot.log()


@dataclass(frozen=True)
class Refresh:
    old: int  # the serial the secondary served before
    new: int  # xdnsd's serial after the change, now served by the secondary
    log: str  # the secondary's log from just before the change


def _refresh(secondary: Secondary, xdnsd: XdnsdProcess, tag: str, first: int) -> Refresh:
    """Change the zone at xdnsd in two UPDATEs, make ``secondary`` pull them, compare the zones.

    The first UPDATE replaces the long TXT records of ``t{first}`` .. ``t{first + 44}`` (an IXFR
    of more than 64 KB: several messages) and adds a record that the second deletes again
    (RFC 1995 4: the difference sequences must be applied in order).  The secondary may be
    further behind: each refresh test changes the zone, and only its own secondary refreshes.
    """
    secondary.wait(lambda: secondary.serial() is not None, "does not serve example.test")
    old = secondary.serial()
    assert old is not None
    since = secondary.log_size()
    replaced = range(first, first + 45)
    update(
        xdnsd.port,
        *[("delete", f"t{i:03d}", "TXT") for i in replaced],
        *[("add", f"t{i:03d}", "TXT " + long_txt(i + 500)) for i in replaced],
        ("add", f"short-lived-{tag}", 'TXT "deleted by the next update"'),
        ("add", "h003", f"A 192.0.2.{len(tag) + 100}"),
    )
    new = update(
        xdnsd.port,
        ("delete", f"short-lived-{tag}", ""),
        ("add", f"refresh-{tag}", "A 192.0.2.99"),
        ("add", f"refresh-{tag}", f'TXT "pulled by {tag}"'),
    )
    secondary.refresh()
    secondary.wait_serial(new)
    _assert_same_zone(secondary, xdnsd)
    return Refresh(old, new, secondary.log(since))


def test_bind_secondary_refreshes_by_ixfr(bind: Secondary, xdnsd: XdnsdProcess) -> None:
    done = _refresh(bind, xdnsd, "bind", 0)
    log = done.log
    assert f"requesting IXFR for serial {done.old}" in log, log
    assert "got nonincremental response" not in log, f"xdnsd answered BIND's IXFR by AXFR:\n{log}"
    assert "got incremental response" in log, log
    assert f"transferred serial {done.new}" in log, log
    messages = re.findall(r"Transfer completed: (\d+) messages", log)
    assert messages and int(messages[-1]) >= 2, f"a multi-message IXFR expected:\n{log}"
    assert (bind.directory / "example.test.db.jnl").exists(), "BIND journals an applied IXFR"


def test_knot_secondary_refreshes_by_ixfr(knot: Secondary, xdnsd: XdnsdProcess) -> None:
    done = _refresh(knot, xdnsd, "knot", 50)
    log = done.log
    fallback = re.findall(r".*(?:AXFR-style|AXFR, incoming|fallback).*", log)
    assert not fallback, "Knot's IXFR ended as an AXFR:\n" + "\n".join(fallback) + f"\n{log}"
    finished = re.findall(
        r"IXFR, incoming, remote 127\.0\.0\.1@\d+.*finished.* (\d+) messages", log
    )
    assert finished, log
    assert int(finished[-1]) >= 2, f"a multi-message IXFR expected:\n{log}"
    assert f"serial {done.old} -> {done.new}" in log, log


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "rdtype", "key"),
    [
        ("example.test.", "AXFR", None),
        ("example.test.", "IXFR", None),
        ("example.test.", "AXFR", OTHER_KEY),
        ("example.test.", "IXFR", OTHER_KEY),
        ("closed.test.", "AXFR", XFR_KEY),
        ("closed.test.", "AXFR", None),
        ("negated.test.", "AXFR", OTHER_KEY),
    ],
    ids=lambda v: str(v.name) if isinstance(v, dns.tsig.Key) else str(v or "unsigned"),
)
def test_transfer_not_allowed_is_refused(
    xdnsd: XdnsdProcess, zone: str, rdtype: str, key: dns.tsig.Key | None
) -> None:
    with pytest.raises(dns.xfr.TransferError) as failure:
        transfer(xdnsd.port, zone, rdtype=rdtype, serial=1, key=key)
    assert failure.value.rcode == dns.rcode.REFUSED
    if key is not None:
        # RFC 8945 5.3: the key is known and the MAC good, so the refusal is signed too
        # (dnspython raises when a response to a signed query in one message is not signed)
        query = xfr_query(zone, rdtype, 1, key)
        response = dns.query.tcp(query, HOST, port=xdnsd.port, timeout=TIMEOUT)
        assert response.rcode() == dns.rcode.REFUSED and response.had_tsig, str(response)


def test_negated_acl_allows_the_others(xdnsd: XdnsdProcess) -> None:
    """``["!key other-key", "127.0.0.1"]``: first match wins, so unsigned and xfr-key pass."""
    for key in (None, XFR_KEY):
        rrs = flatten(transfer(xdnsd.port, "negated.test.", key=key))
        assert len(rrs) == 5 and is_soa(rrs[0]) and rrs[-1] == rrs[0]


def test_bind_secondary_without_the_key_is_refused(xdnsd: XdnsdProcess, tmp_path: Path) -> None:
    with started(BindSecondary(tmp_path / "named", xdnsd.port, with_key=False)) as secondary:
        secondary.wait(
            lambda: "Transfer status: REFUSED" in secondary.log(),
            "logs no refused transfer of example.test",
        )
        assert secondary.serial() is None, "the zone must not be served"


# --- after the journal is trimmed ---------------------------------------------------------------


def test_secondaries_fall_back_to_axfr_when_the_journal_is_trimmed(tmp_path: Path) -> None:
    """With ``journal_depth = 1`` for the zone, 70 changes trim the journal past the serial the
    secondaries hold (trimming goes in chunks of 64); their next IXFR is answered with the whole
    zone (RFC 1995 4, AXFR-style), which BIND and Knot both take, and they converge."""
    zone = tmp_path / "example.test.zone"
    generate_zone(zone)
    (tmp_path / "x").mkdir()
    with running_xdnsd(
        tmp_path / "x",
        {"example.test": zone},
        keys=KEYS,
        zone_options={
            "example.test": 'allow_transfer = ["key xfr-key"]\n'
            'update_policy = ["grant xfr-key zonesub ANY"]\njournal_depth = 1'
        },
    ) as server:
        serial = soa_serial(server.port)
        assert serial is not None
        with (
            started(BindSecondary(tmp_path / "named", server.port)) as bind,
            started(KnotSecondary(tmp_path / "knot", server.port)) as knot,
        ):
            for secondary in (bind, knot):
                secondary.wait_serial(serial)
            since = {s.kind: s.log_size() for s in (bind, knot)}
            for i in range(70):
                new = update(server.port, ("add", f"trimmed-{i}", f"A 192.0.2.{i + 1}"))
            # the journal no longer reaches the secondaries' serial: a full answer
            answer = flatten(transfer(server.port, rdtype="IXFR", serial=serial))
            assert not is_soa(answer[1])  # AXFR-style (RFC 1995 4)
            for secondary in (bind, knot):
                secondary.refresh()
                secondary.wait_serial(new)
                _assert_same_zone(secondary, server)
            bind_log = bind.log(since["named"])
            assert f"requesting IXFR for serial {serial}" in bind_log, bind_log
            assert "got nonincremental response" in bind_log, bind_log
            knot_log = knot.log(since["knotd"])
            assert "IXFR, incoming, remote 127.0.0.1" in knot_log, knot_log
            assert "receiving AXFR-style IXFR" in knot_log, knot_log
