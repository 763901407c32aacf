"""Malformed packets: dropped when the header or question is unreadable, FORMERR otherwise.

Each row is what ``knotd`` 3.2 does with the same bytes.
"""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
import pytest

from xdnsd.server.answer import ZoneFinder, answer_wire

# ID 0x1234, no flags, one question www.example. A
HEADER = bytes.fromhex("1234 0000 0001 0000 0000 0000")
QUESTION = b"\x03www\x07example\x00" + b"\x00\x01\x00\x01"
QUERY = HEADER + QUESTION

DROPPED = [
    ("empty", b""),
    ("shorter-than-header", QUERY[:11]),
    ("header-only-with-qdcount-1", QUERY[:12]),
    ("truncated-qname", QUERY[:18]),
    ("missing-qclass", QUERY[:-2]),
    ("qr-set", QUERY[:2] + b"\x80\x00" + QUERY[4:]),
    ("qdcount-2", QUERY[:4] + b"\x00\x02" + QUERY[6:] + QUESTION),
    ("compressed-qname", HEADER + b"\x03www\xc0\x0c\x00\x01\x00\x01"),
    ("pointer-loop", HEADER + b"\xc0\x0c\x00\x01\x00\x01"),
    ("label-over-63", HEADER + bytes([64]) + b"a" * 64 + b"\x00\x00\x01\x00\x01"),
    ("name-over-255", HEADER + (bytes([63]) + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01"),
    ("qdcount-0-with-trailing-bytes", QUERY[:4] + b"\x00\x00" + QUERY[6:]),
]

# (id, wire, expected response hex)
FORMERR = [
    ("qdcount-0", QUERY[:4] + b"\x00\x00" + QUERY[6:12], "1234 8001 0000 0000 0000 0000"),
    (
        "qdcount-0-rd-echoed",
        QUERY[:2] + b"\x01\x00\x00\x00" + QUERY[6:12],
        "1234 8101 0000 0000 0000 0000",
    ),
    ("trailing-garbage", QUERY + b"\x00", "1234 8001 0001 0000 0000 0000" + QUESTION.hex()),
    (
        "ancount-without-answer",
        QUERY[:6] + b"\x00\x01" + QUERY[8:],
        "1234 8001 0001 0000 0000 0000" + QUESTION.hex(),
    ),
    (
        "bad-rdlength-in-answer",
        QUERY[:6]
        + b"\x00\x01"
        + QUERY[8:]
        + bytes.fromhex("c00c 0001 0001 0000003c 0005 01020304"),
        "1234 8001 0001 0000 0000 0000" + QUESTION.hex(),
    ),
    (
        "opt-in-answer-section",
        QUERY[:6] + b"\x00\x01" + QUERY[8:] + bytes.fromhex("00 0029 04d0 00000000 0000"),
        "1234 8001 0001 0000 0000 0000" + QUESTION.hex(),
    ),
    (
        "opt-rdlength-past-end",
        QUERY[:10] + b"\x00\x01" + QUESTION + bytes.fromhex("00 0029 04d0 00000000 0010"),
        "1234 8001 0001 0000 0000 0000" + QUESTION.hex(),
    ),
]


@pytest.mark.parametrize(("label", "wire"), DROPPED, ids=[d[0] for d in DROPPED])
def test_dropped(finder: ZoneFinder, label: str, wire: bytes) -> None:
    answer = answer_wire(wire, finder, tcp=False)
    assert answer.wire is None
    assert not answer.cacheable


@pytest.mark.parametrize(("label", "wire", "expected"), FORMERR, ids=[f[0] for f in FORMERR])
def test_formerr(finder: ZoneFinder, label: str, wire: bytes, expected: str) -> None:
    answer = answer_wire(wire, finder, tcp=False)
    assert answer.wire is not None
    assert answer.wire.hex() == expected.replace(" ", "")
    assert not answer.cacheable


def test_qdcount_0_with_edns_echoes_opt(finder: ZoneFinder) -> None:
    opt = bytes.fromhex("00 0029 04d0 00000000 0000")
    answer = answer_wire(QUERY[:4] + b"\x00\x00\x00\x00\x00\x00\x00\x01" + opt, finder, tcp=False)
    assert answer.wire is not None
    response = dns.message.from_wire(answer.wire)
    assert response.rcode() == dns.rcode.FORMERR
    assert response.edns == 0 and response.payload == 1232


def test_badvers_wins_over_qdcount_0(finder: ZoneFinder) -> None:
    opt = bytes.fromhex("00 0029 04d0 00010000 0000")  # EDNS version 1
    answer = answer_wire(QUERY[:4] + b"\x00\x00\x00\x00\x00\x00\x00\x01" + opt, finder, tcp=False)
    assert answer.wire is not None
    assert dns.message.from_wire(answer.wire).rcode() == dns.rcode.BADVERS


def test_options_that_do_not_parse_are_ignored(finder: ZoneFinder) -> None:
    # a 3-octet COOKIE and a malformed ECS: Knot checks only the option framing
    for option in ("000a0003313233", "0008000800011800c0000200"):
        opt = bytes.fromhex("00 0029 04d0 00000000") + struct.pack("!H", len(option) // 2)
        wire = QUERY[:10] + b"\x00\x01" + QUESTION + opt + bytes.fromhex(option)
        answer = answer_wire(wire, finder, tcp=False)
        assert answer.wire is not None and not answer.cacheable
        response = dns.message.from_wire(answer.wire)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.options == ()


def test_option_framing_errors_are_formerr(finder: ZoneFinder) -> None:
    opt = bytes.fromhex("00 0029 04d0 00000000 0004 000a 0008")  # option longer than the RDATA
    answer = answer_wire(QUERY[:10] + b"\x00\x01" + QUESTION + opt, finder, tcp=False)
    assert answer.wire is not None
    assert dns.message.from_wire(answer.wire).rcode() == dns.rcode.FORMERR


def test_query_flags_are_not_echoed_except_rd(finder: ZoneFinder) -> None:
    # AA, TC, Z, AD and CD set in the query; rcode 5 in the query
    wire = QUERY[:2] + b"\x07\x75" + QUERY[4:]
    answer = answer_wire(wire, finder, tcp=False)
    assert answer.wire is not None
    assert answer.wire[2:4] == b"\x85\x00"  # QR AA RD, NOERROR
