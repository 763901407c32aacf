"""NXDOMAIN and NODATA (RFC 2308): SOA in authority, TTL = min(SOA TTL, SOA MINIMUM)."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

CHILD_SOA_NEG = (
    "child.example. 600 IN SOA ns1.child.example. hostmaster.child.example. 7 3600 900 604800 900"
)
OTHER_SOA_NEG = "other. 60 IN SOA ns1.other. hostmaster.other. 99 3600 900 604800 60"

CASES = [
    Case("nxdomain", "nothere.example.", rcode="NXDOMAIN", authority=[SOA_NEG]),
    Case("nxdomain-deep", "a.b.c.nothere.example.", rcode="NXDOMAIN", authority=[SOA_NEG]),
    Case("nodata", "www.example.", "MX", authority=[SOA_NEG]),
    Case("nodata-at-empty-non-terminal", "ent.example.", authority=[SOA_NEG]),
    Case("nodata-at-deeper-ent", "deep.ent.example.", "TXT", authority=[SOA_NEG]),
    Case("nxdomain-below-existing-name", "x.www.example.", rcode="NXDOMAIN", authority=[SOA_NEG]),
    Case(
        "soa-ttl-below-minimum-keeps-soa-ttl",
        "nothere.child.example.",
        rcode="NXDOMAIN",
        authority=[CHILD_SOA_NEG],
    ),
    Case(
        "minimum-below-soa-ttl", "nothere.other.", "A", rcode="NXDOMAIN", authority=[OTHER_SOA_NEG]
    ),
    Case("nodata-other-zone", "www.other.", "TXT", authority=[OTHER_SOA_NEG]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_negative(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
