"""Exact matches: the RRset of the asked type at the asked name, AA set, nothing else."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

CASES = [
    Case("a", "www.example.", "A", answer=["www.example. 300 IN A 192.0.2.80"]),
    Case("aaaa", "www.example.", "AAAA", answer=["www.example. 300 IN AAAA 2001:db8::80"]),
    Case("txt", "www.example.", "TXT", answer=['www.example. 3600 IN TXT "hello" "world"']),
    Case(
        "soa-positive-keeps-its-ttl",
        "example.",
        "SOA",
        answer=[
            "example. 3600 IN SOA ns1.example. hostmaster.example. 2024010101 7200 3600 1209600 300"
        ],
    ),
    Case("apex-a", "example.", "A", answer=["example. 3600 IN A 192.0.2.1"]),
    Case("ptr", "ptr.example.", "PTR", answer=["ptr.example. 3600 IN PTR www.example."]),
    Case(
        "ds-at-apex-without-parent-is-nodata",
        "example.",
        "DS",
        authority=[SOA_NEG],
    ),
    Case(
        "child-apex-answers-for-itself",
        "child.example.",
        "A",
        answer=["child.example. 600 IN A 192.0.2.220"],
    ),
    Case(
        "child-apex-ns-from-child-zone",
        "child.example.",
        "NS",
        answer=[
            "child.example. 600 IN NS ns1.child.example.",
            "child.example. 600 IN NS ns2.example.",
        ],
        additional=["ns1.child.example. 600 IN A 192.0.2.210"],
    ),
    Case(
        "rd-is-copied",
        "www.example.",
        "A",
        rd=True,
        flags="QR AA RD",
        answer=["www.example. 300 IN A 192.0.2.80"],
    ),
    Case(
        "class-any-answered-as-in",
        "www.example.",
        "A",
        qclass="ANY",
        answer=["www.example. 300 IN A 192.0.2.80"],
    ),
    Case("tcp", "www.example.", "A", tcp=True, answer=["www.example. 300 IN A 192.0.2.80"]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_exact(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
