"""Messages the query fast path hands over: RFC 2136 UPDATEs and anything carrying a TSIG.

``handle(data, address, tcp, reply)`` answers through ``reply`` (maybe later: an update is
answered only after its change is on disk).  Order of checks for an UPDATE, as BIND:

1. TSIG (RFC 8945): a bad signature is answered NOTAUTH with the TSIG error;
2. parsing and the zone section: FORMERR, or NOTAUTH for a zone this node does not serve;
3. the zone's ``allow_update`` / ``update_policy`` admits the requester at all, else REFUSED;
4. prerequisites, prescan and the policy for each record (``plan_update``), inside the writer's
   transaction, then the commit; the answer leaves after the sync.

Every answer to a signed request is signed with the request's key.  Every answer is counted
in the worker's :class:`~xdnsd.stats.ProcessStats` (a query, an update, a NOTIFY received, or a
transfer: a streamed one when its last message is sent).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from xdnsd.server import tsig, xfr
from xdnsd.server.acl import Requester, UpdateAcl
from xdnsd.server.answer import EDNS_PAYLOAD, ServerIdentity, answer_wire
from xdnsd.server.protocols import Stream
from xdnsd.server.render import max_response_size, parse_query
from xdnsd.server.secondary import SecondarySpec
from xdnsd.server.update import read_update_header
from xdnsd.server.writerlink import WriterLink
from xdnsd.stats import ProcessStats, rcode_result, response_rcode
from xdnsd.store import Store, TransferCache

log = logging.getLogger("xdnsd.update")

Reply = Callable[[bytes | None], None]
UPDATE = int(dns.opcode.UPDATE)
NOTIFY = int(dns.opcode.NOTIFY)
_SOA = int(dns.rdatatype.SOA)
_IN = int(dns.rdataclass.IN)
_AXFR = int(dns.rdatatype.AXFR)
_IXFR = int(dns.rdatatype.IXFR)
_TRANSFERS = (_AXFR, _IXFR)


def question_type(data: bytes) -> int:
    """QTYPE of a message's single, uncompressed question, or -1."""
    if data[4:6] != b"\x00\x01":
        return -1
    i = 12
    size = len(data)
    while i < size and 0 < data[i] < 64:
        i += data[i] + 1
    if i + 2 >= size or data[i] != 0:
        return -1
    return (data[i + 1] << 8) | data[i + 2]


def wants_handler(data: bytes) -> bool:
    """True for messages the fast path must not answer itself: UPDATE, NOTIFY, a zone
    transfer, or anything carrying a TSIG."""
    if len(data) < 12:
        return False
    if (data[2] >> 3) & 0xF in (UPDATE, NOTIFY) or question_type(data) in _TRANSFERS:
        return True
    return (data[10] or data[11]) != 0 and tsig.locate(data) is not None


class MessageHandler:
    def __init__(
        self,
        store: Store,
        writer: WriterLink,
        keyring: tsig.Keyring,
        update_acls: Mapping[dns.name.Name, UpdateAcl],
        identity: ServerIdentity,
        transfer_acls: Mapping[dns.name.Name, UpdateAcl] | None = None,
        default_transfer_acl: UpdateAcl | None = None,
        secondaries: Mapping[dns.name.Name, SecondarySpec] | None = None,
        clock: Callable[[], float] = time.time,
        transfer_cache: TransferCache | None = None,
        stats: ProcessStats | None = None,
    ) -> None:
        self._store = store
        self._stats = stats if stats is not None else ProcessStats()
        self._writer = writer
        self._keyring = keyring
        self._acls = update_acls
        self._transfer_acls = transfer_acls or {}
        self._default_transfer_acl = default_transfer_acl or UpdateAcl()
        self._identity = identity
        self._clock = clock
        self._secondaries = secondaries or {}
        self._transfer_cache = transfer_cache

    def handle(
        self, data: bytes, address: Any, tcp: bool, reply: Reply, stream: Stream | None = None
    ) -> None:
        if len(data) < 12 or data[2] & 0x80:
            reply(None)  # a response, or not even a header: dropped
            return
        opcode = (data[2] >> 3) & 0xF
        qtype = question_type(data)

        def counted(response: bytes | None) -> None:
            self._count(opcode, qtype, tcp, response)
            reply(response)

        now = int(self._clock())
        qend = tsig.question_end(data)
        try:
            signature = tsig.verify(data, self._keyring, now)
        except tsig.TsigFormError as exc:
            log.info("FORMERR to %s: %s", _host(address), exc)
            counted(tsig.error_response(data, qend, dns.rcode.FORMERR))
            return
        if signature is not None and not signature.ok:
            log.warning(
                "TSIG %s from %s for key %s", signature.describe(), _host(address), signature.owner
            )
            rcode = dns.rcode.FORMERR if signature.formerr else dns.rcode.NOTAUTH
            response = tsig.error_response(data, qend, rcode)
            counted(tsig.sign_response(response, signature, now))
            return
        body = tsig.strip(data, signature) if signature is not None else data

        def send(response: bytes | None) -> None:
            if response is not None and signature is not None:
                response = tsig.sign_response(response, signature, int(self._clock()))
            counted(response)

        if opcode == UPDATE:
            self._update(body, qend, signature, address, send)
        elif opcode == NOTIFY:
            self._notify(body, qend, signature, address, send)
        elif qtype in _TRANSFERS and opcode == 0:
            self._transfer(body, qend, signature, address, tcp, send, stream)
        else:
            send(self._query(body, tcp, signature is not None))

    def _count(self, opcode: int, qtype: int, tcp: bool, response: bytes | None) -> None:
        """Count an answer by what the request was (a streamed transfer: ``_counted``)."""
        stats = self._stats
        rcode = response_rcode(response) if response else -1
        if opcode == UPDATE:
            if rcode >= 0:
                stats.count_update(rcode)
        elif opcode == NOTIFY:
            if rcode >= 0:
                stats.count_notify("received", "ok" if rcode == 0 else rcode_result(rcode))
        elif qtype in _TRANSFERS and opcode == 0:
            result = "failed" if rcode < 0 else "ok" if rcode == 0 else rcode_result(rcode)
            stats.count_transfer("axfr" if qtype == _AXFR else "ixfr", result)
        else:
            stats.count_query(tcp, qtype, response)

    # --- a signed query -----------------------------------------------------------------

    def _query(self, body: bytes, tcp: bool, signed: bool) -> bytes | None:
        with self._store.snapshot() as snap:
            wire = answer_wire(body, snap, tcp=tcp, identity=self._identity).wire
        if wire is None or not signed or tcp:
            return wire
        query = parse_query(body)
        limit = max_response_size(query, tcp, EDNS_PAYLOAD) if query is not None else 512
        if len(wire) + _TSIG_ROOM <= limit:
            return wire
        # no room left for the signature: an empty truncated answer sends the client to TCP
        qend = tsig.question_end(wire)
        flags = (wire[2] | 0x02, wire[3])
        return wire[:2] + bytes(flags) + wire[4:6] + b"\x00" * 6 + wire[12:qend]

    # --- a zone transfer (AXFR, IXFR) -----------------------------------------------------

    def _transfer(
        self,
        body: bytes,
        qend: int,
        signature: tsig.Signature | None,
        address: Any,
        tcp: bool,
        send: Reply,
        stream: Stream | None,
    ) -> None:
        query = parse_query(body)
        if query is None or len(query.question) != 1 or query.edns > 0:
            send(self._query(body, tcp, signature is not None))  # the engine's FORMERR etc.
            return
        question = query.question[0]
        qtype = int(question.rdtype)
        if int(question.rdclass) != _IN or (qtype == _AXFR and not tcp):
            send(self._query(body, tcp, signature is not None))  # AXFR over UDP: NOTIMP
            return
        zone = question.name
        meta = self._store.zone_for(zone)
        requester = _requester(signature, address)
        kind = "AXFR" if qtype == _AXFR else "IXFR"
        if meta is None or meta.name != zone:
            log.warning(
                "%s of %s from %s: not a zone served here (NOTAUTH)", kind, zone, requester.address
            )
            send(_error(body, qend, dns.rcode.NOTAUTH, query.edns >= 0))
            return
        if meta.expired:  # a secondary zone not (or no longer) held: nothing to hand on
            log.warning(
                "%s of %s from %s: the zone is expired (SERVFAIL)", kind, zone, requester.address
            )
            send(_error(body, qend, dns.rcode.SERVFAIL, query.edns >= 0))
            return
        acl = self._transfer_acls.get(zone)
        if acl is None or acl.allow is None:
            acl = self._default_transfer_acl
        if not acl.admits(requester):
            log.warning(
                "%s of zone %s refused: %s from %s",
                kind,
                zone,
                requester.describe(),
                requester.address,
            )
            send(_error(body, qend, dns.rcode.REFUSED, query.edns >= 0))
            return
        client_serial = None
        if qtype == _IXFR:
            soa = [r for r in query.authority if int(r.rdtype) == _SOA]
            if len(soa) != 1 or len(soa[0]) != 1:
                send(_error(body, qend, dns.rcode.FORMERR, query.edns >= 0))
                return
            client_serial = int(soa[0][0].serial)
        now = int(self._clock())
        if not tcp:  # IXFR over UDP: the answer if it fits in one datagram, else the SOA alone
            room = _TSIG_ROOM if signature is not None else 0
            limit = max_response_size(query, False, EDNS_PAYLOAD) - room
            try:
                messages = list(
                    self._transfer_messages(zone, question, query.id, client_serial, limit)
                )
            except dns.exception.TooBig:  # one RRset alone is bigger than the datagram
                messages = []
            if len(messages) != 1:
                messages = list(
                    self._transfer_messages(
                        zone, question, query.id, client_serial, limit, soa_only=True
                    )
                )
            send(messages[0] if len(messages) == 1 else None)  # signed by send()
            return
        log.info("%s of zone %s to %s (%s)", kind, zone, requester.address, requester.describe())
        out = self._transfer_messages(zone, question, query.id, client_serial, xfr.STREAM_MESSAGE)
        if signature is not None:
            out = tsig.sign_stream(out, signature, now)
        assert stream is not None
        stream(_counted(self._stats, kind.lower(), out))

    def _transfer_messages(
        self,
        zone: dns.name.Name,
        question: Any,
        query_id: int,
        client_serial: int | None,
        max_size: int,
        soa_only: bool = False,
    ) -> Iterator[bytes]:
        """The answer's messages, read from one snapshot held while they are pulled: an AXFR
        (``client_serial`` None), an IXFR from ``client_serial`` (the whole zone when the
        journal does not reach it, RFC 1995 4), or the current SOA alone (``soa_only``)."""
        q: xfr.Question = (question.name, int(question.rdtype), int(question.rdclass))
        with self._store.snapshot() as snap:
            view = snap.zone(zone)
            current = view.soa()
            if soa_only:
                client_serial = int(current.rdata.serial)  # type: ignore[attr-defined]
            if client_serial is not None:
                reach = snap.journal_since(zone, client_serial)
                entries, old_soa = reach if reach is not None else (None, None)
                messages = xfr.ixfr_messages(
                    current, client_serial, entries, old_soa, query_id, q, max_size
                )
                if messages is not None:
                    yield from messages
                    return
            name_wire = question.name.to_wire()  # the name as asked (its case kept)
            question_wire = name_wire + struct.pack("!HH", q[1], q[2])
            cache = self._transfer_cache if max_size == xfr.STREAM_MESSAGE else None
            chunks = None
            if cache is not None:  # the same version sent before: its messages are kept
                zone_id, generation = view.meta.zone_id, view.meta.generation
                chunks = cache.chunks(zone_id, generation)
                if chunks is None:
                    rendered = view.wire_chunks(max_size, len(question_wire))
                    chunks = cache.filling(zone_id, generation, rendered)
            else:
                chunks = view.wire_chunks(max_size, len(question_wire))
            yield from xfr.axfr_messages(chunks, query_id, question_wire)

    # --- a NOTIFY (RFC 1996) to a secondary zone ---------------------------------------------

    def _notify(
        self,
        body: bytes,
        qend: int,
        signature: tsig.Signature | None,
        address: Any,
        send: Reply,
    ) -> None:
        """Accepted from a primary of the zone (its address, or signed with its key) and passed
        to the writer, which checks the primary at once.  As BIND: NOTAUTH for a zone not served
        here, REFUSED from anyone else or for a zone this node is the primary of."""
        requester = _requester(signature, address)
        query = parse_query(body)
        edns = query is not None and query.edns >= 0

        def answer(rcode: int) -> None:
            response = _error(body, qend, rcode, edns)
            if rcode == dns.rcode.NOERROR:  # QR AA, as BIND answers
                response = response[:2] + bytes((response[2] | 0x04,)) + response[3:]
            send(response)

        if query is None or len(query.question) != 1:
            log.info("FORMERR to %s: unreadable NOTIFY", requester.address)
            answer(dns.rcode.FORMERR)
            return
        question = query.question[0]
        zone = question.name
        if question.rdtype != dns.rdatatype.SOA or int(question.rdclass) != _IN:
            answer(dns.rcode.NOTIMP)
            return
        spec = self._secondaries.get(zone)
        if spec is None:
            meta = self._store.zone_for(zone)
            served = meta is not None and meta.name == zone
            log.warning(
                "NOTIFY for zone %s from %s: %s",
                zone,
                requester.address,
                "this node is its primary (REFUSED)" if served else "not served here (NOTAUTH)",
            )
            answer(dns.rcode.REFUSED if served else dns.rcode.NOTAUTH)
            return
        from_primary = any(
            ipaddress.ip_address(p.host) == requester.address for p in spec.primaries
        )
        keyed = spec.key is not None and requester.key == spec.key.name
        if not (from_primary or keyed):
            log.warning(
                "NOTIFY for zone %s refused: %s from %s is not one of its primaries",
                zone,
                requester.describe(),
                requester.address,
            )
            answer(dns.rcode.REFUSED)
            return
        self._writer.submit(requester, body).addCallback(answer)

    # --- an UPDATE ------------------------------------------------------------------------

    def _update(
        self,
        body: bytes,
        qend: int,
        signature: tsig.Signature | None,
        address: Any,
        send: Reply,
    ) -> None:
        edns = False

        def answer(rcode: int) -> None:
            send(_error(body, qend, rcode, edns))

        header = read_update_header(body)
        if header is None:
            log.info("FORMERR to %s: unreadable update", _host(address))
            answer(dns.rcode.FORMERR)
            return
        edns = header.edns
        if header.zone_count != 1 or header.zone_type != _SOA or header.zone is None:
            answer(dns.rcode.FORMERR)
            return
        zone = header.zone
        requester = _requester(signature, address)
        meta = self._store.zone_for(zone)
        if header.zone_class != _IN or meta is None or meta.name != zone:
            log.warning(
                "update (%s) from %s for zone %s: not served here (NOTAUTH)",
                requester.describe(),
                requester.address,
                zone,
            )
            answer(dns.rcode.NOTAUTH)
            return
        acl = self._acls.get(zone, UpdateAcl())
        if not acl.admits(requester):
            log.warning(
                "update refused: zone %s, %s from %s: %s",
                zone,
                requester.describe(),
                requester.address,
                "updates not enabled for this zone" if not acl.enabled else "not allowed",
            )
            answer(dns.rcode.REFUSED)
            return
        # the rest (records, policy per record, prerequisites, commit) is the writer's
        self._writer.submit(requester, body).addCallback(answer)


def _counted(stats: ProcessStats, kind: str, messages: Iterator[bytes]) -> Iterator[bytes]:
    """``messages``, counting the transfer when the last is taken (``ok``), or when it fails
    (``failed``) or the client goes away (``aborted``) part-way."""
    result = "aborted"
    try:
        yield from messages
        result = "ok"
    except Exception:
        result = "failed"
        raise
    finally:
        stats.count_transfer(kind, result)


_OPT = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, 0)  # EDNS(0), no options


def _error(request: bytes, qend: int, rcode: int, edns: bool) -> bytes:
    """An error answer; with an OPT when the request had one (RFC 6891 7)."""
    response = tsig.error_response(request, qend, rcode)
    if edns:
        arcount = struct.unpack_from("!H", response, 10)[0] + 1
        response = response[:10] + struct.pack("!H", arcount) + response[12:] + _OPT
    return response


_TSIG_ROOM = 160  # a TSIG record: key and algorithm names, a SHA-512 MAC, the fixed fields


def _requester(signature: tsig.Signature | None, address: Any) -> Requester:
    """Who sent a request: its verified key (None when unsigned) and its source address."""
    key = signature.key.name if signature is not None and signature.key is not None else None
    return Requester(key, ipaddress.ip_address(_host(address)))


def _host(address: Any) -> str:
    """The client's IP from a socket address tuple or a Twisted IAddress."""
    if isinstance(address, tuple):
        return str(address[0])
    return str(getattr(address, "host", address))
