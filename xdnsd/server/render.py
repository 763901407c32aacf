"""Wire format in and out, the way Knot DNS does it: read a query packet, render a response.

Core layer: stdlib and dnspython only.

Reading: a packet whose header or question cannot be read is dropped (no answer at all); one
whose question is fine but whose other sections are malformed gets FORMERR (``formerr_wire``).

Rendering:

The answer engine (``answer.py``) decides *what* to say; this module decides how much of it fits.
RRsets are written whole and in order (RFC 2181 section 9).  The first RRset that does not fit
stops the rendering: nothing after it is written, even if a later, smaller RRset would fit.  TC is
set only when the RRset that did not fit is one the answer needs (Knot's rule):

* answer section: always needed;
* authority section: the referral NS RRset is needed, the negative-answer SOA is not;
* additional section: glue is needed only in a referral, and only for name servers below the
  delegation point (RFC 1034 4.3.2 step 3b: other additional data is optional).

The OPT record (and a TSIG record) are reserved up front, so they are always present.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset

MIN_UDP_SIZE = 512
"""Smallest size a UDP response may be limited to (RFC 1035 / RFC 6891 6.2.5)."""

MAX_TCP_SIZE = 65535
"""Largest DNS message over TCP."""

_OPT_FIXED_SIZE = 11  # root owner, type, class, ttl, rdlength

# dnspython's renderer has no type annotations; keep the untyped boundary in one place.
_Renderer: Callable[..., Any] = dns.renderer.Renderer


def _opt_size(opt: dns.rrset.RRset) -> int:
    size = _OPT_FIXED_SIZE
    for rdata in opt:
        size += len(rdata.to_wire() or b"")
    return size


def _tsig_size(tsig: dns.rrset.RRset) -> int:
    # Uncompressed owner + type, class, ttl, rdlength + rdata.
    return len(tsig.name.to_wire() or b"") + 10 + len(tsig[0].to_wire() or b"")


def _referral_cut(response: dns.message.Message) -> dns.name.Name | None:
    """The delegation point if the response is a referral (NS in the authority section)."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.NS:
            return rrset.name
    return None


def render(response: dns.message.Message, max_size: int) -> bytes:
    """Wire format of ``response`` limited to ``max_size`` octets, setting TC when needed.

    ``response.flags`` carries QR, opcode, AA, RD and the low rcode bits; the EDNS OPT (with the
    extended rcode) comes from ``response.opt`` and a TSIG record, if any, from ``response.tsig``.
    """
    renderer = _Renderer(response.id, int(response.flags), max_size)
    for question in response.question:
        renderer.add_question(question.name, question.rdtype, question.rdclass)
    reserved = 0
    if response.opt is not None:
        reserved += _opt_size(response.opt)
    if response.tsig is not None:
        reserved += _tsig_size(response.tsig)
    renderer.reserve(min(reserved, renderer.max_size))

    truncated = False
    cut = _referral_cut(response)
    sections = (
        (dns.renderer.ANSWER, response.answer),
        (dns.renderer.AUTHORITY, response.authority),
        (dns.renderer.ADDITIONAL, response.additional),
    )
    done = False
    for section, rrsets in sections:
        for rrset in rrsets:
            try:
                renderer.add_rrset(section, rrset, want_shuffle=False)
            except dns.exception.TooBig:
                truncated = _needed(section, rrset, cut)
                done = True
                break
        if done:
            break

    renderer.release_reserved()
    if response.opt is not None:
        renderer.add_opt(response.opt)
    if response.tsig is not None:
        renderer.add_rrset(dns.renderer.ADDITIONAL, response.tsig)
    if truncated:
        renderer.flags |= dns.flags.TC
    renderer.write_header()
    wire: bytes = renderer.get_wire()
    return wire


def _needed(section: int, rrset: dns.rrset.RRset, cut: dns.name.Name | None) -> bool:
    """Does failing to fit ``rrset`` make the response truncated (TC=1)?"""
    if section == dns.renderer.ANSWER:
        return True
    if section == dns.renderer.AUTHORITY:
        return rrset.rdtype != dns.rdatatype.SOA
    # Additional: only glue below the delegation point of a referral is mandatory.
    return cut is not None and rrset.name != cut and rrset.name.is_subdomain(cut)


# --------------------------------------------------------------------------- reading


def parse_query(wire: bytes) -> dns.message.Message | None:
    """The parsed query, or None if it is malformed.

    dnspython validates the contents of the EDNS options it knows (COOKIE, ECS, ...); Knot only
    checks their framing and we ignore options anyway, so a query whose options do not parse is
    parsed again without them, keeping a private marker option so that it stays uncacheable.
    """
    try:
        return dns.message.from_wire(wire, keyring=False)
    except Exception:  # dnspython raises many kinds of errors for malformed input
        pass
    stripped = _without_edns_options(wire)
    if stripped is None:
        return None
    try:
        query = dns.message.from_wire(stripped, keyring=False)
    except Exception:
        return None
    query.use_edns(query.edns, query.ednsflags, query.payload, options=[_UNPARSED_OPTION])
    return query


_UNPARSED_OPTION = dns.edns.GenericOption(
    dns.edns.OptionType.make(65535), b""
)  # marks "had options we did not parse"


def _skip_name(wire: bytes, pos: int) -> int:
    """Offset after the (possibly compressed) name at ``pos``; IndexError if it runs off."""
    while True:
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            return pos + 2
        pos += 1 + length


def _without_edns_options(wire: bytes) -> bytes | None:
    """``wire`` with the OPT record's options removed, or None if there are none to remove or
    their framing is broken (Knot: FORMERR)."""
    try:
        counts = struct.unpack_from("!HHHH", wire, 4)
        pos = 12
        for _ in range(counts[0]):
            pos = _skip_name(wire, pos) + 4
        for index in range(counts[1] + counts[2] + counts[3]):
            start = pos
            pos = _skip_name(wire, pos)
            rdtype, _, _, rdlength = struct.unpack_from("!HHIH", wire, pos)
            rdata = pos + 10
            end = rdata + rdlength
            if end > len(wire):
                return None
            if rdtype == dns.rdatatype.OPT and index >= counts[1] + counts[2]:
                option = rdata
                while option < end:  # each option: code, length, data inside the RDATA
                    option += 4 + struct.unpack_from("!H", wire, option + 2)[0]
                if option != end or rdlength == 0:
                    return None
                header = wire[start:pos] + wire[pos : pos + 8] + b"\x00\x00"
                return wire[:start] + header + wire[end:]
            pos = end
    except (IndexError, struct.error):
        return None
    return None


def read_question_end(wire: bytes, qdcount: int) -> int | None:
    """Offset just past the question, or None if Knot would drop the packet.

    Knot drops queries with more than one question, a compressed or malformed QNAME (label over
    63 octets, name over 255 octets) or a truncated question.
    """
    if qdcount == 0:
        return 12
    if qdcount > 1:
        return None
    pos = 12
    end = len(wire)
    name_len = 0
    while True:
        if pos >= end:
            return None
        length = wire[pos]
        if length == 0:
            pos += 1
            name_len += 1
            break
        if length > 63:  # compression pointer or reserved label type
            return None
        pos += 1 + length
        name_len += 1 + length
        if name_len > 255:
            return None
    if name_len > 255 or pos + 4 > end:
        return None
    return pos + 4


def formerr_wire(wire: bytes, question_end: int) -> bytes:
    """FORMERR for a query whose question was readable but the rest was not (no OPT echoed)."""
    flags = 0x8000 | (((wire[2] << 8) | wire[3]) & 0x7900) | dns.rcode.FORMERR
    return wire[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + wire[12:question_end]


def max_response_size(query: dns.message.Message, tcp: bool, our_payload: int) -> int:
    """65535 over TCP; over UDP the requester's EDNS payload within [512, ``our_payload``]."""
    if tcp:
        return MAX_TCP_SIZE
    if query.edns < 0:
        return MIN_UDP_SIZE
    return max(MIN_UDP_SIZE, min(query.payload, our_payload))
