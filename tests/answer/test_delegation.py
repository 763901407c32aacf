"""Referrals: NS in authority, glue in additional, AA clear; DS from the parent side with AA."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

SUB_NS = ["sub.example. 3600 IN NS ns1.sub.example.", "sub.example. 3600 IN NS ns.elsewhere."]
SUB_GLUE = ["ns1.sub.example. 3600 IN A 192.0.2.200", "ns1.sub.example. 3600 IN AAAA 2001:db8::200"]
SUB_DS = (
    "sub.example. 3600 IN DS 12345 13 2 "
    "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
)
CHILD_SOA_NEG = (
    "child.example. 600 IN SOA ns1.child.example. hostmaster.child.example. 7 3600 900 604800 900"
)
CHILD_DS = (
    "child.example. 3600 IN DS 54321 8 2 "
    "FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210"
)

CASES = [
    Case("at-the-cut", "sub.example.", flags="QR", authority=SUB_NS, additional=SUB_GLUE),
    Case(
        "below-the-cut", "a.b.sub.example.", "MX", flags="QR", authority=SUB_NS, additional=SUB_GLUE
    ),
    Case(
        "glue-name-itself-is-a-referral",
        "ns1.sub.example.",
        flags="QR",
        authority=SUB_NS,
        additional=SUB_GLUE,
    ),
    Case(
        "ns-query-at-cut-is-a-referral",
        "sub.example.",
        "NS",
        flags="QR",
        authority=SUB_NS,
        additional=SUB_GLUE,
    ),
    Case(
        "any-at-cut-is-a-referral",
        "sub.example.",
        "ANY",
        flags="QR",
        authority=SUB_NS,
        additional=SUB_GLUE,
    ),
    Case("ds-at-cut-is-answered-by-the-parent", "sub.example.", "DS", answer=[SUB_DS]),
    Case(
        "ds-below-cut-is-a-referral",
        "x.sub.example.",
        "DS",
        flags="QR",
        authority=SUB_NS,
        additional=SUB_GLUE,
    ),
    Case("ds-for-served-child-comes-from-the-parent", "child.example.", "DS", answer=[CHILD_DS]),
    Case(
        "ds-below-served-child-comes-from-the-child",
        "www.child.example.",
        "DS",
        authority=[CHILD_SOA_NEG],
    ),
    Case(
        "served-child-answers-for-itself",
        "www.child.example.",
        answer=["www.child.example. 600 IN A 192.0.2.221"],
    ),
    Case(
        "apex-ns-is-an-answer-not-a-referral",
        "example.",
        "NS",
        answer=[
            "example. 3600 IN NS ns1.example.",
            "example. 3600 IN NS ns2.example.",
            "example. 3600 IN NS ns.elsewhere.",
        ],
        additional=[
            "ns1.example. 3600 IN A 192.0.2.53",
            "ns1.example. 3600 IN AAAA 2001:db8::53",
            "ns2.example. 3600 IN A 192.0.2.54",
        ],
    ),
    Case(
        "soa-at-apex-is-nodata-free",
        "example.",
        "MX",
        answer=["example. 3600 IN MX 10 mail.example.", "example. 3600 IN MX 20 mail.elsewhere."],
        additional=[
            "mail.example. 3600 IN A 192.0.2.25",
            "mail.example. 3600 IN AAAA 2001:db8::25",
        ],
    ),
    Case("ds-nodata-at-apex", "example.", "DS", authority=[SOA_NEG]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_delegation(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
