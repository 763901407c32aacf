"""Truncation: whole RRsets, stop at the first that does not fit, TC only when it was needed.

Like Knot: an answer that does not fit leaves an empty answer with TC=1 (AA kept); a referral
keeps its NS and the glue that fitted, with TC=1 when in-bailiwick glue was dropped; optional
additional data is dropped silently.
"""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import Case, ask, make_query


@pytest.mark.parametrize(("edns", "payload"), [(None, 512), (0, 1232), (0, 4096), (0, 600)])
def test_big_answer_over_udp_is_empty_with_tc(
    finder: ZoneFinder, edns: int | None, payload: int
) -> None:
    answer, response = ask(
        finder, make_query(Case("x", "big.example.", edns=edns, payload=payload))
    )
    assert response is not None and answer.wire is not None
    assert response.flags & dns.flags.TC and response.flags & dns.flags.AA
    assert [len(s) for s in response.sections] == [1, 0, 0, 0]
    assert len(answer.wire) <= max(512, min(payload, 1232))


def test_big_answer_over_tcp_is_complete(finder: ZoneFinder) -> None:
    _, response = ask(finder, make_query(Case("x", "big.example.")), tcp=True)
    assert response is not None
    assert not response.flags & dns.flags.TC
    assert len(response.answer) == 100  # one RR per RRset when parsed like this


def test_payload_between_512_and_1232_is_honoured(finder: ZoneFinder) -> None:
    _, small = ask(finder, make_query(Case("x", "bigdeleg.example.", edns=0, payload=700)))
    _, large = ask(finder, make_query(Case("x", "bigdeleg.example.", edns=0, payload=1232)))
    assert small is not None and large is not None
    assert len(small.additional) < len(large.additional)


def test_referral_with_dropped_in_bailiwick_glue_sets_tc(finder: ZoneFinder) -> None:
    answer, response = ask(finder, make_query(Case("x", "bigdeleg.example.")))
    assert response is not None and answer.wire is not None
    assert response.flags & dns.flags.TC
    assert not response.flags & dns.flags.AA
    assert len(response.authority) == 20  # the NS RRset is whole
    assert 0 < len(response.additional) < 20
    assert len(answer.wire) <= 512


def test_referral_with_dropped_sibling_glue_has_no_tc(finder: ZoneFinder) -> None:
    answer, response = ask(finder, make_query(Case("x", "sibdeleg.example.")))
    assert response is not None and answer.wire is not None
    assert not response.flags & dns.flags.TC
    assert len(response.authority) == 20
    assert 0 < len(response.additional) < 20


def test_glue_is_kept_in_canonical_order(finder: ZoneFinder) -> None:
    _, response = ask(finder, make_query(Case("x", "sibdeleg.example.")))
    assert response is not None
    names = [rrset.name.to_text() for rrset in response.additional]
    # ns1, ns10..ns19, ns2, ns20.. in canonical order would be wrong: wire order is by length first
    assert names[:3] == ["ns1.sibs.example.", "ns2.sibs.example.", "ns3.sibs.example."]


def test_opt_always_fits(finder: ZoneFinder) -> None:
    answer, response = ask(finder, make_query(Case("x", "big.example.", edns=0, do=True)))
    assert response is not None and answer.wire is not None
    assert response.edns == 0 and response.ednsflags & dns.flags.DO
    assert response.rcode() == dns.rcode.NOERROR


def test_mx_answer_fits_but_additionals_do_not(finder: ZoneFinder) -> None:
    # a referral whose NS alone nearly fills 512 octets: no glue fits, TC set (glue is needed)
    _, response = ask(finder, make_query(Case("x", "a.bigdeleg.example.", "MX")))
    assert response is not None
    assert all(rrset.rdtype == dns.rdatatype.A for rrset in response.additional)
