"""0x20: the question's case is preserved; names compress to it like Knot's do."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import Case, ask, check, make_query

CASES = [
    Case(
        "answer-owner-follows-question", "WwW.ExAmPlE.", answer=["WwW.ExAmPlE. 300 IN A 192.0.2.80"]
    ),
    Case(
        "negative-soa-owner-follows-question-suffix",
        "NoThErE.ExAmPlE.",
        rcode="NXDOMAIN",
        authority=[
            "ExAmPlE. 300 IN SOA ns1.ExAmPlE. hostmaster.ExAmPlE. 2024010101 7200 3600 1209600 300"
        ],
    ),
    Case(
        "mixed-case-owner-queried-lowercase",
        "mixedcase.example.",
        answer=["mixedcase.example. 300 IN A 192.0.2.99".replace(" 300 ", " 3600 ")],
    ),
    Case(
        "mixed-case-owner-queried-uppercase",
        "MIXEDCASE.EXAMPLE.",
        answer=["MIXEDCASE.EXAMPLE. 3600 IN A 192.0.2.99"],
    ),
    Case(
        "additional-compresses-to-question",
        "EXAMPLE.",
        "MX",
        answer=["EXAMPLE. 3600 IN MX 10 mail.EXAMPLE.", "EXAMPLE. 3600 IN MX 20 mail.elsewhere."],
        additional=[
            "mail.EXAMPLE. 3600 IN A 192.0.2.25",
            "mail.EXAMPLE. 3600 IN AAAA 2001:db8::25",
        ],
    ),
    Case(
        "referral-owner-follows-question-suffix",
        "x.SUB.example.",
        flags="QR",
        authority=[
            "SUB.example. 3600 IN NS ns1.SUB.example.",
            "SUB.example. 3600 IN NS ns.elsewhere.",
        ],
        additional=[
            "ns1.SUB.example. 3600 IN A 192.0.2.200",
            "ns1.SUB.example. 3600 IN AAAA 2001:db8::200",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)


def test_same_answer_bytes_apart_from_the_question(finder: ZoneFinder) -> None:
    """What the fast path relies on: only the question bytes differ between 0x20 variants."""
    lower, _ = ask(finder, make_query(Case("x", "foo.wild.example.", "MX")))
    mixed, _ = ask(finder, make_query(Case("x", "FoO.WiLd.ExAmPlE.", "MX")))
    assert lower.wire is not None and mixed.wire is not None
    qend = 12 + len(b"\x03foo\x04wild\x07example\x00") + 4
    assert lower.wire[qend:] == mixed.wire[qend:]
    assert lower.wire[12:qend].lower() == mixed.wire[12:qend].lower()
