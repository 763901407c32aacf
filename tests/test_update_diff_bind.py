"""Differential test of RFC 2136 dynamic UPDATE: a real BIND 9 ``named`` against xdnsd.

Both servers load ``tests/data/update_diff/example.test.zone`` with the same TSIG keys (``KEYS``)
and the same update policy (``POLICY``: the identical grant strings go into named.conf's
``update-policy`` and xdnsd's ``update_policy``).  ``STEPS`` is one scripted sequence of UPDATE
messages, sent in order to each server, each over UDP or TCP.  Every step states the outcome
RFC 2136 / RFC 8945 call for, and the test checks:

* that BIND gives it (the reference itself is checked) and that xdnsd gives the same;
* the SOA serial around every step (RFC 2136 3.6): it never goes back, a failed update leaves it
  alone, a step that changed BIND's zone must raise xdnsd's too, and an SOA added with a larger
  serial sets exactly that serial;
* at the end, that both zones hold the same records, the SOA serial aside (BIND's by AXFR,
  xdnsd's by ``xdnsd zone export``), and a few facts on both (``MUST_HOLD``, ``NEVER_CREATED``)
  so that the two cannot agree on a wrong result unnoticed.

An outcome is the response rcode, then ``/TSIGERROR`` when the response's TSIG carries an error
(BADSIG, BADKEY, BADTIME, BADTRUNC), ``/unsigned`` when a signed request got a response without a
TSIG, ``/badmac`` when the response's MAC does not verify against the request's, ``/tsig`` when
an unsigned request got a signed response, ``/flags=`` when the response is not an UPDATE
response, or ``timeout`` when no response came within ``TIMEOUT``.

Requests are signed here (``sign``: RFC 8945 4.3) rather than by dnspython, so that the TSIG cases
can use unknown keys, wrong secrets, skewed clocks and truncated MACs, and so that hand-made wire
(``raw``) can be signed too: dnspython drops the TTL of an RR with empty RDATA when it parses, so
"TTL != 0 on a class ANY RR" can only be written as raw bytes.

BIND's own checks beyond RFC 2136 (check-names, check-mx, check-integrity, ...) are switched off
in named.conf, so that the comparison is about RFC 2136 alone.

Deliberate differences are listed in ``POLICY_DIFFERENCES`` with their reason: for those steps
the test asserts xdnsd's own expected outcome, and BIND's, so that the list stays honest.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import dns.zone
import pytest

from tests.harness import free_port, run_cli, running_xdnsd
from tests.named import NAMED, named_options

DATA = Path(__file__).resolve().parent / "data" / "update_diff"
ZONE_FILE = DATA / "example.test.zone"
ORIGIN = dns.name.from_text("example.test.")
TIMEOUT = 2.0  # seconds to wait for one response

pytestmark = pytest.mark.slow

# --- keys and policy (shared by both servers) ----------------------------------------------------

KEYS: dict[str, tuple[str, str]] = {
    "k1": ("hmac-sha256", base64.b64encode(b"update-diff k1 secret, 32 octets").decode()),
    "k2": ("hmac-sha512", base64.b64encode(b"update-diff k2 secret for hmac-sha512 -").decode()),
    "host1.example.test": ("hmac-sha1", base64.b64encode(b"update-diff host1 secret").decode()),
}

POLICY = [
    "grant k1 zonesub ANY",
    "deny k2 name locked.dyn.example.test. ANY",
    "grant k2 subdomain dyn.example.test. A AAAA TXT",
    "grant k2 name host.example.test. A TXT",
    "grant k2 wildcard *.wild.example.test. A",
    "grant k2 name notype.example.test.",
    "grant host1.example.test. self host1.example.test. A TXT",
]

_HASHES = {
    "hmac-sha1": "sha1",
    "hmac-sha224": "sha224",
    "hmac-sha256": "sha256",
    "hmac-sha384": "sha384",
    "hmac-sha512": "sha512",
}
TSIG_ERRORS = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """How to sign a request: a key name, algorithm and secret, and a clock offset."""

    keyname: str
    algorithm: str
    secret: bytes
    skew: int = 0  # seconds added to the time signed
    fudge: int = 300
    mac_size: int | None = None  # truncate (or zero-pad) the MAC (RFC 8945 5.2.2.1)


def key(
    name: str,
    *,
    skew: int = 0,
    secret: bytes | None = None,
    alg: str | None = None,
    mac_size: int | None = None,
) -> Signer:
    """A signer for ``name``; unknown names (not in ``KEYS``) get a made-up secret."""
    algorithm, b64 = KEYS.get(name, ("hmac-sha256", base64.b64encode(b"x" * 32).decode()))
    secret = secret or base64.b64decode(b64)
    return Signer(name, alg or algorithm, secret, skew, mac_size=mac_size)


def sign(wire: bytes, signer: Signer) -> tuple[bytes, bytes]:
    """RFC 8945 4.3: append a TSIG RR to ``wire``; returns the signed wire and its MAC."""
    keyname = dns.name.from_text(signer.keyname).canonicalize().to_wire()
    algorithm = dns.name.from_text(signer.algorithm).to_wire()
    assert keyname is not None and algorithm is not None
    now = int(time.time()) + signer.skew
    time_signed = struct.pack("!HI", now >> 32, now & 0xFFFFFFFF)
    variables = (
        keyname
        + struct.pack("!HI", dns.rdataclass.ANY, 0)
        + algorithm
        + time_signed
        + struct.pack("!HHH", signer.fudge, 0, 0)
    )
    mac = hmac.new(signer.secret, wire + variables, _HASHES[signer.algorithm]).digest()
    if signer.mac_size is not None:
        mac = (mac + bytes(64))[: signer.mac_size]
    (msg_id,) = struct.unpack_from("!H", wire)
    rdata = (
        algorithm
        + time_signed
        + struct.pack("!HH", signer.fudge, len(mac))
        + mac
        + struct.pack("!HHH", msg_id, 0, 0)
    )
    tsig = keyname + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata))
    (arcount,) = struct.unpack_from("!H", wire, 10)
    signed = wire[:10] + struct.pack("!H", arcount + 1) + wire[12:] + tsig + rdata
    return signed, mac


# builds one request from the server's current SOA serial: an UPDATE message, or raw wire
# (unsigned; every request is signed at send time)
Build = Callable[[int], "dns.message.Message | bytes"]


@dataclass(frozen=True)
class Step:
    id: str
    build: Build
    expect: str  # the outcome both servers must give (RFC 2136 / RFC 8945)
    signer: Signer | None
    tcp: bool
    serial: int | None  # the SOA serial the zone must have after this step


# -- a small update language: the ops of one message, nsupdate-like --------------------------


def update(*ops: str, zone: str = "example.test.") -> Build:
    """Ops (names relative to example.test. unless they end in a dot):

    ``yxrrset NAME TYPE [RDATA | RDATA ; RDATA ...]``, ``nxrrset NAME TYPE``, ``yxdomain NAME``,
    ``nxdomain NAME``, ``add NAME TTL TYPE RDATA``, ``del NAME [TYPE [RDATA]]``.
    ``{serial}`` in an op is replaced by the server's current SOA serial.
    """

    def build(serial: int) -> dns.message.Message:
        m = dns.update.UpdateMessage(zone)
        for template in ops:
            op = template.replace("{serial}", str(serial))
            verb, name, *rest = op.split(None, 2)
            owner = dns.name.from_text(name, ORIGIN)
            args = rest[0].split(None, 1) if rest else []
            if verb == "yxrrset" and len(args) == 2:
                values = [v.strip() for v in args[1].split(";")]
                rds = dns.rdataset.from_text_list("IN", args[0], 0, values, origin=ORIGIN)
                m.present(owner, rds)
            elif verb == "yxrrset":
                m.present(owner, args[0])
            elif verb == "nxrrset":
                m.absent(owner, args[0])
            elif verb == "yxdomain":
                m.present(owner)
            elif verb == "nxdomain":
                m.absent(owner)
            elif verb == "add":
                ttl, rdtype, text = rest[0].split(None, 2)
                m.add(owner, int(ttl), dns.rdata.from_text("IN", rdtype, text, ORIGIN))
            elif verb == "del" and len(args) == 2:
                m.delete(owner, dns.rdata.from_text("IN", args[0], args[1], ORIGIN))
            elif verb == "del" and args:
                m.delete(owner, args[0])
            elif verb == "del":
                m.delete(owner)
            else:
                raise ValueError(f"bad op {op!r}")
        return m

    return build


def with_section(base: Build, section: int, rrset: dns.rrset.RRset) -> Build:
    """``base`` with one more RRset in ``section`` (0 zone, 1 prerequisite, 2 update)."""

    def build(serial: int) -> dns.message.Message:
        m = base(serial)
        assert isinstance(m, dns.message.Message)
        m.sections[section].append(rrset)
        return m

    return build


def zone_section(name: str, rdtype: str) -> Build:
    """An UPDATE whose zone section is replaced by ``name IN rdtype`` (plus one add)."""

    def build(serial: int) -> dns.message.Message:
        m = update("add zs 3600 A 192.0.2.200")(serial)
        assert isinstance(m, dns.message.Message)
        rdt = dns.rdatatype.from_text(rdtype)
        m.sections[0] = [dns.rrset.RRset(dns.name.from_text(name), dns.rdataclass.IN, rdt)]
        return m

    return build


# -- raw wire -------------------------------------------------------------------------------


def _wname(name: str) -> bytes:
    wire = dns.name.from_text(name, ORIGIN).to_wire()
    assert wire is not None
    return wire


def rr(name: str, rdtype: str, rdclass: str, ttl: int, rdata: bytes = b"") -> bytes:
    return (
        _wname(name)
        + struct.pack(
            "!HHIH",
            dns.rdatatype.from_text(rdtype),
            dns.rdataclass.from_text(rdclass),
            ttl,
            len(rdata),
        )
        + rdata
    )


def raw(
    prereqs: list[bytes],
    updates: list[bytes],
    *,
    count_updates: int | None = None,
    zclass: str = "IN",
) -> Build:
    """An UPDATE for example.test. made byte by byte (``count_updates`` may lie)."""

    def build(serial: int) -> bytes:
        nupdates = len(updates) if count_updates is None else count_updates
        flags = dns.opcode.to_flags(dns.opcode.UPDATE)
        header = struct.pack("!HHHHHH", 0x2136, flags, 1, len(prereqs), nupdates, 0)
        zone = _wname("@") + struct.pack("!HH", dns.rdatatype.SOA, dns.rdataclass.from_text(zclass))
        return header + zone + b"".join(prereqs) + b"".join(updates)

    return build


A_RDATA = bytes([192, 0, 2, 77])
MX_RDATA = b"\x00\x0a" + _wname("mail")


# --- the sequence ----------------------------------------------------------------------------

K1 = key("k1")
K2 = key("k2")
H1 = key("host1.example.test")


def S(
    id: str,
    build: Build,
    expect: str,
    signer: Signer | None = K1,
    *,
    tcp: bool = False,
    serial: int | None = None,
) -> Step:
    return Step(id, build, expect, signer, tcp, serial)


STEPS: list[Step] = [
    # ---- prerequisites (RFC 2136 2.4, 3.2), all with k1 (zonesub ANY) ----
    S("yxrrset value-independent ok", update("yxrrset www A", 'add www 3600 TXT "p01"'), "NOERROR"),
    S(
        "yxrrset value-independent fails",
        update("yxrrset nothere A", "add nothere 3600 A 192.0.2.99"),
        "NXRRSET",
        tcp=True,
    ),
    S(
        "yxrrset type absent at existing name",
        update("yxrrset mail MX", 'add mail 3600 TXT "no"'),
        "NXRRSET",
    ),
    S(
        "yxrrset value-dependent ok",
        update("yxrrset www A 192.0.2.11; 192.0.2.10", 'add www 3600 TXT "p03"'),
        "NOERROR",
        tcp=True,
    ),
    S(
        "yxrrset value-dependent subset fails",
        update("yxrrset www A 192.0.2.10", 'add www 3600 TXT "no"'),
        "NXRRSET",
    ),
    S(
        "yxrrset value-dependent superset fails",
        update("yxrrset www A 192.0.2.10; 192.0.2.11; 192.0.2.12", 'add www 3600 TXT "no"'),
        "NXRRSET",
        tcp=True,
    ),
    S(
        "yxrrset value-dependent at missing name",
        update("yxrrset nothere A 192.0.2.10", "add nothere 3600 A 192.0.2.99"),
        "NXRRSET",
    ),
    S("nxrrset ok", update("nxrrset www MX", "add www 3600 MX 10 mail"), "NOERROR"),
    S("nxrrset fails", update("nxrrset www A", 'add www 3600 TXT "no"'), "YXRRSET", tcp=True),
    S("yxdomain ok", update("yxdomain mail", 'add mail 3600 TXT "p09"'), "NOERROR"),
    S("yxdomain fails", update("yxdomain nothere", "add nothere 3600 A 192.0.2.99"), "NXDOMAIN"),
    S(
        "yxdomain on an empty non-terminal fails",
        update("yxdomain wild", "add nothere 3600 A 192.0.2.99"),
        "NXDOMAIN",
        tcp=True,
    ),
    S("nxdomain ok", update("nxdomain new1", "add new1 3600 A 192.0.2.71"), "NOERROR"),
    S("nxdomain fails", update("nxdomain www", 'add www 3600 TXT "no"'), "YXDOMAIN"),
    S(
        "nxdomain on an empty non-terminal ok",
        update("nxdomain wild", 'add p14 3600 TXT "p14"'),
        "NOERROR",
        tcp=True,
    ),
    S(
        "prerequisites checked in order",
        update("yxdomain nothere", "nxrrset www A", "add nothere 3600 A 192.0.2.99"),
        "NXDOMAIN",
    ),
    S(
        "value-dependent prerequisites checked last",
        update("yxrrset www A 192.0.2.99", "nxdomain www", "add nothere 3600 A 192.0.2.99"),
        "YXDOMAIN",
    ),
    S(
        "prerequisite outside the zone",
        update("yxdomain www.other.test.", 'add www 3600 TXT "no"'),
        "NOTZONE",
        tcp=True,
    ),
    S(
        "prerequisite class ANY with TTL != 0 (raw)",
        raw([rr("www", "A", "ANY", 300)], [rr("ttlprereq", "A", "IN", 3600, A_RDATA)]),
        "FORMERR",
    ),
    S(
        "prerequisite class NONE with RDATA (raw)",
        raw([rr("nothere", "A", "NONE", 0, A_RDATA)], [rr("nothere", "A", "IN", 3600, A_RDATA)]),
        "FORMERR/unsigned",
        tcp=True,
    ),
    S(
        "prerequisite of class CH",
        with_section(
            update("add nothere 3600 A 192.0.2.99"),
            1,
            dns.rrset.from_text("www.example.test.", 0, "CH", "TXT", '"x"'),
        ),
        "FORMERR",
    ),
    # ---- additions and deletions (RFC 2136 2.5, 3.4.2) ----
    S("add RR to a new name", update("add new2 3600 A 192.0.2.70"), "NOERROR"),
    S(
        "add RR with another TTL: the RRset takes it",
        update("add www 600 A 192.0.2.12"),
        "NOERROR",
        tcp=True,
    ),
    S("add duplicate RR ignored", update("add www 600 A 192.0.2.10"), "NOERROR"),
    S("add duplicate RR with a new TTL", update("add www 1200 A 192.0.2.10"), "NOERROR", tcp=True),
    S("delete RRset", update("del multi MX"), "NOERROR"),
    S("delete absent RRset", update("del multi SRV"), "NOERROR"),
    S("delete one RR", update("del www A 192.0.2.11"), "NOERROR", tcp=True),
    S("delete absent RR", update("del www A 192.0.2.99"), "NOERROR"),
    S("delete all RRsets at a name", update("del gone"), "NOERROR"),
    S("delete the last RR of a name", update("del host1 A 192.0.2.31"), "NOERROR", tcp=True),
    S(
        "updates applied in order",
        update("add m1 3600 A 192.0.2.81", "del m1 A 192.0.2.81", 'add m1 3600 TXT "kept"'),
        "NOERROR",
    ),
    S("add below a delegation", update("add x.sub 3600 A 192.0.2.54"), "NOERROR"),
    # RFC 2136 3.4.2.4 keeps the last NS at the zone apex only
    S("delete the only NS of a delegation", update("del sub NS ns.sub"), "NOERROR", tcp=True),
    # ---- apex rules (RFC 2136 3.4.2.3, 3.4.2.4) ----
    S("delete apex SOA RRset ignored", update("del @ SOA"), "NOERROR", tcp=True),
    S("delete apex NS RRset ignored", update("del @ NS"), "NOERROR"),
    S("delete all at apex keeps SOA and NS", update("del @"), "NOERROR"),
    S(
        "delete both apex NS: the last one stays",
        update("del @ NS ns1", "del @ NS ns2"),
        "NOERROR",
        tcp=True,
    ),
    S("delete the last apex NS ignored", update("del @ NS ns2"), "NOERROR"),
    S("add apex NS", update("add @ 3600 NS ns1"), "NOERROR"),
    S(
        "delete apex SOA RR ignored",
        update("del @ SOA ns1 hostmaster 100 7200 900 1209600 300"),
        "NOERROR",
        tcp=True,
    ),
    S(
        "SOA with a lower serial ignored",
        update("add @ 3600 SOA ns1 hostmaster 50 1111 900 1209600 300"),
        "NOERROR",
    ),
    S(
        "SOA with the current serial ignored",
        update("add @ 3600 SOA ns1 hostmaster {serial} 1111 900 1209600 300"),
        "NOERROR",
        tcp=True,
    ),
    S(
        "SOA with a larger serial replaces",
        update("add @ 3600 SOA ns1 hostmaster 1000000 3600 600 604800 120"),
        "NOERROR",
        serial=1000000,
    ),
    # ---- CNAME rules (RFC 2136 3.4.2.2, RFC 2181 10.1) ----
    S("add CNAME where other data exists ignored", update("add www 3600 CNAME mail"), "NOERROR"),
    S(
        "add other data at a CNAME ignored",
        update("add ftp 3600 A 192.0.2.90"),
        "NOERROR",
        tcp=True,
    ),
    S("add CNAME at a CNAME replaces it", update("add ftp 3600 CNAME mail"), "NOERROR"),
    S("add CNAME at a new name", update("add cn1 3600 CNAME www"), "NOERROR"),
    S(
        "add CNAME then other data at one name",
        update("add cn2 3600 CNAME www", "add cn2 3600 A 192.0.2.92"),
        "NOERROR",
        tcp=True,
    ),
    S(
        "add SOA at a non-apex name ignored",
        update("add www 3600 SOA ns1 hostmaster 2000000 3600 600 604800 120"),
        "NOERROR",
    ),
    S("delete all at a missing name", update("del nothere"), "NOERROR", tcp=True),
    S(
        "the same RR twice in one message (raw)",
        raw([], [rr("twice", "A", "IN", 3600, A_RDATA), rr("twice", "A", "IN", 3600, A_RDATA)]),
        "NOERROR",
    ),
    # RFC 2136 3.2.5 has no meta-type check for prerequisites (3.4.1.2 has one for updates)
    S(
        "prerequisite of meta type AXFR",
        update("yxrrset www AXFR", 'add www 3600 TXT "no"'),
        "NXRRSET",
        tcp=True,
    ),
    S(
        "zone section of class CH (raw)",
        raw([], [rr("zs", "TXT", "CH", 3600, b"\x01x")], zclass="CH"),
        "NOTAUTH",
    ),
    S(
        "delete CNAME then add data at the name",
        update("del alias CNAME", "add alias 3600 A 192.0.2.91"),
        "NOERROR",
    ),
    # ---- zone section and update prescan (RFC 2136 3.1, 3.4.1) ----
    S("update outside the zone", update("add www.other.test. 3600 A 192.0.2.1"), "NOTZONE"),
    S(
        "update at the parent of the zone",
        update("add test. 3600 A 192.0.2.1"),
        "NOTZONE",
        tcp=True,
    ),
    S("zone not served", update("add www 3600 A 192.0.2.1", zone="other.test."), "NOTAUTH"),
    S(
        "zone section names a name inside the zone",
        update("add www 3600 A 192.0.2.1", zone="sub.example.test."),
        "NOTAUTH",
        tcp=True,
    ),
    S(
        "zone section with two RRs",
        with_section(
            update("add zs 3600 A 192.0.2.200"),
            0,
            dns.rrset.RRset(
                dns.name.from_text("example.test."), dns.rdataclass.IN, dns.rdatatype.SOA
            ),
        ),
        "FORMERR/unsigned",
    ),
    S("zone section of type A", zone_section("example.test.", "A"), "FORMERR", tcp=True),
    S(
        "update of class CH",
        with_section(update(), 2, dns.rrset.from_text("www.example.test.", 0, "CH", "TXT", '"x"')),
        "FORMERR",
    ),
    S(
        "class ANY delete with TTL != 0 (raw)",
        raw([], [rr("www", "A", "ANY", 3600)]),
        "FORMERR",
        tcp=True,
    ),
    S(
        "class ANY delete with RDATA (raw)",
        raw([], [rr("www", "A", "ANY", 0, A_RDATA)]),
        "FORMERR/unsigned",
    ),
    S(
        "class NONE delete with TTL != 0 (raw)",
        raw([], [rr("www", "A", "NONE", 300, A_RDATA)]),
        "FORMERR",
        tcp=True,
    ),
    S("add of meta type ANY (raw)", raw([], [rr("www", "ANY", "IN", 3600)]), "FORMERR"),
    S(
        "update section shorter than its count (raw)",
        raw([], [rr("zs", "A", "IN", 3600, A_RDATA)], count_updates=2),
        "FORMERR/unsigned",
        tcp=True,
    ),
    # an A RDATA is 4 octets (RFC 1035 3.4.1): an empty one is malformed
    S(
        "class NONE delete with empty RDATA (raw)",
        raw([], [rr("www", "A", "NONE", 0)]),
        "FORMERR/unsigned",
    ),
    # ---- permissions (RFC 2136 3.3; BIND update-policy) ----
    S("unsigned update over UDP", update("add new3 3600 A 192.0.2.72"), "REFUSED", None),
    S("unsigned update over TCP", update("add new3 3600 A 192.0.2.72"), "REFUSED", None, tcp=True),
    S("k2 subdomain grant", update('add a.dyn 3600 TXT "k2"'), "NOERROR", K2),
    S(
        "k2 subdomain grant covers the name itself",
        update("add dyn 3600 A 192.0.2.100"),
        "NOERROR",
        K2,
        tcp=True,
    ),
    S("k2 type not granted", update("add a.dyn 3600 MX 10 mail"), "REFUSED", K2),
    S("k2 deny rule first", update('add locked.dyn 3600 TXT "no"'), "REFUSED", K2, tcp=True),
    S("k2 name grant", update("add host 3600 A 192.0.2.32"), "NOERROR", K2),
    S("k2 name grant is exact", update("add x.host 3600 A 192.0.2.32"), "REFUSED", K2),
    S("k2 wildcard grant", update("add y.wild 3600 A 192.0.2.82"), "NOERROR", K2, tcp=True),
    S("k2 wildcard grant excludes its parent", update("add wild 3600 A 192.0.2.83"), "REFUSED", K2),
    S("k2 grant without types: MX", update("add notype 3600 MX 10 mail"), "NOERROR", K2),
    S("k2 grant without types: not NS", update("add notype 3600 NS ns1"), "REFUSED", K2, tcp=True),
    S("self key at its own name", update('add host1 3600 TXT "self"'), "NOERROR", H1),
    S("self key at another name", update('add host 3600 TXT "h1"'), "REFUSED", H1, tcp=True),
    S("self key with a type not granted", update("add host1 3600 MX 10 mail"), "REFUSED", H1),
    S(
        "a later RR refused: nothing applied",
        update("add partial.dyn 3600 A 192.0.2.101", "add partial.dyn 3600 MX 10 mail"),
        "REFUSED",
        K2,
    ),
    S(
        "a later RR refused (another name): nothing applied",
        update('add b.dyn 3600 TXT "partial"', "add www 3600 A 192.0.2.102"),
        "REFUSED",
        K2,
        tcp=True,
    ),
    S("k2 delete all at a name holding granted types only", update("del b.dyn"), "NOERROR", K2),
    S("k1 adds a type k2 may not touch", update("add a.dyn 3600 MX 10 mail"), "NOERROR"),
    S(
        "k2 delete all at a name holding a type not granted",
        update("del a.dyn"),
        "REFUSED",
        K2,
        tcp=True,
    ),
    S("k2 delete RRset of a type not granted", update("del a.dyn MX"), "REFUSED", K2),
    S("k2 delete one RR", update("del a.dyn A 192.0.2.40"), "NOERROR", K2),
    S(
        "NOTZONE before permissions",
        update("add www.other.test. 3600 A 192.0.2.1"),
        "NOTZONE",
        K2,
        tcp=True,
    ),
    # ---- order of the checks (RFC 2136 3.2 prerequisites, 3.3 permissions, 3.4.1 prescan) ----
    # BIND 9.18+ and xdnsd check the policy for every update RR before the prerequisites, so a
    # key cannot probe names it may not change (RFC 2136 lists 3.2 before 3.3)
    S(
        "prerequisites before permissions",
        update("nxdomain www", "add www 3600 A 192.0.2.1"),
        "REFUSED",
        K2,
    ),
    # a requester that no rule admits at all is refused before anything else (both servers)
    S(
        "unsigned: refused before prerequisites (UDP)",
        update("nxdomain www", "add www 3600 A 192.0.2.1"),
        "REFUSED",
        None,
    ),
    S(
        "unsigned: refused before prerequisites (TCP)",
        update("nxdomain www", "add www 3600 A 192.0.2.1"),
        "REFUSED",
        None,
        tcp=True,
    ),
    S(
        "refused RR before an RR outside the zone",
        update("add a.dyn 3600 MX 10 mail", "add www.other.test. 3600 A 192.0.2.1"),
        "REFUSED",
        K2,
    ),
    S(
        "RR outside the zone before a refused RR",
        update("add www.other.test. 3600 A 192.0.2.1", "add a.dyn 3600 MX 10 mail"),
        "NOTZONE",
        K2,
        tcp=True,
    ),
    S(
        "refused RR before an RR of class CH",
        with_section(
            update("add a.dyn 3600 MX 10 mail"),
            2,
            dns.rrset.from_text("a.dyn.example.test.", 0, "CH", "TXT", '"x"'),
        ),
        "REFUSED",
        K2,
    ),
    S(
        "RR of class CH before a refused RR (raw)",
        raw([], [rr("a.dyn", "TXT", "CH", 0, b"\x01x"), rr("a.dyn", "MX", "IN", 3600, MX_RDATA)]),
        "FORMERR",
        K2,
        tcp=True,
    ),
    # ---- TSIG (RFC 8945 5.2) ----
    S("unknown key", update('add tsig 3600 TXT "no"'), "NOTAUTH/BADKEY", key("nokey")),
    S(
        "known key name, other algorithm",
        update('add tsig 3600 TXT "no"'),
        "NOTAUTH/BADKEY",
        key("k1", alg="hmac-sha512"),
        tcp=True,
    ),
    S(
        "wrong secret",
        update('add tsig 3600 TXT "no"'),
        "NOTAUTH/BADSIG",
        key("k1", secret=b"not the secret of k1"),
        tcp=True,
    ),
    S(
        "wrong secret over UDP",
        update('add tsig 3600 TXT "no"'),
        "NOTAUTH/BADSIG",
        key("k2", secret=b"not the secret of k2"),
    ),
    S(
        "time signed an hour ago",
        update('add tsig 3600 TXT "no"'),
        "NOTAUTH/BADTIME",
        key("k1", skew=-3600),
    ),
    S(
        "time signed an hour ahead",
        update('add tsig 3600 TXT "no"'),
        "NOTAUTH/BADTIME",
        key("k2", skew=3600),
        tcp=True,
    ),
    S(
        "MAC truncated to half",
        update('add tsig 3600 TXT "no"'),
        "NOTAUTH/BADTRUNC",
        key("k1", mac_size=16),
    ),
    S(
        "MAC truncated below 10 octets",
        update('add tsig 3600 TXT "no"'),
        "FORMERR/BADSIG",
        key("k1", mac_size=8),
        tcp=True,
    ),
    S(
        "MAC longer than the hash",
        update('add tsig 3600 TXT "no"'),
        "FORMERR/BADSIG",
        key("k1", mac_size=40),
    ),
    S("valid again after TSIG failures", update('add tsig 3600 TXT "ok"'), "NOERROR"),
]

# (owner, type or None, RDATA text or None) that only refused or failed messages would have
# created: absent from both zones at the end
NEVER_CREATED: list[tuple[str, str | None, str | None]] = [
    ("nothere", None, None),
    ("ttlprereq", None, None),
    ("partial.dyn", None, None),
    ("b.dyn", "TXT", '"partial"'),
    ("www", "A", "192.0.2.102"),
    ("zs", None, None),
    ("new3", None, None),
    ("locked.dyn", "TXT", None),
    ("x.host", None, None),
    ("wild", None, None),
    ("host", "TXT", '"h1"'),
    ("host1", "MX", None),
    ("tsig", "TXT", '"no"'),
    ("www", "CNAME", None),
    ("ftp", "A", None),
    ("cn2", "A", None),
    ("www", "SOA", None),
    ("notype", "NS", None),
    ("@", "MX", None),
    ("gone", None, None),
    ("sub", "NS", None),
]

# (owner, ttl, type, RDATA text) that both zones must hold at the end (the SOA serial as 0)
MUST_HOLD: list[tuple[str, int, str, str]] = [
    ("@", 3600, "SOA", "ns1 hostmaster 0 3600 600 604800 120"),
    ("@", 3600, "NS", "ns1"),
    ("@", 3600, "NS", "ns2"),
    ("www", 1200, "A", "192.0.2.10"),
    ("www", 1200, "A", "192.0.2.12"),
    ("www", 3600, "MX", "10 mail"),
    ("ftp", 3600, "CNAME", "mail"),
    ("cn2", 3600, "CNAME", "www"),
    ("alias", 3600, "A", "192.0.2.91"),
    ("m1", 3600, "TXT", '"kept"'),
    ("twice", 3600, "A", "192.0.2.77"),
    ("a.dyn", 3600, "MX", "10 mail"),
    ("host1", 3600, "TXT", '"self"'),
    ("y.wild", 3600, "A", "192.0.2.82"),
    ("notype", 3600, "MX", "10 mail"),
    ("tsig", 3600, "TXT", '"ok"'),
]

# step id -> (BIND's outcome, xdnsd's outcome, reason) for deliberate differences
SIGNED_FORMERR = (
    "BIND's message parser rejects this message before its TSIG is looked at, so BIND's FORMERR "
    "goes unsigned; xdnsd verifies the TSIG on the raw wire first and, the signature being good, "
    "signs its FORMERR (RFC 8945 5.3: a response to a validly signed request is signed)"
)
POLICY_DIFFERENCES: dict[str, tuple[str, str, str]] = {
    "prerequisite class NONE with RDATA (raw)": ("FORMERR/unsigned", "FORMERR", SIGNED_FORMERR),
    "zone section with two RRs": ("FORMERR/unsigned", "FORMERR", SIGNED_FORMERR),
    "class ANY delete with RDATA (raw)": ("FORMERR/unsigned", "FORMERR", SIGNED_FORMERR),
    "class NONE delete with empty RDATA (raw)": ("FORMERR/unsigned", "FORMERR", SIGNED_FORMERR),
    "zone section of class CH (raw)": (
        "NOTIMP",
        "NOTAUTH",
        "BIND has no view of class CH and answers NOTIMP; RFC 2136 3.1.1 / 3.1.2 ask NOTAUTH "
        "when (ZNAME, ZCLASS) is not a zone of the server",
    ),
}


# --- talking to a server ---------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def exchange(wire: bytes, port: int, *, tcp: bool) -> bytes | None:
    """Send one request to 127.0.0.1:port; the response, or None on timeout / close."""
    try:
        if tcp:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                sock.sendall(struct.pack("!H", len(wire)) + wire)
                (length,) = struct.unpack("!H", _recv_exact(sock, 2))
                return _recv_exact(sock, length)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(wire, ("127.0.0.1", port))
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                data, _ = sock.recvfrom(65535)
                if data[:2] == wire[:2]:
                    return data
            return None
    except (TimeoutError, EOFError, ConnectionError):
        return None


def outcome(response: bytes | None, signer: Signer | None, mac: bytes | None) -> str:
    if response is None:
        return "timeout"
    try:
        message = dns.message.from_wire(response, keyring=False)
    except dns.exception.FormError:
        # BIND echoes a malformed zone section (e.g. of type A), which dnspython's UPDATE parser
        # rejects: read the response as a QUERY (the zone section is then a question section)
        flags = struct.unpack_from("!H", response, 2)[0] & ~0x7800
        patched = response[:2] + struct.pack("!H", flags) + response[4:]
        try:
            message = dns.message.from_wire(patched, keyring=False)
        except dns.exception.DNSException as exc:
            return f"unparsable response ({exc})"
    text = dns.rcode.to_text(message.rcode())
    (flags,) = struct.unpack_from("!H", response, 2)
    if dns.opcode.from_flags(flags) != dns.opcode.UPDATE or not flags & dns.flags.QR:
        text += f"/flags={flags:#06x}"
    if message.tsig is None:
        return text if signer is None else text + "/unsigned"
    if signer is None:
        return text + "/tsig"
    error = int(message.tsig_error or 0)
    if error:
        return f"{text}/{TSIG_ERRORS.get(error, str(error))}"
    # the TSIG RR is the last one; its owner name and RDATA are not compressed (RFC 8945 4.2)
    tsig = message.tsig
    rdata = tsig[0]
    owner_wire = tsig.name.to_wire()
    assert owner_wire is not None
    tsig_start = len(response) - len(owner_wire) - 10 - len(rdata.to_wire())
    tsig_key = dns.tsig.Key(signer.keyname, signer.secret, signer.algorithm)
    try:
        dns.tsig.validate(  # type: ignore[no-untyped-call]
            response, tsig_key, tsig.name, rdata, int(time.time()), mac, tsig_start
        )
    except dns.exception.DNSException:
        return text + "/badmac"
    return text


def soa_serial(port: int) -> int:
    query = dns.message.make_query(ORIGIN, "SOA")
    answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    rrset = answer.find_rrset(answer.answer, ORIGIN, dns.rdataclass.IN, dns.rdatatype.SOA)
    return int(rrset[0].serial)


@dataclass(frozen=True)
class Result:
    outcome: str
    before: int  # the zone's SOA serial before the step
    after: int  # and after it


def run_sequence(port: int) -> list[Result]:
    results = []
    serial = soa_serial(port)
    for step in STEPS:
        built = step.build(serial)
        wire = built if isinstance(built, bytes) else built.to_wire()
        mac = None
        if step.signer is not None:
            wire, mac = sign(wire, step.signer)
        text = outcome(exchange(wire, port, tcp=step.tcp), step.signer, mac)
        after = soa_serial(port)
        results.append(Result(text, serial, after))
        serial = after
    return results


def serial_gt(s1: int, s2: int) -> bool:
    """RFC 1982 3.2."""
    return (s1 < s2 and s2 - s1 > 2**31) or (s1 > s2 and s1 - s2 < 2**31)


def serial_problems(step: Step, result: Result, who: str, bind_changed: bool) -> list[str]:
    """RFC 2136 3.6: the serial never goes back, an explicit SOA serial is kept, a zone that
    changed (as BIND's did) shows a larger serial; a failed update changes nothing."""
    problems = []
    where = f"{who}: {step.id!r}: serial {result.before} -> {result.after}"
    if result.after != result.before and not serial_gt(result.after, result.before):
        problems.append(f"{where}: went backwards")
    if step.serial is not None and result.after != step.serial:
        problems.append(f"{where}: the update set it to {step.serial}")
    if bind_changed and not serial_gt(result.after, result.before):
        problems.append(f"{where}: the zone changed (BIND's serial rose) but the serial did not")
    if not result.outcome.startswith("NOERROR") and result.after != result.before:
        problems.append(f"{where}: changed by a failed update ({result.outcome})")
    return problems


# --- the two servers --------------------------------------------------------------------------

NAMED_CONF = """\
{options}controls {{ }};
{keys}
zone "example.test" {{
    type primary;
    file "{dir}/example.test.zone";
    update-policy {{
{policy}
    }};
}};
"""


@dataclass
class Named:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.directory / "named.log").read_text(errors="replace")


@contextlib.contextmanager
def running_named(directory: Path) -> Iterator[Named]:
    directory.mkdir()
    (directory / "example.test.zone").write_bytes(ZONE_FILE.read_bytes())
    port = free_port()
    keys = "\n".join(
        f'key "{name}" {{ algorithm {alg}; secret "{secret}"; }};'
        for name, (alg, secret) in KEYS.items()
    )
    policy = "\n".join(f"        {grant};" for grant in POLICY)
    conf = directory / "named.conf"
    options = named_options(
        directory,
        port,
        "allow-transfer { 127.0.0.1; };",
        "// BIND's own checks beyond RFC 2136 are off: the comparison is about RFC 2136",
        "check-names primary ignore;",
        "check-mx ignore;",
        "check-integrity no;",
        "check-wildcard no;",
        "check-sibling no;",
    )
    conf.write_text(NAMED_CONF.format(dir=directory, options=options, keys=keys, policy=policy))
    with (directory / "named.log").open("wb") as log:
        proc = subprocess.Popen(
            [NAMED, "-g", "-n", "1", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
    named = Named(port, directory, proc)
    try:
        deadline = time.monotonic() + 20
        query = dns.message.make_query("example.test.", "SOA")
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"named exited with {proc.returncode}:\n{named.log()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"named did not answer within 20 s:\n{named.log()}")
            time.sleep(0.05)
        yield named
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Named]:
    with running_named(tmp_path / "named") as server:
        yield server


# --- zones as record sets ----------------------------------------------------------------------

Record = tuple[str, int, str, str]


def records(zone: dns.zone.Zone) -> set[Record]:
    out: set[Record] = set()
    assert zone.origin is not None
    for name, node in zone.nodes.items():
        owner = name.derelativize(zone.origin).to_text()
        for rdataset in node:
            for rd in rdataset:
                if rdataset.rdtype == dns.rdatatype.SOA:
                    rd = rd.replace(serial=0)
                text = rd.to_text()
                out.add((owner, rdataset.ttl, dns.rdatatype.to_text(rdataset.rdtype), text))
    return out


def bind_records(port: int) -> set[Record]:
    xfr = dns.query.xfr(
        "127.0.0.1", "example.test.", port=port, timeout=5, lifetime=10, relativize=False
    )
    return records(dns.zone.from_xfr(xfr, relativize=False))


def xdnsd_records(config: Path) -> set[Record]:
    text = run_cli("zone", "export", "example.test", config=config).stdout
    return records(dns.zone.from_text(text, origin=ORIGIN, relativize=False))


def final_state_problems(recs: set[Record]) -> list[str]:
    problems = []
    for name, rdtype, text in NEVER_CREATED:
        owner = dns.name.from_text(name, ORIGIN).to_text()
        for r in recs:
            if r[0] == owner and rdtype in (None, r[2]) and text in (None, r[3]):
                problems.append(f"holds {r} that only a failed or ignored update would add")
    for name, ttl, rdtype, text in MUST_HOLD:
        rd = dns.rdata.from_text("IN", rdtype, text, ORIGIN, relativize=False)
        want = (dns.name.from_text(name, ORIGIN).to_text(), ttl, rdtype, rd.to_text())
        if want not in recs:
            problems.append(f"lacks {want}")
    return problems


def show(recs: set[Record]) -> str:
    return "\n".join(f"  {n} {t} {ty} {r}" for n, t, ty, r in sorted(recs))


# --- the tests -----------------------------------------------------------------------------------


def test_sequence_is_big_enough() -> None:
    assert len(STEPS) >= 60
    assert len({s.id for s in STEPS}) == len(STEPS), "step ids must be unique"
    assert set(POLICY_DIFFERENCES) <= {s.id for s in STEPS}
    for step_id, (bind, mine, reason) in POLICY_DIFFERENCES.items():
        assert bind != mine and reason, step_id
    assert {s.tcp for s in STEPS} == {True, False}


def test_update_diff_bind(named: Named, tmp_path: Path) -> None:
    bind = run_sequence(named.port)
    xdir = tmp_path / "xdnsd"
    xdir.mkdir()
    with running_xdnsd(
        xdir,
        {"example.test": ZONE_FILE},
        keys=KEYS,
        zone_options={"example.test": "update_policy = " + json.dumps(POLICY)},
    ) as server:
        mine = run_sequence(server.port)
        mine_records = xdnsd_records(server.config)
    bind_recs = bind_records(named.port)

    problems: list[str] = []
    for step, b, x in zip(STEPS, bind, mine, strict=True):
        want_bind, want_x = step.expect, step.expect
        if step.id in POLICY_DIFFERENCES:
            want_bind, want_x, _ = POLICY_DIFFERENCES[step.id]
        if b.outcome != want_bind:
            problems.append(f"BIND reference: {step.id!r}: got {b.outcome}, expected {want_bind}")
        if x.outcome != want_x:
            problems.append(
                f"xdnsd: {step.id!r}: got {x.outcome}, BIND {b.outcome}, expected {want_x}"
            )
        bind_changed = b.after != b.before
        problems += serial_problems(step, b, "BIND reference", bind_changed)
        problems += serial_problems(step, x, "xdnsd", bind_changed)
    if bind_recs != mine_records:
        problems.append(
            "zones differ\nonly in BIND:\n"
            + show(bind_recs - mine_records)
            + "\nonly in xdnsd:\n"
            + show(mine_records - bind_recs)
        )
    for recs, who in ((bind_recs, "BIND"), (mine_records, "xdnsd")):
        problems += [f"{who}: {m}" for m in final_state_problems(recs)]
    assert not problems, "\n".join(problems)
