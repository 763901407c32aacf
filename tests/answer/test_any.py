"""ANY (RFC 8482): one RRset of the node, the lowest type, over UDP and TCP alike (like Knot)."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import SOA_NEG, Case, check

CASES = [
    Case(
        f"apex-{proto}",
        "example.",
        "ANY",
        tcp=proto == "tcp",
        answer=["example. 3600 IN A 192.0.2.1"],
    )
    for proto in ("udp", "tcp")
] + [
    Case("www", "www.example.", "ANY", answer=["www.example. 300 IN A 192.0.2.80"]),
    Case(
        "srv-node-gets-additionals",
        "_sip._tcp.example.",
        "ANY",
        answer=[
            "_sip._tcp.example. 3600 IN SRV 10 60 5060 sip.example.",
            "_sip._tcp.example. 3600 IN SRV 20 60 5060 sip.elsewhere.",
        ],
        additional=["sip.example. 3600 IN A 192.0.2.60"],
    ),
    Case("empty-non-terminal", "ent.example.", "ANY", authority=[SOA_NEG]),
    Case("nxdomain", "nothere.example.", "ANY", rcode="NXDOMAIN", authority=[SOA_NEG]),
    Case(
        "below-dname-follows",
        "x.dnin.example.",
        "ANY",
        answer=[
            "dnin.example. 3600 IN DNAME target.example.",
            "x.dnin.example. 3600 IN CNAME x.target.example.",
            "x.target.example. 3600 IN A 192.0.2.150",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_any(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
