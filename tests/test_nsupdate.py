"""Integration: RFC 2136 dynamic updates sent by BIND's real ``nsupdate`` to a real ``xdnsd serve``.

One server for the whole module serves the three zones of ``tests/data/nsupdate/``:

* ``example.test`` with an ``update_policy``: one TSIG key of every algorithm (``key-md5`` ...
  ``key-sha512``), each granted ``zonesub ANY``, and the key ``limited``, granted only the A
  records of ``host.example.test.``;
* ``other.test`` with ``allow_update = ["127.0.0.1"]`` (unsigned updates from loopback);
* ``closed.test`` with neither (no update is accepted).

Each test changes names of its own only (the ``pre*`` names of the zone file are only read) and
compares the SOA serial before and after, so the tests do not depend on each other's order.
Outcomes are checked three ways: nsupdate's exit status and stderr (``update failed: RCODE``),
the zone as the server then answers it (dnspython queries), and the serial: exactly one more per
committed update, unchanged when an update fails or changes nothing.  BADTIME is provoked with
an update signed by dnspython with a hand-set time (``faketime`` is not installed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.update
import pytest

from tests.harness import XdnsdProcess, run_cli, running_xdnsd

DATA = Path(__file__).resolve().parent / "data" / "nsupdate"
HOST = "127.0.0.1"
ZONES = ("example.test", "other.test", "closed.test")

# TSIG algorithm -> digest size; each key's secret is as long as the digest
ALGORITHMS = {
    "hmac-md5": 16,
    "hmac-sha1": 20,
    "hmac-sha224": 28,
    "hmac-sha256": 32,
    "hmac-sha384": 48,
    "hmac-sha512": 64,
}


def _secret(label: str, size: int) -> str:
    return base64.b64encode(
        hashlib.sha512(f"test_nsupdate {label}".encode()).digest()[:size]
    ).decode()


KEYS: dict[str, tuple[str, str]] = {
    f"key-{algorithm.removeprefix('hmac-')}": (algorithm, _secret(algorithm, size))
    for algorithm, size in ALGORITHMS.items()
}
KEYS["limited"] = ("hmac-sha256", _secret("limited", 32))
DEFAULT_KEY = "key-sha256"
WRONG_SECRET = _secret("not the configured secret", 32)

POLICY = [
    "grant limited name host.example.test. A",
    *(f"grant {name} zonesub ANY" for name in KEYS if name != "limited"),
]
ZONE_OPTIONS = {
    "example.test": "update_policy = [" + ", ".join(json.dumps(g) for g in POLICY) + "]",
    "other.test": 'allow_update = ["127.0.0.1"]',
}

TRANSPORTS = [pytest.param(False, id="udp"), pytest.param(True, id="tcp")]

pytestmark = pytest.mark.slow


# --- the server and the tools -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdnsdProcess]:
    directory = tmp_path_factory.mktemp("nsupdate")
    zones = {zone: DATA / f"{zone}.zone" for zone in ZONES}
    with running_xdnsd(directory, zones, keys=KEYS, zone_options=ZONE_OPTIONS) as process:
        yield process


def nsupdate(
    server: XdnsdProcess,
    *commands: str,
    zone: str = "example.test",
    key: str | None = DEFAULT_KEY,
    algorithm: str | None = None,
    secret: str | None = None,
    keyfile: Path | None = None,
    tcp: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run nsupdate with one update (``commands`` then ``send``); signed with ``-y`` by ``key``
    (None: unsigned), or with ``-k keyfile``; over TCP with ``-v``."""
    args = ["nsupdate", "-t", "5", "-u", "2", "-r", "1"]
    if tcp:
        args.append("-v")
    if keyfile is not None:
        args += ["-k", str(keyfile)]
    elif key is not None:
        known_algorithm, known_secret = KEYS.get(key, ("hmac-sha256", WRONG_SECRET))
        args += ["-y", f"{algorithm or known_algorithm}:{key}:{secret or known_secret}"]
    script = "\n".join([f"server {HOST} {server.port}", f"zone {zone}", *commands, "send", ""])
    return subprocess.run(args, input=script, capture_output=True, text=True, timeout=20)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stderr) == (0, ""), (
        f"nsupdate failed ({result.returncode}): {result.stderr}"
    )


def assert_fails(result: subprocess.CompletedProcess[str], rcode: str) -> None:
    """nsupdate exits 2 and names the response code, and nothing else: a response to a signed
    request that is not signed right would add a TSIG complaint.  A TSIG error in the response
    (``NOTAUTH(BADSIG)``) comes with nsupdate's own line about it."""
    assert result.returncode == 2, f"nsupdate exited {result.returncode}: {result.stderr}"
    expected = [f"update failed: {rcode}"]
    if "(" in rcode:
        expected.insert(0, "; TSIG error with server: tsig indicates error")
    assert result.stderr.splitlines() == expected, result.stderr


def query(server: XdnsdProcess, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    request = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(request, HOST, port=server.port, timeout=2.0)
    return dns.query.udp(request, HOST, port=server.port, timeout=2.0)


def rrset(
    server: XdnsdProcess, name: str, rdtype: str, tcp: bool = False
) -> dns.rrset.RRset | None:
    response = query(server, name, rdtype, tcp)
    return response.get_rrset(
        response.answer,
        dns.name.from_text(name),
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
    )


def records(server: XdnsdProcess, name: str, rdtype: str, tcp: bool = False) -> set[str]:
    """The RDATA (as text) of the ``rdtype`` RRset at ``name`` as served; empty when none."""
    found = rrset(server, name, rdtype, tcp)
    return set() if found is None else {rd.to_text() for rd in found}


def soa(server: XdnsdProcess, zone: str = "example.test") -> dns.rdtypes.ANY.SOA.SOA:
    found = rrset(server, f"{zone}.", "SOA")
    assert found is not None, f"no SOA served for {zone}"
    rdata = found[0]
    assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
    return rdata


def serial(server: XdnsdProcess, zone: str = "example.test") -> int:
    return int(soa(server, zone).serial)


def soa_fields(rdata: dns.rdtypes.ANY.SOA.SOA) -> str:
    """The SOA without its serial."""
    return str(rdata.replace(serial=0).to_text())


def logged(server: XdnsdProcess, since: int, text: str, timeout: float = 3.0) -> bool:
    """Does ``text`` appear in the server log after offset ``since`` (within ``timeout``: the
    line may be written just after the response left)?"""
    deadline = time.monotonic() + timeout
    while text not in server.log()[since:]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- prerequisites (RFC 2136 2.4, 3.2) ----------------------------------------------------------

# (tag, prerequisite lines, the failure nsupdate reports or None when satisfied); pre.example.test
# holds A 192.0.2.40 and 192.0.2.41 and TXT "pre"; pre-ent.example.test is an empty non-terminal
# (it owns no RR: not "in use", RFC 2136 2.4.4); *.wild.example.test is a wildcard, which
# prerequisites do not expand (RFC 2136 3.2.5 compares the zone's own RRs)
PREREQS = [
    ("yxrrset", ["prereq yxrrset pre.example.test. A"], None),
    ("yxrrset-no-type", ["prereq yxrrset pre.example.test. AAAA"], "NXRRSET"),
    ("yxrrset-no-name", ["prereq yxrrset absent.example.test. A"], "NXRRSET"),
    (
        "yxrrset-value",
        [
            "prereq yxrrset pre.example.test. A 192.0.2.40",
            "prereq yxrrset pre.example.test. A 192.0.2.41",
        ],
        None,
    ),
    (
        "yxrrset-value-case",
        [
            "prereq yxrrset PRE.Example.TEST. A 192.0.2.41",
            "prereq yxrrset pre.example.test. A 192.0.2.40",
            'prereq yxrrset pre.example.test. TXT "pre"',
        ],
        None,
    ),
    ("yxrrset-value-subset", ["prereq yxrrset pre.example.test. A 192.0.2.40"], "NXRRSET"),
    (
        "yxrrset-value-superset",
        [
            "prereq yxrrset pre.example.test. A 192.0.2.40",
            "prereq yxrrset pre.example.test. A 192.0.2.41",
            "prereq yxrrset pre.example.test. A 192.0.2.43",
        ],
        "NXRRSET",
    ),
    ("yxrrset-value-differs", ['prereq yxrrset pre.example.test. TXT "PRE"'], "NXRRSET"),
    ("yxrrset-value-no-name", ["prereq yxrrset absent.example.test. A 192.0.2.40"], "NXRRSET"),
    ("nxrrset", ["prereq nxrrset pre.example.test. AAAA"], None),
    ("nxrrset-no-name", ["prereq nxrrset absent.example.test. A"], None),
    ("nxrrset-present", ["prereq nxrrset pre.example.test. TXT"], "YXRRSET"),
    ("yxdomain", ["prereq yxdomain pre.example.test."], None),
    ("yxdomain-absent", ["prereq yxdomain absent.example.test."], "NXDOMAIN"),
    ("yxdomain-empty-non-terminal", ["prereq yxdomain pre-ent.example.test."], "NXDOMAIN"),
    ("yxdomain-wildcard-not-expanded", ["prereq yxdomain a.wild.example.test."], "NXDOMAIN"),
    ("yxdomain-wildcard-owner", ["prereq yxdomain *.wild.example.test."], None),
    ("yxrrset-wildcard-not-expanded", ["prereq yxrrset a.wild.example.test. A"], "NXRRSET"),
    ("nxdomain", ["prereq nxdomain absent.example.test."], None),
    ("nxdomain-empty-non-terminal", ["prereq nxdomain pre-ent.example.test."], None),
    ("nxdomain-present", ["prereq nxdomain pre.example.test."], "YXDOMAIN"),
    (
        "second-fails",
        ["prereq yxdomain pre.example.test.", "prereq nxdomain pre.example.test."],
        "YXDOMAIN",
    ),
]


@pytest.mark.parametrize(
    ("tag", "prereqs", "failure"), [pytest.param(*p, id=p[0]) for p in PREREQS]
)
def test_prerequisite(
    server: XdnsdProcess, tag: str, prereqs: list[str], failure: str | None
) -> None:
    name = f"prereq-{tag}.example.test."
    before = serial(server)
    result = nsupdate(server, *prereqs, f'update add {name} 300 TXT "{tag}"')
    if failure is None:
        assert_ok(result)
        assert records(server, name, "TXT") == {f'"{tag}"'}
        assert serial(server) == before + 1
    else:
        assert_fails(result, failure)
        assert records(server, name, "TXT") == set()
        assert serial(server) == before
    # the prerequisite names are never touched
    assert records(server, "pre.example.test.", "A") == {"192.0.2.40", "192.0.2.41"}


def test_prerequisites_without_updates(server: XdnsdProcess) -> None:
    before = serial(server)
    assert_ok(
        nsupdate(
            server, "prereq yxdomain pre.example.test.", "prereq nxrrset pre-ent.example.test. A"
        )
    )
    assert_fails(nsupdate(server, "prereq nxdomain pre.example.test."), "YXDOMAIN")
    assert serial(server) == before


# --- the update kinds (RFC 2136 2.5, 3.4.2), over UDP and TCP ------------------------------------


def _transport(tcp: bool) -> str:
    return "tcp" if tcp else "udp"


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_add(server: XdnsdProcess, tcp: bool) -> None:
    name = f"add-{_transport(tcp)}.example.test."
    before = serial(server)
    # answered (and cached by the fast path) before the update, over both transports
    for over_tcp in (False, True):
        assert query(server, name, "A", tcp=over_tcp).rcode() == dns.rcode.NXDOMAIN
    assert_ok(
        nsupdate(
            server,
            f"update add {name} 300 A 192.0.2.1",
            f"update add {name} 300 A 192.0.2.2",
            f'update add {name} 300 TXT "added"',
            tcp=tcp,
        )
    )
    assert records(server, name, "A") == {"192.0.2.1", "192.0.2.2"}
    assert records(server, name, "TXT") == {'"added"'}
    for over_tcp in (False, True):  # no stale cached answer on either transport
        response = query(server, name, "A", tcp=over_tcp)
        assert response.rcode() == dns.rcode.NOERROR
        assert {rd.to_text() for answer in response.answer for rd in answer} == {
            "192.0.2.1",
            "192.0.2.2",
        }
    assert serial(server) == before + 1  # one update, one change: one serial step


def test_large_update(server: XdnsdProcess) -> None:
    """Too big for a 512-byte UDP message: nsupdate sends it over TCP by itself."""
    name = "large.example.test."
    before = serial(server)
    texts = [f'"record {i:03d} of a large update, padded to take some room"' for i in range(100)]
    assert_ok(nsupdate(server, *(f"update add {name} 300 TXT {t}" for t in texts)))
    assert records(server, name, "TXT", tcp=True) == set(texts)  # too big for UDP too
    assert serial(server) == before + 1


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_delete_rrset(server: XdnsdProcess, tcp: bool) -> None:
    name = f"delete-rrset-{_transport(tcp)}.example.test."
    assert_ok(
        nsupdate(
            server,
            f"update add {name} 300 A 192.0.2.1",
            f"update add {name} 300 A 192.0.2.2",
            f'update add {name} 300 TXT "stays"',
        )
    )
    before = serial(server)
    assert_ok(nsupdate(server, f"update delete {name} A", tcp=tcp))
    assert records(server, name, "A") == set()
    assert records(server, name, "TXT") == {'"stays"'}
    assert serial(server) == before + 1


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_delete_name(server: XdnsdProcess, tcp: bool) -> None:
    name = f"delete-name-{_transport(tcp)}.example.test."
    assert_ok(
        nsupdate(
            server,
            f"update add {name} 300 A 192.0.2.1",
            f'update add {name} 300 TXT "gone"',
            f"update add {name} 300 MX 10 mail.example.test.",
        )
    )
    before = serial(server)
    assert_ok(nsupdate(server, f"update delete {name}", tcp=tcp))
    assert query(server, name, "A").rcode() == dns.rcode.NXDOMAIN
    assert query(server, name, "TXT").rcode() == dns.rcode.NXDOMAIN
    assert serial(server) == before + 1


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_delete_one_rr(server: XdnsdProcess, tcp: bool) -> None:
    name = f"delete-rr-{_transport(tcp)}.example.test."
    assert_ok(
        nsupdate(
            server,
            f"update add {name} 300 A 192.0.2.1",
            f"update add {name} 300 A 192.0.2.2",
            f'update add {name} 300 TXT "one"',
            f'update add {name} 300 TXT "two"',
            f"update add {name} 300 MX 10 mail.example.test.",
            f"update add {name} 300 MX 20 ns1.example.test.",
        )
    )
    before = serial(server)
    # TXT data is compared as is: "ONE" is not "one", a no-op
    assert_ok(nsupdate(server, f'update delete {name} TXT "ONE"', tcp=tcp))
    assert records(server, name, "TXT") == {'"one"', '"two"'}
    assert serial(server) == before
    assert_ok(nsupdate(server, f"update delete {name} A 192.0.2.1", tcp=tcp))
    assert records(server, name, "A") == {"192.0.2.2"}
    assert records(server, name, "TXT") == {'"one"', '"two"'}
    assert serial(server) == before + 1
    # the last RR of an RRset: the RRset goes, the name stays with its TXT
    assert_ok(nsupdate(server, f"update delete {name} A 192.0.2.2", tcp=tcp))
    assert records(server, name, "A") == set()
    assert query(server, name, "A").rcode() == dns.rcode.NOERROR
    assert records(server, name, "TXT") == {'"one"', '"two"'}
    assert serial(server) == before + 2
    # names inside RDATA compare case-insensitively (RFC 4034 6.2, as BIND)
    assert_ok(nsupdate(server, f"update delete {name} MX 10 MAIL.Example.TEST.", tcp=tcp))
    assert records(server, name, "MX") == {"20 ns1.example.test."}
    assert serial(server) == before + 3


def test_update_names_are_case_insensitive(server: XdnsdProcess) -> None:
    name = "case.example.test."
    assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.1"))
    before = serial(server)
    assert_ok(nsupdate(server, "update add CASE.Example.TEST. 300 A 192.0.2.1"))
    assert serial(server) == before  # the same RR: a no-op
    assert_ok(nsupdate(server, "update delete CASE.EXAMPLE.TEST. A 192.0.2.1"))
    assert records(server, name, "A") == set()
    assert serial(server) == before + 1


# --- special rules (RFC 2136 3.4.2.2 - 3.4.2.4) -------------------------------------------------


def test_apex_soa_and_ns_rrsets_are_not_deleted(server: XdnsdProcess) -> None:
    before_soa = soa(server)
    before_ns = records(server, "example.test.", "NS")
    assert before_ns
    result = nsupdate(
        server,
        "update delete example.test. NS",
        "update delete example.test. SOA",
        f"update delete example.test. SOA {before_soa.to_text()}",
    )
    assert_ok(result)
    assert records(server, "example.test.", "NS") == before_ns
    assert soa_fields(soa(server)) == soa_fields(before_soa)
    assert serial(server) == before_soa.serial  # nothing changed


def test_apex_delete_name_keeps_soa_and_ns(server: XdnsdProcess) -> None:
    assert_ok(nsupdate(server, 'update add example.test. 300 TXT "apex"'))
    before_soa = soa(server)
    before_ns = records(server, "example.test.", "NS")
    assert_ok(nsupdate(server, "update delete example.test."))
    assert records(server, "example.test.", "NS") == before_ns
    assert soa_fields(soa(server)) == soa_fields(before_soa)
    assert records(server, "example.test.", "TXT") == set()
    assert records(server, "example.test.", "MX") == set()  # from the zone file: deleted too
    assert serial(server) == before_soa.serial + 1


def test_last_apex_ns_by_value_is_ignored(server: XdnsdProcess) -> None:
    assert records(server, "example.test.", "NS") == {"ns1.example.test."}
    before = serial(server)
    assert_ok(nsupdate(server, "update delete example.test. NS ns1.example.test."))
    assert records(server, "example.test.", "NS") == {"ns1.example.test."}
    assert serial(server) == before


def test_apex_ns_by_value_deletes_all_but_the_last(server: XdnsdProcess) -> None:
    # other.test has two apex NS; deleting both in one update deletes the first only
    assert records(server, "other.test.", "NS") == {"ns1.other.test.", "ns2.other.test."}
    before = serial(server, "other.test")
    result = nsupdate(
        server,
        "update delete other.test. NS ns1.other.test.",
        "update delete other.test. NS ns2.other.test.",
        zone="other.test",
        key=None,
    )
    assert_ok(result)
    assert records(server, "other.test.", "NS") == {"ns2.other.test."}
    assert serial(server, "other.test") == before + 1


def _soa_line(rdata: dns.rdtypes.ANY.SOA.SOA, serial: int, refresh: int) -> str:
    return (
        f"update add example.test. 3600 SOA {rdata.mname} {rdata.rname} {serial} {refresh} "
        f"{rdata.retry} {rdata.expire} {rdata.minimum}"
    )


def test_soa_with_a_larger_serial_is_served(server: XdnsdProcess) -> None:
    before = soa(server)
    wanted = before.serial + 1000
    assert_ok(nsupdate(server, _soa_line(before, wanted, before.refresh + 1)))
    after = soa(server)
    assert (after.serial, after.refresh) == (wanted, before.refresh + 1)
    # later changes count on from the operator's serial
    assert_ok(nsupdate(server, 'update add soa-after.example.test. 300 TXT "after"'))
    assert serial(server) == wanted + 1


@pytest.mark.parametrize(
    "delta",
    [
        pytest.param(0, id="equal"),
        pytest.param(-1, id="smaller"),
        pytest.param(2**31 + 5, id="behind-in-rfc1982-arithmetic"),
    ],
)
def test_soa_without_a_larger_serial_is_ignored(server: XdnsdProcess, delta: int) -> None:
    before = soa(server)
    stale = (before.serial + delta) % 2**32
    assert_ok(nsupdate(server, _soa_line(before, stale, before.refresh + 7)))
    after = soa(server)
    assert (after.serial, after.refresh) == (before.serial, before.refresh)


def test_cname_is_not_added_beside_other_data(server: XdnsdProcess) -> None:
    name = "cname-beside-a.example.test."
    assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.1"))
    before = serial(server)
    assert_ok(nsupdate(server, f"update add {name} 300 CNAME mail.example.test."))
    assert records(server, name, "CNAME") == set()
    assert records(server, name, "A") == {"192.0.2.1"}
    assert serial(server) == before


def test_other_data_is_not_added_beside_a_cname(server: XdnsdProcess) -> None:
    name = "cname-alone.example.test."
    assert_ok(nsupdate(server, f"update add {name} 300 CNAME mail.example.test."))
    before = serial(server)
    assert_ok(
        nsupdate(server, f"update add {name} 300 A 192.0.2.1", f'update add {name} 300 TXT "no"')
    )
    assert records(server, name, "CNAME") == {"mail.example.test."}
    response = query(server, name, "TXT")
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME]
    assert serial(server) == before


def test_cname_replaces_cname(server: XdnsdProcess) -> None:
    name = "cname-replaced.example.test."
    assert_ok(nsupdate(server, f"update add {name} 300 CNAME mail.example.test."))
    before = serial(server)
    assert_ok(nsupdate(server, f"update add {name} 300 CNAME ns1.example.test."))
    assert records(server, name, "CNAME") == {"ns1.example.test."}
    assert serial(server) == before + 1


def test_update_records_apply_in_order(server: XdnsdProcess) -> None:
    """RFC 2136 3.4.2: the update section is processed in order, so a CNAME can take the place
    of data deleted earlier in the same update (and the other way round)."""
    name = "cname-swap.example.test."
    assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.1"))
    before = serial(server)
    assert_ok(
        nsupdate(
            server, f"update delete {name} A", f"update add {name} 300 CNAME mail.example.test."
        )
    )
    assert records(server, name, "CNAME") == {"mail.example.test."}
    assert serial(server) == before + 1
    assert_ok(nsupdate(server, f"update delete {name} CNAME", f"update add {name} 300 A 192.0.2.2"))
    assert records(server, name, "CNAME") == set()
    assert records(server, name, "A") == {"192.0.2.2"}
    assert serial(server) == before + 2


def test_duplicate_add_is_ignored(server: XdnsdProcess) -> None:
    name = "duplicate.example.test."
    assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.1"))
    before = serial(server)
    assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.1"))
    assert records(server, name, "A") == {"192.0.2.1"}
    assert serial(server) == before


def test_ttl_of_an_added_rr_applies_to_the_rrset(server: XdnsdProcess) -> None:
    name = "ttl.example.test."
    assert_ok(
        nsupdate(
            server, f"update add {name} 3600 A 192.0.2.1", f"update add {name} 3600 A 192.0.2.2"
        )
    )
    before = serial(server)
    assert_ok(nsupdate(server, f"update add {name} 60 A 192.0.2.3"))
    found = rrset(server, name, "A")
    assert found is not None
    assert {rd.to_text() for rd in found} == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert found.ttl == 60
    assert serial(server) == before + 1
    # the same RR again with another TTL: the TTL changes, a committed change
    assert_ok(nsupdate(server, f"update add {name} 120 A 192.0.2.1"))
    found = rrset(server, name, "A")
    assert found is not None and found.ttl == 120 and len(found) == 3
    assert serial(server) == before + 2


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_two_updates_in_one_session(server: XdnsdProcess, tcp: bool) -> None:
    first, second = (f"session-{i}-{_transport(tcp)}.example.test." for i in (1, 2))
    before = serial(server)
    result = nsupdate(
        server,
        f"update add {first} 300 A 192.0.2.1",
        "send",
        f"prereq yxdomain {first}",
        f"update add {second} 300 A 192.0.2.2",
        tcp=tcp,
    )
    assert_ok(result)
    assert records(server, first, "A") == {"192.0.2.1"}
    assert records(server, second, "A") == {"192.0.2.2"}
    assert serial(server) == before + 2


def test_serial_rises_by_one_per_change_and_not_on_a_no_op(server: XdnsdProcess) -> None:
    name = "serial.example.test."
    start = serial(server)
    for step in range(1, 4):
        assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.{step}"))
        assert serial(server) == start + step
    no_ops = [
        [f"update add {name} 300 A 192.0.2.1"],  # already there
        [f"update delete {name} A 192.0.2.99"],  # no such RR
        [f"update delete {name} AAAA"],  # no such RRset
        ["update delete serial-absent.example.test."],  # no such name
        [f"update add {name} 300 A 192.0.2.9", f"update delete {name} A 192.0.2.9"],  # undone
    ]
    for commands in no_ops:
        assert_ok(nsupdate(server, *commands))
        assert serial(server) == start + 3, commands
    assert records(server, name, "A") == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}


# --- TSIG (RFC 8945) ------------------------------------------------------------------------------


def write_key_file(directory: Path, name: str) -> Path:
    algorithm, secret = KEYS[name]
    path = directory / f"{name}.key"
    path.write_text(f'key "{name}" {{\n\talgorithm {algorithm};\n\tsecret "{secret}";\n}};\n')
    return path


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize("mode", ["-y", "-k"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_tsig_algorithm(
    server: XdnsdProcess, tmp_path: Path, algorithm: str, mode: str, tcp: bool
) -> None:
    key = f"key-{algorithm.removeprefix('hmac-')}"
    name = f"{key}{mode}-{_transport(tcp)}.example.test."
    keyfile = write_key_file(tmp_path, key) if mode == "-k" else None
    before = serial(server)
    # nsupdate verifies the signed response: exit 0 means the server's MAC was right too
    assert_ok(
        nsupdate(
            server, f'update add {name} 300 TXT "{algorithm}"', key=key, keyfile=keyfile, tcp=tcp
        )
    )
    assert records(server, name, "TXT") == {f'"{algorithm}"'}
    assert serial(server) == before + 1


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize(
    ("key", "algorithm", "secret", "error"),
    [
        pytest.param(DEFAULT_KEY, None, WRONG_SECRET, "BADSIG", id="wrong-secret"),
        pytest.param("nobody", "hmac-sha256", WRONG_SECRET, "BADKEY", id="unknown-key"),
        pytest.param(DEFAULT_KEY, "hmac-sha512", None, "BADKEY", id="wrong-algorithm"),
        # a MAC truncated to 128 bits, which the key does not allow (RFC 8945 5.2.2.1)
        pytest.param(DEFAULT_KEY, "hmac-sha256-128", None, "BADTRUNC", id="truncated-mac"),
    ],
)
def test_tsig_failure(
    server: XdnsdProcess,
    key: str,
    algorithm: str | None,
    secret: str | None,
    error: str,
    tcp: bool,
) -> None:
    name = f"tsig-{error.lower()}-{algorithm or 'same'}-{_transport(tcp)}.example.test."
    before = serial(server)
    since = len(server.log())
    result = nsupdate(
        server,
        f'update add {name} 300 TXT "no"',
        key=key,
        algorithm=algorithm,
        secret=secret,
        tcp=tcp,
    )
    assert_fails(result, f"NOTAUTH({error})")
    assert records(server, name, "TXT") == set()
    assert serial(server) == before
    assert logged(server, since, f"TSIG {error} from 127.0.0.1 for key {key}."), server.log()


def test_tsig_key_name_case_does_not_matter(server: XdnsdProcess) -> None:
    name = "key-case.example.test."
    algorithm, secret = KEYS[DEFAULT_KEY]
    before = serial(server)
    result = nsupdate(
        server,
        f'update add {name} 300 TXT "case"',
        key=DEFAULT_KEY.upper(),
        algorithm=algorithm,
        secret=secret,
    )
    assert_ok(result)
    assert records(server, name, "TXT") == {'"case"'}
    newest = history(server, "example.test")[0]
    assert [newest[1], newest[4]] == [f"{before} -> {before + 1}", f"key:{DEFAULT_KEY}"]


def _sign_at(
    message: dns.message.Message, key: dns.tsig.Key, time_signed: int, fudge: int
) -> tuple[bytes, bytes]:
    """``message`` signed by dnspython (``use_tsig``) with a hand-set Time Signed: wire and MAC."""
    body = message.to_wire()
    message.use_tsig(key, fudge=fudge)
    assert message.tsig is not None
    signed, _ctx = dns.tsig.sign(body, key, message.tsig[0], time_signed)  # type: ignore[no-untyped-call]
    assert isinstance(signed, dns.rdtypes.ANY.TSIG.TSIG)
    message.tsig = dns.rrset.from_rdata(key.name, 0, signed)
    message.want_tsig_sign = False  # keep the signature made above
    wire = message.to_wire()
    assert wire[12 : len(body)] == body[12:]
    return wire, bytes(signed.mac)


def _exchange(server: XdnsdProcess, wire: bytes, tcp: bool) -> bytes:
    if not tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5.0)
            sock.sendto(wire, (HOST, server.port))
            data, _ = sock.recvfrom(65535)
            return data
    with socket.create_connection((HOST, server.port), timeout=5.0) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack_from("!H", data)[0]:
            chunk = sock.recv(65535)
            assert chunk, "connection closed before a whole response arrived"
            data += chunk
        return data[2:]


def _response_mac_ok(response: bytes, key: dns.tsig.Key, request_mac: bytes) -> bool:
    """RFC 8945 4.3 / 5.3.2: does the response's TSIG MAC verify (over the request's MAC)?"""
    message = dns.message.from_wire(response, keyring=False)
    assert message.tsig is not None
    rdata = message.tsig[0]
    assert isinstance(rdata, dns.rdtypes.ANY.TSIG.TSIG)
    owner = message.tsig.name.to_wire()
    assert owner is not None
    record_length = len(owner) + 10 + len(rdata.to_wire() or b"")
    arcount = struct.unpack_from("!H", response, 10)[0]
    unsigned = response[:10] + struct.pack("!H", arcount - 1) + response[12:-record_length]
    expected, _ctx = dns.tsig.sign(  # type: ignore[no-untyped-call]
        unsigned, key, rdata, rdata.time_signed, request_mac
    )
    return bool(expected.mac == rdata.mac)


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize("skew", [-3600, 3600])
def test_tsig_badtime(server: XdnsdProcess, skew: int, tcp: bool) -> None:
    name = f"badtime{skew:+d}-{_transport(tcp)}.example.test."
    algorithm, secret = KEYS[DEFAULT_KEY]
    key = dns.tsig.Key(DEFAULT_KEY, secret, algorithm)
    update = dns.update.UpdateMessage("example.test.")
    update.add(name, 300, "TXT", '"late"')
    before = serial(server)
    since = len(server.log())
    sent = int(time.time()) + skew
    wire, mac = _sign_at(update, key, sent, fudge=300)
    raw = _exchange(server, wire, tcp)
    response = dns.message.from_wire(raw, keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig_error == dns.rcode.BADTIME
    assert response.tsig is not None
    rdata = response.tsig[0]
    assert isinstance(rdata, dns.rdtypes.ANY.TSIG.TSIG)
    # RFC 8945 5.3.2: signed; Time Signed is the request's, Other Data the server's time
    assert rdata.time_signed == sent
    assert len(rdata.other) == 6
    server_time = int.from_bytes(rdata.other, "big")
    assert abs(server_time - (sent - skew)) <= 5
    assert _response_mac_ok(raw, key, mac)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(raw, keyring={key.name: key}, request_mac=mac)
    assert records(server, name, "TXT") == set()
    assert serial(server) == before
    assert logged(server, since, f"TSIG BADTIME from 127.0.0.1 for key {DEFAULT_KEY}.")


@pytest.mark.parametrize(
    ("skew", "fudge"),
    [pytest.param(-200, 300, id="within-fudge"), pytest.param(3600, 7200, id="request-fudge")],
)
def test_tsig_time_within_the_request_fudge(server: XdnsdProcess, skew: int, fudge: int) -> None:
    name = f"fudge{skew:+d}.example.test."
    algorithm, secret = KEYS[DEFAULT_KEY]
    key = dns.tsig.Key(DEFAULT_KEY, secret, algorithm)
    update = dns.update.UpdateMessage("example.test.")
    update.add(name, 300, "TXT", '"in time"')
    wire, mac = _sign_at(update, key, int(time.time()) + skew, fudge=fudge)
    # dnspython verifies the signed response (MAC and time)
    response = dns.message.from_wire(
        _exchange(server, wire, False), keyring={key.name: key}, request_mac=mac
    )
    assert response.rcode() == dns.rcode.NOERROR
    assert records(server, name, "TXT") == {'"in time"'}


# --- update permissions -----------------------------------------------------------------------


def test_limited_key_may_add_its_name_and_type(server: XdnsdProcess) -> None:
    before = serial(server)
    assert_ok(nsupdate(server, "update add host.example.test. 3600 A 192.0.2.131", key="limited"))
    assert "192.0.2.131" in records(server, "host.example.test.", "A")
    assert serial(server) == before + 1


@pytest.mark.parametrize(
    ("commands", "denied"),
    [
        pytest.param(
            ['update add host.example.test. 300 TXT "limited"'],
            "host.example.test./TXT",
            id="other-type",
        ),
        pytest.param(
            ["update delete host.example.test. TXT"],
            "host.example.test./TXT",
            id="delete-other-type",
        ),
        pytest.param(
            ["update add limited-other.example.test. 300 A 192.0.2.132"],
            "limited-other.example.test./A",
            id="other-name",
        ),
        pytest.param(
            [
                "update add host.example.test. 3600 A 192.0.2.133",
                "update add limited-multi.example.test. 300 A 192.0.2.133",
            ],
            "limited-multi.example.test./A",
            id="multi-record",
        ),
    ],
)
def test_limited_key_is_refused_beyond_its_grant(
    server: XdnsdProcess, commands: list[str], denied: str
) -> None:
    before = serial(server)
    before_host = records(server, "host.example.test.", "A")
    since = len(server.log())
    assert_fails(nsupdate(server, *commands, key="limited"), "REFUSED")
    assert records(server, "host.example.test.", "A") == before_host  # nothing of it applied
    assert records(server, "host.example.test.", "TXT") == set()
    assert records(server, "limited-other.example.test.", "A") == set()
    assert records(server, "limited-multi.example.test.", "A") == set()
    assert serial(server) == before
    line = f"update refused by policy: zone example.test., key limited. from 127.0.0.1, {denied}"
    assert logged(server, since, line), server.log()


def test_unsigned_update_is_refused_under_a_policy(server: XdnsdProcess) -> None:
    name = "unsigned.example.test."
    before = serial(server)
    since = len(server.log())
    assert_fails(nsupdate(server, f"update add {name} 300 A 192.0.2.1", key=None), "REFUSED")
    assert records(server, name, "A") == set()
    assert serial(server) == before
    line = "update refused: zone example.test., unsigned from 127.0.0.1: not allowed"
    assert logged(server, since, line), server.log()


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_allow_update_zone_takes_unsigned_updates(server: XdnsdProcess, tcp: bool) -> None:
    name = f"unsigned-{_transport(tcp)}.other.test."
    before = serial(server, "other.test")
    result = nsupdate(
        server, f"update add {name} 300 A 192.0.2.120", zone="other.test", key=None, tcp=tcp
    )
    assert_ok(result)
    assert records(server, name, "A") == {"192.0.2.120"}
    assert serial(server, "other.test") == before + 1
    newest = history(server, "other.test")[0]
    assert [newest[1], newest[4]] == [f"{before} -> {before + 1}", "addr:127.0.0.1"]


@pytest.mark.parametrize("key", [pytest.param(None, id="unsigned"), pytest.param(DEFAULT_KEY)])
def test_zone_without_update_config_is_refused(server: XdnsdProcess, key: str | None) -> None:
    name = f"refused-{key or 'unsigned'}.closed.test."
    before = serial(server, "closed.test")
    since = len(server.log())
    result = nsupdate(server, f"update add {name} 300 A 192.0.2.1", zone="closed.test", key=key)
    assert_fails(result, "REFUSED")
    assert records(server, name, "A") == set()
    assert serial(server, "closed.test") == before
    who = f"key {key}." if key is not None else "unsigned"
    line = f"update refused: zone closed.test., {who} from 127.0.0.1: updates not enabled"
    assert logged(server, since, line), server.log()


# --- zone errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [pytest.param(None, id="unsigned"), pytest.param(DEFAULT_KEY)])
@pytest.mark.parametrize("zone", ["nothere.test", "sub.example.test"])
def test_notauth_for_a_zone_not_served(server: XdnsdProcess, zone: str, key: str | None) -> None:
    since = len(server.log())
    result = nsupdate(server, f"update add www.{zone}. 300 A 192.0.2.1", zone=zone, key=key)
    assert_fails(result, "NOTAUTH")
    assert logged(server, since, f"for zone {zone}.: not served here (NOTAUTH)"), server.log()


def test_notauth_for_a_zone_of_another_class(server: XdnsdProcess) -> None:
    before = serial(server)
    result = nsupdate(server, "class CH", 'update add chaos.example.test. 300 CH TXT "ch"')
    assert_fails(result, "NOTAUTH")
    assert serial(server) == before


def test_zone_name_case_does_not_matter(server: XdnsdProcess) -> None:
    name = "zone-case.example.test."
    before = serial(server)
    assert_ok(nsupdate(server, f"update add {name} 300 A 192.0.2.1", zone="EXAMPLE.Test"))
    assert records(server, name, "A") == {"192.0.2.1"}
    assert serial(server) == before + 1


@pytest.mark.parametrize(
    "commands",
    [
        pytest.param(["update add www.other.test. 300 A 192.0.2.99"], id="update"),
        pytest.param(
            [
                "prereq yxdomain www.other.test.",
                "update add notzone.example.test. 300 A 192.0.2.99",
            ],
            id="prereq",
        ),
    ],
)
def test_notzone_for_a_name_outside_the_zone(server: XdnsdProcess, commands: list[str]) -> None:
    before = serial(server)
    before_other = serial(server, "other.test")
    assert_fails(nsupdate(server, *commands), "NOTZONE")
    assert records(server, "www.other.test.", "A") == {"192.0.2.110"}
    assert records(server, "notzone.example.test.", "A") == set()
    assert (serial(server), serial(server, "other.test")) == (before, before_other)


# --- provenance ---------------------------------------------------------------------------------


def history(server: XdnsdProcess, zone: str) -> list[list[str]]:
    """``xdnsd zone history ZONE`` as rows of cells (TIME, SERIAL, CHANGES, DOT, WHO)."""
    out = run_cli("zone", "history", zone, config=server.config).stdout.splitlines()
    assert re.split(r"\s{2,}", out[0]) == ["TIME (UTC)", "SERIAL", "CHANGES", "DOT", "WHO"]
    return [re.split(r"\s{2,}", line) for line in out[1:]]


def test_history_names_who_changed_what_newest_first(server: XdnsdProcess) -> None:
    start = serial(server)
    assert_ok(nsupdate(server, 'update add history-1.example.test. 300 TXT "1"', key="key-sha1"))
    assert_ok(
        nsupdate(
            server,
            'update add history-2.example.test. 300 TXT "2"',
            'update add history-2.example.test. 300 TXT "3"',
            key="key-sha384",
        )
    )
    # a no-op and a refused update leave no entry
    assert_ok(nsupdate(server, 'update add history-1.example.test. 300 TXT "1"'))
    assert_fails(
        nsupdate(server, 'update add host.example.test. 300 TXT "x"', key="limited"), "REFUSED"
    )
    rows = history(server, "example.test")
    assert [row[1:3] + row[4:] for row in rows[:2]] == [
        [f"{start + 1} -> {start + 2}", "+2 -0", "key:key-sha384"],
        [f"{start} -> {start + 1}", "+1 -0", "key:key-sha1"],
    ]

    other_start = serial(server, "other.test")
    assert_ok(
        nsupdate(
            server,
            "update add history.other.test. 300 A 192.0.2.121",
            zone="other.test",
            key=None,
        )
    )
    rows = history(server, "other.test")
    assert [rows[0][1], rows[0][4]] == [f"{other_start} -> {other_start + 1}", "addr:127.0.0.1"]
    assert rows[-1][4].startswith("import:")  # the oldest: the zone file
