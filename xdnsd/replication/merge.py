"""Merging changes from every node of a zone (pure: no I/O, no store).

The model (../shared/ARCHITECTURE.md, "Multi-master replication"):

* A zone is a set of **slots**, one per record identity (owner, type, canonical RDATA: RFC 2181
  5; the SOA has one slot whatever its fields, so concurrent edits of them are siblings, a
  ``replaced`` conflict when they differ; its serial is derived by the store).  A slot holds the
  writes to it that no other write to it has seen (its *siblings*): one when the writes were
  sequential, several when they were concurrent.  A write that saw a sibling (its change's
  causal context holds the sibling's dot) replaces it.  So applying the same changes in any
  causal order gives the same siblings: the slot is a multi-value register.
* Changes are applied in causal order: a change waits (``pending``) until the changes its
  context names are in; a change seen before is ignored.  Delivery may repeat and reorder.
* Concurrent writes that agree (both add the record with one TTL, or both delete it) commute:
  siblings that agree are no conflict.  Everything else that does not commute is a
  **conflict**, computed from the state alone, so every node that has the same changes has the
  same conflicts with the same sides and the same **provisional winner** (the write with the
  higher HLC, then node id, then counter), which is what is served until an operator decides:

  ``record``          siblings of one slot disagree (added here, deleted there; TTLs differ);
  ``delete-vs-add``   an RRset or name deleted as a whole (``Changeset.cleared``) while a
                      concurrent change added a record there;
  ``replaced``        several records of a single-valued type (CNAME, DNAME, SOA) at one name;
  ``cname-and-other`` a CNAME beside other data;
  ``ttl``             the records of one RRset with different TTLs.

  A change that has seen every side of a conflict (its context holds their dots) ends it: an
  operator's resolution is such a change, and so is any later edit of the same data.
* A conflict is keyed by what it is about and the dots of its sides, so its id is the same on
  every node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdatatype

from xdnsd.model import RR, Changeset, Dot, canonical_rdata

ANY = int(dns.rdatatype.ANY)
SOA = int(dns.rdatatype.SOA)
CNAME = int(dns.rdatatype.CNAME)
SINGLE_VALUED = frozenset({CNAME, int(dns.rdatatype.DNAME), SOA})
# types that may stand beside a CNAME (RFC 2181 10.1, RFC 4035 2.5)
CNAME_NEIGHBOURS = frozenset(
    {CNAME, int(dns.rdatatype.RRSIG), int(dns.rdatatype.NSEC), int(dns.rdatatype.NSEC3)}
)

Key = tuple[dns.name.Name, int, bytes]  # a slot: owner (compared without case), type, RDATA
Area = tuple[dns.name.Name, int]  # what a delete-as-a-whole covers: (owner, type or ANY)
Context = tuple[tuple[str, int], ...]  # a version vector, sorted by node id


def slot_key(rr: RR) -> Key:
    """A record's slot.  The SOA has one, whatever its fields (an edit replaces them; the
    serial is derived by the store)."""
    if rr.rdtype == SOA:
        return (rr.owner, SOA, b"")
    return rr.identity()


def _saw(context: Context | Mapping[str, int], dot: Dot) -> bool:
    found = (
        context.get(dot.node, 0) if isinstance(context, Mapping) else dict(context).get(dot.node, 0)
    )
    return found >= dot.counter


@dataclass(frozen=True, slots=True)
class Write:
    """One write to a slot: the record as written (present or deleted) and who wrote it when."""

    dot: Dot
    hlc: int
    present: bool
    rr: RR
    context: Context  # what its change had seen (the writer's version vector before it)
    origin: str = ""

    @property
    def rank(self) -> tuple[int, str, int]:
        """Provisional winners are the highest rank: later HLC, then node id, then counter."""
        return (self.hlc, self.dot.node, self.dot.counter)

    @property
    def value(self) -> tuple[bool, int]:
        """What concurrent writes of one slot must agree on to commute."""
        return (self.present, self.rr.ttl if self.present else 0)

    def saw(self, other: Dot) -> bool:
        return _saw(self.context, other)


@dataclass(frozen=True, slots=True)
class Clear:
    """A delete-as-a-whole of an RRset (owner, type) or a name (owner, ANY)."""

    dot: Dot
    hlc: int
    area: Area
    context: Context
    origin: str = ""

    @property
    def rank(self) -> tuple[int, str, int]:
        return (self.hlc, self.dot.node, self.dot.counter)

    def covers(self, rr: RR) -> bool:
        owner, rdtype = self.area
        return rr.owner == owner and (rdtype == ANY or rdtype == rr.rdtype)


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a conflict, as operators see it."""

    dot: Dot
    hlc: int
    origin: str
    what: str  # the record (or the deleted area) as text


@dataclass(frozen=True, slots=True)
class Conflict:
    id: str
    kind: str
    owner: dns.name.Name
    rdtype: int
    subject: str  # what it is about: the record (kind "record"), else the name and type
    sides: tuple[Side, ...]  # highest rank first: the first is the provisional winner

    @property
    def winner(self) -> Side:
        return self.sides[0]


def _conflict(
    kind: str, owner: dns.name.Name, rdtype: int, sides: Iterable[Side], rdata: str = ""
) -> Conflict:
    # by rank; the sides one change made (the same dot) by what they are, so the order is total
    ordered = tuple(
        sorted(sides, key=lambda s: (s.hlc, s.dot.node, s.dot.counter, s.what), reverse=True)
    )
    type_text = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
    subject = f"{owner} {type_text} {rdata}".rstrip()
    about = [kind, owner.canonicalize().to_text(), str(rdtype), rdata]
    sides_text = sorted(f"{s.dot.node}:{s.dot.counter}:{s.what}" for s in ordered)
    digest = hashlib.sha256("|".join([*about, *sides_text]).encode()).hexdigest()[:16]
    return Conflict(digest, kind, owner, rdtype, subject, ordered)


def _side(w: Write) -> Side:
    what = w.rr.to_text() if w.present else f"delete {w.rr.to_text()}"
    return Side(w.dot, w.hlc, w.origin, what)


def _clear_side(c: Clear) -> Side:
    owner, rdtype = c.area
    name = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
    what = f"delete {owner} {name}"
    return Side(c.dot, c.hlc, c.origin, what)


def _by_dot(item: tuple[Dot, Changeset]) -> tuple[str, int]:
    return (item[0].node, item[0].counter)


@dataclass
class ZoneState:
    """One node's merged view of a zone: slots, deletes-as-a-whole, version vector."""

    zone: dns.name.Name
    vv: dict[str, int] = field(default_factory=dict)
    slots: dict[Key, tuple[Write, ...]] = field(default_factory=dict)
    clears: dict[Area, tuple[Clear, ...]] = field(default_factory=dict)
    pending: dict[Dot, Changeset] = field(default_factory=dict)

    # --- applying changes ---------------------------------------------------------------

    def seen(self, dot: Dot) -> bool:
        return _saw(self.vv, dot)

    def context(self) -> Context:
        return tuple(sorted((node, c) for node, c in self.vv.items() if c))

    def local(
        self,
        node: str,
        hlc: int,
        removed: Iterable[RR] = (),
        added: Iterable[RR] = (),
        cleared: Iterable[Area] = (),
        origin: str = "",
    ) -> Changeset:
        """A change made on this node: its dot, context and HLC, applied at once."""
        cs = Changeset(
            zone=self.zone,
            removed=tuple(removed),
            added=tuple(added),
            origin=origin or f"node:{node}",
            dot=Dot(node, self.vv.get(node, 0) + 1),
            hlc=hlc,
            context=self.context(),
            cleared=tuple(cleared),
        )
        applied = self.apply(cs)
        assert applied == [cs]
        return cs

    def apply(self, cs: Changeset) -> list[Changeset]:
        """Take a change from any node; returns the changes applied now, in order (``cs`` and
        any it released from ``pending``), or [] when it was seen before or must wait."""
        if cs.dot is None or cs.hlc is None:
            raise ValueError("a replicated change needs its dot and HLC")
        if self.seen(cs.dot) or cs.dot in self.pending:
            return []
        self.pending[cs.dot] = cs
        applied = []
        progress = True
        while progress:
            progress = False
            for dot, waiting in sorted(
                self.pending.items(), key=lambda i: (i[0].node, i[0].counter)
            ):
                if self._ready(waiting):
                    del self.pending[dot]
                    self._integrate(waiting)
                    applied.append(waiting)
                    progress = True
        return applied

    def _ready(self, cs: Changeset) -> bool:
        assert cs.dot is not None
        if self.vv.get(cs.dot.node, 0) != cs.dot.counter - 1:
            return False
        return all(
            self.vv.get(node, 0) >= counter for node, counter in cs.context if node != cs.dot.node
        )

    def _integrate(self, cs: Changeset) -> None:
        assert cs.dot is not None and cs.hlc is not None
        context = dict(cs.context)

        def write(rr: RR, present: bool) -> None:
            if rr.rdtype == SOA:
                if not present:
                    return  # an SOA is replaced, never deleted
                rr = RR(rr.owner, rr.ttl, rr.rdata.replace(serial=0))
            key = slot_key(rr)
            kept = tuple(
                w
                for w in self.slots.get(key, ())
                if w.dot != cs.dot and not _saw(context, w.dot)  # replaced: seen, or ours
            )
            new = Write(cs.dot, cs.hlc, present, rr, cs.context, cs.origin)  # type: ignore[arg-type]
            self.slots[key] = tuple(sorted((*kept, new), key=lambda w: w.rank, reverse=True))

        for rr in cs.removed:
            write(rr, False)
        for rr in cs.added:
            write(rr, True)
        for area in cs.cleared:
            kept_clears = tuple(c for c in self.clears.get(area, ()) if not _saw(context, c.dot))
            clear = Clear(cs.dot, cs.hlc, area, cs.context, cs.origin)
            self.clears[area] = tuple(
                sorted((*kept_clears, clear), key=lambda c: c.rank, reverse=True)
            )
        self.vv[cs.dot.node] = cs.dot.counter

    # --- what is served, and what conflicts -------------------------------------------

    def resolve(self) -> tuple[list[RR], list[Conflict]]:
        """The records served (provisional winners applied) and the open conflicts, both
        sorted; a pure function of the slots and deletes-as-a-whole, name by name."""
        slots: dict[dns.name.Name, list[tuple[Write, ...]]] = {}
        for siblings in self.slots.values():
            slots.setdefault(siblings[0].rr.owner, []).append(siblings)
        clears: dict[dns.name.Name, list[Clear]] = {}
        for (owner, _rdtype), markers in self.clears.items():
            clears.setdefault(owner, []).extend(markers)
        served: list[RR] = []
        conflicts: list[Conflict] = []
        for owner, at_owner in slots.items():
            records, found = resolve_name(at_owner, clears.get(owner, ()))
            served += records
            conflicts += found
        served.sort(key=lambda rr: (rr.owner, rr.rdtype, canonical_rdata(rr.rdata)))
        conflicts.sort(key=lambda c: c.id)
        return served, conflicts


def resolve_name(
    slots: Iterable[tuple[Write, ...]], clears: Iterable[Clear]
) -> tuple[list[RR], list[Conflict]]:
    """What one name serves and the conflicts at it, from its slots (each one's siblings,
    highest rank first) and the deletes-as-a-whole of the name or of its RRsets.  Every rule is
    local to a name, so a store can resolve just the names a change touched."""
    conflicts: list[Conflict] = []
    present: dict[Key, Write] = {}
    sibling_dots: dict[Key, set[Dot]] = {}
    for siblings in slots:
        top = siblings[0]
        sibling_dots[slot_key(top.rr)] = {w.dot for w in siblings}
        if top.rr.rdtype == SOA:
            # one slot whatever the fields: concurrent edits that differ replaced each other
            if len({(w.rr.ttl, w.rr.rdata) for w in siblings}) > 1:
                sides = map(_side, siblings)
                conflicts.append(_conflict("replaced", top.rr.owner, SOA, sides))
        elif len({w.value for w in siblings}) > 1:
            rdata = top.rr.rdata.to_text()
            sides = map(_side, siblings)
            conflicts.append(_conflict("record", top.rr.owner, top.rr.rdtype, sides, rdata))
        if top.present:
            present[slot_key(top.rr)] = top
    _clear_conflicts(present, clears, conflicts, sibling_dots)
    rrsets: dict[int, list[Write]] = {}
    for w in present.values():
        rrsets.setdefault(w.rr.rdtype, []).append(w)
    served: list[RR] = []
    if rrsets:
        owner = max(present.values(), key=lambda w: w.rank).rr.owner  # its case: the latest
        _single_valued(owner, rrsets, conflicts)
        _cname_and_other(owner, rrsets, conflicts)
        for rdtype, writes in rrsets.items():
            served.extend(_same_ttl(owner, rdtype, writes, conflicts))
    return served, conflicts


def _clear_conflicts(
    present: dict[Key, Write],
    clears: Iterable[Clear],
    conflicts: list[Conflict],
    sibling_dots: Mapping[Key, set[Dot]],
) -> None:
    """Records added concurrently with a delete of their RRset or name: the later wins.

    Every delete is held against the same records (those present before any is applied), so
    the outcome does not depend on the order the deletes are looked at.  The name gets one
    conflict holding every such delete and add (two nodes that both replaced an RRset are
    one conflict, not one per direction); a pair whose changes also wrote the same record
    differently is that record's conflict already, and is not repeated here."""
    hidden: set[Key] = set()
    clear_sides: dict[Dot, Clear] = {}
    areas: set[Area] = set()
    write_sides: dict[tuple[Dot, Key], Write] = {}
    for clear in clears:
        concurrent = [
            (key, w)
            for key, w in present.items()
            if clear.covers(w.rr)
            and w.dot != clear.dot  # the change that deleted the RRset put it back after
            and not _saw(clear.context, w.dot)
            and not w.saw(clear.dot)
        ]
        hidden.update(key for key, w in concurrent if clear.rank > w.rank)
        reported = [(key, w) for key, w in concurrent if clear.dot not in sibling_dots[key]]
        if reported:
            clear_sides[clear.dot] = clear
            areas.add(clear.area)
            write_sides.update(((w.dot, key), w) for key, w in reported)
    if clear_sides:
        owner = next(iter(areas))[0]
        types = {rdtype for _owner, rdtype in areas}
        rdtype = types.pop() if len(types) == 1 else ANY
        sides = [_clear_side(c) for c in clear_sides.values()]
        sides += [_side(w) for w in write_sides.values()]
        conflicts.append(_conflict("delete-vs-add", owner, rdtype, sides))
    for key in hidden:
        del present[key]


def _single_valued(
    owner: dns.name.Name, rrsets: dict[int, list[Write]], conflicts: list[Conflict]
) -> None:
    for rdtype in sorted(SINGLE_VALUED & rrsets.keys()):
        writes = rrsets[rdtype]
        if len(writes) > 1:
            writes.sort(key=lambda w: w.rank, reverse=True)
            conflicts.append(_conflict("replaced", owner, rdtype, map(_side, writes)))
            del writes[1:]


def _cname_and_other(
    owner: dns.name.Name, rrsets: dict[int, list[Write]], conflicts: list[Conflict]
) -> None:
    if CNAME not in rrsets:
        return
    others = [t for t in rrsets if t not in CNAME_NEIGHBOURS]
    if not others:
        return
    cname = rrsets[CNAME][0]
    other_writes = [w for t in others for w in rrsets[t]]
    sides = [_side(cname)] + [_side(w) for w in other_writes]
    conflicts.append(_conflict("cname-and-other", owner, CNAME, sides))
    if cname.rank > max(w.rank for w in other_writes):
        for t in others:
            del rrsets[t]
    else:
        del rrsets[CNAME]


def _same_ttl(
    owner: dns.name.Name, rdtype: int, writes: list[Write], conflicts: list[Conflict]
) -> list[RR]:
    ttls = {w.rr.ttl for w in writes}
    if len(ttls) == 1:
        return [w.rr for w in writes]
    top = max(writes, key=lambda w: w.rank)
    conflicts.append(_conflict("ttl", owner, rdtype, map(_side, writes)))
    return [RR(w.rr.owner, top.rr.ttl, w.rr.rdata) for w in writes]


# --- operators' resolutions ---------------------------------------------------------------


def conflict_from_doc(doc: Mapping[str, object]) -> Conflict:
    """A conflict as the store keeps it (JSON) back as a value."""
    sides_raw = doc["sides"]
    assert isinstance(sides_raw, list)
    sides = tuple(
        Side(
            Dot(str(s["node"]), int(s["counter"])), int(s["hlc"]), str(s["origin"]), str(s["what"])
        )
        for s in sides_raw
    )
    return Conflict(
        str(doc["id"]),
        str(doc["kind"]),
        dns.name.from_text(str(doc["owner"])),
        int(str(doc["rdtype"])),
        str(doc["subject"]),
        sides,
    )


def _side_record(side: Side) -> tuple[str, RR | None]:
    """("add", record), ("delete", record) or ("clear", None) from a side's text."""
    text = side.what
    if text.startswith("delete "):
        words = text.split()
        if len(words) == 3:  # "delete OWNER TYPE": a delete-as-a-whole
            return "clear", None
        return "delete", _parse_rr(text[len("delete ") :])
    return "add", _parse_rr(text)


def _clear_area(text: str) -> Area:
    """The area of a delete-as-a-whole side ("delete OWNER TYPE")."""
    _delete, owner, rdtype = text.split()
    return dns.name.from_text(owner), int(dns.rdatatype.from_text(rdtype))


def _parse_rr(text: str) -> RR:
    owner, ttl, _class, rdtype, rdata = text.split(None, 4)
    return RR(dns.name.from_text(owner), int(ttl), dns.rdata.from_text("IN", rdtype, rdata))


def pick_side(conflict: Conflict, keep: str, local_node: str) -> Side:
    """The side ``keep`` names: ``local`` (this node's), ``remote`` (another node's) or a node
    id; the highest ranked when several match.  ValueError when none does."""
    for side in conflict.sides:  # highest rank first
        if (
            (keep == "local" and side.dot.node == local_node)
            or (keep == "remote" and side.dot.node != local_node)
            or keep == side.dot.node
        ):
            return side
    nodes = ", ".join(sorted({s.dot.node for s in conflict.sides}))
    raise ValueError(f"conflict {conflict.id} has no side from {keep!r} (sides from: {nodes})")


def plan_resolution(
    conflict: Conflict, keep: Side | None = None, value: str | None = None
) -> tuple[list[RR], list[RR]]:
    """(removed, added) of the change that ends ``conflict`` by keeping side ``keep``, or by
    putting ``value`` (RDATA text) in place of every side.  Made on a node that has both sides,
    the change has seen them all, so it dominates them everywhere it replicates."""
    items = [(side, *_side_record(side)) for side in conflict.sides]
    records = [rr for _s, what, rr in items if rr is not None and what == "add"]
    if value is not None:
        if conflict.kind not in ("record", "replaced", "ttl"):
            raise ValueError(f"a {conflict.kind} conflict is resolved with --keep, not --value")
        ttl = next((rr.ttl for _s, _w, rr in items if rr is not None), 300)
        rdata = dns.rdata.from_text("IN", dns.rdatatype.RdataType.make(conflict.rdtype), value)
        return records, [RR(conflict.owner, ttl, rdata)]
    if keep is None:
        raise ValueError("say which side to keep, or give a value")
    kept = next(i for i in items if i[0] == keep)
    _side_kept, what, rr = kept
    others = [r for s, w, r in items if s != keep and r is not None and w == "add"]
    if conflict.kind == "record":
        assert rr is not None
        return ([rr], []) if what == "delete" else ([], [rr])
    if conflict.kind == "delete-vs-add":
        # as the kept side's change meant it: its deletes-as-a-whole stand against the
        # others' adds (its own adds stay); a change that only added overrules the deletes
        areas = [_clear_area(s.what) for s, w, _r in items if s.dot == keep.dot and w == "clear"]
        removed = [
            r
            for s, w, r in items
            if r is not None
            and w == "add"
            and s.dot != keep.dot
            and any(r.owner == o and t in (ANY, r.rdtype) for o, t in areas)
        ]
        return removed, [r for r in records if r not in removed]
    if conflict.kind == "replaced":
        assert rr is not None
        return others, [rr]
    if conflict.kind == "cname-and-other":
        assert rr is not None
        if rr.rdtype == CNAME:
            return others, [rr]
        cnames = [r for r in records if r.rdtype == CNAME]
        return cnames, [r for r in records if r.rdtype != CNAME]
    if conflict.kind == "ttl":
        assert rr is not None
        return records, [RR(r.owner, rr.ttl, r.rdata) for r in records]
    raise ValueError(f"unknown conflict kind {conflict.kind!r}")
