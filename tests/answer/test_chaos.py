"""CH class: version.bind / version.server / id.server / hostname.bind; hidden by default."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ServerIdentity, ZoneFinder

from .tables import Case, ask, check, make_query

NAMES = ["version.bind.", "version.server.", "id.server.", "hostname.bind."]
IDENTITY = ServerIdentity(version="xdnsd 0.1.0", identity="ns1.test")


@pytest.mark.parametrize("name", NAMES)
def test_hidden_by_default(finder: ZoneFinder, name: str) -> None:
    check(finder, Case("x", name, "TXT", qclass="CH", rcode="REFUSED", flags="QR"))


CONFIGURED = [
    Case(
        "version-bind",
        "version.bind.",
        "TXT",
        qclass="CH",
        flags="QR",
        answer=['version.bind. 0 CH TXT "xdnsd 0.1.0"'],
    ),
    Case(
        "version-server",
        "version.server.",
        "TXT",
        qclass="CH",
        flags="QR",
        answer=['version.server. 0 CH TXT "xdnsd 0.1.0"'],
    ),
    Case(
        "id-server",
        "id.server.",
        "TXT",
        qclass="CH",
        flags="QR",
        answer=['id.server. 0 CH TXT "ns1.test"'],
    ),
    Case(
        "hostname-bind",
        "hostname.bind.",
        "TXT",
        qclass="CH",
        flags="QR",
        answer=['hostname.bind. 0 CH TXT "ns1.test"'],
    ),
    Case(
        "case-insensitive",
        "VERSION.Bind.",
        "TXT",
        qclass="CH",
        flags="QR RD",
        rd=True,
        answer=['VERSION.Bind. 0 CH TXT "xdnsd 0.1.0"'],
    ),
    Case("other-name-refused", "authors.bind.", "TXT", qclass="CH", rcode="REFUSED", flags="QR"),
    Case("other-type-refused", "version.bind.", "A", qclass="CH", rcode="REFUSED", flags="QR"),
    Case("any-type-refused", "version.bind.", "ANY", qclass="CH", rcode="REFUSED", flags="QR"),
    Case("in-class-is-a-zone-query", "version.bind.", "TXT", rcode="REFUSED", flags="QR"),
]


@pytest.mark.parametrize("case", CONFIGURED, ids=str)
def test_configured(finder: ZoneFinder, case: Case) -> None:
    check(finder, case, identity=IDENTITY)


def test_one_identity_hidden_the_other_shown(finder: ZoneFinder) -> None:
    identity = ServerIdentity(identity="ns1.test")
    check(
        finder,
        Case("x", "version.bind.", "TXT", qclass="CH", rcode="REFUSED", flags="QR"),
        identity,
    )
    check(
        finder,
        Case(
            "x",
            "id.server.",
            "TXT",
            qclass="CH",
            flags="QR",
            answer=['id.server. 0 CH TXT "ns1.test"'],
        ),
        identity,
    )


def test_chaos_answers_are_cacheable_and_zoneless(finder: ZoneFinder) -> None:
    answer, _ = ask(
        finder, make_query(Case("x", "version.bind.", "TXT", qclass="CH")), identity=IDENTITY
    )
    assert answer.cacheable and answer.zone is None
