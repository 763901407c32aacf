"""Opcodes and special query types, answered like knotd with no ACLs configured."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from xdnsd.server.answer import ZoneFinder, answer_wire

from .tables import ask


def _query(
    opcode: int = 0, qtype: str = "A", qname: str = "www.example.", edns: int | bool = 0
) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=edns)
    query.flags = 0
    query.set_opcode(dns.opcode.Opcode(opcode))
    return query.to_wire()


@pytest.mark.parametrize("opcode", [1, 2, 3, 6, 7, 15])
def test_unknown_opcode_is_notimp_with_opcode_and_question(finder: ZoneFinder, opcode: int) -> None:
    answer, response = ask(finder, _query(opcode))
    assert response is not None
    assert response.rcode() == dns.rcode.NOTIMP
    assert response.opcode() == opcode
    assert str(response.question[0].name) == "www.example."
    assert response.edns == 0
    assert not answer.cacheable


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_notify_and_update_are_notauth(finder: ZoneFinder, opcode: int) -> None:
    _, response = ask(finder, _query(opcode, "SOA", "example."))
    assert response is not None
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.opcode() == opcode
    assert not response.flags & dns.flags.AA


def test_update_with_records_is_notauth_and_echoes_only_the_zone(finder: ZoneFinder) -> None:
    update = dns.update.UpdateMessage("example.")
    update.add("x", 300, "A", "192.0.2.1")
    _, response = ask(finder, update.to_wire())
    assert response is not None
    assert response.rcode() == dns.rcode.NOTAUTH
    assert [len(s) for s in response.sections] == [1, 0, 0, 0]


def test_badvers_beats_unknown_opcode(finder: ZoneFinder) -> None:
    _, response = ask(finder, _query(2, edns=1))
    assert response is not None
    assert response.rcode() == dns.rcode.BADVERS


@pytest.mark.parametrize(
    ("qtype", "tcp", "rcode"),
    [
        ("TYPE0", False, dns.rcode.NOTIMP),
        ("AXFR", False, dns.rcode.NOTIMP),
        ("AXFR", True, dns.rcode.NOTAUTH),
        ("IXFR", False, dns.rcode.NOTAUTH),
        ("IXFR", True, dns.rcode.NOTAUTH),
    ],
)
def test_special_qtypes(finder: ZoneFinder, qtype: str, tcp: bool, rcode: int) -> None:
    answer, response = ask(finder, _query(qtype=qtype, qname="example."), tcp=tcp)
    assert response is not None
    assert response.rcode() == rcode
    assert not answer.cacheable


@pytest.mark.parametrize("qtype", ["OPT", "TKEY", "TSIG", "MAILA", "MAILB", "NULL"])
def test_other_meta_types_are_plain_nodata(finder: ZoneFinder, qtype: str) -> None:
    _, response = ask(finder, _query(qtype=qtype, qname="example."))
    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_tsig_with_unknown_key_is_notauth_badkey(finder: ZoneFinder) -> None:
    keyring = dns.tsigkeyring.from_text({"k.": ("hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0")})
    query = dns.message.make_query("www.example.", "A")
    query.use_tsig(keyring, keyname="k.")
    wire = query.to_wire()
    signed = dns.message.from_wire(wire, keyring=False).tsig
    assert signed is not None
    answer = answer_wire(wire, finder, tcp=False)
    assert answer.wire is not None and not answer.cacheable
    response = dns.message.from_wire(answer.wire, keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None
    tsig = response.tsig[0]
    assert (tsig.error, tsig.mac, tsig.original_id) == (17, b"", query.id)
    assert (tsig.time_signed, tsig.fudge) == (signed[0].time_signed, signed[0].fudge)


def test_tsig_outside_zones_is_refused(finder: ZoneFinder) -> None:
    keyring = dns.tsigkeyring.from_text({"k.": ("hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0")})
    query = dns.message.make_query("www.nowhere.", "A")
    query.use_tsig(keyring, keyname="k.")
    answer, response = ask(finder, query.to_wire())
    assert response is not None
    assert response.rcode() == dns.rcode.REFUSED
    assert not answer.cacheable
