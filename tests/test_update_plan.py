"""RFC 2136 planning (xdnsd.server.update.plan_update): rcodes and exact changesets, table-driven.

Each case runs on the message as built by dnspython and, unless it cannot be encoded or parsed
(malformed on purpose), again after a to_wire / from_wire round trip (the server's path).
"""

from __future__ import annotations

import ast
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
import pytest
from answer.memview import MemZoneView

from xdnsd.server.update import ParsedUpdate, parse_update, plan_update, serial_gt

ZONE = """\
$ORIGIN example.
$TTL 3600
@       SOA   ns1 host 10 3600 600 86400 300
@       NS    ns1
@       NS    ns2
@       MX    10 mail
ns1     A     192.0.2.1
ns2     A     192.0.2.2
www     A     192.0.2.10
www     A     192.0.2.11
alias   CNAME www
a.b.deep TXT  "x"
sub     NS    ns.sub
ns.sub  A     192.0.2.53
"""

SOA_TEXT = "ns1.example. host.example. 10 3600 600 86400 300"
SOA_RR = f"example. 3600 IN SOA {SOA_TEXT}"
WWW = ["www.example. 3600 IN A 192.0.2.10", "www.example. 3600 IN A 192.0.2.11"]

Build = Callable[[dns.update.UpdateMessage], None]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    rcode: int = dns.rcode.NOERROR
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    zone: str = "example."
    wire: bool = True  # also run after a wire round trip


def rd(rdtype: str, text: str, rdclass: str = "IN") -> dns.rdata.Rdata:
    return dns.rdata.from_text(rdclass, rdtype, text)


def raw(
    section: int,
    name: str,
    rdtype: str,
    *,
    rdclass: str = "IN",
    deleting: str | None = None,
    ttl: int = 0,
    rdatas: tuple[dns.rdata.Rdata, ...] = (),
) -> Build:
    """Append a hand-made RRset (for malformed records dnspython's helpers will not make)."""

    def build(m: dns.update.UpdateMessage) -> None:
        rrset = dns.rrset.RRset(
            dns.name.from_text(name),
            dns.rdataclass.from_text(rdclass),
            dns.rdatatype.from_text(rdtype),
            deleting=dns.rdataclass.from_text(deleting) if deleting else None,
        )
        for r in rdatas:
            rrset.add(r, ttl)
        rrset.ttl = ttl
        m.sections[section].append(rrset)

    return build


def steps(*builds: Build) -> Build:
    def build(m: dns.update.UpdateMessage) -> None:
        for b in builds:
            b(m)

    return build


def add(name: str, ttl: int, rdtype: str, *texts: str) -> Build:
    return lambda m: m.add(name, ttl, rdtype, *texts)


def delete(name: str, *args: str) -> Build:
    return lambda m: m.delete(name, *args)


def present(name: str, *args: str) -> Build:
    return lambda m: m.present(name, *args)


def absent(name: str, rdtype: str | None = None) -> Build:
    return lambda m: m.absent(name, rdtype)


NEW = add("new", 300, "A", "192.0.2.99")
NEW_RR = ["new.example. 300 IN A 192.0.2.99"]


def second_zone_rr(m: dns.update.UpdateMessage) -> None:
    m.zone.append(
        dns.rrset.RRset(dns.name.from_text("example."), dns.rdataclass.IN, dns.rdatatype.SOA)
    )


def zone_not_soa(m: dns.update.UpdateMessage) -> None:
    m.zone[0] = dns.rrset.RRset(dns.name.from_text("example."), dns.rdataclass.IN, dns.rdatatype.A)


def soa(serial: int) -> str:
    return f"ns1.example. host.example. {serial} 3600 600 86400 300"


CASES = [
    # --- zone section (3.1) ---
    Case("zone-two-rrs", second_zone_rr, dns.rcode.FORMERR, wire=False),
    Case("zone-not-soa", zone_not_soa, dns.rcode.FORMERR, wire=False),
    Case("zone-child-name", NEW, dns.rcode.NOTAUTH, zone="sub.example."),
    Case("zone-unrelated-name", NEW, dns.rcode.NOTAUTH, zone="example.net."),
    # --- prerequisites (3.2) ---
    Case("pre-name-in-use", steps(present("www"), NEW), added=NEW_RR),
    Case("pre-name-in-use-nxdomain", steps(present("nope"), NEW), dns.rcode.NXDOMAIN),
    Case("pre-name-in-use-ent-is-not", steps(present("deep"), NEW), dns.rcode.NXDOMAIN),
    Case("pre-rrset-exists", steps(present("www", "A"), NEW), added=NEW_RR),
    Case("pre-rrset-exists-nxrrset", steps(present("www", "MX"), NEW), dns.rcode.NXRRSET),
    Case("pre-name-not-in-use", steps(absent("nope"), NEW), added=NEW_RR),
    Case("pre-name-not-in-use-ent", steps(absent("deep"), NEW), added=NEW_RR),
    Case("pre-name-not-in-use-yxdomain", steps(absent("www"), NEW), dns.rcode.YXDOMAIN),
    Case("pre-rrset-absent", steps(absent("www", "MX"), NEW), added=NEW_RR),
    Case("pre-rrset-absent-yxrrset", steps(absent("www", "A"), NEW), dns.rcode.YXRRSET),
    Case(
        "pre-value-dep", steps(present("www", "A", "192.0.2.11", "192.0.2.10"), NEW), added=NEW_RR
    ),
    Case("pre-value-dep-subset", steps(present("www", "A", "192.0.2.10"), NEW), dns.rcode.NXRRSET),
    Case(
        "pre-value-dep-superset",
        steps(present("www", "A", "192.0.2.10", "192.0.2.11", "192.0.2.12"), NEW),
        dns.rcode.NXRRSET,
    ),
    Case(
        "pre-value-dep-missing", steps(present("nope", "A", "192.0.2.10"), NEW), dns.rcode.NXRRSET
    ),
    Case(
        "pre-ttl-nonzero",
        steps(
            raw(
                1,
                "www.example.",
                "A",
                ttl=300,
                rdatas=(rd("A", "192.0.2.10"), rd("A", "192.0.2.11")),
            )
        ),
        dns.rcode.FORMERR,
    ),
    Case(
        "pre-any-with-rdata",
        raw(1, "www.example.", "A", deleting="ANY", rdatas=(rd("A", "192.0.2.10"),)),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "pre-none-with-rdata",
        raw(1, "www.example.", "A", deleting="NONE", rdatas=(rd("A", "192.0.2.10"),)),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "pre-any-ttl-nonzero",
        raw(1, "www.example.", "A", rdclass="ANY", ttl=300),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "pre-other-class",
        raw(1, "www.example.", "TXT", rdclass="CH", rdatas=(rd("TXT", '"x"', "CH"),)),
        dns.rcode.FORMERR,
    ),
    Case("pre-notzone", steps(present("www.example.net."), NEW), dns.rcode.NOTZONE),
    Case("pre-first-failure-wins", steps(absent("www"), present("nope"), NEW), dns.rcode.YXDOMAIN),
    # --- prescan (3.4.1.3) ---
    Case("scan-notzone", add("www.example.net.", 300, "A", "192.0.2.1"), dns.rcode.NOTZONE),
    Case(
        "scan-add-meta-type",
        raw(2, "www.example.", "AXFR", ttl=300, rdatas=(dns.rdata.GenericRdata(1, 252, b""),)),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "scan-add-any-type",
        raw(2, "www.example.", "ANY", ttl=300, rdatas=(dns.rdata.GenericRdata(1, 255, b""),)),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "scan-delete-rrset-ttl",
        raw(2, "www.example.", "A", deleting="ANY", ttl=300),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "scan-delete-rrset-rdata",
        raw(2, "www.example.", "A", deleting="ANY", rdatas=(rd("A", "192.0.2.10"),)),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case("scan-delete-rrset-axfr", delete("www", "AXFR"), dns.rcode.FORMERR, wire=False),
    Case(
        "scan-delete-rr-ttl",
        raw(2, "www.example.", "A", deleting="NONE", ttl=300, rdatas=(rd("A", "192.0.2.10"),)),
        dns.rcode.FORMERR,
    ),
    Case(
        "scan-delete-rr-type-any",
        raw(2, "www.example.", "ANY", deleting="NONE"),
        dns.rcode.FORMERR,
        wire=False,
    ),
    Case(
        "scan-other-class",
        raw(2, "www.example.", "TXT", rdclass="CH", ttl=300, rdatas=(rd("TXT", '"x"', "CH"),)),
        dns.rcode.FORMERR,
    ),
    Case(
        "scan-after-good-updates", steps(NEW, delete("www", "AXFR")), dns.rcode.FORMERR, wire=False
    ),
    # --- update section (3.4.2) ---
    Case("add-new-name", NEW, added=NEW_RR),
    Case(
        "add-under-ent",
        add("b.deep", 300, "A", "192.0.2.7"),
        added=["b.deep.example. 300 IN A 192.0.2.7"],
    ),
    Case(
        "add-to-rrset-same-ttl",
        add("www", 3600, "A", "192.0.2.12"),
        added=["www.example. 3600 IN A 192.0.2.12"],
    ),
    Case(
        "add-to-rrset-new-ttl",
        add("www", 600, "A", "192.0.2.12"),
        removed=WWW,
        added=[
            "www.example. 600 IN A 192.0.2.10",
            "www.example. 600 IN A 192.0.2.11",
            "www.example. 600 IN A 192.0.2.12",
        ],
    ),
    Case("add-duplicate", add("www", 3600, "A", "192.0.2.10")),
    Case(
        "add-duplicate-new-ttl",
        add("www", 300, "A", "192.0.2.10"),
        removed=WWW,
        added=["www.example. 300 IN A 192.0.2.10", "www.example. 300 IN A 192.0.2.11"],
    ),
    Case("delete-rrset", delete("www", "A"), removed=WWW),
    Case("delete-rrset-absent", delete("www", "MX")),
    Case("delete-name", delete("www"), removed=WWW),
    Case("delete-name-absent", delete("nope")),
    Case("delete-rr", delete("www", "A", "192.0.2.10"), removed=WWW[:1]),
    Case("delete-rr-absent", delete("www", "A", "192.0.2.99")),
    # --- special rules ---
    Case(
        "apex-delete-name-keeps-soa-ns",
        delete("example."),
        removed=["example. 3600 IN MX 10 mail.example."],
    ),
    Case("apex-delete-rrset-soa-ignored", delete("example.", "SOA")),
    Case("apex-delete-rrset-ns-ignored", delete("example.", "NS")),
    Case("apex-delete-rr-soa-ignored", delete("example.", "SOA", SOA_TEXT)),
    Case(
        "apex-delete-one-ns",
        delete("example.", "NS", "ns2.example."),
        removed=["example. 3600 IN NS ns2.example."],
    ),
    Case(
        "apex-last-ns-kept",
        steps(delete("example.", "NS", "ns2.example."), delete("example.", "NS", "ns1.example.")),
        removed=["example. 3600 IN NS ns2.example."],
    ),
    Case(
        "delegation-last-ns-deletable",
        delete("sub", "NS", "ns.sub.example."),
        removed=["sub.example. 3600 IN NS ns.sub.example."],
    ),
    Case(
        "soa-add-higher-serial",
        add("example.", 3600, "SOA", soa(11)),
        removed=[SOA_RR],
        added=[f"example. 3600 IN SOA {soa(11)}"],
    ),
    Case("soa-add-equal-serial", add("example.", 3600, "SOA", soa(10))),
    Case("soa-add-lower-serial", add("example.", 3600, "SOA", soa(9))),
    Case("soa-add-serial-undefined", add("example.", 3600, "SOA", soa(10 + 2**31))),
    Case("soa-add-not-apex", add("www", 3600, "SOA", soa(11))),
    Case("cname-add-over-data-ignored", add("www", 300, "CNAME", "ns1.example.")),
    Case("data-add-over-cname-ignored", add("alias", 300, "A", "192.0.2.5")),
    Case(
        "cname-replaces-cname",
        add("alias", 3600, "CNAME", "ns1.example."),
        removed=["alias.example. 3600 IN CNAME www.example."],
        added=["alias.example. 3600 IN CNAME ns1.example."],
    ),
    Case("cname-at-apex-ignored", add("example.", 300, "CNAME", "www.example.")),
    # --- several updates, applied in order ---
    Case("add-then-delete-rr", steps(NEW, delete("new", "A", "192.0.2.99"))),
    Case(
        "delete-then-readd",
        steps(delete("www", "A"), add("www", 3600, "A", "192.0.2.10")),
        removed=WWW[1:],
    ),
    Case(
        "delete-name-then-cname",
        steps(delete("www"), add("www", 300, "CNAME", "ns1.example.")),
        removed=WWW,
        added=["www.example. 300 IN CNAME ns1.example."],
    ),
    Case(
        "cname-then-data-ignored",
        steps(add("fresh", 300, "CNAME", "www.example."), add("fresh", 300, "A", "192.0.2.5")),
        added=["fresh.example. 300 IN CNAME www.example."],
    ),
    Case(
        "add-add-ttl-last-wins",
        steps(add("new", 300, "A", "192.0.2.98"), add("new", 600, "A", "192.0.2.99")),
        added=["new.example. 600 IN A 192.0.2.98", "new.example. 600 IN A 192.0.2.99"],
    ),
    Case(
        "several-names",
        steps(delete("ns2", "A"), NEW, delete("alias")),
        removed=["ns2.example. 3600 IN A 192.0.2.2", "alias.example. 3600 IN CNAME www.example."],
        added=NEW_RR,
    ),
    Case("prereq-on-before-state", steps(absent("new"), NEW, NEW), added=NEW_RR),
]


def run(case: Case, wire: bool, zone: MemZoneView | None = None, raw: bool = False) -> None:
    m = dns.update.UpdateMessage(case.zone)
    case.build(m)
    msg: dns.message.Message | ParsedUpdate = m
    if wire:
        msg = dns.message.from_wire(m.to_wire())
    if raw:  # the server's own reader, which keeps the TTLs dnspython's drops
        parsed = parse_update(m.to_wire())
        if parsed is None:  # unreadable: the server answers FORMERR without planning
            assert case.rcode == dns.rcode.FORMERR
            return
        msg = parsed
    view = zone if zone is not None else MemZoneView.from_text(ZONE, "example.")
    plan = plan_update(msg, view, origin="key:test")
    assert dns.rcode.to_text(plan.rcode) == dns.rcode.to_text(case.rcode)
    if not case.removed and not case.added:
        assert plan.changeset is None
        return
    cs = plan.changeset
    assert cs is not None
    assert cs.zone == dns.name.from_text("example.")
    assert cs.origin == "key:test"
    assert sorted(rr.to_text() for rr in cs.removed) == sorted(case.removed)
    assert sorted(rr.to_text() for rr in cs.added) == sorted(case.added)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_in_memory(case: Case) -> None:
    run(case, wire=False)


WIRE_CASES = [c for c in CASES if c.wire]


@pytest.mark.parametrize("case", WIRE_CASES, ids=[c.id for c in WIRE_CASES])
def test_plan_after_wire(case: Case) -> None:
    run(case, wire=True)


@pytest.mark.parametrize("case", WIRE_CASES, ids=[c.id for c in WIRE_CASES])
def test_plan_after_parse_update(case: Case) -> None:
    run(case, wire=False, raw=True)


@pytest.mark.parametrize("section", [1, 2])
def test_parse_update_keeps_the_ttl_of_empty_records(section: int) -> None:
    """dnspython writes and reads TTL 0 for a record without RDATA; the server's reader keeps
    what was sent, so 'class ANY with TTL != 0' is FORMERR (RFC 2136 3.2.1, 3.4.1.3)."""
    counts = (1, 1, 0) if section == 1 else (1, 0, 1)
    wire = (
        struct.pack("!HHHHHH", 7, 0x2800, *counts, 0)
        + b"\x07example\x00"
        + struct.pack("!HH", 6, 1)
        + b"\x03www\xc0\x0c"
        + struct.pack("!HHIH", 1, 255, 300, 0)  # A, class ANY, TTL 300, no RDATA
    )
    parsed = parse_update(wire)
    assert parsed is not None
    view = MemZoneView.from_text(ZONE, "example.")
    assert plan_update(parsed, view, origin="t").rcode == dns.rcode.FORMERR
    ok = wire[:-6] + struct.pack("!IH", 0, 0)
    parsed = parse_update(ok)
    assert parsed is not None
    assert plan_update(parsed, view, origin="t").rcode == dns.rcode.NOERROR


def test_parse_update_refuses_what_dnspython_refuses() -> None:
    m = dns.update.UpdateMessage("example.")
    m.add("www", 300, "A", "192.0.2.1")
    wire = m.to_wire()
    assert parse_update(wire) is not None
    assert parse_update(wire + b"\x00") is None  # trailing junk
    assert parse_update(wire[:-2]) is None  # cut short
    bad = bytearray(wire)
    bad[-5] = 3  # RDLENGTH 4 -> 3: an A record of 3 bytes
    assert parse_update(bytes(bad)) is None


class BrokenView(MemZoneView):
    def rrsets_at(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset]:
        raise OSError("disk on fire")


def test_store_failure_is_servfail() -> None:
    broken = BrokenView(dns.name.from_text("example."), [])
    run(Case("servfail", NEW, dns.rcode.SERVFAIL), wire=True, zone=broken)


def test_serial_arithmetic() -> None:
    assert serial_gt(11, 10)
    assert serial_gt(0, 2**32 - 1)  # wraps
    assert not serial_gt(10, 10)
    assert not serial_gt(10 + 2**31, 10) and not serial_gt(10, 10 + 2**31)  # undefined


def test_soa_add_across_wrap() -> None:
    zone = MemZoneView.from_text(ZONE.replace("host 10", "host 4294967295"), "example.")
    old = "ns1.example. host.example. 4294967295 3600 600 86400 300"
    case = Case(
        "wrap",
        add("example.", 3600, "SOA", soa(5)),
        removed=[f"example. 3600 IN SOA {old}"],
        added=[f"example. 3600 IN SOA {soa(5)}"],
    )
    run(case, wire=True, zone=zone)


def test_update_module_is_pure() -> None:
    path = Path(__file__).resolve().parent.parent / "xdnsd" / "server" / "update.py"
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    allowed = ("__future__", "collections", "dataclasses", "struct", "typing", "dns", "xdnsd")
    assert all(m.split(".")[0] in allowed for m in mods), sorted(mods)
    assert "xdnsd.store" not in mods
