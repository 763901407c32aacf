"""The query fast path: answer a repeated question from cached response bytes.

A cache key is the query without its ID, with the question name lowercased: header flags and
counts, question, and the EDNS OPT record (so payload size and DO bit are part of it).  Only answers
the engine marks ``cacheable`` are stored (well-formed QUERY, no TSIG, no EDNS options): for them
the response is a pure function of the key and the zone's contents.  A hit costs a dict lookup,
two generation reads from shared memory and three slices; the response gets the query's ID and the
question's exact bytes (so its 0x20 case) patched in.

Invalidation: each entry remembers the generation of its zone and of the zone list as seen in the
read snapshot that produced it.  ``store.commit()`` publishes the new generation to the shared
:class:`~xdnsd.store.GenerationTable` before it returns, and an entry is served only while both
generations still match, so once a commit has returned no worker serves an older answer.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from xdnsd.server.answer import ServerIdentity, answer_wire
from xdnsd.store import Store

log = logging.getLogger("xdnsd.server")

# response bytes, zone slot, zone generation, zone-list generation
_Entry = tuple[bytes, int, int, int]


class QueryAnswerer:
    """Answers query packets for one worker: fast path first, the answer engine on a miss."""

    def __init__(self, store: Store, identity: ServerIdentity, cache_size: int = 200_000) -> None:
        self._store = store
        self._identity = identity
        self._cache_size = cache_size
        self._udp: dict[bytes, _Entry] = {}
        self._tcp: dict[bytes, _Entry] = {}
        self.hits = 0
        self.misses = 0
        buffer = store.generations.buffer
        unpack = struct.Struct("<Q").unpack_from

        def generation(slot: int) -> int:
            return int(unpack(buffer, slot << 3)[0])

        self._generation: Callable[[int], int] = generation

    def answer(self, data: bytes, tcp: bool) -> bytes | None:
        """The response to one DNS message (None: send nothing)."""
        cache = self._tcp if tcp else self._udp
        end = data.find(b"\x00", 12)
        if end > 0:
            key = data[2:12] + data[12:end].lower() + data[end:]
            entry = cache.get(key)
            if entry is not None:
                response, slot, gen, gen0 = entry
                generation = self._generation
                if generation(slot) == gen and generation(0) == gen0:
                    self.hits += 1
                    qend = end + 5
                    return data[:2] + response[2:12] + data[12:qend] + response[qend:]
                del cache[key]
        else:
            key = b""
        self.misses += 1
        return self._answer_slow(data, tcp, key, end, cache)

    def _answer_slow(
        self, data: bytes, tcp: bool, key: bytes, end: int, cache: dict[bytes, _Entry]
    ) -> bytes | None:
        try:
            with self._store.snapshot() as snap:
                gen0 = snap.zones_generation()
                result = answer_wire(data, snap, tcp=tcp, identity=self._identity)
                if result.wire is None or not result.cacheable or not key:
                    return result.wire
                if result.zone is None:
                    slot, gen = 0, gen0
                else:
                    slot, gen = snap.zone_generation(result.zone)
        except Exception:
            log.exception("internal error answering a %s query", "TCP" if tcp else "UDP")
            return _servfail(data)
        # the question must sit where the key says, for the patching on a hit to be right
        if result.wire[12 : end + 5].lower() == data[12 : end + 5].lower():
            if len(cache) >= self._cache_size:
                cache.clear()
            cache[key] = (result.wire, slot, gen, gen0)
        return result.wire

    def clear(self) -> None:
        self._udp.clear()
        self._tcp.clear()


def _servfail(data: bytes) -> bytes | None:
    """A bare SERVFAIL echoing ID and question, for a query the engine failed on."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    end = data.find(b"\x00", 12)
    qdcount = 1 if end > 0 and struct.unpack_from("!H", data, 4)[0] == 1 else 0
    question = data[12 : end + 5] if qdcount else b""
    flags = ((data[2] | 0x80) & 0xF9, 0x02)  # QR, keep opcode and RD, rcode SERVFAIL
    return data[:2] + bytes(flags) + struct.pack("!HHHH", qdcount, 0, 0, 0) + question
