"""Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995) answers as a stream of messages.

Core layer (no I/O of its own): the generators read one store snapshot (so a transfer is
consistent while updates commit) and render up to ``max_size`` bytes per message, many RRs per
message; the transport pulls them one at a time, so a zone is never built whole in memory.
The TSIG of each message is added by the caller (``tsig.sign_stream``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import dns.exception
import dns.flags
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset

from xdnsd.model import RR, canonical_rdata, serial_gt

SOA = int(dns.rdatatype.SOA)
# room kept free in every message for a TSIG record (names, SHA-512 MAC, fixed fields)
TSIG_ROOM = 400
MAX_MESSAGE = 65535 - TSIG_ROOM
# what a TCP transfer puts in one message: rendering one is one turn of the worker's reactor, so
# smaller messages keep queries answered during a transfer (Knot and NSD send about 16 KiB too)
STREAM_MESSAGE = 16384

Question = tuple[dns.name.Name, int, int]  # qname, qtype, qclass


class Packer:
    """Fills messages with RRsets; the question goes in the first message only."""

    def __init__(self, query_id: int, question: Question, max_size: int = MAX_MESSAGE) -> None:
        self._id = query_id
        self._question: Question | None = question
        self._max = max_size
        self._renderer = self._new()
        self._count = 0

    def _new(self) -> dns.renderer.Renderer:
        renderer = dns.renderer.Renderer(
            id=self._id, flags=dns.flags.QR | dns.flags.AA, max_size=self._max
        )
        if self._question is not None:
            name, rdtype, rdclass = self._question
            renderer.add_question(name, rdtype, rdclass)
        return renderer

    def _flush(self) -> bytes:
        self._renderer.write_header()
        wire = self._renderer.get_wire()
        self._question = None  # later messages carry none (RFC 5936 2.2)
        self._renderer = self._new()
        self._count = 0
        return bytes(wire)

    def add(self, rrset: dns.rrset.RRset) -> list[bytes]:
        """Add an RRset; returns the messages that filled up."""
        done: list[bytes] = []
        try:
            self._renderer.add_rrset(dns.renderer.ANSWER, rrset)
            self._count += len(rrset)
            return done
        except dns.exception.TooBig:
            pass
        if self._count:
            done.append(self._flush())
            try:
                self._renderer.add_rrset(dns.renderer.ANSWER, rrset)
                self._count += len(rrset)
                return done
            except dns.exception.TooBig:
                pass
        if len(rrset) == 1:
            raise dns.exception.TooBig(f"{rrset.name}/{rrset.rdtype} does not fit in a message")
        for rdata in rrset:  # an RRset bigger than a message: one RR at a time
            single = dns.rrset.from_rdata(rrset.name, rrset.ttl, rdata)
            done.extend(self.add(single))
        return done

    def finish(self) -> bytes:
        return self._flush()


def _rrsets(records: Iterable[RR], skip_soa: bool = True) -> Iterator[dns.rrset.RRset]:
    """Consecutive records of one owner and type as RRsets (the store yields them grouped)."""
    current: dns.rrset.RRset | None = None
    for rr in records:
        if skip_soa and rr.rdtype == SOA:
            continue
        if current is not None and current.rdtype == rr.rdtype and current.name == rr.owner:
            current.add(rr.rdata, rr.ttl)
            continue
        if current is not None:
            yield current
        current = dns.rrset.RRset(rr.owner, dns.rdataclass.IN, dns.rdatatype.RdataType(rr.rdtype))
        current.update_ttl(rr.ttl)
        current.add(rr.rdata, rr.ttl)
    if current is not None:
        yield current


def _soa_rrset(soa: RR) -> dns.rrset.RRset:
    return dns.rrset.from_rdata(soa.owner, soa.ttl, soa.rdata)


_HEADER = struct.Struct("!HHHHHH")
_AA_QR = 0x8400


def axfr_messages(
    chunks: Iterable[tuple[int, bytes]], query_id: int, question_wire: bytes
) -> Iterator[bytes]:
    """AXFR messages (RFC 5936 2.2) from message bodies (record count, records' wire bytes) as
    ``ZoneSnapshot.wire_chunks`` renders them (SOA first and last, no name compression: a
    transfer is a copy of stored bytes, not a re-encoding); the question goes in the first
    message only."""
    first = True
    for count, body in chunks:
        if first:
            yield _HEADER.pack(query_id, _AA_QR, 1, count, 0, 0) + question_wire + body
            first = False
        else:
            yield _HEADER.pack(query_id, _AA_QR, 0, count, 0, 0) + body


JournalEntry = tuple[int, int, list[RR], list[RR]]  # serial from, serial to, removed, added


def condense(entries: list[JournalEntry]) -> tuple[list[RR], list[RR]]:
    """The net removals and additions of consecutive journal entries (SOAs left out): an RR
    added and later removed (or the reverse) cancels out."""
    removed: dict[tuple[object, ...], RR] = {}
    added: dict[tuple[object, ...], RR] = {}

    def record(
        rrs: list[RR], into: dict[tuple[object, ...], RR], undo: dict[tuple[object, ...], RR]
    ) -> None:
        for rr in rrs:
            if rr.rdtype == SOA:
                continue
            key = (rr.owner, rr.rdtype, canonical_rdata(rr.rdata), rr.ttl)
            if key in undo:
                del undo[key]  # the opposite change earlier in the chain: both cancel
            else:
                into[key] = rr

    for _from, _to, gone, new in entries:
        record(gone, removed, added)
        record(new, added, removed)
    return list(removed.values()), list(added.values())


def ixfr_messages(
    current: RR,
    client_serial: int,
    entries: list[JournalEntry] | None,
    old_soa: RR | None,
    query_id: int,
    question: Question,
    max_size: int = MAX_MESSAGE,
) -> Iterator[bytes] | None:
    """An IXFR answer (RFC 1995 4): the current SOA alone when the client is current (or ahead),
    else one condensed difference sequence.  None when the journal does not reach the client's
    serial (the caller answers with an AXFR instead)."""
    serial = int(current.rdata.serial)  # type: ignore[attr-defined]
    packer = Packer(query_id, question, max_size)
    if client_serial == serial or serial_gt(client_serial, serial):
        return iter([*packer.add(_soa_rrset(current)), packer.finish()])
    if entries is None or old_soa is None:
        return None
    removed, added = condense(entries)

    def messages() -> Iterator[bytes]:
        yield from packer.add(_soa_rrset(current))
        yield from packer.add(_soa_rrset(old_soa))
        for rrset in _rrsets(removed):
            yield from packer.add(rrset)
        yield from packer.add(_soa_rrset(current))
        for rrset in _rrsets(added):
            yield from packer.add(rrset)
        yield from packer.add(_soa_rrset(current))
        yield packer.finish()

    return messages()
