"""The LMDB store: the only module that imports ``lmdb``.

Layout (named sub-databases, big-endian ordered keys; see ../shared/ARCHITECTURE.md):

``zones``       name key -> zone metadata (JSON: id, kind, version vector, serial base,
                generation)
``records``     zone id (u32) | owner key relative to the zone | 0x00 | type (u16) | rdata digest
                -> flags, TTL, HLC, dot, owner wire (original case), rdata wire.
                One key per record.
``tombstones``  same keys as ``records``: deleted records with the causal metadata of the delete.
                Kept apart from ``records`` so the query path never has to skip them.
``journal``     zone id | sequence (u64) -> IXFR diff (serial from/to, removed and added RRs,
                SOAs included).
                Keyed by a per-zone sequence, not by serial, because serials wrap (RFC 1982).
``oplog``       zone id | origin node | counter -> changeset (replication catch-up)
``history``     zone id | sequence -> provenance of each commit (who, when, serial)
``cursors``, ``conflicts``, ``sync_status``: operator-visible replication / provider state
                (``conflicts``: zone id | owner key | conflict id -> the conflict, JSON)
``slots``       sparse, same keys as ``records``: every write of a record slot that concurrent
                changes left in a non-trivial state (siblings, or a winner not served as
                written); a slot absent here is its one write, in ``records`` or ``tombstones``
``clears``      zone id | owner key | type (ANY for the name) -> the deletes-as-a-whole there
``meta``        schema version, node id, zone id allocator
``dropped``     zone name key -> the zone's tombstone (``model.ZoneTombstone``, JSON): a dropped
                zone, so that no peer's change or state brings it back; kept indefinitely

**Dropped zones.**  A drop (``ChangeOp.DROP``) deletes the zone and records its tombstone in
``dropped`` in the same transaction; the replicator sends every tombstone to every peer.  A
peer's drop deletes the zone whatever this node has of it that the drop had not seen: the
deletion wins (those changes are counted in ``conflicts_detected`` and logged), so every node
ends without the zone whatever the order of delivery.  A change or state of a dropped
incarnation is discarded, never applied.  Created again, the zone is a new incarnation
(``ZoneMeta.incarnation``): its dots count afresh and every change and state names the
incarnation it belongs to, so the two lives never mix.

``Store.commit()`` is the only write path for zone data: one write transaction, synced to disk
before it returns, then the zone's generation is published (see :class:`GenerationTable`) and the
post-commit listeners run.
"""

from __future__ import annotations

import dataclasses
import fcntl
import gc
import hashlib
import json
import logging
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import lmdb

from xdnsd import names
from xdnsd.model import (
    IN,
    RR,
    SERIAL_MOD,
    STATE_KINDS,
    ChangeOp,
    Changeset,
    CommitResult,
    Dot,
    StateTransfer,
    ZoneTombstone,
    canonical_rdata,
    decode_changeset,
    decode_rrs,
    derived_serial,
    encode_changeset,
    encode_rr,
    encode_rr_wires,
    encode_rrs,
    hlc_next,
    rdata_wire,
    serial_gt,
)
from xdnsd.replication import merge

log = logging.getLogger("xdnsd.store")

SCHEMA_VERSION = 1
DEFAULT_MAP_SIZE = 1 << 30
DEFAULT_JOURNAL_DEPTH = 1000
_DB_NAMES = (
    "zones",
    "records",
    "tombstones",
    "journal",
    "oplog",
    "history",
    "cursors",
    "conflicts",
    "sync_status",
    "meta",
    "slots",
    "clears",
    "dropped",
)

_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_RTYPE = struct.Struct("!H")
_VALUE_HEAD = struct.Struct("!BIQQ")  # flags, ttl, hlc, dot counter
_WIRE_RR = struct.Struct("!HHIH")  # type, class, TTL, RDATA length
_WIRE_TAIL = _WIRE_RR  # after the owner name in a record's wire form
_TTL = struct.Struct("!xI")  # the TTL in a stored value (after the flags byte)
_META_HEAD = struct.Struct("!IQ")  # zone id, generation
_SOA_DIGEST = b"\x00" * 16
SOA = int(dns.rdatatype.SOA)


class NotReady(Exception):
    """A change from a peer that depends on changes not applied here yet (causal delivery):
    apply those first, then this one again."""


class StoreError(Exception):
    """A store operation that cannot be carried out (unknown zone, zone exists, bad data dir)."""


# zone names <-> their text in the stored meta, both ways (few zones, converted every commit)
_NAME_TEXT: dict[tuple[bytes, ...], str] = {}
_TEXT_NAME: dict[str, dns.name.Name] = {}


def _name_text(name: dns.name.Name) -> str:
    text = _NAME_TEXT.get(name.labels)
    if text is None:
        text = name.to_text()
        if len(_NAME_TEXT) < 100_000:
            _NAME_TEXT[name.labels] = text
    return text


def _text_name(text: str) -> dns.name.Name:
    name = _TEXT_NAME.get(text)
    if name is None:
        name = dns.name.from_text(text)
        if len(_TEXT_NAME) < 100_000:
            _TEXT_NAME[text] = name
    return name


@dataclass(slots=True)
class ZoneMeta:
    name: dns.name.Name
    zone_id: int
    kind: str
    vv: dict[str, int]
    serial_base: int
    generation: int
    sequence: int  # journal / history sequence
    hlc: int
    file: str | None = None
    # a secondary zone past its SOA expire time without reaching a primary: answered SERVFAIL
    expired: bool = False
    # the zone's life: one more for each re-creation after a drop (``model.ZoneTombstone``)
    incarnation: int = 0

    @property
    def serial(self) -> int:
        return derived_serial(self.serial_base, self.vv)

    def to_json(self) -> bytes:
        """Stored form: zone id and generation in a fixed header (read on the query path
        without decoding the rest), then the JSON document."""
        return (
            _META_HEAD.pack(self.zone_id, self.generation)
            + json.dumps(
                {
                    "name": _name_text(self.name),
                    "id": self.zone_id,
                    "kind": self.kind,
                    "vv": self.vv,
                    "serial_base": self.serial_base,
                    "generation": self.generation,
                    "sequence": self.sequence,
                    "hlc": self.hlc,
                    "file": self.file,
                    "expired": self.expired,
                    "incarnation": self.incarnation,
                },
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
        )

    @classmethod
    def from_json(cls, data: bytes) -> ZoneMeta:
        d = json.loads(data[_META_HEAD.size :])
        return cls(
            name=_text_name(d["name"]),
            zone_id=d["id"],
            kind=d["kind"],
            vv=dict(d["vv"]),
            serial_base=d["serial_base"],
            generation=d["generation"],
            sequence=d["sequence"],
            hlc=d["hlc"],
            file=d.get("file"),
            expired=d.get("expired", False),
            incarnation=d.get("incarnation", 0),
        )


# types whose canonical RDATA (RFC 4034 6.2) is their plain wire form: no names inside
_PLAIN_TYPES = frozenset(
    int(t) for t in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.TXT, dns.rdatatype.DS)
)


def _rdata_wire(rr: RR) -> bytes:
    return rdata_wire(rr.rdata)


def _rdata_digest(rr: RR, rdata_wire: bytes | None = None) -> bytes:
    if rr.rdtype == SOA:
        return _SOA_DIGEST  # one SOA per zone: a new SOA replaces the old one
    if rdata_wire is not None and rr.rdtype in _PLAIN_TYPES:
        canonical = rdata_wire
    else:
        canonical = canonical_rdata(rr.rdata)
    return hashlib.blake2b(canonical, digest_size=16).digest()


def _zone_key(zone: dns.name.Name) -> bytes:
    # a constant first byte so that the root zone (empty name key) is a valid LMDB key too
    return b"Z" + names.name_key(zone)


def _owner_prefix(zone_id: int, owner: dns.name.Name, origin: dns.name.Name) -> bytes:
    return _U32.pack(zone_id) + names.relative_key(owner, origin) + b"\x00"


def _record_key(
    zone_id: int, origin: dns.name.Name, rr: RR, rdata_wire: bytes | None = None
) -> bytes:
    return (
        _owner_prefix(zone_id, rr.owner, origin)
        + _RTYPE.pack(rr.rdtype)
        + _rdata_digest(rr, rdata_wire)
    )


def _encode_value(
    rr: RR,
    hlc: int,
    dot: Dot,
    flags: int = 0,
    rdata_wire: bytes | None = None,
    owner_wire: bytes | None = None,
) -> bytes:
    owner = owner_wire if owner_wire is not None else rr.owner.to_wire()
    assert isinstance(owner, bytes)
    node = dot.node.encode()
    rdata = rdata_wire if rdata_wire is not None else _rdata_wire(rr)
    return (
        _VALUE_HEAD.pack(flags, rr.ttl, hlc, dot.counter)
        + bytes((len(node),))
        + node
        + bytes((len(owner),))
        + owner
        + rdata
    )


# Decoded records by stored bytes: decoding is a pure function of them, so no invalidation is
# needed; it spares re-parsing the records every answer reads (the apex SOA of each negative
# answer, NS sets, glue).
_DECODED: dict[tuple[int, bytes], RR] = {}
_DECODED_MAX = 100_000


def _decode_value(rdtype: int, value: bytes) -> RR:
    key = (rdtype, value)
    rr = _DECODED.get(key)
    if rr is None:
        rr = _decode_value_uncached(rdtype, value)
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[key] = rr
    return rr


def _decode_value_uncached(rdtype: int, value: bytes) -> RR:
    _flags, ttl, _hlc, _counter = _VALUE_HEAD.unpack_from(value, 0)
    i = _VALUE_HEAD.size
    i += 1 + value[i]
    olen = value[i]
    owner = dns.name.from_wire(value, i + 1)[0]
    i += 1 + olen
    rdata = dns.rdata.from_wire(IN, dns.rdatatype.RdataType(rdtype), value, i, len(value) - i)
    return RR(owner, ttl, rdata)


def _replace_soa_serial(rr: RR, serial: int) -> RR:
    soa = rr.rdata
    assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
    # the constructor, not Rdata.replace(): that one inspects the signature on every call
    new = dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
        soa.rdclass,
        soa.rdtype,
        soa.mname,
        soa.rname,
        serial,
        soa.refresh,
        soa.retry,
        soa.expire,
        soa.minimum,
    )
    return RR(rr.owner, rr.ttl, new)


class GenerationTable:
    """Per-zone generation counters in a small shared memory-mapped file.

    The fast path of every worker process reads a zone's generation before trusting a cached
    answer; ``commit()`` publishes the new generation after the LMDB transaction is durable and
    before it returns, so once a commit has returned no worker serves an answer computed before it.
    Slot 0 counts changes to the set of zones.  Publishing takes an flock so that concurrent
    writers in different processes never move a slot backwards.
    """

    SLOTS = 1 << 16

    def __init__(self, path: Path) -> None:
        size = self.SLOTS * 8
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        # kept open: commits take the lock without opening a file each time
        self._lock_fd = os.open(path, os.O_RDONLY)
        self.unpack_from = struct.Struct("<Q").unpack_from

    def get(self, slot: int) -> int:
        return int(self.unpack_from(self._map, slot * 8)[0])

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def reset(self, values: dict[int, int]) -> None:
        """Set slots to the store's generations (start-up: the store may have been restored)."""
        with self._locked():
            for slot, generation in values.items():
                struct.pack_into("<Q", self._map, slot * 8, generation)

    def publish(self, slot: int, generation: int) -> None:
        with self._locked():
            if generation > self.get(slot):
                struct.pack_into("<Q", self._map, slot * 8, generation)

    @property
    def buffer(self) -> mmap.mmap:
        return self._map

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)


class _WorkerCache:
    """An LMDB environment for a cache the workers share: never synced (not durable)."""

    def __init__(self, path: Path, map_size: int) -> None:
        self._env = lmdb.open(
            str(path),
            subdir=True,
            map_size=map_size,
            sync=False,
            metasync=False,
            readahead=False,
            max_readers=1024,
        )

    def clear(self) -> None:
        with self._env.begin(write=True) as txn:
            txn.drop(self._env.open_db(), delete=False)

    def close(self) -> None:
        self._env.close()


class SharedResponseCache(_WorkerCache):
    """Rendered responses shared by the worker processes of one node; not durable.

    A worker that misses its own in-process cache looks here before running the answer engine,
    and stores what the engine rendered, so N workers render each question once rather than N
    times.  Entries carry their zone's generation and are checked against the
    :class:`GenerationTable` like in-process ones; the whole cache is emptied at start-up and
    whenever the map fills.
    """

    MAX_KEY = 511  # LMDB's key size limit
    _HEAD = struct.Struct("!IQ")  # generation offset, generation

    def __init__(self, path: Path, map_size: int = 1 << 30) -> None:
        super().__init__(path, map_size)

    def get(self, key: bytes) -> tuple[bytes, int, int] | None:
        if len(key) > self.MAX_KEY:
            return None
        try:
            with self._env.begin() as txn:
                raw = txn.get(key)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return None
        if raw is None:
            return None
        offset, generation = self._HEAD.unpack_from(raw, 0)
        return raw[self._HEAD.size :], int(offset), int(generation)

    def put(self, key: bytes, tail: bytes, offset: int, generation: int) -> None:
        if len(key) > self.MAX_KEY:
            return
        try:
            with self._env.begin(write=True) as txn:
                txn.put(key, self._HEAD.pack(offset, generation) + tail)
        except lmdb.MapFullError:
            self.clear()


Chunk = tuple[int, bytes]  # (record count, records in wire form): the body of one message


class TransferCache(_WorkerCache):
    """Zone transfers rendered once per zone version, shared by the worker processes; not
    durable (emptied at start-up and whenever its map fills).

    A full transfer (AXFR, or an IXFR answered with the whole zone) is a pure function of the
    zone's contents, that is of (zone id, generation): the message bodies rendered for one are
    kept here as they are sent, and a later transfer of the same version streams them from here
    instead of walking the records again.  An entry counts only once its last chunk is in (a
    client that leaves mid-transfer leaves nothing usable); storing a version drops the zone's
    older ones.  Keys: zone id (u32) | generation (u64) | chunk index (u32); value: record
    count (u16) + the records' wire bytes.
    """

    _KEY = struct.Struct("!IQI")
    _COUNT = struct.Struct("!H")
    _DONE = 0xFFFFFFFF  # index of the entry that marks a version complete (value: chunk count)

    def __init__(self, path: Path, map_size: int = 4 << 30) -> None:
        super().__init__(path, map_size)
        self.hits = 0
        self.stored = 0

    def chunks(self, zone_id: int, generation: int) -> Iterator[Chunk] | None:
        """The stored chunks of that version, or None when it is not (completely) stored."""
        try:
            txn = self._env.begin(buffers=False)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return None
        done = txn.get(self._KEY.pack(zone_id, generation, self._DONE))
        if done is None:
            txn.abort()
            return None
        self.hits += 1
        return self._read(txn, zone_id, generation, _U32.unpack(done)[0])

    def _read(self, txn: Any, zone_id: int, generation: int, count: int) -> Iterator[Chunk]:
        try:
            key = self._KEY.pack
            unpack = self._COUNT.unpack_from
            for index in range(count):
                value = txn.get(key(zone_id, generation, index))
                if value is None:  # cannot happen while the marker is there; be safe
                    raise StoreError(f"transfer cache: chunk {index} of zone {zone_id} missing")
                yield unpack(value)[0], value[2:]
        finally:
            txn.abort()

    def filling(self, zone_id: int, generation: int, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        """Pass ``chunks`` through, storing each; mark the version complete at their end."""
        index = 0
        keep = True
        for count, body in chunks:
            if keep:
                keep = self._put(self._KEY.pack(zone_id, generation, index), count, body)
            index += 1
            yield count, body
        done = self._KEY.pack(zone_id, generation, self._DONE)
        if keep and self._put(done, None, _U32.pack(index)):
            self.stored += 1
            self._drop_others(zone_id, generation)

    def _put(self, key: bytes, count: int | None, body: bytes) -> bool:
        value = body if count is None else self._COUNT.pack(count) + body
        try:
            with self._env.begin(write=True) as txn:
                txn.put(key, value)
        except lmdb.MapFullError:
            log.info("transfer cache full; emptying it")
            self.clear()
            return False
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return False
        return True

    def _drop_others(self, zone_id: int, generation: int) -> None:
        """Drop the zone's other versions: only the latest one is worth keeping."""
        prefix = _U32.pack(zone_id)
        mine = prefix + _U64.pack(generation)
        with self._env.begin(write=True) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return
            while cursor.key()[:4] == prefix:
                if cursor.key()[:12] == mine:
                    if not cursor.next():
                        break
                elif not cursor.delete():
                    break


class ZoneSnapshot:
    """A zone seen through one read transaction: implements the answer engine's ``ZoneView``."""

    __slots__ = ("_cursor", "_origin", "_prefix", "_zone_id", "meta")

    def __init__(self, txn: Any, records_db: Any, meta: ZoneMeta) -> None:
        # From ``Snapshot.find_zone`` this is the zone-list cache's copy: its id and origin are
        # exact, its version vector and generation may be older than this snapshot (use
        # ``Snapshot.zone`` or ``Snapshot.zone_generation`` for those).
        self.meta = meta
        self._origin = meta.name
        self._zone_id = meta.zone_id
        self._prefix = _U32.pack(meta.zone_id)
        self._cursor = txn.cursor(db=records_db)

    @property
    def origin(self) -> dns.name.Name:
        return self._origin

    @property
    def expired(self) -> bool:
        return self.meta.expired

    def rrsets_at(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset]:
        prefix = _owner_prefix(self._zone_id, name, self._origin)
        out: dict[int, dns.rrset.RRset] = {}
        cursor = self._cursor
        if not cursor.set_range(prefix):
            return out
        plen = len(prefix)
        for key, value in cursor:
            if key[:plen] != prefix:
                break
            rdtype = _RTYPE.unpack_from(key, plen)[0]
            rr = _decode_value(rdtype, value)
            rrset = out.get(rdtype)
            if rrset is None:
                rrset = out[rdtype] = dns.rrset.RRset(rr.owner, IN, rdtype)
            rrset.add(rr.rdata, rr.ttl)
        return out

    def has_subdomains(self, name: dns.name.Name) -> bool:
        prefix = self._prefix + names.relative_key(name, self._origin)
        cursor = self._cursor
        if not cursor.set_range(prefix + b"\x01"):
            return False
        return bool(cursor.key()[: len(prefix)] == prefix)

    def iter_records(self) -> Iterator[RR]:
        """Every record of the zone in canonical order (apex first)."""
        cursor = self._cursor
        prefix = self._prefix
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if key[:4] != prefix:
                break
            # the type sits just before the 16-byte digest
            rdtype = _RTYPE.unpack_from(key, len(key) - 18)[0]
            yield _decode_value(rdtype, value)

    def wire_chunks(self, max_size: int, reserve: int = 0) -> Iterator[Chunk]:
        """The zone as the bodies of transfer messages of at most ``max_size`` bytes with their
        12-byte header (the first one ``reserve`` bytes less, for the question): the SOA, every
        other record, the SOA again (RFC 5936 2.2), straight from the stored bytes, owner and
        RDATA uncompressed.  A record too big for a message on its own gets one to itself."""
        cursor = self._cursor
        prefix = self._prefix
        soa_key = _owner_prefix(self._zone_id, self._origin, self._origin) + _RTYPE.pack(SOA)
        soa_key += _SOA_DIGEST
        head = _VALUE_HEAD.size
        pack = _WIRE_TAIL.pack
        ttl_of = _TTL.unpack_from
        soa_value = cursor.get(soa_key)
        if soa_value is None:
            raise StoreError(f"zone {self._origin} has no SOA")
        i = head + 1 + soa_value[head]
        end = i + 1 + soa_value[i]
        rdata = soa_value[end:]
        soa = soa_value[i + 1 : end] + pack(SOA, 1, ttl_of(soa_value)[0], len(rdata)) + rdata
        limit = max_size - 12 - reserve
        parts = [soa]
        size = len(soa)
        count = 1
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if key[:4] != prefix:
                break
            if key == soa_key:
                continue
            i = head + 1 + value[head]  # past the dot's node id
            end = i + 1 + value[i]
            rdata = value[end:]
            wire = (
                value[i + 1 : end]
                + pack(_RTYPE.unpack_from(key, len(key) - 18)[0], 1, ttl_of(value)[0], len(rdata))
                + rdata
            )
            size += len(wire)
            if size > limit and count:
                yield count, b"".join(parts)
                parts, size, count, limit = [], len(wire), 0, max_size - 12
            parts.append(wire)
            count += 1
        if size + len(soa) > limit and count:
            yield count, b"".join(parts)
            parts, count = [], 0
        parts.append(soa)
        yield count + 1, b"".join(parts)

    def soa(self) -> RR:
        rrset = self.rrsets_at(self._origin).get(SOA)
        if rrset is None:
            raise StoreError(f"zone {self._origin} has no SOA")
        return RR(rrset.name, rrset.ttl, rrset[0])


class Snapshot:
    """One read transaction over the store; a ``ZoneFinder`` for the answer engine."""

    def __init__(self, store: Store, txn: Any) -> None:
        self._store = store
        self._txn = txn

    def find_zone(self, qname: dns.name.Name) -> ZoneSnapshot | None:
        meta = self._store.zone_for(qname)
        if meta is None:
            return None
        return ZoneSnapshot(self._txn, self._store._dbs["records"], meta)

    def zone(self, name: dns.name.Name) -> ZoneSnapshot:
        raw = self._txn.get(_zone_key(name), db=self._store._dbs["zones"])
        if raw is None:
            raise StoreError(f"zone {name} is not in the store")
        return ZoneSnapshot(self._txn, self._store._dbs["records"], ZoneMeta.from_json(raw))

    def zones_generation(self) -> int:
        """How many times the set of zones has changed, as of this snapshot."""
        raw = self._txn.get(b"zones_generation", db=self._store._dbs["meta"])
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def zone_generation(self, zone: dns.name.Name) -> tuple[int, int]:
        """(generation slot, generation) of a zone as of this snapshot."""
        raw = self._txn.get(_zone_key(zone), db=self._store._dbs["zones"])
        if raw is None:
            return 0, self.zones_generation()
        zone_id, generation = _META_HEAD.unpack_from(raw, 0)
        return int(zone_id), int(generation)

    def zones(self) -> list[ZoneMeta]:
        cursor = self._txn.cursor(db=self._store._dbs["zones"])
        return [ZoneMeta.from_json(v) for _k, v in cursor]

    def tombstones(self) -> list[ZoneTombstone]:
        """The dropped zones' tombstones (a zone re-created since has one too: that of the
        incarnation before)."""
        cursor = self._txn.cursor(db=self._store._dbs["dropped"])
        return [_decode_tombstone(v) for _k, v in cursor]

    def tombstone(self, zone: dns.name.Name) -> ZoneTombstone | None:
        raw = self._txn.get(_zone_key(zone), db=self._store._dbs["dropped"])
        return None if raw is None else _decode_tombstone(raw)

    def history(self, zone: dns.name.Name, limit: int = 50) -> list[dict[str, Any]]:
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        cursor = self._txn.cursor(db=self._store._dbs["history"])
        out: list[dict[str, Any]] = []
        if not cursor.set_range(prefix + b"\xff" * 8):
            cursor.last()
        else:
            cursor.prev()
        while len(out) < limit and cursor.key()[:4] == prefix:
            out.append(json.loads(cursor.value()))
            if not cursor.prev():
                break
        return out

    def journal_entry(self, zone: dns.name.Name, sequence: int) -> tuple[list[RR], list[RR]] | None:
        """(removed, added) of the history line ``sequence``, SOAs first, while the journal
        still holds it (None: trimmed, or a creation, which has no journal entry)."""
        meta = self.zone(zone).meta
        raw = self._txn.get(
            _U32.pack(meta.zone_id) + _U64.pack(sequence), db=self._store._dbs["journal"]
        )
        if raw is None:
            return None
        removed, offset = decode_rrs(raw, 8)
        added, _ = decode_rrs(raw, offset)
        return removed, added

    def journal_since(
        self, zone: dns.name.Name, serial: int
    ) -> tuple[list[tuple[int, int, list[RR], list[RR]]], RR] | None:
        """The journal entries that lead from ``serial`` to the current version, oldest first,
        with the SOA of ``serial``; None when the journal no longer reaches that serial.

        Each entry is (serial from, serial to, removed, added); the SOAs are left in the lists
        (first of each), as they were stored.
        """
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        cursor = self._txn.cursor(db=self._store._dbs["journal"])
        entries: list[tuple[int, int, list[RR], list[RR]]] = []
        found = False
        if not cursor.set_range(prefix):
            return None
        for key, value in cursor:
            if key[:4] != prefix:
                break
            serial_from, serial_to = _U32.unpack_from(value, 0)[0], _U32.unpack_from(value, 4)[0]
            if not found:
                if serial_from != serial:
                    continue
                found = True
            elif serial_from != entries[-1][1]:
                return None  # a gap: the chain is broken (cannot happen with one writer)
            removed, offset = decode_rrs(value, 8)
            added, _ = decode_rrs(value, offset)
            entries.append((serial_from, serial_to, removed, added))
        if not found or entries[-1][1] != meta.serial or not entries[0][2]:
            return None
        return entries, entries[0][2][0]

    def changes_since(
        self,
        zone: dns.name.Name,
        vv: Mapping[str, int],
        limit: int | None = None,
        after: int = 0,
    ) -> list[Changeset]:
        """The changes to ``zone`` that version vector ``vv`` has not seen, in the order this
        node applied them (a causal order): what a peer at ``vv`` needs.  ``after``: skip the
        changes up to that sequence (``sequence`` of the last look)."""
        return [
            decode_changeset(raw)
            for _dot, raw in self.encoded_changes_since(zone, vv, limit, after)
        ]

    def encoded_changes_since(
        self,
        zone: dns.name.Name,
        vv: Mapping[str, int],
        limit: int | None = None,
        after: int = 0,
    ) -> list[tuple[Dot, bytes]]:
        """``changes_since`` as stored (``model.encode_changeset``), with their dots: what is
        sent to a peer, without decoding and encoding every record again."""
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        history = self._txn.cursor(db=self._store._dbs["history"])
        oplog = self._store._dbs["oplog"]
        out: list[tuple[Dot, bytes]] = []
        if not history.set_range(prefix + _U64.pack(after + 1)):
            return out
        for key, value in history:
            if key[:4] != prefix:
                break
            dot = json.loads(value)["dot"]
            if dot is None:
                continue  # a state merged from a peer: its changes are not in the oplog
            node, counter = dot
            if vv.get(node, 0) >= counter:
                continue
            raw_node = node.encode()
            raw = self._txn.get(
                prefix + bytes((len(raw_node),)) + raw_node + _U64.pack(counter), db=oplog
            )
            if raw is not None:
                out.append((Dot(node, counter), bytes(raw)))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def sequence(self, zone: dns.name.Name) -> int:
        """The sequence of the zone's latest change (``changes_since(after=...)``)."""
        return self.zone(zone).meta.sequence

    def oplog_gap(self, zone: dns.name.Name, vv: Mapping[str, int]) -> bool:
        """Whether some change a node at ``vv`` lacks is no longer (or never was) in this
        node's oplog: collected after every peer had it, or received inside a peer's state.
        Such a node is brought up to date by a state transfer, not change by change."""
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        cursor = self._txn.cursor(db=self._store._dbs["oplog"])
        for node, mine in meta.vv.items():
            theirs = vv.get(node, 0)
            if mine <= theirs:
                continue
            raw = node.encode()
            head = prefix + bytes((len(raw),)) + raw
            count = 0
            if cursor.set_range(head + _U64.pack(theirs + 1)):
                for key in cursor.iternext(values=False):
                    if key[: len(head)] != head or _U64.unpack_from(key, len(head))[0] > mine:
                        break
                    count += 1
            if count < mine - theirs:
                return True
        return False

    def state_entries(
        self, zone: dns.name.Name, buckets: frozenset[int] | None = None
    ) -> tuple[ZoneMeta, Iterator[tuple[int, bytes, bytes]]]:
        """The zone's merge state as stored (``model.StateTransfer.entries``), read in this
        snapshot: its records, tombstones, slots, deletes-as-a-whole and conflicts; with
        ``buckets``, only the names in those digest buckets."""
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        txn, dbs = self._txn, self._store._dbs

        def entries() -> Iterator[tuple[int, bytes, bytes]]:
            for kind, name in enumerate(STATE_KINDS):
                cursor = txn.cursor(db=dbs[name])
                if not cursor.set_range(prefix):
                    continue
                for key, value in cursor:
                    if key[:4] != prefix:
                        break
                    suffix = bytes(key[4:])
                    if buckets is not None and _bucket(_suffix_owner(kind, suffix)) not in buckets:
                        continue
                    yield kind, suffix, bytes(value)

        return meta, entries()

    def digest(self, zone: dns.name.Name) -> tuple[dict[str, int], list[int]]:
        """The zone's version vector and a digest of what it serves, in ``DIGEST_BUCKETS``
        buckets by owner name (each the XOR of its records' hashes: owner, type, TTL, data).
        Two nodes at the same vector must have the same digest; a bucket that differs names
        the names to repair (``StateTransfer.buckets``)."""
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        buckets = [0] * DIGEST_BUCKETS
        cursor = self._txn.cursor(db=self._store._dbs["records"])
        if cursor.set_range(prefix):
            head = _VALUE_HEAD.size
            for key, value in cursor:
                if key[:4] != prefix:
                    break
                suffix = bytes(key[4:])
                i = head + 1 + value[head]  # past the writer's node id: what is served
                hashed = hashlib.blake2b(
                    suffix + bytes(value[1:5]) + bytes(value[i:]), digest_size=8
                )
                buckets[_bucket(suffix[:-18])] ^= int.from_bytes(hashed.digest(), "big")
        return dict(meta.vv), buckets

    def conflicts(self, zone: dns.name.Name, closed: bool = False) -> list[dict[str, Any]]:
        """The zone's open conflicts (see ``xdnsd.replication.merge``), by name; with
        ``closed``, also those a last-writer-wins policy closed."""
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        cursor = self._txn.cursor(db=self._store._dbs["conflicts"])
        out: list[dict[str, Any]] = []
        if cursor.set_range(prefix):
            for key, value in cursor:
                if key[:4] != prefix:
                    break
                doc = dict(json.loads(value))
                if closed or not doc.get("closed"):
                    out.append(doc)
        return out

    def journal_depth(self, zone: dns.name.Name) -> int:
        meta = self.zone(zone).meta
        prefix = _U32.pack(meta.zone_id)
        cursor = self._txn.cursor(db=self._store._dbs["journal"])
        count = 0
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                if key[:4] != prefix:
                    break
                count += 1
        return count


DIGEST_BUCKETS = 64
_SOA_SUFFIX = b"\x00" + _RTYPE.pack(SOA) + _SOA_DIGEST  # the apex SOA's key, zone id aside


def _bucket(owner: bytes) -> int:
    """The digest bucket of a name (its key, zone id aside)."""
    return hashlib.blake2b(owner, digest_size=2).digest()[0] % DIGEST_BUCKETS


def _suffix_owner(kind: int, suffix: bytes) -> bytes:
    """The owner part of a stored key (zone id aside) of ``STATE_KINDS[kind]``."""
    name = STATE_KINDS[kind]
    if name == "clears":
        return suffix[:-2]
    if name == "conflicts":  # owner, then the conflict id
        if suffix[:1] == b"\x00":
            return suffix[:1]  # the apex
        return suffix[: suffix.index(b"\x00\x00") + 2]
    return suffix[:-18]


def _soa_slot_rr(rr: RR) -> RR:
    """An SOA as its slot holds it: serial 0 (the store derives the served one), so that
    nodes record the same write alike whatever serial each served with it."""
    return rr if int(rr.rdata.serial) == 0 else _replace_soa_serial(rr, 0)  # type: ignore[attr-defined]


def _zone_items(txn: Any, db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of one zone in a table (``prefix``: its zone id)."""
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key, value in cursor:
            if key[:4] != prefix:
                break
            yield bytes(key), bytes(value)


def _prefix_name(owner_prefix: bytes, origin: dns.name.Name) -> dns.name.Name:
    """The name an owner prefix (zone id, key, terminator) stands for, lowercased."""
    labels = names.key_labels(owner_prefix[4:-1])
    return dns.name.Name(labels + origin.labels)


_Merged = Any  # merge.Write or merge.Clear: both have dot, hlc, context, rank


def _merge_writes(
    mine: Sequence[_Merged],
    theirs: Sequence[_Merged],
    my_vv: Mapping[str, int],
    their_vv: Mapping[str, int],
    union: bool,
) -> list[Any]:
    """One slot (or one name's deletes-as-a-whole) after merging a peer's state: the writes
    both hold; a write only one side holds stays unless the other side's vector shows it was
    seen there and is gone (replaced, or collected: the causal rule that keeps a collected
    delete from resurrecting what it deleted); with ``union`` (repair of nodes at equal
    vectors) every write stays.  Then a write that saw another replaces it."""
    by_dot: dict[Dot, Any] = {}
    their_dots = {w.dot for w in theirs}
    my_dots = {w.dot for w in mine}
    for w in mine:
        if union or w.dot in their_dots or not _seen(their_vv, w.dot):
            by_dot[w.dot] = w
    for w in theirs:
        if w.dot not in my_dots and (union or not _seen(my_vv, w.dot)):
            by_dot[w.dot] = w
    writes = list(by_dot.values())
    kept = [
        w for w in writes if not any(o is not w and merge._saw(o.context, w.dot) for o in writes)
    ]
    return sorted(kept, key=lambda w: w.rank, reverse=True)


def _ignored(cs: Changeset, serial: int, generation: int) -> CommitResult:
    """The outcome of a peer's change or state that is not applied (of a dropped zone)."""
    dot = cs.dot or Dot("", 0)
    return CommitResult(cs.zone, dot, cs.hlc or 0, serial, serial, generation, False)


def _seen(context: Mapping[str, int], dot: Dot) -> bool:
    return context.get(dot.node, 0) >= dot.counter


def _value_dot(value: bytes) -> tuple[Dot, int]:
    """The dot and HLC of the write a stored record value holds."""
    _flags, _ttl, hlc, counter = _VALUE_HEAD.unpack_from(value, 0)
    i = _VALUE_HEAD.size
    node = value[i + 1 : i + 1 + value[i]].decode()
    return Dot(node, int(counter)), int(hlc)


def _rr_json(rr: RR) -> list[Any]:
    return [rr.owner.to_text(), rr.ttl, int(rr.rdtype), rdata_wire(rr.rdata).hex()]


def _rr_from_json(item: list[Any]) -> RR:
    owner = dns.name.from_text(item[0])
    wire = bytes.fromhex(item[3])
    rdtype = dns.rdatatype.RdataType.make(int(item[2]))
    return RR(owner, int(item[1]), dns.rdata.from_wire(IN, rdtype, wire, 0, len(wire)))


def _encode_writes(writes: Sequence[merge.Write]) -> bytes:
    return json.dumps(
        [
            [w.dot.node, w.dot.counter, w.hlc, w.present, _rr_json(w.rr), w.context, w.origin]
            for w in writes
        ],
        separators=(",", ":"),
    ).encode()


def _decode_writes(raw: bytes) -> list[merge.Write]:
    out = []
    for node, counter, hlc, present, rr, context, origin in json.loads(raw):
        ctx = tuple((str(n), int(c)) for n, c in context)
        out.append(merge.Write(Dot(node, counter), hlc, present, _rr_from_json(rr), ctx, origin))
    return out


def _encode_clears(clears: Sequence[merge.Clear]) -> bytes:
    return json.dumps(
        [[c.dot.node, c.dot.counter, c.hlc, c.area[1], c.context, c.origin] for c in clears],
        separators=(",", ":"),
    ).encode()


def _decode_clears(raw: bytes | None, owner: dns.name.Name) -> list[merge.Clear]:
    if raw is None:
        return []
    out = []
    for node, counter, hlc, rdtype, context, origin in json.loads(raw):
        ctx = tuple((str(n), int(c)) for n, c in context)
        out.append(merge.Clear(Dot(node, counter), hlc, (owner, int(rdtype)), ctx, origin))
    return out


def _encode_conflict(conflict: merge.Conflict, closed: bool = False) -> bytes:
    return json.dumps(
        {
            "id": conflict.id,
            "closed": closed,
            "kind": conflict.kind,
            "owner": conflict.owner.to_text(),
            "rdtype": conflict.rdtype,
            "subject": conflict.subject,
            "sides": [
                {
                    "node": s.dot.node,
                    "counter": s.dot.counter,
                    "hlc": s.hlc,
                    "origin": s.origin,
                    "what": s.what,
                }
                for s in conflict.sides
            ],
        },
        separators=(",", ":"),
    ).encode()


def _encode_tombstone(tomb: ZoneTombstone) -> bytes:
    return json.dumps(
        {
            "zone": tomb.zone.to_text(),
            "incarnation": tomb.incarnation,
            "vv": tomb.vv,
            "dot": [tomb.dot.node, tomb.dot.counter],
            "hlc": tomb.hlc,
            "origin": tomb.origin,
            "serial": tomb.serial,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def _decode_tombstone(raw: bytes) -> ZoneTombstone:
    d = json.loads(raw)
    return ZoneTombstone(
        zone=_text_name(d["zone"]),
        incarnation=int(d["incarnation"]),
        vv={str(n): int(c) for n, c in d["vv"].items()},
        dot=Dot(str(d["dot"][0]), int(d["dot"][1])),
        hlc=int(d["hlc"]),
        origin=str(d["origin"]),
        serial=int(d.get("serial", 0)),
    )


def _merge_tombstones(old: ZoneTombstone | None, new: ZoneTombstone) -> ZoneTombstone:
    """The tombstone of a zone after another drop of it is known: the later incarnation's; of
    one incarnation, the drops together (covered vectors joined; who and when of the latest
    drop, by HLC then node id: the same on every node whatever the order)."""
    if old is None or new.incarnation > old.incarnation:
        return new
    if new.incarnation < old.incarnation:
        return old
    vv = dict(old.vv)
    for node, counter in new.vv.items():
        vv[node] = max(vv.get(node, 0), counter)
    latest = max(old, new, key=lambda t: (t.hlc, t.dot.node, t.dot.counter))
    return dataclasses.replace(latest, vv=vv, serial=max(old.serial, new.serial))


@dataclass(slots=True)
class _Applied:
    """What applying a changeset's records really did (``Store._apply_records``)."""

    removed: list[RR] = field(default_factory=list)
    added: list[RR] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)  # wire forms of ``added``, for the oplog
    old_soa: RR | None = None  # the SOA the changeset removed
    new_soa: RR | None = None  # the SOA the changeset added (its serial may be replaced)
    merged: bool = False  # applied by the merge rules (a change from a peer, or concurrent state)
    # the SOA's fields came from this write (HLC, dot): the merge picked them among siblings
    soa_write: tuple[int, Dot] | None = None


_TRIM_EVERY = 64  # journal entries trimmed together
CommitListener = Callable[[CommitResult, Changeset], None]
# decides a change inside the writer's transaction from the zone as it stands (see commit_batch)
Planner = Callable[["ZoneSnapshot | None"], "Changeset | None"]


class Store:
    """The LMDB environment of one node."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        node_id: str,
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        journal_depth: int = DEFAULT_JOURNAL_DEPTH,
        zone_journal_depths: Mapping[dns.name.Name, int] | None = None,
        last_writer_wins: Sequence[dns.name.Name] = (),
        readonly: bool = False,
    ) -> None:
        """``journal_depth``: IXFR journal entries kept per zone; ``zone_journal_depths``:
        zones that keep another number."""
        self.path = Path(path)
        self.node_id = node_id
        self.journal_depth = journal_depth
        self.zone_journal_depths = dict(zone_journal_depths or {})
        # zones whose conflicts close by themselves (the provisional winner stays)
        self.last_writer_wins = frozenset(last_writer_wins)
        self.path.mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(
            str(self.path / "db"),
            subdir=True,
            map_size=map_size,
            max_dbs=len(_DB_NAMES) + 2,
            max_readers=1024,
            sync=True,
            metasync=True,
            readahead=False,
            lock=True,
            readonly=False,
        )
        self._dbs = {n: self._env.open_db(n.encode()) for n in _DB_NAMES}
        self.generations = GenerationTable(self.path / "generations")
        self._listeners: list[CommitListener] = []
        self._zone_cache: dict[dns.name.Name, ZoneMeta] = {}
        self._zone_cache_gen = -1
        self._zone_cache_lock = threading.Lock()
        self._expected: dict[dns.name.Name, ZoneMeta] = {}
        try:
            self._check_meta()
        except Exception:
            self.close()
            raise

    # --- lifecycle --------------------------------------------------------------------------

    def _check_meta(self) -> None:
        def txn_body(txn: Any) -> None:
            meta = self._dbs["meta"]
            version = txn.get(b"schema_version", db=meta)
            if version is None:
                txn.put(b"schema_version", _U32.pack(SCHEMA_VERSION), db=meta)
                txn.put(b"node_id", self.node_id.encode(), db=meta)
                txn.put(b"next_zone_id", _U32.pack(1), db=meta)
                return
            found = _U32.unpack(version)[0]
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: store schema version {found} is newer than this xdnsd "
                    f"({SCHEMA_VERSION}); upgrade xdnsd"
                )
            stored_node = txn.get(b"node_id", db=meta).decode()
            if stored_node != self.node_id:
                raise StoreError(
                    f"{self.path}: store belongs to node {stored_node!r} but the config says "
                    f"[node] id = {self.node_id!r}; a node id must never change"
                )

        self._write(txn_body)

    def close(self) -> None:
        self._env.close()
        self.generations.close()

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    # --- reading ----------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A consistent read view; keep it short (it pins the LMDB pages it sees)."""
        try:
            txn = self._env.begin(buffers=False)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)  # another process grew the map: adopt its size
            txn = self._env.begin(buffers=False)
        try:
            yield Snapshot(self, txn)
        finally:
            txn.abort()

    def zone_for(self, qname: dns.name.Name) -> ZoneMeta | None:
        """The served zone that is the longest suffix of ``qname``."""
        zones = self._zones()
        expected = self._expected
        name = qname
        while True:
            meta = zones.get(name)
            if meta is None and expected:
                meta = expected.get(name)
            if meta is not None:
                return meta
            if len(name.labels) <= 1:
                return None
            name = name.parent()

    def _zones(self) -> dict[dns.name.Name, ZoneMeta]:
        gen = self.generations.get(0)
        if gen != self._zone_cache_gen:
            with self._zone_cache_lock, self.snapshot() as snap:
                self._zone_cache = {m.name: m for m in snap.zones()}
                self._zone_cache_gen = gen
        return self._zone_cache

    def expect_zones(self, names: Sequence[dns.name.Name]) -> None:
        """Zones this node serves once it has their data (secondary zones before their first
        transfer): until then ``zone_for`` finds an expired placeholder, answered SERVFAIL as
        BIND and Knot do, instead of REFUSED."""
        self._expected = {
            name: ZoneMeta(name, 0, "secondary", {}, 0, 0, 0, 0, expired=True) for name in names
        }

    def set_expired(self, zone: dns.name.Name, expired: bool) -> bool:
        """Mark a secondary zone expired (served SERVFAIL) or live again; False when it already
        was (or the zone is not in the store).  Serving state, not zone data: no commit, no
        serial change, but every cached answer of the zone is dropped."""
        zones_db = self._dbs["zones"]

        def body(txn: Any) -> list[tuple[int, int]]:
            raw = txn.get(_zone_key(zone), db=zones_db)
            if raw is None:
                return []
            meta = ZoneMeta.from_json(raw)
            if meta.expired == expired:
                return []
            meta.expired = expired
            meta.generation += 1
            txn.put(_zone_key(zone), meta.to_json(), db=zones_db)
            stored = txn.get(b"zones_generation", db=self._dbs["meta"])
            value = (0 if stored is None else int(_U64.unpack(stored)[0])) + 1
            txn.put(b"zones_generation", _U64.pack(value), db=self._dbs["meta"])
            return [(meta.zone_id, meta.generation), (0, value)]

        publish = self._write(body)
        for slot, generation in publish:
            self.generations.publish(slot, generation)
        return bool(publish)

    # --- operator-visible state (``sync_status``): JSON documents by key ----------------------

    def put_status(self, key: str, doc: dict[str, Any] | None, table: str = "sync_status") -> None:
        """Store (or, with None, delete) the status document ``key`` (in ``table``:
        ``sync_status``, or ``cursors`` for what peers acknowledged)."""
        db = self._dbs[table]

        def body(txn: Any) -> None:
            if doc is None:
                txn.delete(key.encode(), db=db)
            else:
                txn.put(key.encode(), json.dumps(doc, sort_keys=True).encode(), db=db)

        self._write(body)

    def put_statuses(self, docs: Sequence[tuple[str, dict[str, Any] | None, str]]) -> None:
        """Several documents (key, document or None to delete, table) in one transaction."""

        def body(txn: Any) -> None:
            for key, doc, table in docs:
                if doc is None:
                    txn.delete(key.encode(), db=self._dbs[table])
                else:
                    txn.put(
                        key.encode(), json.dumps(doc, sort_keys=True).encode(), db=self._dbs[table]
                    )

        self._write(body)

    def status(self, key: str, table: str = "sync_status") -> dict[str, Any] | None:
        with self.snapshot() as snap:
            raw = snap._txn.get(key.encode(), db=self._dbs[table])
        return None if raw is None else dict(json.loads(raw))

    def statuses(self, prefix: str, table: str = "sync_status") -> dict[str, dict[str, Any]]:
        """Every status document whose key starts with ``prefix``, by key."""
        out: dict[str, dict[str, Any]] = {}
        start = prefix.encode()
        with self.snapshot() as snap:
            cursor = snap._txn.cursor(db=self._dbs[table])
            if cursor.set_range(start):
                for key, value in cursor:
                    if not key.startswith(start):
                        break
                    out[key.decode()] = dict(json.loads(value))
        return out

    def _count(self, txn: Any, name: str, n: int = 1) -> None:
        """Add to a durable counter (``counters``): metrics that survive restarts."""
        key = b"counter:" + name.encode()
        raw = txn.get(key, db=self._dbs["meta"])
        txn.put(
            key, _U64.pack((0 if raw is None else _U64.unpack(raw)[0]) + n), db=self._dbs["meta"]
        )

    def count(self, name: str, n: int = 1) -> None:
        """Add to a durable counter, in a transaction of its own."""
        self._write(lambda txn: self._count(txn, name, n))

    def counters(self) -> dict[str, int]:
        """The durable counters: ``conflicts_detected`` (every conflict this node saw
        appear, each once)."""
        out = {}
        with self.snapshot() as snap:
            cursor = snap._txn.cursor(db=self._dbs["meta"])
            if cursor.set_range(b"counter:"):
                for key, value in cursor:
                    if not key.startswith(b"counter:"):
                        break
                    out[key[8:].decode()] = int(_U64.unpack(value)[0])
        return out

    def reset_generations(self) -> None:
        """Make the shared generation table agree with the store (called before workers start)."""
        with self.snapshot() as snap:
            values = {meta.zone_id: meta.generation for meta in snap.zones()}
            values[0] = snap.zones_generation()
        self.generations.reset(values)

    def list_zones(self) -> list[ZoneMeta]:
        with self.snapshot() as snap:
            return snap.zones()

    def dropped_zones(self) -> list[ZoneTombstone]:
        """The tombstones of dropped zones (``Snapshot.tombstones``)."""
        with self.snapshot() as snap:
            return snap.tombstones()

    def tombstone(self, zone: dns.name.Name) -> ZoneTombstone | None:
        """The zone's tombstone: it was dropped (and perhaps created again since)."""
        with self.snapshot() as snap:
            return snap.tombstone(zone)

    # --- writing ----------------------------------------------------------------------------

    def _write(self, body: Callable[[Any], Any]) -> Any:
        """Run ``body`` in one synced write transaction, growing the map when it is full."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    return body(txn)
            except lmdb.MapFullError:
                new_size = self._env.info()["map_size"] * 2
                log.info("store map full; growing it to %d MiB", new_size >> 20)
                self._env.set_mapsize(new_size)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)

    def commit(self, cs: Changeset, *, now: float | None = None) -> CommitResult:
        """Apply ``cs`` durably: the only way zone data is written.

        Returns after the transaction is synced to disk and the new generation is published.
        A changeset whose dot the zone has already seen is not applied again (idempotent).
        """
        now_ms = int((time.time() if now is None else now) * 1000)
        result: CommitResult
        publish: list[tuple[int, int]]
        # a bulk change allocates millions of objects that all live on: the cyclic GC would
        # rescan them again and again for nothing
        bulk = len(cs.added) + len(cs.removed) > 10_000 and gc.isenabled()
        if bulk:
            gc.disable()
        try:
            result, publish = self._write(lambda txn: self._commit_txn(txn, cs, now_ms))
        finally:
            if bulk:
                gc.enable()
        self._after_commit(result, publish, cs)
        return result

    def commit_batch(
        self, planners: Sequence[tuple[dns.name.Name, Planner]], *, now: float | None = None
    ) -> list[CommitResult | Exception | None]:
        """Plan and commit several changes in ONE synced write transaction (group commit).

        Each planner is called inside the transaction, in order, with its zone as it stands
        after the earlier planners' changes (None when the zone is not in the store), and
        returns the changeset to commit or None.  Deciding inside the writer's transaction is
        what makes a check-then-write (RFC 2136 prerequisites) atomic, across worker processes
        too.  Each change runs in a nested transaction, so one that fails (its exception is its
        outcome) leaves the others in place.  Returns one outcome per planner: the commit
        result, None when the planner returned nothing, or the exception.  Everything is on
        disk when this returns.
        """
        now_ms = int((time.time() if now is None else now) * 1000)
        records_db = self._dbs["records"]
        zones_db = self._dbs["zones"]

        def body(txn: Any) -> list[tuple[CommitResult | Exception | None, Any, Changeset | None]]:
            outcomes: list[tuple[CommitResult | Exception | None, Any, Changeset | None]] = []
            current: dict[dns.name.Name, ZoneMeta] = {}
            for zone, planner in planners:
                child = self._env.begin(write=True, parent=txn)
                try:
                    # the meta an earlier change of this batch wrote, else the stored one
                    meta = current.pop(zone, None)
                    if meta is None:
                        raw = child.get(_zone_key(zone), db=zones_db)
                        meta = None if raw is None else ZoneMeta.from_json(raw)
                    view = None if meta is None else ZoneSnapshot(child, records_db, meta)
                    cs = planner(view)
                    if cs is None:
                        child.abort()
                        if meta is not None:
                            current[zone] = meta  # unchanged
                        outcomes.append((None, [], None))
                        continue
                    known = meta if cs.zone == zone and cs.op is ChangeOp.CHANGE else None
                    result, publish = self._commit_txn(child, cs, now_ms, known)
                    if known is not None:
                        current[zone] = known  # as _commit_txn left and wrote it
                except (lmdb.MapFullError, lmdb.MapResizedError):
                    child.abort()
                    raise  # the whole batch is retried by _write
                except NotReady as exc:  # a change from a peer that must wait: not an error
                    child.abort()
                    outcomes.append((exc, [], None))
                    continue
                except Exception as exc:
                    child.abort()
                    log.exception("change to zone %s failed; not applied", zone)
                    outcomes.append((exc, [], None))
                    continue
                child.commit()
                outcomes.append((result, publish, cs))
            return outcomes

        done = self._write(body)
        out: list[CommitResult | Exception | None] = []
        latest: dict[int, int] = {}  # each generation slot is published once per batch
        for result, publish, _cs in done:
            if isinstance(result, CommitResult) and result.applied:
                for slot, generation in publish:
                    latest[slot] = max(generation, latest.get(slot, 0))
        for slot, generation in latest.items():
            self.generations.publish(slot, generation)
        for result, _publish, cs in done:
            if isinstance(result, CommitResult) and cs is not None:
                self._after_commit(result, [], cs)
            out.append(result)
        return out

    def _after_commit(
        self, result: CommitResult, publish: list[tuple[int, int]], cs: Changeset
    ) -> None:
        """Publish the new generations (before anyone hears of the commit), then tell the
        listeners."""
        if not result.applied:
            return
        for slot, generation in publish:
            self.generations.publish(slot, generation)
        for listener in self._listeners:
            try:
                listener(result, cs)
            except Exception:
                log.exception("post-commit listener %r failed for zone %s", listener, cs.zone)

    def _commit_txn(
        self, txn: Any, cs: Changeset, now_ms: int, known: ZoneMeta | None = None
    ) -> tuple[CommitResult, list[tuple[int, int]]]:
        """Apply ``cs`` inside ``txn``: (result, generation slots to publish after the commit).

        ``known``: the zone's meta as just read in this transaction (spares a decode).
        """
        if cs.op is ChangeOp.STATE:
            return self._merge_state_txn(txn, cs, now_ms, known)
        if cs.dot is not None:
            gated = self._incarnation_gate(txn, cs, known)
            if gated is not None:
                return gated
            exists = known is not None or txn.get(_zone_key(cs.zone), db=self._dbs["zones"])
            if cs.op is ChangeOp.CREATE and exists:
                # two nodes created the zone (each from its master file): the other's creation
                # merges in as a change; the same records are siblings that agree
                cs = dataclasses.replace(cs, op=ChangeOp.CHANGE)
            elif cs.op is ChangeOp.CHANGE and not exists:
                raise NotReady(f"zone {cs.zone} is not here yet: its creation comes first")
        meta, publish = self._meta_for(txn, cs, known)
        if cs.op is ChangeOp.DROP:  # a drop made here (a peer's went through the gate)
            return self._drop_txn(txn, cs, meta, now_ms, publish)

        # causality: a local change gets the next dot of this node; a remote one keeps its own,
        # its HLC (the same write ranks the same on every node) and its context, and is applied
        # only once, after every change its context names (causal delivery)
        remote = cs.dot is not None
        if cs.dot is None:
            dot = Dot(self.node_id, meta.vv.get(self.node_id, 0) + 1)
            context = tuple(sorted((n, c) for n, c in meta.vv.items() if c))
        else:
            dot = cs.dot
            if dot.counter <= meta.vv.get(dot.node, 0):
                res = CommitResult(
                    cs.zone, dot, meta.hlc, meta.serial, meta.serial, meta.generation, False
                )
                return res, []
            missing = [(n, c) for n, c in cs.context if n != dot.node and meta.vv.get(n, 0) < c]
            if meta.vv.get(dot.node, 0) != dot.counter - 1 or missing:
                raise NotReady(
                    f"change {dot.node}:{dot.counter} to zone {cs.zone} needs "
                    f"{dot.node}:{dot.counter - 1} and {missing}; have {meta.vv}"
                )
            context = cs.context
        hlc = hlc_next(max(meta.hlc, cs.hlc or 0), now_ms)
        write_hlc = cs.hlc if remote and cs.hlc is not None else hlc

        serial_from = None if cs.op is ChangeOp.CREATE else meta.serial
        if cs.op is ChangeOp.CHANGE and (
            remote or cs.cleared or self._has_merge_state(txn, meta, cs)
        ):
            applied = self._merge_records(txn, cs, meta.zone_id, write_hlc, dot, context)
        else:
            applied = self._apply_records(txn, cs, meta.zone_id, write_hlc, dot)

        # the SOA: keep (or take) its fields, serial derived from the advanced version vector
        records = self._dbs["records"]
        soa_key = _owner_prefix(meta.zone_id, cs.zone, cs.zone) + _RTYPE.pack(SOA) + _SOA_DIGEST
        current = txn.get(soa_key, db=records)
        current_soa = _decode_value(SOA, current) if current is not None else None
        old_soa = applied.old_soa or current_soa
        given_soa = applied.new_soa
        base_soa = given_soa or current_soa
        if base_soa is None:
            raise StoreError(f"zone {cs.zone} would be left without an SOA")
        nothing = not applied.removed and not applied.added and given_soa is None
        wanted_soa = next((rr for rr in cs.added if rr.rdtype == SOA), None)
        # a merged change counts even when nothing served changed: its writes are state
        if nothing and cs.op is ChangeOp.CHANGE and not applied.merged:
            # do not advance the serial for a no-op
            res = CommitResult(
                cs.zone, dot, meta.hlc, serial_from, meta.serial, meta.generation, False
            )
            return res, []
        meta.vv[dot.node] = dot.counter
        meta.hlc = hlc
        if wanted_soa is not None and cs.dot is None and cs.op is ChangeOp.CHANGE:
            # an operator's SOA with a higher serial (RFC 2136 3.4.2.2): serve that serial, and
            # derive the following ones from it
            wanted = int(wanted_soa.rdata.serial)  # type: ignore[attr-defined]
            if cs.exact_serial or serial_gt(wanted, meta.serial):
                meta.serial_base = (wanted - sum(meta.vv.values())) % SERIAL_MOD
        serial_to = meta.serial
        new_soa = _replace_soa_serial(base_soa, serial_to)
        # the stored SOA names the write its fields came from (not the latest change): a
        # concurrent edit of them is told from a later one by that write's dot
        if applied.soa_write is not None:
            soa_hlc, soa_dot = applied.soa_write
        elif given_soa is not None or current is None:
            soa_hlc, soa_dot = write_hlc, dot
        else:
            soa_dot, soa_hlc = _value_dot(current)
        soa_value = _encode_value(new_soa, soa_hlc, soa_dot)
        txn.put(soa_key, soa_value, db=records)
        _DECODED[(SOA, soa_value)] = new_soa  # the next commit and the answers read it back

        meta.sequence += 1
        meta.generation += 1
        logged = Changeset(
            cs.zone,
            cs.removed,
            cs.added,
            cs.origin,
            cs.op,
            dot,
            write_hlc,
            context,
            cs.exact_serial,
            cs.cleared,
            incarnation=meta.incarnation,
        )
        self._log_commit(txn, logged, meta, dot, write_hlc, serial_from, old_soa, new_soa, applied)
        txn.put(_zone_key(cs.zone), meta.to_json(), db=self._dbs["zones"])
        res = CommitResult(cs.zone, dot, hlc, serial_from, serial_to, meta.generation, True)
        publish.append((meta.zone_id, meta.generation))
        return res, publish

    def _meta_for(
        self, txn: Any, cs: Changeset, known: ZoneMeta | None
    ) -> tuple[ZoneMeta, list[tuple[int, int]]]:
        """The zone's meta (a new one for CREATE) and the slots a zone-set change publishes."""
        raw = None if known is not None else txn.get(_zone_key(cs.zone), db=self._dbs["zones"])
        if cs.op is not ChangeOp.CREATE:
            if known is not None:
                return known, []
            if raw is None:
                raise StoreError(f"zone {cs.zone} is not in the store")
            return ZoneMeta.from_json(raw), []
        if raw is not None or known is not None:
            raise StoreError(f"zone {cs.zone} already exists")
        soa = [rr for rr in cs.added if rr.rdtype == SOA and rr.owner == cs.zone]
        if len(soa) != 1:
            raise StoreError(f"zone {cs.zone}: a new zone needs exactly one apex SOA")
        file_serial = int(soa[0].rdata.serial)  # type: ignore[attr-defined]
        # the first commit adds one to the vector sum: serve the file's serial
        serial_base = (file_serial - 1) % SERIAL_MOD
        incarnation = cs.incarnation
        tomb = self._tombstone_txn(txn, cs.zone)
        if cs.dot is None and tomb is not None:
            # created again after a drop: a new life, whose dots never meet the old ones';
            # its serial goes on above the last one served (secondaries take it as newer)
            incarnation = tomb.incarnation + 1
            if not serial_gt(file_serial, tomb.serial):
                serial_base = tomb.serial
            log.info(
                "zone %s created again (incarnation %d) by %s; it was dropped by %s",
                cs.zone,
                incarnation,
                cs.origin,
                tomb.origin,
            )
        zone_id = _U32.unpack(txn.get(b"next_zone_id", db=self._dbs["meta"]))[0]
        txn.put(b"next_zone_id", _U32.pack(zone_id + 1), db=self._dbs["meta"])
        meta = ZoneMeta(
            name=cs.zone,
            zone_id=zone_id,
            kind="primary",
            vv={},
            serial_base=serial_base,
            generation=0,
            sequence=0,
            hlc=0,
            incarnation=incarnation,
        )
        return meta, self._zone_set_changed(txn, cs.zone)

    # --- dropped zones: tombstones, and the incarnation a peer's change belongs to ----------

    def _tombstone_txn(self, txn: Any, zone: dns.name.Name) -> ZoneTombstone | None:
        raw = txn.get(_zone_key(zone), db=self._dbs["dropped"])
        return None if raw is None else _decode_tombstone(raw)

    def _put_tombstone(self, txn: Any, tomb: ZoneTombstone) -> ZoneTombstone:
        """Record (or join with the one there) a zone's tombstone; the one now stored."""
        old = self._tombstone_txn(txn, tomb.zone)
        merged = _merge_tombstones(old, tomb)
        if merged != old:
            txn.put(_zone_key(tomb.zone), _encode_tombstone(merged), db=self._dbs["dropped"])
        return merged

    def _drop_live_txn(self, txn: Any, meta: ZoneMeta) -> list[tuple[int, int]]:
        """Delete the zone and everything in it; the generation slots to publish."""
        self._drop_zone_txn(txn, meta)
        txn.delete(_zone_key(meta.name), db=self._dbs["zones"])
        publish = self._zone_set_changed(txn, meta.name)
        publish.append((meta.zone_id, meta.generation + 1))
        return publish

    def _drop_txn(
        self,
        txn: Any,
        cs: Changeset,
        meta: ZoneMeta,
        now_ms: int,
        publish: list[tuple[int, int]],
    ) -> tuple[CommitResult, list[tuple[int, int]]]:
        """A drop made here: the zone goes, its tombstone (covering everything this node has
        of the zone, and the drop's own dot) stays and goes to every peer."""
        dot = Dot(self.node_id, meta.vv.get(self.node_id, 0) + 1)
        hlc = hlc_next(meta.hlc, now_ms)
        vv = {n: c for n, c in meta.vv.items() if c}
        vv[dot.node] = dot.counter
        tomb = ZoneTombstone(cs.zone, meta.incarnation, vv, dot, hlc, cs.origin, meta.serial)
        self._put_tombstone(txn, tomb)
        publish += self._drop_live_txn(txn, meta)
        log.info(
            "zone %s dropped by %s (serial %d); every peer drops it too",
            cs.zone,
            cs.origin,
            meta.serial,
        )
        res = CommitResult(cs.zone, dot, hlc, meta.serial, meta.serial, meta.generation + 1, True)
        return res, publish

    def _incarnation_gate(
        self, txn: Any, cs: Changeset, known: ZoneMeta | None
    ) -> tuple[CommitResult, list[tuple[int, int]]] | None:
        """A change from a peer, against the zone's lives here: a drop is applied here; a change
        of a dropped life is discarded (``NotReady`` when it is of a life whose drop or creation
        is not here yet).  None: apply it as usual."""
        if known is not None:
            meta: ZoneMeta | None = known
        else:
            raw = txn.get(_zone_key(cs.zone), db=self._dbs["zones"])
            meta = None if raw is None else ZoneMeta.from_json(raw)
        tomb = self._tombstone_txn(txn, cs.zone)
        if cs.op is ChangeOp.DROP:
            return self._peer_drop_txn(txn, cs, meta, tomb)
        dropped = -1 if tomb is None else tomb.incarnation
        if tomb is not None and cs.incarnation <= dropped:
            return self._discard_txn(txn, cs, tomb, meta), []
        if meta is not None:
            if cs.incarnation < meta.incarnation:  # an older life (its tombstone went)
                return _ignored(cs, meta.serial, meta.generation), []
            if cs.incarnation > meta.incarnation:
                raise NotReady(
                    f"change to zone {cs.zone} of incarnation {cs.incarnation}: the drop of "
                    f"incarnation {meta.incarnation} comes first"
                )
        elif cs.incarnation > dropped + 1:
            raise NotReady(
                f"change to zone {cs.zone} of incarnation {cs.incarnation}: the drop of "
                f"incarnation {cs.incarnation - 1} comes first"
            )
        return None

    def _peer_drop_txn(
        self, txn: Any, cs: Changeset, meta: ZoneMeta | None, tomb: ZoneTombstone | None
    ) -> tuple[CommitResult, list[tuple[int, int]]]:
        """A peer's drop: the zone goes here too, whatever this node has of it that the drop
        had not seen (the deletion wins: such changes are counted, logged and discarded, on
        every node the same way); its tombstone is kept (joined with one already here)."""
        assert cs.dot is not None
        new = ZoneTombstone.of_drop(cs)
        serial = 0 if meta is None else meta.serial
        generation = 0 if meta is None else meta.generation
        if tomb is not None and tomb.incarnation > cs.incarnation:
            return _ignored(cs, serial, generation), []  # an older life's: gone here already
        if meta is not None and meta.incarnation > cs.incarnation:
            # the zone lives again here: the drop of its earlier life only joins its tombstone
            self._put_tombstone(txn, new)
            return _ignored(cs, serial, generation), []
        publish: list[tuple[int, int]] = []
        applied = False
        if meta is not None:
            discarded = 0
            if meta.incarnation == cs.incarnation:
                discarded = sum(max(0, c - new.vv.get(n, 0)) for n, c in meta.vv.items())
                vv = dict(new.vv)
                for node, counter in meta.vv.items():
                    vv[node] = max(vv.get(node, 0), counter)
                new = dataclasses.replace(new, vv=vv)
            new = dataclasses.replace(new, serial=meta.serial)
            publish = self._drop_live_txn(txn, meta)
            applied = True
            generation += 1
            if discarded:
                self._count(txn, "conflicts_detected")
                log.warning(
                    "zone %s dropped by %s (on %s) concurrently with %d change(s) it had not "
                    "seen; the deletion wins: they are discarded",
                    cs.zone,
                    cs.origin,
                    cs.dot.node,
                    discarded,
                )
            else:
                log.info("zone %s dropped by %s (on %s)", cs.zone, cs.origin, cs.dot.node)
        self._put_tombstone(txn, new)
        return CommitResult(
            cs.zone, cs.dot, cs.hlc or 0, serial, serial, generation, applied
        ), publish

    def _discard_txn(
        self, txn: Any, cs: Changeset, tomb: ZoneTombstone, meta: ZoneMeta | None
    ) -> CommitResult:
        """A peer's change of a dropped life of the zone: not applied (acknowledged, so the
        peer stops sending it).  One the drop had not seen was concurrent with it: the
        deletion wins, and it is counted and logged (once: the tombstone covers it from now)."""
        assert cs.dot is not None
        if cs.incarnation == tomb.incarnation and not tomb.covers(cs.dot):
            vv = dict(tomb.vv)
            vv[cs.dot.node] = cs.dot.counter
            self._put_tombstone(txn, dataclasses.replace(tomb, vv=vv))
            self._count(txn, "conflicts_detected")
            log.warning(
                "zone %s: change %s:%d (by %s) was made concurrently with the zone's deletion "
                "(by %s at %s); the deletion wins: the change is discarded",
                cs.zone,
                cs.dot.node,
                cs.dot.counter,
                cs.origin,
                tomb.origin,
                tomb.when,
            )
        if meta is None:
            return _ignored(cs, tomb.serial, 0)
        return _ignored(cs, meta.serial, meta.generation)

    # --- merging: changes from peers, and names where concurrent changes met -----------------

    def _has_merge_state(self, txn: Any, meta: ZoneMeta, cs: Changeset) -> bool:
        """Whether a name the change touches has merge state (siblings, deletes-as-a-whole,
        conflicts): a local change there must go through the merge rules too."""
        zone_prefix = _U32.pack(meta.zone_id)
        if not any(
            (cursor := txn.cursor(db=self._dbs[name])).set_range(zone_prefix)
            and cursor.key()[:4] == zone_prefix
            for name in ("slots", "clears", "conflicts")
        ):
            return False  # the usual case: no merge state anywhere in the zone
        owners = {rr.owner for rr in (*cs.removed, *cs.added)}
        for owner in owners:
            prefix = _owner_prefix(meta.zone_id, owner, cs.zone)
            for name in ("slots", "clears", "conflicts"):
                cursor = txn.cursor(db=self._dbs[name])
                if cursor.set_range(prefix) and cursor.key()[: len(prefix)] == prefix:
                    return True
        return False

    def _merge_records(
        self, txn: Any, cs: Changeset, zid: int, hlc: int, dot: Dot, context: merge.Context
    ) -> _Applied:
        """Apply ``cs`` by the merge rules (``xdnsd.replication.merge``): each record it writes
        replaces the writes of that slot its context had seen and stands beside the others;
        then every name it touched is resolved again and what is served there rewritten."""
        out = _Applied(merged=True)
        seen = dict(context)
        slots: dict[bytes, list[merge.Write]] = {}
        owners: dict[bytes, dns.name.Name] = {}
        for present, rrs in ((False, cs.removed), (True, cs.added)):
            for rr in rrs:
                if rr.rdtype == SOA:
                    if rr.owner != cs.zone:
                        raise StoreError(
                            f"zone {cs.zone}: SOA record at {rr.owner}, not at the apex"
                        )
                    if not present:
                        continue  # an SOA is replaced, never deleted
                    # one slot, whatever the serial (derived): concurrent edits of its fields
                    # are siblings, and a conflict when they differ
                    rr = _soa_slot_rr(rr)
                key = _record_key(zid, cs.zone, rr)
                writes = slots.get(key)
                if writes is None:
                    writes = self._slot_writes(txn, key, rr.rdtype, zid)
                kept = [w for w in writes if w.dot != dot and not _seen(seen, w.dot)]
                new = merge.Write(dot, hlc, present, rr, context, cs.origin)
                slots[key] = sorted((*kept, new), key=lambda w: w.rank, reverse=True)
                prefix = _owner_prefix(zid, rr.owner, cs.zone)
                owners.setdefault(prefix, rr.owner)
        for owner, rdtype in cs.cleared:
            prefix = _owner_prefix(zid, owner, cs.zone)
            owners.setdefault(prefix, owner)
            key = prefix + _RTYPE.pack(rdtype)
            raw = txn.get(key, db=self._dbs["clears"])
            clears = [c for c in _decode_clears(raw, owner) if not _seen(seen, c.dot)]
            clears.append(merge.Clear(dot, hlc, (owner, rdtype), context, cs.origin))
            txn.put(key, _encode_clears(clears), db=self._dbs["clears"])
        for prefix, owner in owners.items():
            self._resolve_owner(txn, zid, cs.zone, prefix, owner, slots, out)
        return out

    def _slot_writes(self, txn: Any, key: bytes, rdtype: int, zid: int) -> list[merge.Write]:
        """The writes of one slot: from ``slots`` when it has state there, else its one write
        (in ``records``, or a delete in ``tombstones``), or none."""
        raw = txn.get(key, db=self._dbs["slots"])
        if raw is not None:
            return _decode_writes(raw)
        for db_name, present in (("records", True), ("tombstones", False)):
            value = txn.get(key, db=self._dbs[db_name])
            if value is not None:
                rr = _decode_value(rdtype, value)
                if rdtype == SOA:
                    rr = _soa_slot_rr(rr)
                dot, hlc = _value_dot(value)
                context, origin = self._change_of(txn, zid, dot)
                return [merge.Write(dot, hlc, present, rr, context, origin)]
        return []

    def _change_of(self, txn: Any, zid: int, dot: Dot) -> tuple[merge.Context, str]:
        """What the change ``dot`` had seen and who made it, from the oplog (nothing when it is
        not there)."""
        node = dot.node.encode()
        key = _U32.pack(zid) + bytes((len(node),)) + node + _U64.pack(dot.counter)
        raw = txn.get(key, db=self._dbs["oplog"])
        if raw is None:
            return (), ""
        (hlen,) = _U32.unpack_from(raw, 0)
        head = json.loads(bytes(raw[4 : 4 + hlen]))
        context = tuple((str(n), int(c)) for n, c in head.get("context", []))
        return context, str(head.get("origin", ""))

    def _resolve_owner(
        self,
        txn: Any,
        zid: int,
        origin: dns.name.Name,
        prefix: bytes,
        owner: dns.name.Name,
        touched: dict[bytes, list[merge.Write]],
        out: _Applied,
    ) -> None:
        """Resolve one name again (``merge.resolve_name``) and store the outcome: served
        records, slot state where it is not trivial, the name's conflicts; the served
        difference goes to ``out`` (for the journal)."""
        records, tombstones = self._dbs["records"], self._dbs["tombstones"]
        slots_db, conflicts_db = self._dbs["slots"], self._dbs["conflicts"]
        plen = len(prefix)
        before: dict[bytes, RR] = {}
        slots: dict[bytes, list[merge.Write]] = {}
        cursor = txn.cursor(db=records)
        if cursor.set_range(prefix):
            for key, value in cursor:
                if key[:plen] != prefix:
                    break
                rdtype = _RTYPE.unpack_from(key, plen)[0]
                if rdtype == SOA:
                    continue
                before[key] = _decode_value(rdtype, value)
        cursor = txn.cursor(db=slots_db)
        if cursor.set_range(prefix):
            for key, value in cursor:
                if key[:plen] != prefix:
                    break
                slots[key] = _decode_writes(value)
        for key in before:
            if key not in slots:
                slots[key] = self._slot_writes(txn, key, _RTYPE.unpack_from(key, plen)[0], zid)
        slots.update((k, w) for k, w in touched.items() if k[:plen] == prefix and len(k) > plen)
        clears: list[merge.Clear] = []
        cursor = txn.cursor(db=self._dbs["clears"])
        if cursor.set_range(prefix):
            for key, value in cursor:
                if key[:plen] != prefix:
                    break
                clears += _decode_clears(value, owner)
        live = [tuple(writes) for writes in slots.values() if writes]
        served, conflicts = merge.resolve_name(live, clears)
        served_by_key = {_record_key(zid, origin, rr): rr for rr in served}
        soa_key = _U32.pack(zid) + _SOA_SUFFIX
        soa = served_by_key.pop(soa_key, None)
        for key, writes in slots.items():
            if key == soa_key:
                # the SOA's fields: the winner's, written by the caller with the serial
                assert writes and soa is not None
                top = writes[0]
                if len(writes) == 1 and not clears:
                    txn.delete(key, db=slots_db)
                else:
                    txn.put(key, _encode_writes(writes), db=slots_db)
                current = txn.get(key, db=records)
                if current is None or (
                    _soa_slot_rr(_decode_value(SOA, current)) != soa
                    or _value_dot(current) != (top.dot, top.hlc)
                ):
                    out.new_soa = soa
                    out.soa_write = (top.hlc, top.dot)
                continue
            if not writes:  # a state merge dropped every write of the slot
                for db in (slots_db, tombstones, records):
                    txn.delete(key, db=db)
                continue
            top = writes[0]
            shown = served_by_key.get(key)
            # a write where a delete-as-a-whole stands keeps its context here, not only in the
            # oplog (collected in time, and not sent in a state): it says whether it saw it
            trivial = (
                len(writes) == 1
                and not clears
                and (
                    (top.present and shown is not None and shown.ttl == top.rr.ttl)
                    or not top.present
                )
            )
            if trivial:
                txn.delete(key, db=slots_db)
            else:
                txn.put(key, _encode_writes(writes), db=slots_db)
            if top.present:
                txn.delete(key, db=tombstones)
            else:
                txn.put(key, _encode_value(top.rr, top.hlc, top.dot, flags=1), db=tombstones)
            if shown is not None:
                txn.put(key, _encode_value(shown, top.hlc, top.dot), db=records)
            else:
                txn.delete(key, db=records)
        # the name's conflicts, replaced whole; a new one is an alert
        had: set[bytes] = set()
        cursor = txn.cursor(db=conflicts_db)
        if cursor.set_range(prefix):
            while cursor.key()[:plen] == prefix:
                had.add(cursor.key()[plen:])
                if not cursor.delete():
                    break
        lww = origin in self.last_writer_wins
        for conflict in conflicts:
            if conflict.id.encode() not in had:
                self._count(txn, "conflicts_detected")
                log.warning(
                    "conflict %s in zone %s: %s at %s; serving %s (from %s) %s",
                    conflict.id,
                    origin,
                    conflict.kind,
                    conflict.subject,
                    conflict.winner.what,
                    conflict.winner.dot.node,
                    "(closed: the zone's policy is last-writer-wins)"
                    if lww
                    else f"until an operator decides: xdnsd conflicts resolve {conflict.id} "
                    "--keep ...",
                )
            txn.put(
                prefix + conflict.id.encode(),
                _encode_conflict(conflict, closed=lww),
                db=conflicts_db,
            )
        # what is served at the name now, against before
        for key, rr in before.items():
            now = served_by_key.get(key)
            if now is None or now.ttl != rr.ttl or now.owner.to_text() != rr.owner.to_text():
                out.removed.append(rr)
        for key, rr in served_by_key.items():
            old = before.get(key)
            if old is None or old.ttl != rr.ttl or old.owner.to_text() != rr.owner.to_text():
                out.added.append(rr)

    def _apply_records(self, txn: Any, cs: Changeset, zid: int, hlc: int, dot: Dot) -> _Applied:
        """Remove and add the records of ``cs`` (the SOA aside): what really changed."""
        records = self._dbs["records"]
        tombstones = self._dbs["tombstones"]
        out = _Applied()
        for rr in cs.removed:
            key = _record_key(zid, cs.zone, rr)
            old = txn.get(key, db=records)
            if old is None:
                continue  # removing what is not there is a no-op (repeated or raced delivery)
            old_rr = _decode_value(rr.rdtype, old)
            if rr.rdtype == SOA:
                out.old_soa = old_rr
                continue  # the SOA is replaced by the caller, never left missing
            txn.delete(key, db=records)
            txn.put(key, _encode_value(old_rr, hlc, dot, flags=1), db=tombstones)
            out.removed.append(old_rr)
        fresh = cs.op is ChangeOp.CREATE
        bulk: dict[bytes, bytes] = {}  # a new zone: sorted bulk insert, no lookups
        last_owner: dns.name.Name | None = None
        owner_wire = b""
        for rr in cs.added:
            if rr.rdtype == SOA:
                if rr.owner != cs.zone:
                    raise StoreError(f"zone {cs.zone}: SOA record at {rr.owner}, not at the apex")
                out.new_soa = rr
                continue
            rdata_wire = _rdata_wire(rr)
            if rr.owner is not last_owner:  # records of one name usually share the Name
                last_owner = rr.owner
                owner_wire = rr.owner.to_wire()  # type: ignore[assignment]
            key = _record_key(zid, cs.zone, rr, rdata_wire)
            if fresh:
                if key not in bulk:
                    bulk[key] = _encode_value(rr, hlc, dot, 0, rdata_wire, owner_wire)
                    out.added.append(rr)
                    out.encoded.append(encode_rr_wires(owner_wire, rr.rdtype, rr.ttl, rdata_wire))
                continue
            old = txn.get(key, db=records)
            if old is not None:
                old_rr = _decode_value(rr.rdtype, old)
                if old_rr.ttl == rr.ttl and old_rr.owner.to_text() == rr.owner.to_text():
                    continue  # identical record already present
                out.removed.append(old_rr)
            txn.delete(key, db=tombstones)
            txn.put(key, _encode_value(rr, hlc, dot, 0, rdata_wire, owner_wire), db=records)
            out.added.append(rr)
            out.encoded.append(encode_rr_wires(owner_wire, rr.rdtype, rr.ttl, rdata_wire))
        if bulk:
            txn.cursor(db=records).putmulti(sorted(bulk.items()))
        return out

    def _log_commit(
        self,
        txn: Any,
        cs: Changeset,
        meta: ZoneMeta,
        dot: Dot | None,
        hlc: int,
        serial_from: int | None,
        old_soa: RR | None,
        new_soa: RR,
        applied: _Applied,
    ) -> None:
        """The journal entry (IXFR), the oplog entry (replication; none for a state merge,
        ``dot`` None) and the history line."""
        zid = meta.zone_id
        serial_to = meta.serial
        seq = _U32.pack(zid) + _U64.pack(meta.sequence)
        if old_soa is not None:
            journal_entry = (
                _U32.pack(serial_from if serial_from is not None else 0)
                + _U32.pack(serial_to)
                + encode_rrs([old_soa, *applied.removed])
                + encode_rrs([new_soa, *applied.added])
            )
            txn.put(seq, journal_entry, db=self._dbs["journal"])
            depth = self.zone_journal_depths.get(cs.zone, self.journal_depth)
            self._trim_journal(txn, zid, meta.sequence, depth)
        given = applied.new_soa is not None
        node = b"" if dot is None else dot.node.encode()
        oplog_key = (
            _U32.pack(zid) + bytes((len(node),)) + node + _U64.pack(getattr(dot, "counter", 0))
        )
        if dot is None:
            pass
        elif applied.merged:  # the change as made: every node merges it the same way
            txn.put(oplog_key, encode_changeset(cs), db=self._dbs["oplog"])
        else:  # a local change applied in sequence: what it really changed
            stored = Changeset(
                zone=cs.zone,
                removed=tuple(applied.removed),
                added=tuple(applied.added) + ((new_soa,) if given else ()),
                origin=cs.origin,
                op=cs.op,
                dot=dot,
                hlc=hlc,
                context=cs.context,
                incarnation=cs.incarnation,
            )
            encoded = applied.encoded + ([encode_rr(new_soa)] if given else [])
            txn.put(oplog_key, encode_changeset(stored, encoded), db=self._dbs["oplog"])
        history = {
            "sequence": meta.sequence,
            "origin": cs.origin,
            "time_ms": hlc >> 16,
            "dot": None if dot is None else [dot.node, dot.counter],
            "serial_from": serial_from,
            "serial_to": serial_to,
            "added": len(applied.added),
            "removed": len(applied.removed),
            "op": cs.op.value,
        }
        txn.put(seq, json.dumps(history).encode(), db=self._dbs["history"])

    # --- state transfer and tombstone collection -------------------------------------------

    def _merge_state_txn(
        self, txn: Any, cs: Changeset, now_ms: int, known: ZoneMeta | None
    ) -> tuple[CommitResult, list[tuple[int, int]]]:
        """Merge a peer's state of the zone (``ChangeOp.STATE``): a zone this node lacks is
        copied; otherwise every name where the two differ is merged slot by slot
        (``_merge_writes``) and resolved again.  The vector becomes the pointwise maximum, so
        the serial is derived as on the sender; the served difference is journalled."""
        st = cs.state
        assert st is not None
        zones_db, records = self._dbs["zones"], self._dbs["records"]
        raw = None if known is not None else txn.get(_zone_key(cs.zone), db=zones_db)
        meta = known if known is not None else None if raw is None else ZoneMeta.from_json(raw)
        tomb = self._tombstone_txn(txn, cs.zone)
        if tomb is not None and st.incarnation <= tomb.incarnation:
            # a state of a dropped life: never merged (the drop wins); the peer that sent it
            # gets the tombstone and drops its copy
            log.info(
                "state of zone %s from %s ignored: the zone was dropped by %s at %s",
                cs.zone,
                cs.origin,
                tomb.origin,
                tomb.when,
            )
            serial = tomb.serial if meta is None else meta.serial
            return _ignored(cs, serial, 0 if meta is None else meta.generation), []
        if meta is not None and st.incarnation < meta.incarnation:
            return _ignored(cs, meta.serial, meta.generation), []
        dropped = -1 if tomb is None else tomb.incarnation
        if st.incarnation > (dropped + 1 if meta is None else meta.incarnation):
            raise NotReady(
                f"state of zone {cs.zone} of incarnation {st.incarnation}: the drop of "
                f"incarnation {st.incarnation - 1} comes first"
            )
        publish: list[tuple[int, int]] = []
        out = _Applied(merged=True)
        max_hlc = 0
        if meta is None:
            if st.repair:
                raise NotReady(f"zone {cs.zone} is not here: nothing to repair")
            zone_id = _U32.unpack(txn.get(b"next_zone_id", db=self._dbs["meta"]))[0]
            txn.put(b"next_zone_id", _U32.pack(zone_id + 1), db=self._dbs["meta"])
            meta = ZoneMeta(
                cs.zone, zone_id, "primary", {}, st.serial_base, 0, 0, 0, incarnation=st.incarnation
            )
            publish += self._zone_set_changed(txn, cs.zone)
            zone_prefix = _U32.pack(zone_id)
            by_kind: list[list[tuple[bytes, bytes]]] = [[] for _ in STATE_KINDS]
            for kind, suffix, value in st.entries:
                by_kind[kind].append((zone_prefix + suffix, value))
                if kind < 2:
                    max_hlc = max(max_hlc, _VALUE_HEAD.unpack_from(value, 0)[2])
            for kind, items in enumerate(by_kind):
                if items:
                    txn.cursor(db=self._dbs[STATE_KINDS[kind]]).putmulti(sorted(items))
            serial_from = None
            old_soa = None
        else:
            serial_from = meta.serial
            max_hlc = self._merge_state_names(txn, cs, meta, st, out)
            old_soa = None
        soa_key = _U32.pack(meta.zone_id) + _SOA_SUFFIX
        current = txn.get(soa_key, db=records)
        if current is None:
            raise StoreError(f"zone {cs.zone}: the state from {cs.origin} has no SOA")
        if out.new_soa is not None:
            old_soa = _decode_value(SOA, current)
        vv_before = dict(meta.vv)
        for node, counter in st.vv.items():
            meta.vv[node] = max(meta.vv.get(node, 0), counter)
        if serial_from is not None and meta.vv == vv_before:
            # a repair (the vectors were equal): the serial stays, so no journal entry can
            # say what changed; an IXFR from here on falls back to AXFR
            if not out.added and not out.removed and old_soa is None:
                dot = _value_dot(current)[0]
                result = CommitResult(
                    cs.zone, dot, meta.hlc, serial_from, serial_from, meta.generation, False
                )
                return result, []
            for key, _value in list(
                _zone_items(txn, self._dbs["journal"], _U32.pack(meta.zone_id))
            ):
                txn.delete(key, db=self._dbs["journal"])
            serial_from, old_soa = None, None
        hlc = hlc_next(max(meta.hlc, max_hlc), now_ms)
        meta.hlc = hlc
        new_soa = _replace_soa_serial(out.new_soa or _decode_value(SOA, current), meta.serial)
        if out.soa_write is not None:
            soa_hlc, dot = out.soa_write
        else:
            dot, soa_hlc = _value_dot(current)
        txn.put(soa_key, _encode_value(new_soa, soa_hlc, dot), db=records)
        meta.sequence += 1
        meta.generation += 1
        if serial_from is not None and old_soa is None:
            old_soa = _decode_value(SOA, current)
        self._log_commit(txn, cs, meta, None, hlc, serial_from, old_soa, new_soa, out)
        txn.put(_zone_key(cs.zone), meta.to_json(), db=zones_db)
        publish.append((meta.zone_id, meta.generation))
        result = CommitResult(cs.zone, dot, hlc, serial_from, meta.serial, meta.generation, True)
        return result, publish

    def _merge_state_names(
        self, txn: Any, cs: Changeset, meta: ZoneMeta, st: StateTransfer, out: _Applied
    ) -> int:
        """Merge the peer's state into the zone as it stands (the SOA's fields too, as a
        slot: ``out.new_soa``); the highest HLC seen."""
        zid = meta.zone_id
        zone_prefix = _U32.pack(zid)
        theirs: dict[tuple[int, bytes], bytes] = {}
        by_owner: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        for kind, suffix, value in st.entries:
            key = zone_prefix + suffix
            theirs[(kind, key)] = value
            if kind < 4:
                by_owner.setdefault(zone_prefix + _suffix_owner(kind, suffix), []).append(
                    (kind, key, value)
                )
        max_hlc = 0
        # the names where the two differ: anything one has and the other has not, or not
        # alike (a served record carries its writer's dot: equal bytes, equal state)
        differ: dict[bytes, None] = {}
        ours: set[tuple[int, bytes]] = set()
        for kind, name in enumerate(STATE_KINDS[:4]):
            cursor = txn.cursor(db=self._dbs[name])
            if not cursor.set_range(zone_prefix):
                continue
            for key, value in cursor:
                if key[:4] != zone_prefix:
                    break
                key = bytes(key)
                owner_key = zone_prefix + _suffix_owner(kind, key[4:])
                if st.buckets is not None and _bucket(owner_key[4:]) not in st.buckets:
                    continue
                ours.add((kind, key))
                if theirs.get((kind, key)) != value:
                    differ[owner_key] = None
        for owner_key, items in by_owner.items():
            if any((kind, key) not in ours for kind, key, _value in items):
                differ[owner_key] = None
        for owner_prefix in differ:
            owner = _prefix_name(owner_prefix, cs.zone)
            plen = len(owner_prefix)
            slots: dict[bytes, list[merge.Write]] = {}
            mine: dict[bytes, list[merge.Write]] = {}
            for name in ("records", "tombstones", "slots"):
                cursor = txn.cursor(db=self._dbs[name])
                if cursor.set_range(owner_prefix):
                    for key in cursor.iternext(values=False):
                        if key[:plen] != owner_prefix:
                            break
                        key = bytes(key)
                        if key not in mine:
                            rdtype = _RTYPE.unpack_from(key, plen)[0]
                            mine[key] = self._slot_writes(txn, key, rdtype, zid)
            sent: dict[bytes, list[merge.Write]] = {}
            owned = by_owner.get(owner_prefix, [])
            for kind, key, value in sorted(owned, key=lambda item: (item[0] != 2, item[0])):
                # slots first: a served record or tombstone is their top write
                if kind == 3 or key in sent:
                    continue
                if kind == 2:
                    sent[key] = _decode_writes(value)
                else:
                    rdtype = _RTYPE.unpack_from(key, plen)[0]
                    dot, hlc = _value_dot(value)
                    rr = _decode_value(rdtype, value)
                    if rdtype == SOA:
                        rr = _soa_slot_rr(rr)
                    sent[key] = [merge.Write(dot, hlc, kind == 0, rr, (), "")]
            for key in {*mine, *sent}:
                merged = _merge_writes(
                    mine.get(key, []), sent.get(key, []), meta.vv, st.vv, st.repair
                )
                for w in merged:
                    max_hlc = max(max_hlc, w.hlc)
                slots[key] = merged
            # deletes-as-a-whole of the name and its RRsets, by the same rule
            clears_db = self._dbs["clears"]
            clear_keys: set[bytes] = set()
            cursor = txn.cursor(db=clears_db)
            if cursor.set_range(owner_prefix):
                for key in cursor.iternext(values=False):
                    if key[:plen] != owner_prefix or len(key) != plen + 2:
                        break
                    clear_keys.add(bytes(key))
            clear_keys.update(key for kind, key, _value in owned if kind == 3)
            for key in clear_keys:
                local = _decode_clears(txn.get(key, db=clears_db), owner)
                remote = _decode_clears(theirs.get((3, key)), owner)
                kept = _merge_writes(local, remote, meta.vv, st.vv, st.repair)
                if kept:
                    txn.put(key, _encode_clears(kept), db=clears_db)
                else:
                    txn.delete(key, db=clears_db)
            self._resolve_owner(txn, zid, cs.zone, owner_prefix, owner, slots, out)
        return max_hlc

    def collect_garbage(
        self, zone: dns.name.Name, horizon: Mapping[str, int], before_ms: int
    ) -> dict[str, int]:
        """Drop the zone's tombstones (deleted records, deletes-as-a-whole, slots holding only
        deletes) and oplog entries of changes that every peer has (their dots are within
        ``horizon``) and that are older than ``before_ms``.  Names with an open conflict keep
        theirs.  Served data does not change: this is housekeeping, not a change.  Returns
        what was dropped, by kind."""
        before_hlc = before_ms << 16

        def old(dot: Dot, hlc: int) -> bool:
            return dot.counter <= horizon.get(dot.node, 0) and hlc < before_hlc

        def body(txn: Any) -> dict[str, int]:
            counts = {"tombstones": 0, "slots": 0, "clears": 0, "oplog": 0}
            raw = txn.get(_zone_key(zone), db=self._dbs["zones"])
            if raw is None:
                return counts
            meta = ZoneMeta.from_json(raw)
            prefix = _U32.pack(meta.zone_id)
            held: set[bytes] = set()  # names with an open conflict
            for key, value in _zone_items(txn, self._dbs["conflicts"], prefix):
                if not json.loads(value).get("closed"):
                    held.add(_suffix_owner(4, key[4:]))
            slots_db, tombstones = self._dbs["slots"], self._dbs["tombstones"]
            for key, value in list(_zone_items(txn, slots_db, prefix)):
                writes = _decode_writes(value)
                if key[4:-18] in held or any(w.present or not old(w.dot, w.hlc) for w in writes):
                    continue
                txn.delete(key, db=slots_db)
                txn.delete(key, db=tombstones)
                counts["slots"] += 1
            for key, value in list(_zone_items(txn, tombstones, prefix)):
                if key[4:-18] in held or txn.get(key, db=slots_db) is not None:
                    continue
                if old(*_value_dot(value)):
                    txn.delete(key, db=tombstones)
                    counts["tombstones"] += 1
            clears_db = self._dbs["clears"]
            for key, value in list(_zone_items(txn, clears_db, prefix)):
                if key[4:-2] in held:
                    continue
                clears = _decode_clears(value, dns.name.root)
                kept = [c for c in clears if not old(c.dot, c.hlc)]
                if len(kept) == len(clears):
                    continue
                counts["clears"] += len(clears) - len(kept)
                if kept:
                    txn.put(key, _encode_clears(kept), db=clears_db)
                else:
                    txn.delete(key, db=clears_db)
            oplog = self._dbs["oplog"]
            cursor = txn.cursor(db=oplog)
            for node, counter in horizon.items():
                raw_node = node.encode()
                head = prefix + bytes((len(raw_node),)) + raw_node
                if not cursor.set_range(head):
                    continue
                while cursor.key()[: len(head)] == head:
                    if _U64.unpack_from(cursor.key(), len(head))[0] > counter:
                        break
                    value = cursor.value()
                    (hlen,) = _U32.unpack_from(value, 0)
                    if int(json.loads(bytes(value[4 : 4 + hlen]))["hlc"]) >= before_hlc:
                        break
                    counts["oplog"] += 1
                    if not cursor.delete():
                        break
            return counts

        return dict(self._write(body))

    def _zone_set_changed(self, txn: Any, zone: dns.name.Name) -> list[tuple[int, int]]:
        """A zone is created or dropped: names in it were (or will be) answered by the closest
        enclosing zone, or REFUSED (slot 0).  Bump both generations so no cached answer survives.
        """
        raw = txn.get(b"zones_generation", db=self._dbs["meta"])
        value = (0 if raw is None else int(_U64.unpack(raw)[0])) + 1
        txn.put(b"zones_generation", _U64.pack(value), db=self._dbs["meta"])
        bumped = [(0, value)]
        name = zone
        while len(name.labels) > 0 and name != dns.name.root:
            name = name.parent()
            key = _zone_key(name)
            parent_raw = txn.get(key, db=self._dbs["zones"])
            if parent_raw is not None:
                parent = ZoneMeta.from_json(parent_raw)
                parent.generation += 1
                txn.put(key, parent.to_json(), db=self._dbs["zones"])
                bumped.append((parent.zone_id, parent.generation))
                break
        return bumped

    def _trim_journal(self, txn: Any, zone_id: int, sequence: int, depth: int) -> None:
        """Keep at least ``depth`` entries; trimming in chunks of ``_TRIM_EVERY`` spares most
        commits the extra pages (the oldest leaf and its branch) a one-entry trim writes."""
        oldest_kept = sequence - depth
        if oldest_kept <= 0 or sequence % _TRIM_EVERY:
            return
        cursor = txn.cursor(db=self._dbs["journal"])
        prefix = _U32.pack(zone_id)
        if not cursor.set_range(prefix):
            return
        while cursor.key()[:4] == prefix and _U64.unpack_from(cursor.key(), 4)[0] <= oldest_kept:
            if not cursor.delete():
                break

    def _drop_zone_txn(self, txn: Any, meta: ZoneMeta) -> None:
        prefix = _U32.pack(meta.zone_id)
        for db_name in (
            "records",
            "tombstones",
            "journal",
            "oplog",
            "history",
            "slots",
            "clears",
            "conflicts",
        ):
            cursor = txn.cursor(db=self._dbs[db_name])
            if not cursor.set_range(prefix):
                continue
            while cursor.key()[:4] == prefix:
                if not cursor.delete():
                    break
