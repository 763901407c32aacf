"""Messages the query fast path hands over: RFC 2136 UPDATEs and anything carrying a TSIG.

``handle(data, address, tcp, reply)`` answers through ``reply`` (maybe later: an update is
answered only after its change is on disk).  Order of checks for an UPDATE, as BIND:

1. TSIG (RFC 8945): a bad signature is answered NOTAUTH with the TSIG error;
2. parsing and the zone section: FORMERR, or NOTAUTH for a zone this node does not serve;
3. the zone's ``allow_update`` / ``update_policy`` admits the requester at all, else REFUSED;
4. prerequisites, prescan and the policy for each record (``plan_update``), inside the writer's
   transaction, then the commit; the answer leaves after the sync.

Every answer to a signed request is signed with the request's key.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from xdnsd.server import tsig
from xdnsd.server.acl import Requester, UpdateAcl
from xdnsd.server.answer import EDNS_PAYLOAD, ServerIdentity, answer_wire
from xdnsd.server.render import max_response_size, parse_query
from xdnsd.server.update import read_update_header
from xdnsd.server.writerlink import WriterLink
from xdnsd.store import Store

log = logging.getLogger("xdnsd.update")

Reply = Callable[[bytes | None], None]
UPDATE = int(dns.opcode.UPDATE)
_SOA = int(dns.rdatatype.SOA)
_IN = int(dns.rdataclass.IN)


def wants_handler(data: bytes) -> bool:
    """True for messages the fast path must not answer itself: UPDATE, or a TSIG is present."""
    if len(data) < 12:
        return False
    if (data[2] >> 3) & 0xF == UPDATE:
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._writer = writer
        self._keyring = keyring
        self._acls = update_acls
        self._identity = identity
        self._clock = clock

    def handle(self, data: bytes, address: Any, tcp: bool, reply: Reply) -> None:
        if len(data) < 12 or data[2] & 0x80:
            reply(None)  # a response, or not even a header: dropped
            return
        now = int(self._clock())
        qend = tsig.question_end(data)
        try:
            signature = tsig.verify(data, self._keyring, now)
        except tsig.TsigFormError as exc:
            log.info("FORMERR to %s: %s", _host(address), exc)
            reply(tsig.error_response(data, qend, dns.rcode.FORMERR))
            return
        if signature is not None and not signature.ok:
            log.warning(
                "TSIG %s from %s for key %s", signature.describe(), _host(address), signature.owner
            )
            rcode = dns.rcode.FORMERR if signature.formerr else dns.rcode.NOTAUTH
            response = tsig.error_response(data, qend, rcode)
            reply(tsig.sign_response(response, signature, now))
            return
        body = tsig.strip(data, signature) if signature is not None else data

        def send(response: bytes | None) -> None:
            if response is not None and signature is not None:
                response = tsig.sign_response(response, signature, int(self._clock()))
            reply(response)

        if (data[2] >> 3) & 0xF == UPDATE:
            self._update(body, qend, signature, address, send)
        else:
            send(self._query(body, tcp, signature is not None))

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
            response = tsig.error_response(body, qend, rcode)
            if edns:  # RFC 6891 7: an OPT in the request gets one in the response
                arcount = struct.unpack_from("!H", response, 10)[0] + 1
                response = response[:10] + struct.pack("!H", arcount) + response[12:] + _OPT
            send(response)

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
        requester = Requester(
            signature.key.name if signature is not None and signature.key is not None else None,
            ipaddress.ip_address(_host(address)),
        )
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


_OPT = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, 0)  # EDNS(0), no options
_TSIG_ROOM = 160  # a TSIG record: key and algorithm names, a SHA-512 MAC, the fixed fields


def _host(address: Any) -> str:
    """The client's IP from a socket address tuple or a Twisted IAddress."""
    if isinstance(address, tuple):
        return str(address[0])
    return str(getattr(address, "host", address))
