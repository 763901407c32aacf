"""CNAME chains: followed inside the zone only, at most five hops, loops stop silently."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

CASES = [
    Case(
        "chain-of-two",
        "alias.example.",
        answer=[
            "alias.example. 3600 IN CNAME alias2.example.",
            "alias2.example. 3600 IN CNAME www.example.",
            "www.example. 300 IN A 192.0.2.80",
        ],
    ),
    Case(
        "cname-query-not-followed",
        "alias.example.",
        "CNAME",
        answer=["alias.example. 3600 IN CNAME alias2.example."],
    ),
    Case(
        "any-query-not-followed",
        "alias.example.",
        "ANY",
        answer=["alias.example. 3600 IN CNAME alias2.example."],
    ),
    Case("rrsig-query-not-followed", "alias.example.", "RRSIG", authority=[SOA_NEG]),
    Case(
        "chain-to-nodata",
        "alias.example.",
        "MX",
        answer=[
            "alias.example. 3600 IN CNAME alias2.example.",
            "alias2.example. 3600 IN CNAME www.example.",
        ],
        authority=[SOA_NEG],
    ),
    Case(
        "dangling-is-nxdomain",
        "dangling.example.",
        rcode="NXDOMAIN",
        answer=["dangling.example. 3600 IN CNAME nothere.example."],
        authority=[SOA_NEG],
    ),
    Case(
        "to-empty-non-terminal-is-nodata",
        "to-ent.example.",
        answer=["to-ent.example. 3600 IN CNAME ent.example."],
        authority=[SOA_NEG],
    ),
    Case(
        "loop",
        "loop1.example.",
        answer=[
            "loop1.example. 3600 IN CNAME loop2.example.",
            "loop2.example. 3600 IN CNAME loop1.example.",
        ],
    ),
    Case("self-loop", "self.example.", answer=["self.example. 3600 IN CNAME self.example."]),
    Case(
        "out-of-zone-not-followed-even-if-served",
        "out.example.",
        answer=["out.example. 3600 IN CNAME www.other."],
    ),
    Case(
        "five-hops-max",
        "c1.example.",
        answer=[f"c{i}.example. 3600 IN CNAME c{i + 1}.example." for i in range(1, 6)],
    ),
    Case(
        "into-a-delegation-is-a-referral-with-aa",
        "to-deleg.example.",
        answer=["to-deleg.example. 3600 IN CNAME host.sub.example."],
        authority=[
            "sub.example. 3600 IN NS ns1.sub.example.",
            "sub.example. 3600 IN NS ns.elsewhere.",
        ],
        additional=[
            "ns1.sub.example. 3600 IN A 192.0.2.200",
            "ns1.sub.example. 3600 IN AAAA 2001:db8::200",
        ],
    ),
    Case(
        "into-a-dname",
        "to-dname.example.",
        answer=[
            "to-dname.example. 3600 IN CNAME a.dn.example.",
            "dn.example. 3600 IN DNAME other.",
            "a.dn.example. 3600 IN CNAME a.other.",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cname(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
