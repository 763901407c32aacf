"""Update policy grants and allow lists (xdnsd.server.acl), BIND semantics."""

from __future__ import annotations

import ipaddress

import dns.name
import dns.rdatatype
import pytest

from xdnsd.server.acl import (
    PolicyError,
    Requester,
    UpdateAcl,
    parse_allow,
    parse_grant,
)

ZONE = dns.name.from_text("example.test.")
LOCAL = ipaddress.ip_address("127.0.0.1")


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def t(text: str) -> int:
    return int(dns.rdatatype.from_text(text))


def policy(*grants: str) -> UpdateAcl:
    return UpdateAcl(policy=tuple(parse_grant(g) for g in grants))


def signed(key: str, address: str = "127.0.0.1") -> Requester:
    return Requester(n(key), ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("grant", "name", "rdtype", "allowed"),
    [
        ("grant k1 name host.example.test. A", "host.example.test.", "A", True),
        ("grant k1 name host.example.test. A", "host.example.test.", "TXT", False),
        ("grant k1 name host.example.test. A", "a.host.example.test.", "A", False),
        ("grant k1 subdomain dyn.example.test. ANY", "dyn.example.test.", "TXT", True),
        ("grant k1 subdomain dyn.example.test. ANY", "a.b.dyn.example.test.", "NS", True),
        ("grant k1 subdomain dyn.example.test. ANY", "example.test.", "TXT", False),
        ("grant k1 wildcard *.dyn.example.test. A", "a.dyn.example.test.", "A", True),
        ("grant k1 wildcard *.dyn.example.test. A", "a.b.dyn.example.test.", "A", True),
        ("grant k1 wildcard *.dyn.example.test. A", "dyn.example.test.", "A", False),
        ("grant k1 zonesub ANY", "example.test.", "SOA", True),
        ("grant k1 zonesub ANY", "x.example.test.", "MX", True),
        ("grant k1 zonesub TXT", "x.example.test.", "MX", False),
        # no types: everything but RRSIG, NS, SOA, NSEC, NSEC3 (BIND)
        ("grant k1 zonesub", "x.example.test.", "AAAA", True),
        ("grant k1 zonesub", "example.test.", "NS", False),
        ("grant k1 zonesub", "example.test.", "SOA", False),
        ("grant k1 zonesub", "x.example.test.", "RRSIG", False),
        ("grant k1 self k1 A", "k1.", "A", True),
        ("grant host.example.test. self host.example.test. A", "host.example.test.", "A", True),
        ("grant host.example.test. self host.example.test. A", "other.example.test.", "A", False),
        ("grant host.example.test. selfsub . A", "a.host.example.test.", "A", True),
        ("grant host.example.test. selfsub . A", "host.example.test.", "A", True),
        ("grant host.example.test. selfwild . A", "host.example.test.", "A", False),
        ("grant host.example.test. selfwild . A", "a.host.example.test.", "A", True),
        ("grant * zonesub ANY", "x.example.test.", "A", True),
        ("grant *.keys.example. zonesub ANY", "x.example.test.", "A", False),
    ],
)
def test_grant_matching(grant: str, name: str, rdtype: str, allowed: bool) -> None:
    key = "host.example.test." if "host.example.test." in grant.split()[1] else "k1."
    acl = policy(grant)
    assert acl.permits(signed(key), ZONE, n(name), t(rdtype)) is allowed


def test_wildcard_identity() -> None:
    acl = policy("grant *.keys.example. zonesub ANY")
    assert acl.permits(signed("a.keys.example."), ZONE, n("x.example.test."), t("A"))
    assert not acl.permits(signed("keys.example."), ZONE, n("x.example.test."), t("A"))


def test_first_matching_rule_decides() -> None:
    acl = policy(
        "deny k1 name secret.example.test. ANY",
        "grant k1 zonesub ANY",
    )
    assert not acl.permits(signed("k1."), ZONE, n("secret.example.test."), t("A"))
    assert acl.permits(signed("k1."), ZONE, n("open.example.test."), t("A"))


def test_no_matching_rule_denies_and_unsigned_is_not_admitted() -> None:
    acl = policy("grant k1 name a.example.test. A")
    assert not acl.permits(signed("k2."), ZONE, n("a.example.test."), t("A"))
    assert acl.admits(signed("k2."))  # signed: the per-record check decides
    assert not acl.admits(Requester(None, LOCAL))


def test_source_networks_narrow_a_grant() -> None:
    acl = policy("grant k1 zonesub ANY from 127.0.0.0/8 ::1")
    assert acl.permits(signed("k1."), ZONE, n("a.example.test."), t("A"))
    assert acl.permits(signed("k1.", "::1"), ZONE, n("a.example.test."), t("A"))
    assert not acl.permits(signed("k1.", "192.0.2.1"), ZONE, n("a.example.test."), t("A"))


def test_allow_update_list() -> None:
    acl = UpdateAcl(allow=tuple(parse_allow(e) for e in ["!127.0.0.2", "127.0.0.0/8", "key k9"]))
    assert acl.admits(Requester(None, LOCAL))
    assert not acl.admits(Requester(None, ipaddress.ip_address("127.0.0.2")))
    assert acl.admits(Requester(n("k9."), ipaddress.ip_address("192.0.2.7")))
    assert not acl.admits(Requester(n("k8."), ipaddress.ip_address("192.0.2.7")))
    assert acl.permits(Requester(None, LOCAL), ZONE, n("example.test."), t("NS"))


def test_neither_means_no_updates() -> None:
    acl = UpdateAcl()
    assert not acl.enabled
    assert not acl.admits(signed("k1."))
    assert not acl.admits(Requester(None, LOCAL))


def test_provenance() -> None:
    assert signed("k1.").provenance == "key:k1"
    assert Requester(None, LOCAL).provenance == "addr:127.0.0.1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow k1 zonesub ANY", "must start with 'grant' or 'deny'"),
        ("grant k1 everything ANY", "unknown rule type 'everything'"),
        ("grant k1 name", "needs a NAME field"),
        ("grant k1 wildcard dyn.example.test. A", "needs a name like"),
        ("grant k1 zonesub BOGUS", "'BOGUS' is not a record type"),
        ("grant k1 zonesub ANY from", "'from' needs at least one network"),
        ("grant k1 zonesub ANY from 300.1.1.1", "is not an address or network"),
        ("grant k1", "expected 'grant|deny IDENTITY RULETYPE"),
    ],
)
def test_grant_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_grant(text)


def test_allow_errors() -> None:
    with pytest.raises(PolicyError):
        parse_allow("127.0.0.1 extra")
    with pytest.raises(PolicyError):
        parse_allow("not-an-address")
