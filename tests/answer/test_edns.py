"""EDNS(0) (RFC 6891): OPT echoed with our payload, DO echoed, BADVERS, options ignored."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from xdnsd.server.answer import EDNS_PAYLOAD, ZoneFinder

from .tables import Case, ask, check, make_query

WWW = ["www.example. 300 IN A 192.0.2.80"]

CASES = [
    Case("no-edns-no-opt", "www.example.", answer=WWW),
    Case(
        "edns0-opt-with-our-payload",
        "www.example.",
        edns=0,
        payload=4096,
        answer=WWW,
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
    Case(
        "do-bit-echoed",
        "www.example.",
        edns=0,
        do=True,
        answer=WWW,
        response_edns=(0, EDNS_PAYLOAD, True),
    ),
    Case(
        "small-payload-is-raised-to-512",
        "www.example.",
        edns=0,
        payload=100,
        answer=WWW,
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
    Case(
        "version-1-is-badvers",
        "www.example.",
        edns=1,
        rcode="BADVERS",
        flags="QR",
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
    Case(
        "badvers-before-zone-lookup",
        "www.nowhere.",
        edns=1,
        rcode="BADVERS",
        flags="QR",
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
    Case(
        "unknown-option-ignored",
        "www.example.",
        edns=0,
        answer=WWW,
        options=[dns.edns.GenericOption(65001, b"abc")],
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
    Case(
        "nsid-not-answered",
        "www.example.",
        edns=0,
        answer=WWW,
        options=[dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")],
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
    Case(
        "cookie-ignored",
        "www.example.",
        edns=0,
        answer=WWW,
        options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")],
        response_edns=(0, EDNS_PAYLOAD, False),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_edns(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)


def test_z_flags_not_echoed(finder: ZoneFinder) -> None:
    query = dns.message.make_query("www.example.", "A", use_edns=0, ednsflags=0x4000 | dns.flags.DO)
    _, response = ask(finder, query.to_wire())
    assert response is not None
    assert response.ednsflags == dns.flags.DO


def test_options_make_the_answer_uncacheable(finder: ZoneFinder) -> None:
    plain, _ = ask(finder, make_query(Case("x", "www.example.", edns=0)))
    with_option, _ = ask(
        finder,
        make_query(Case("x", "www.example.", edns=0, options=[dns.edns.GenericOption(65001, b"")])),
    )
    assert plain.cacheable
    assert not with_option.cacheable


def test_two_opt_records_is_formerr_without_opt(finder: ZoneFinder) -> None:
    wire = make_query(Case("x", "www.example.", edns=0))
    opt = wire[-11:]
    wire = wire[:10] + b"\x00\x02" + wire[12:] + opt
    answer, response = ask(finder, wire)
    assert response is not None
    assert response.rcode() == dns.rcode.FORMERR
    assert response.edns == -1
    assert not answer.cacheable
