"""REFUSED outside served zones; the longest matching zone answers (parent and child together)."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode
import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import Case, ask, check, make_query

CASES = [
    Case("not-served", "www.nowhere.", rcode="REFUSED", flags="QR"),
    Case("root", ".", "SOA", rcode="REFUSED", flags="QR"),
    Case("parent-of-a-zone", "example.com.", rcode="REFUSED", flags="QR"),
    Case("ds-above-every-zone", "test.", "DS", rcode="REFUSED", flags="QR"),
    Case("hesiod-class", "www.example.", "A", qclass="HS", rcode="REFUSED", flags="QR"),
    Case("none-class", "www.example.", "A", qclass="NONE", rcode="REFUSED", flags="QR"),
    Case(
        "longest-zone-wins",
        "www.child.example.",
        answer=["www.child.example. 600 IN A 192.0.2.221"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_refused(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)


def test_refused_with_edns_carries_ede_not_authoritative(finder: ZoneFinder) -> None:
    answer, response = ask(finder, make_query(Case("x", "www.nowhere.", edns=0)))
    assert response is not None
    assert response.rcode() == dns.rcode.REFUSED
    assert [(o.code, o.text) for o in response.options] == [
        (dns.edns.EDECode.NOT_AUTHORITATIVE, None)
    ]
    assert answer.cacheable and answer.zone is None


def test_refused_hesiod_has_no_ede(finder: ZoneFinder) -> None:
    _, response = ask(finder, make_query(Case("x", "www.example.", qclass="HS", edns=0)))
    assert response is not None
    assert response.rcode() == dns.rcode.REFUSED
    assert response.options == ()


def test_answer_names_its_zone(finder: ZoneFinder) -> None:
    answer, _ = ask(finder, make_query(Case("x", "www.child.example.")))
    assert str(answer.zone) == "child.example."
    answer, _ = ask(finder, make_query(Case("x", "child.example.", "DS")))
    assert str(answer.zone) == "example."


def test_message_level_api(finder: ZoneFinder) -> None:
    from xdnsd.server.answer import answer_query

    query = dns.message.make_query("www.example.", "A")
    response = answer_query(query, finder)
    assert [str(rrset) for rrset in response.answer] == ["www.example. 300 IN A 192.0.2.80"]
