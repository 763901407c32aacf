"""Wildcards (RFC 4592): closest encloser, empty non-terminals block, exact names win."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

MAIL = ["mail.example. 3600 IN A 192.0.2.25", "mail.example. 3600 IN AAAA 2001:db8::25"]

CASES = [
    Case(
        "expanded-to-the-qname",
        "foo.wild.example.",
        answer=["foo.wild.example. 3600 IN A 192.0.2.100"],
    ),
    Case("several-labels", "a.b.wild.example.", answer=["a.b.wild.example. 3600 IN A 192.0.2.100"]),
    Case(
        "qname-case-kept", "FoO.wild.example.", answer=["FoO.wild.example. 3600 IN A 192.0.2.100"]
    ),
    Case("wildcard-nodata", "foo.wild.example.", "AAAA", authority=[SOA_NEG]),
    Case(
        "wildcard-mx-gets-additionals",
        "foo.wild.example.",
        "MX",
        answer=["foo.wild.example. 3600 IN MX 10 mail.example."],
        additional=MAIL,
    ),
    Case("existing-name-wins", "exists.wild.example.", "MX", authority=[SOA_NEG]),
    Case("empty-non-terminal-exists", "y.wild.example.", authority=[SOA_NEG]),
    Case(
        "below-an-empty-non-terminal-no-match",
        "z.y.wild.example.",
        rcode="NXDOMAIN",
        authority=[SOA_NEG],
    ),
    Case(
        "star-queried-directly", "*.wild.example.", answer=["*.wild.example. 3600 IN A 192.0.2.100"]
    ),
    Case("ent-blocks-wildcard", "y.ent.blocked.example.", rcode="NXDOMAIN", authority=[SOA_NEG]),
    Case("ent-itself", "ent.blocked.example.", authority=[SOA_NEG]),
    Case(
        "sibling-of-ent-matches",
        "z.blocked.example.",
        answer=["z.blocked.example. 3600 IN A 192.0.2.110"],
    ),
    Case(
        "wildcard-cname",
        "foo.wcname.example.",
        answer=[
            "foo.wcname.example. 3600 IN CNAME www.example.",
            "www.example. 300 IN A 192.0.2.80",
        ],
    ),
    Case(
        "wildcard-cname-loop",
        "x.wloop.example.",
        answer=[
            "x.wloop.example. 3600 IN CNAME loop.wloop.example.",
            "loop.wloop.example. 3600 IN CNAME loop.wloop.example.",
        ],
    ),
    Case(
        "wildcard-cname-loop-repeats-the-expansion-like-knot",
        "loop.wloop.example.",
        answer=["loop.wloop.example. 3600 IN CNAME loop.wloop.example."] * 2,
    ),
    Case(
        "wildcard-cname-out-of-zone",
        "a.wout.example.",
        answer=["a.wout.example. 3600 IN CNAME www.elsewhere."],
    ),
    Case(
        "wildcard-any-is-one-rrset",
        "foo.wild.example.",
        "ANY",
        answer=["foo.wild.example. 3600 IN A 192.0.2.100"],
    ),
    Case(
        "wildcard-below-a-delegation-is-a-referral",
        "foo.sub.example.",
        flags="QR",
        authority=[
            "sub.example. 3600 IN NS ns1.sub.example.",
            "sub.example. 3600 IN NS ns.elsewhere.",
        ],
        additional=[
            "ns1.sub.example. 3600 IN A 192.0.2.200",
            "ns1.sub.example. 3600 IN AAAA 2001:db8::200",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_wildcard(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
