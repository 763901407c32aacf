"""Value types shared by every layer: records, changesets, dots, version vectors.

Pure (stdlib + dnspython).  A :class:`Changeset` is the one artery of the design: every write,
whatever its source, is a changeset handed to ``store.commit()``.
"""

from __future__ import annotations

import datetime
import enum
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

IN = dns.rdataclass.IN


@dataclass(frozen=True, slots=True)
class RR:
    """One resource record (class IN).  Equality and hashing ignore the TTL and owner case."""

    owner: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata

    @property
    def rdtype(self) -> int:
        return int(self.rdata.rdtype)

    def identity(self) -> tuple[dns.name.Name, int, bytes]:
        """What makes two records the same record (RFC 2181 5: owner, type, class, rdata)."""
        return (self.owner, self.rdtype, canonical_rdata(self.rdata))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RR) and self.identity() == other.identity()

    def __hash__(self) -> int:
        return hash(self.identity())

    def to_text(self) -> str:
        rdtype = dns.rdatatype.to_text(self.rdata.rdtype)
        return f"{self.owner} {self.ttl} IN {rdtype} {self.rdata}"


def canonical_rdata(rdata: dns.rdata.Rdata) -> bytes:
    """RDATA in canonical form (RFC 4034 6.2: embedded names lowercased where the type says so)."""
    return rdata.to_digestable(dns.name.root)


def rrs_from_rrset(rrset: dns.rrset.RRset) -> list[RR]:
    return [RR(rrset.name, rrset.ttl, rd) for rd in rrset]


class ChangeOp(enum.Enum):
    CHANGE = "change"  # records removed / added in an existing zone
    CREATE = "create"  # create the zone with the added records
    DROP = "drop"  # delete the zone and everything in it
    STATE = "state"  # merge a peer's whole state of the zone (``Changeset.state``)


@dataclass(frozen=True, slots=True)
class StateTransfer:
    """A peer's merge state of a zone, for a node that cannot be caught up change by change
    (new, away longer than the tombstone retention, or found diverged by digest).

    ``entries``: (kind, key without the zone id, stored value) as the sender's store holds
    them, kind one of ``STATE_KINDS``.  ``vv``: the sender's version vector, which the state is
    exactly; ``repair``: merge as a union (vectors were equal but the data was not), only the
    names in ``buckets`` (None: every name).
    """

    vv: dict[str, int]
    serial_base: int
    entries: tuple[tuple[int, bytes, bytes], ...]
    repair: bool = False
    buckets: frozenset[int] | None = None
    incarnation: int = 0  # the zone's incarnation the state is of (see ``ZoneTombstone``)


STATE_KINDS = ("records", "tombstones", "slots", "clears", "conflicts")


@dataclass(frozen=True, slots=True)
class Dot:
    """The identity of one write: (node id, per-node counter)."""

    node: str
    counter: int


@dataclass(frozen=True, slots=True)
class Changeset:
    """A set of record removals and additions to one zone, applied atomically.

    ``origin`` says who made it (provenance): ``import:FILE``, ``key:NAME``, ``addr:IP``,
    ``peer:NODE``, ``provider:TARGET``, ``operator:NAME``.  ``dot`` and ``hlc`` are set for changes
    coming from a peer; a local change gets them from ``commit()``.
    """

    zone: dns.name.Name
    removed: tuple[RR, ...] = ()
    added: tuple[RR, ...] = ()
    origin: str = "local"
    op: ChangeOp = ChangeOp.CHANGE
    dot: Dot | None = None
    hlc: int | None = None
    # Version vector of the origin node when it made the change (its causal context).
    context: tuple[tuple[str, int], ...] = field(default=())
    # Serve the added SOA's serial exactly, even when it is not higher (a transfer from a
    # primary: a secondary serves its primary's serial, so that both stay comparable).
    exact_serial: bool = False
    # RRsets (owner, type) and names (owner, ANY) the change deleted as a whole (RFC 2136 delete
    # RRset / delete name): a record a concurrent change added there conflicts with it.
    cleared: tuple[tuple[dns.name.Name, int], ...] = ()
    # op STATE: the state to merge (it has no dot of its own: it carries the sender's writes)
    state: StateTransfer | None = None
    # which life of the zone the change belongs to: 0 for a zone never dropped, one more for
    # each re-creation after a drop (``ZoneTombstone``); dots count within an incarnation
    incarnation: int = 0

    def is_empty(self) -> bool:
        return not self.removed and not self.added and self.op is ChangeOp.CHANGE


@dataclass(frozen=True, slots=True)
class ZoneTombstone:
    """What is left of a dropped zone (``ChangeOp.DROP``): kept by every node, so that no
    change or state of the dropped zone brings it back.

    ``incarnation``: the life of the zone that was dropped (a re-created zone is incarnation
    ``incarnation + 1``: its dots start afresh and never mix with the old ones); ``vv``: the
    version vector the drop covers, its own dot included (a change of that incarnation it
    covers was seen by the drop; one it does not was concurrent with it, and is discarded
    too: the deletion wins); ``dot``, ``hlc``, ``origin``: the drop itself (who and when);
    ``serial``: the last serial this node served (a re-creation serves a higher one).

    Tombstones are a few hundred bytes per dropped zone and are kept indefinitely (a node that
    comes back after any absence must still learn of the drop); a re-creation that is dropped
    again replaces its zone's tombstone.
    """

    zone: dns.name.Name
    incarnation: int
    vv: dict[str, int]
    dot: Dot
    hlc: int
    origin: str
    serial: int = 0

    def covers(self, dot: Dot) -> bool:
        return self.vv.get(dot.node, 0) >= dot.counter

    @property
    def time_ms(self) -> int:
        return self.hlc >> 16

    @property
    def when(self) -> str:
        """When the zone was dropped, for people (UTC)."""
        moment = datetime.datetime.fromtimestamp(self.time_ms / 1000, tz=datetime.UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")

    def changeset(self) -> Changeset:
        """The drop as a change for peers (``ChangeOp.DROP``; ``context``: what it covers)."""
        return Changeset(
            self.zone,
            origin=self.origin,
            op=ChangeOp.DROP,
            dot=self.dot,
            hlc=self.hlc,
            context=tuple(sorted(self.vv.items())),
            incarnation=self.incarnation,
        )

    @classmethod
    def of_drop(cls, cs: Changeset, serial: int = 0) -> ZoneTombstone:
        """The tombstone a ``ChangeOp.DROP`` change (from a peer) stands for."""
        assert cs.dot is not None and cs.hlc is not None
        vv = {n: c for n, c in cs.context if c}
        vv[cs.dot.node] = max(vv.get(cs.dot.node, 0), cs.dot.counter)
        return cls(cs.zone, cs.incarnation, vv, cs.dot, cs.hlc, cs.origin, serial)


@dataclass(frozen=True, slots=True)
class CommitResult:
    zone: dns.name.Name
    dot: Dot
    hlc: int
    serial_from: int | None
    serial_to: int
    generation: int
    applied: bool  # False when the changeset was already applied (a repeated delivery)


# --- version vectors and serials -------------------------------------------------------------

SERIAL_MOD = 1 << 32


def derived_serial(base: int, vv: Mapping[str, int]) -> int:
    """SOA serial = base + sum of the version vector, in RFC 1982 arithmetic."""
    return (base + sum(vv.values())) % SERIAL_MOD


def serial_gt(s1: int, s2: int) -> bool:
    """RFC 1982 3.2: s1 > s2 in sequence-space arithmetic (undefined pairs compare False)."""
    half = SERIAL_MOD >> 1
    return (s1 < s2 and s2 - s1 > half) or (s1 > s2 and s1 - s2 < half)


def hlc_next(previous: int, now_ms: int) -> int:
    """Hybrid logical clock tick: 48 bits of milliseconds, 16 bits of logical counter."""
    physical = now_ms << 16
    if physical > previous:
        return physical
    return previous + 1


# --- wire encoding of records and changesets (journal, oplog) --------------------------------

_RR_HEAD = struct.Struct("!HIH")


_NAME_WIRES: dict[tuple[bytes, ...], bytes] = {}
_SOA_TAIL = struct.Struct("!IIIII")
_SOA = int(dns.rdatatype.SOA)


def name_wire(name: dns.name.Name) -> bytes:
    """Uncompressed wire form, cached by the exact labels (so case is kept)."""
    wire = _NAME_WIRES.get(name.labels)
    if wire is None:
        wire = name.to_wire()
        assert isinstance(wire, bytes)
        if len(_NAME_WIRES) >= 10_000:
            _NAME_WIRES.clear()
        _NAME_WIRES[name.labels] = wire
    return wire


def rdata_wire(rdata: dns.rdata.Rdata) -> bytes:
    """Uncompressed RDATA wire form; the SOA (rewritten by every commit) without dnspython."""
    if rdata.rdtype == _SOA:
        soa: Any = rdata
        return (
            name_wire(soa.mname)
            + name_wire(soa.rname)
            + _SOA_TAIL.pack(soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum)
        )
    wire = rdata.to_wire()
    assert isinstance(wire, bytes)
    return wire


def encode_rr(rr: RR) -> bytes:
    owner = rr.owner.to_wire()
    assert isinstance(owner, bytes)
    return encode_rr_wires(owner, rr.rdtype, rr.ttl, rdata_wire(rr.rdata))


def encode_rr_wires(owner_wire: bytes, rdtype: int, ttl: int, rdata_wire: bytes) -> bytes:
    """:func:`encode_rr` from wire forms already computed (bulk writes reuse them)."""
    return owner_wire + _RR_HEAD.pack(rdtype, ttl, len(rdata_wire)) + rdata_wire


def decode_rr(data: bytes | memoryview, offset: int = 0) -> tuple[RR, int]:
    owner, used = dns.name.from_wire(bytes(data), offset)
    offset += used
    rdtype, ttl, rdlen = _RR_HEAD.unpack_from(data, offset)
    offset += _RR_HEAD.size
    rdata = dns.rdata.from_wire(IN, dns.rdatatype.RdataType(rdtype), bytes(data), offset, rdlen)
    return RR(owner, ttl, rdata), offset + rdlen


def encode_rrs(rrs: Iterable[RR]) -> bytes:
    items = [encode_rr(rr) for rr in rrs]
    return struct.pack("!I", len(items)) + b"".join(items)


def decode_rrs(data: bytes | memoryview, offset: int = 0) -> tuple[list[RR], int]:
    (count,) = struct.unpack_from("!I", data, offset)
    offset += 4
    out = []
    for _ in range(count):
        rr, offset = decode_rr(data, offset)
        out.append(rr)
    return out, offset


def encode_changeset(cs: Changeset, added_encoded: list[bytes] | None = None) -> bytes:
    """Changeset to bytes; ``added_encoded`` may give ``cs.added`` already encoded (in order)."""
    fields: dict[str, Any] = {
        "zone": cs.zone.to_text(),
        "origin": cs.origin,
        "op": cs.op.value,
        "dot": [cs.dot.node, cs.dot.counter] if cs.dot else None,
        "hlc": cs.hlc,
        "context": [list(item) for item in cs.context],
        "exact_serial": cs.exact_serial,
        "cleared": [[name.to_text(), rdtype] for name, rdtype in cs.cleared],
    }
    if cs.incarnation:  # absent for the first life of a zone (as before incarnations)
        fields["incarnation"] = cs.incarnation
    head = json.dumps(fields, separators=(",", ":")).encode()
    if added_encoded is None:
        added = encode_rrs(cs.added)
    else:
        added = struct.pack("!I", len(added_encoded)) + b"".join(added_encoded)
    return struct.pack("!I", len(head)) + head + encode_rrs(cs.removed) + added


def decode_changeset(data: bytes | memoryview) -> Changeset:
    (hlen,) = struct.unpack_from("!I", data, 0)
    head = json.loads(bytes(data[4 : 4 + hlen]))
    removed, offset = decode_rrs(data, 4 + hlen)
    added, _ = decode_rrs(data, offset)
    dot = Dot(head["dot"][0], head["dot"][1]) if head["dot"] else None
    return Changeset(
        zone=dns.name.from_text(head["zone"]),
        removed=tuple(removed),
        added=tuple(added),
        origin=head["origin"],
        op=ChangeOp(head["op"]),
        dot=dot,
        hlc=head["hlc"],
        context=tuple((n, c) for n, c in head["context"]),
        exact_serial=head.get("exact_serial", False),
        cleared=tuple((dns.name.from_text(n), int(t)) for n, t in head.get("cleared", [])),
        incarnation=int(head.get("incarnation", 0)),
    )
