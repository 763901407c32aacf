"""The query fast path: answer a repeated question from cached response bytes.

A cache key is the query without its ID, with the question name lowercased: header flags and
counts, question, and the EDNS OPT record (so payload size and DO bit are part of it).  Only answers
the engine marks ``cacheable`` are stored (well-formed QUERY, no TSIG, no EDNS options): for them
the response is a pure function of the key and the zone's contents.  A hit costs a dict lookup,
two generation reads from shared memory and three slices; the response gets the query's ID and the
question's exact bytes (so its 0x20 case) patched in.  Each entry also holds the answer's
:func:`~xdnsd.stats.query_slot` (its QTYPE and RCODE), so counting a hit for ``/metrics`` is one
list update.

Invalidation: each entry remembers the generation of its zone (slot 0 for answers outside every
zone) as seen in the read snapshot that produced it.  ``store.commit()`` publishes the new
generation to the shared :class:`~xdnsd.store.GenerationTable` before it returns (creating or
dropping a zone also bumps the enclosing zone and slot 0), and an entry is served only while its
generation still matches, so once a commit has returned no worker serves an older answer.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from time import perf_counter_ns

from xdnsd.server.answer import ServerIdentity, answer_wire
from xdnsd.server.handler import question_type, wants_handler
from xdnsd.stats import ProcessStats, query_slot, response_rcode
from xdnsd.store import SharedResponseCache, Store

log = logging.getLogger("xdnsd.server")

# the response without its ID, the byte offset of its generation slot, that generation, the
# answer's slot in the query counts (xdnsd.stats.query_slot)
_Entry = tuple[bytes, int, int, int]
_GENERATION = struct.Struct("<Q")

# returned instead of a response for a message the transport must give to the MessageHandler
HANDOFF = b""


class QueryAnswerer:
    """Answers query packets for one worker: fast path first, the answer engine on a miss.

    With ``handoff``, UPDATEs and TSIG-signed messages are not answered here: the entry points
    return ``HANDOFF`` and the transport passes them, with the client's address, to the
    :class:`~xdnsd.server.handler.MessageHandler`.

    ``udp`` and ``tcp`` are the per-packet entry points (closures over local names: this is the
    hottest code in the server).  Every answer they give is counted in ``stats.queries``; the
    messages handed off are counted by the handler.
    """

    def __init__(
        self,
        store: Store,
        identity: ServerIdentity,
        cache_size: int = 200_000,
        shared: SharedResponseCache | None = None,
        handoff: bool = False,
        stats: ProcessStats | None = None,
    ) -> None:
        self._store = store
        self.stats = stats if stats is not None else ProcessStats()
        self._handoff = handoff
        self._shared = shared
        self._identity = identity
        self._cache_size = cache_size
        self._caches: tuple[dict[bytes, _Entry], dict[bytes, _Entry]] = ({}, {})
        self.misses = 0
        self.udp = self._make_entry_point(tcp=False)
        self.tcp = self._make_entry_point(tcp=True)

    def _make_entry_point(self, tcp: bool) -> Callable[[bytes], bytes | None]:
        cache = self._caches[tcp]
        get = cache.get
        generations = self._store.generations.buffer
        unpack = _GENERATION.unpack_from
        slow = self._answer_miss
        counts = self.stats.queries[tcp]

        def answer(data: bytes) -> bytes | None:
            # a lowercase question (the usual case) is its own cache key: one slice, one lookup
            entry = get(data[2:])
            if entry is not None and unpack(generations, entry[1])[0] == entry[2]:
                counts[entry[3]] += 1
                return data[:2] + entry[0]
            return slow(data, tcp)

        return answer

    def _answer_miss(self, data: bytes, tcp: bool) -> bytes | None:
        if self._handoff and wants_handler(data):
            return HANDOFF  # never cached: no need to look
        cache = self._caches[tcp]
        counts = self.stats.queries[tcp]
        end = data.find(b"\x00", 12)
        key = b""
        if end > 0:
            # the key folds the question name's case (bytes 12 to its root label)
            key = data[2:12] + data[12:end].lower() + data[end:]
            entry = cache.get(key)
            if entry is None and self._shared is not None:
                shared = self._shared.get(key)  # rendered by another worker?
                if shared is not None:
                    tail, offset, generation = shared
                    entry = (tail, offset, generation, _slot(data, tail))
                    cache[key] = entry
            if entry is not None:
                tail, offset, generation, counted = entry
                if _GENERATION.unpack_from(self._store.generations.buffer, offset)[0] == generation:
                    counts[counted] += 1
                    qend = end + 5  # the question's exact bytes: its 0x20 case
                    return data[:2] + tail[:10] + data[12:qend] + tail[qend - 2 :]
                del cache[key]
        self.misses += 1
        if tcp:  # the TCP transport times every message itself
            return self._answer_fresh(data, tcp, key, end)
        # over UDP, the transport shares a batch's time among the answers from the cache;
        # an answer computed here is timed on its own (and that time taken out of the batch's)
        stats = self.stats
        start = perf_counter_ns()
        wire = self._answer_fresh(data, tcp, key, end)
        spent = perf_counter_ns() - start
        stats.udp_fresh_ns += spent
        if wire:
            stats.udp_fresh += 1
            stats.durations[0].observe(spent)
        return wire

    def _answer_fresh(self, data: bytes, tcp: bool, key: bytes, end: int) -> bytes | None:
        """The answer engine's response, counted, and cached when it may be."""
        cache = self._caches[tcp]
        counts = self.stats.queries[tcp]
        try:
            with self._store.snapshot() as snap:
                result = answer_wire(data, snap, tcp=tcp, identity=self._identity)
                wire = result.wire
                if wire is None:
                    return None  # not answered, not counted
                slot = generation = -1
                if result.cacheable and key:
                    if result.zone is None:
                        slot, generation = 0, snap.zones_generation()
                    else:
                        slot, generation = snap.zone_generation(result.zone)
        except Exception:
            log.exception("internal error answering a %s query", "TCP" if tcp else "UDP")
            failed = _servfail(data)
            self.stats.count_query(tcp, question_type(data), failed)
            return failed
        counted = query_slot(question_type(data), response_rcode(wire))
        counts[counted] += 1
        if slot < 0:
            return wire
        # patching on a hit relies on the question sitting where the key says it does
        if wire[12 : end + 5].lower() == data[12 : end + 5].lower():
            if len(cache) >= self._cache_size:
                cache.clear()
            # stored with the question name lowercased, as the key: an exact-key hit (a
            # lowercase question) then returns the right case without patching
            tail = wire[2:12] + wire[12:end].lower() + wire[end:]
            cache[key] = (tail, slot << 3, generation, counted)
            if self._shared is not None:
                self._shared.put(key, tail, slot << 3, generation)
        return wire

    def clear(self) -> None:
        for cache in self._caches:
            cache.clear()


def _slot(query: bytes, tail: bytes) -> int:
    """The query-count slot of a cached answer (``tail``: the response without its ID)."""
    return query_slot(question_type(query), tail[1] & 0xF)


def _servfail(data: bytes) -> bytes | None:
    """A bare SERVFAIL echoing ID and question, for a query the engine failed on."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    end = data.find(b"\x00", 12)
    qdcount = 1 if end > 0 and struct.unpack_from("!H", data, 4)[0] == 1 else 0
    question = data[12 : end + 5] if qdcount else b""
    flags = ((data[2] | 0x80) & 0xF9, 0x02)  # QR, keep opcode and RD, rcode SERVFAIL
    return data[:2] + bytes(flags) + struct.pack("!HHHH", qdcount, 0, 0, 0) + question
