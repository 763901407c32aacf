"""DNAME (RFC 6672): the DNAME plus a synthesized CNAME with the DNAME's TTL."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

L63 = "l" * 63

CASES = [
    Case(
        "synthesis-leaving-the-zone",
        "a.dn.example.",
        answer=["dn.example. 3600 IN DNAME other.", "a.dn.example. 3600 IN CNAME a.other."],
    ),
    Case(
        "synthesis-inside-the-zone-is-followed",
        "x.dnin.example.",
        answer=[
            "dnin.example. 3600 IN DNAME target.example.",
            "x.dnin.example. 3600 IN CNAME x.target.example.",
            "x.target.example. 3600 IN A 192.0.2.150",
        ],
    ),
    Case(
        "synthesized-cname-is-the-answer-to-a-cname-query",
        "x.dnin.example.",
        "CNAME",
        answer=[
            "dnin.example. 3600 IN DNAME target.example.",
            "x.dnin.example. 3600 IN CNAME x.target.example.",
        ],
    ),
    Case(
        "synthesis-to-nxdomain",
        "y.dnin.example.",
        rcode="NXDOMAIN",
        answer=[
            "dnin.example. 3600 IN DNAME target.example.",
            "y.dnin.example. 3600 IN CNAME y.target.example.",
        ],
        authority=[SOA_NEG],
    ),
    Case(
        "qname-case-is-folded-in-the-synthesized-target",
        "X.DNIN.example.",
        "CNAME",
        answer=[
            "DNIN.example. 3600 IN DNAME target.example.",
            "X.DNIN.example. 3600 IN CNAME x.target.example.",
        ],
    ),
    Case("the-dname-owner-itself-is-not-redirected", "dn.example.", authority=[SOA_NEG]),
    Case(
        "dname-query-at-owner", "dn.example.", "DNAME", answer=["dn.example. 3600 IN DNAME other."]
    ),
    Case(
        "loop-stops-after-five-hops",
        "a.dnloop.example.",
        answer=["dnloop.example. 3600 IN DNAME dnloop.example."]
        + ["a.dnloop.example. 3600 IN CNAME a.dnloop.example."] * 5,
    ),
    Case(
        "too-long-is-yxdomain",
        f"{L63}.{L63}.dnlong.example.",
        rcode="YXDOMAIN",
        answer=[f"dnlong.example. 3600 IN DNAME {L63}.{L63}.{L63}.elsewhere."],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_dname(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
