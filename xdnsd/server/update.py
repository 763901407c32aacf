"""RFC 2136 dynamic update, the pure planning step: message + zone snapshot -> rcode + Changeset.

Core layer (stdlib + dnspython; no I/O, no clock).  The caller verifies the TSIG, finds the zone
and hands the resulting :class:`Changeset` to ``store.commit()``.  This module decides, in BIND
9.18's order:

* zone section (3.1): exactly one RR of type SOA else FORMERR; name and class must be the served
  zone's origin and IN else NOTAUTH;
* update prescan (3.4.1) and the update policy, record by record (NOTZONE, FORMERR, REFUSED);
* prerequisites (3.2), in message order, value-dependent RRsets compared after the loop as in the
  RFC's pseudocode (3.2.5);
* update section (3.4.2), applied in order to an in-memory copy of the touched names; the
  changeset is the difference between the state before and after.

The server reads messages with ``parse_update`` (TTLs as sent).  Messages built with dnspython
are accepted too: class ANY / NONE records come as RRsets of class IN with ``deleting`` set (or,
built in memory, with the meta class in ``rdclass``); dnspython drops the TTL of a parsed record
with empty RDATA, so with its parser the "TTL must be 0" checks only see records with RDATA.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from xdnsd.model import RR, Changeset, canonical_rdata, serial_gt
from xdnsd.names import wire_name_end

if TYPE_CHECKING:
    from xdnsd.server.answer import ZoneView

IN = int(dns.rdataclass.IN)
ANY_CLASS = int(dns.rdataclass.ANY)
NONE_CLASS = int(dns.rdataclass.NONE)
ANY_TYPE = int(dns.rdatatype.ANY)
SOA = int(dns.rdatatype.SOA)
NS = int(dns.rdatatype.NS)
CNAME = int(dns.rdatatype.CNAME)
WKS = int(dns.rdatatype.WKS)
RRSIG = int(dns.rdatatype.RRSIG)
OPT = int(dns.rdatatype.OPT)
_NOT_UPDATABLE = frozenset((int(dns.rdatatype.NSEC), int(dns.rdatatype.NSEC3)))

# Types that may sit beside a CNAME (RFC 2181 10.1, RFC 4035 2.5): DNSSEC records of the name.
CNAME_COMPATIBLE = frozenset(
    int(t)
    for t in (dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.KEY)
)


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    rcode: int
    changeset: Changeset | None  # set only when rcode is NOERROR and something changes


_RR_HEAD = struct.Struct("!HHIH")

Permit = Callable[[dns.name.Name, int], bool]


class _ZoneReadError(Exception):
    """The zone snapshot failed to read (a system failure, RFC 2136 3.4.2.1: SERVFAIL)."""


# --- one record of a prerequisite / update section ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rec:
    name: dns.name.Name  # absolute
    rdclass: int  # the effective class: IN, ANY or NONE (or something else: FORMERR)
    rdtype: int
    ttl: int
    rdata: dns.rdata.Rdata | None  # None when the RR has empty RDATA


def _absolute(rd: dns.rdata.Rdata, base: dns.name.Name) -> dns.rdata.Rdata:
    """The rdata with any relative embedded names made absolute (in-memory messages)."""
    wire = rd.to_wire(origin=base)
    assert isinstance(wire, bytes)
    return dns.rdata.from_wire(rd.rdclass, rd.rdtype, wire, 0, len(wire))


def _records(section: list[dns.rrset.RRset], base: dns.name.Name, relative: bool) -> Iterator[_Rec]:
    """The section's RRs one by one, in message order, with names made absolute."""
    for rrset in section:
        rdclass = int(rrset.deleting) if rrset.deleting is not None else int(rrset.rdclass)
        name = rrset.name.derelativize(base)
        if len(rrset) == 0:
            yield _Rec(name, rdclass, int(rrset.rdtype), int(rrset.ttl), None)
        for rd in rrset:
            rd = _absolute(rd, base) if relative else rd
            yield _Rec(name, rdclass, int(rrset.rdtype), int(rrset.ttl), rd)


@dataclass(frozen=True, slots=True)
class ParsedUpdate:
    """An UPDATE read straight from the wire (``parse_update``): the sections as records, in
    message order, TTLs as sent."""

    zone: list[tuple[dns.name.Name, int, int]]  # (name, type, class) of the zone section
    prerequisites: list[_Rec]
    updates: list[_Rec]
    edns: bool  # the message has an OPT record


@dataclass(frozen=True, slots=True)
class UpdateHeader:
    """What a worker needs before it hands an UPDATE to the writer: the zone section and
    whether the message has an OPT record (the answer then carries one)."""

    zone_count: int
    zone: dns.name.Name | None  # the first zone section entry
    zone_type: int
    zone_class: int
    edns: bool


def read_update_header(wire: bytes) -> UpdateHeader | None:
    """The zone section and the OPT presence of an UPDATE, without reading its records; None
    when the message cannot be walked (FORMERR)."""
    try:
        zocount, prcount, upcount, adcount = struct.unpack_from("!HHHH", wire, 4)
        zone = None
        ztype = zclass = 0
        i = 12
        for n in range(zocount):
            if n == 0:
                zone, used = dns.name.from_wire(wire, i)
                end = i + used
            else:
                end = wire_name_end(wire, i)
            if n == 0:
                ztype, zclass = struct.unpack_from("!HH", wire, end)
            i = end + 4
        edns = False
        for n in range(prcount + upcount + adcount):
            end = wire_name_end(wire, i)
            rdtype, _rdclass, _ttl, rdlen = _RR_HEAD.unpack_from(wire, end)
            if rdtype == OPT and n >= prcount + upcount:
                edns = True
            i = end + _RR_HEAD.size + rdlen
        if i != len(wire):
            return None
    except Exception:  # dnspython raises many kinds of errors for malformed names
        return None
    return UpdateHeader(zocount, zone, ztype, zclass, edns)


def parse_update(wire: bytes) -> ParsedUpdate | None:
    """The records of an UPDATE message, or None when it is malformed (FORMERR).

    A direct reader (dnspython's message machinery costs more than the rest of an update):
    names and RDATA are still dnspython's.  Malformed means what it means to dnspython's
    ``UpdateMessage`` reader: unreadable names or RDATA, RDATA on a class ANY record or on a
    class NONE prerequisite, a second OPT, bytes left over.  Unlike that reader, the TTL of an
    RR with empty RDATA is kept, so RFC 2136's "TTL must be zero" rules can be checked.  The
    TSIG must already be stripped.
    """
    try:
        zocount, prcount, upcount, adcount = struct.unpack_from("!HHHH", wire, 4)
        i = 12
        zone = []
        for _ in range(zocount):
            name, used = dns.name.from_wire(wire, i)
            rdtype, rdclass = struct.unpack_from("!HH", wire, i + used)
            i += used + 4
            zone.append((name, rdtype, rdclass))
        sections: tuple[list[_Rec], list[_Rec]] = ([], [])
        for number, count in enumerate((prcount, upcount)):
            out = sections[number]
            for _ in range(count):
                name, used = dns.name.from_wire(wire, i)
                rdtype, rdclass, ttl, rdlen = _RR_HEAD.unpack_from(wire, i + used)
                i += used + _RR_HEAD.size
                if i + rdlen > len(wire):
                    return None
                rdata: dns.rdata.Rdata | None = None
                if rdclass == ANY_CLASS or (rdclass == NONE_CLASS and number == 0):
                    if rdlen:
                        return None  # these carry no RDATA (RFC 2136 2.4, 2.5)
                else:
                    rdata_class = IN if rdclass == NONE_CLASS else rdclass
                    rdata = dns.rdata.from_wire(
                        dns.rdataclass.RdataClass.make(rdata_class),
                        dns.rdatatype.RdataType.make(rdtype),
                        wire,
                        i,
                        rdlen,
                    )
                    if ttl > 0x7FFFFFFF:
                        ttl = 0  # RFC 2181 8
                i += rdlen
                out.append(_Rec(name, rdclass, rdtype, ttl, rdata))
        edns = False
        for _ in range(adcount):
            name_end = wire_name_end(wire, i)
            rdtype, _rdclass, _ttl, rdlen = _RR_HEAD.unpack_from(wire, name_end)
            if rdtype == OPT:
                if edns or name_end != i + 1:
                    return None  # a second OPT, or one not owned by the root
                edns = True
            i = name_end + _RR_HEAD.size + rdlen
        if i != len(wire):
            return None
    except Exception:  # dnspython raises many kinds of errors for malformed input
        return None
    return ParsedUpdate(zone, sections[0], sections[1], edns)


def _is_meta(rdtype: int) -> bool:
    return dns.rdatatype.is_metatype(dns.rdatatype.RdataType.make(rdtype))


# --- the evolving state of the touched names -----------------------------------------------

# rdtype -> (ttl, canonical rdata -> rdata); insertion order kept for stable output
_Node = dict[int, tuple[int, dict[bytes, dns.rdata.Rdata]]]


class _State:
    """Before / after copies of the names an update touches, read lazily from the snapshot."""

    def __init__(self, zone: ZoneView) -> None:
        self.zone = zone
        self.before: dict[dns.name.Name, _Node] = {}
        self.after: dict[dns.name.Name, _Node] = {}
        self.owners: dict[dns.name.Name, dns.name.Name] = {}  # keeps the zone file's case
        self.order: list[dns.name.Name] = []
        # RRsets and names deleted as a whole (Changeset.cleared): what another node adds
        # there concurrently is a conflict, not silently kept
        self.cleared: dict[tuple[dns.name.Name, int], None] = {}

    def node(self, name: dns.name.Name) -> _Node:
        if name not in self.after:
            try:
                rrsets = self.zone.rrsets_at(name)
            except Exception as exc:  # the store failed, not this code
                raise _ZoneReadError(str(exc)) from exc
            before: _Node = {}
            owner = name
            for rdtype, rrset in rrsets.items():
                owner = rrset.name
                before[int(rdtype)] = (
                    int(rrset.ttl),
                    {canonical_rdata(rd): rd for rd in rrset},
                )
            self.before[name] = before
            self.after[name] = {t: (ttl, dict(rds)) for t, (ttl, rds) in before.items()}
            self.owners[name] = owner
            self.order.append(name)
        return self.after[name]

    def changes(self) -> tuple[list[RR], list[RR]]:
        removed: list[RR] = []
        added: list[RR] = []
        for name in self.order:
            owner = self.owners[name]
            before, after = self.before[name], self.after[name]
            for rdtype in sorted(set(before) | set(after)):
                old_ttl, old = before.get(rdtype, (0, {}))
                new_ttl, new = after.get(rdtype, (0, {}))
                ttl_changed = old_ttl != new_ttl
                for key, rd in old.items():
                    if key not in new or ttl_changed:
                        removed.append(RR(owner, old_ttl, rd))
                for key, rd in new.items():
                    if key not in old or ttl_changed:
                        added.append(RR(owner, new_ttl, rd))
        return removed, added


# --- the steps --------------------------------------------------------------------------------


def _check_prerequisites(records: list[_Rec], zone: ZoneView, origin: dns.name.Name) -> int:
    """RFC 2136 3.2.5."""
    temp: dict[tuple[dns.name.Name, int], set[bytes]] = {}
    for rec in records:
        if rec.ttl != 0:
            return dns.rcode.FORMERR
        if not rec.name.is_subdomain(origin):
            return dns.rcode.NOTZONE
        if rec.rdclass in (ANY_CLASS, NONE_CLASS):
            if rec.rdata is not None:
                return dns.rcode.FORMERR
            # no meta-type check here: the 3.2.5 pseudocode has none (a meta type names no
            # RRset, so "exists" fails NXRRSET), unlike the update prescan; BIND agrees
            rrsets = _read(zone, rec.name)
            if rec.rdclass == ANY_CLASS:
                if rec.rdtype == ANY_TYPE:
                    if not rrsets:
                        return dns.rcode.NXDOMAIN
                elif rec.rdtype not in rrsets:
                    return dns.rcode.NXRRSET
            elif rec.rdtype == ANY_TYPE:
                if rrsets:
                    return dns.rcode.YXDOMAIN
            elif rec.rdtype in rrsets:
                return dns.rcode.YXRRSET
        elif rec.rdclass == IN:
            if rec.rdata is None or _is_meta(rec.rdtype):
                return dns.rcode.FORMERR
            temp.setdefault((rec.name, rec.rdtype), set()).add(canonical_rdata(rec.rdata))
        else:
            return dns.rcode.FORMERR
    for (name, rdtype), wanted in temp.items():
        have = _read(zone, name).get(rdtype)
        if have is None or {canonical_rdata(rd) for rd in have} != wanted:
            return dns.rcode.NXRRSET
    return dns.rcode.NOERROR


def _read(zone: ZoneView, name: dns.name.Name) -> dict[int, dns.rrset.RRset]:
    try:
        return {int(t): rrset for t, rrset in zone.rrsets_at(name).items()}
    except Exception as exc:  # the store failed, not this code
        raise _ZoneReadError(str(exc)) from exc


def _prescan(
    records: list[_Rec], origin: dns.name.Name, zone: ZoneView, permit: Permit | None
) -> int:
    """RFC 2136 3.4.1 and the update policy, record by record, as BIND's ``send_update``.

    Meta types other than ANY/AXFR/MAILA/MAILB (IXFR, OPT, TSIG, ...) are refused like them.
    NSEC and NSEC3 records, and RRSIGs below the apex, are not updatable (REFUSED, as BIND).
    The policy's verdict (BIND's ``dns_ssutable_checkrules``) comes last for each record;
    deleting all RRsets at a name needs permission for each type there (BIND's ssu_checkall).
    """
    for rec in records:
        if not rec.name.is_subdomain(origin):
            return dns.rcode.NOTZONE
        if rec.rdclass == IN:
            if rec.rdata is None or _is_meta(rec.rdtype):
                return dns.rcode.FORMERR
        elif rec.rdclass == ANY_CLASS:
            if rec.ttl != 0 or rec.rdata is not None:
                return dns.rcode.FORMERR
            if rec.rdtype != ANY_TYPE and _is_meta(rec.rdtype):
                return dns.rcode.FORMERR
        elif rec.rdclass == NONE_CLASS:
            if rec.ttl != 0 or rec.rdata is None or _is_meta(rec.rdtype):
                return dns.rcode.FORMERR
        else:
            return dns.rcode.FORMERR
        if rec.rdtype in _NOT_UPDATABLE or (rec.rdtype == RRSIG and rec.name != origin):
            return dns.rcode.REFUSED
        if permit is None:
            continue
        if rec.rdclass == ANY_CLASS and rec.rdtype == ANY_TYPE:
            if not all(permit(rec.name, rdtype) for rdtype in _read(zone, rec.name)):
                return dns.rcode.REFUSED
        elif not permit(rec.name, rec.rdtype):
            return dns.rcode.REFUSED
    return dns.rcode.NOERROR


def _apply(rec: _Rec, state: _State, origin: dns.name.Name) -> None:
    """RFC 2136 3.4.2.2-3.4.2.4 for one update RR (already prescanned)."""
    node = state.node(rec.name)
    apex = rec.name == origin
    if rec.rdclass == IN:
        assert rec.rdata is not None
        _add(rec.rdtype, rec.ttl, rec.rdata, node)
    elif rec.rdclass == ANY_CLASS:
        if rec.rdtype == ANY_TYPE:
            deleted = [t for t in node if not (apex and t in (SOA, NS))]
            for rdtype in deleted:
                del node[rdtype]
            if deleted and not apex:
                state.cleared[(rec.name, ANY_TYPE)] = None
            elif apex:  # the apex keeps its SOA and NS: its other RRsets were deleted
                state.cleared.update(((rec.name, t), None) for t in deleted)
        elif not (apex and rec.rdtype in (SOA, NS)) and node.pop(rec.rdtype, None) is not None:
            state.cleared[(rec.name, rec.rdtype)] = None
    else:  # NONE: delete one RR
        assert rec.rdata is not None
        if rec.rdtype == SOA:
            return
        current = node.get(rec.rdtype)
        if current is None:
            return
        _, rds = current
        key = canonical_rdata(rec.rdata)
        if key not in rds:
            return
        if apex and rec.rdtype == NS and len(rds) == 1:
            return  # the last apex NS stays
        del rds[key]
        if not rds:
            del node[rec.rdtype]


def _add(rdtype: int, ttl: int, rdata: dns.rdata.Rdata, node: _Node) -> None:
    if rdtype == CNAME:
        if any(t != CNAME and t not in CNAME_COMPATIBLE for t in node):
            return
    elif rdtype not in CNAME_COMPATIBLE and CNAME in node:
        return
    key = canonical_rdata(rdata)
    current = node.get(rdtype)
    if rdtype == SOA:
        if current is None:
            return  # no SOA at this name: not the apex, ignored
        old = next(iter(current[1].values()))
        if not serial_gt(int(rdata.serial), int(old.serial)):  # type: ignore[attr-defined]
            return
        node[SOA] = (ttl, {key: rdata})
        return
    if current is None:
        node[rdtype] = (ttl, {key: rdata})
        return
    _, rds = current
    if rdtype == CNAME:
        rds = {}
    elif rdtype == WKS:  # same address and protocol: the zone RR is replaced (3.4.2.2)
        same = [
            k
            for k, rd in rds.items()
            if (rd.address, rd.protocol)  # type: ignore[attr-defined]
            == (rdata.address, rdata.protocol)  # type: ignore[attr-defined]
        ]
        for k in same:
            del rds[k]
    rds[key] = rdata
    node[rdtype] = (ttl, rds)  # the added RR's TTL becomes the RRset's


def plan_update(
    message: dns.message.Message | ParsedUpdate,
    zone: ZoneView,
    *,
    origin: str,
    permit: Permit | None = None,
) -> UpdatePlan:
    """Decide an RFC 2136 UPDATE against one zone snapshot; ``origin`` is the provenance.

    ``message`` is a dnspython message (names may be relative to its origin) or what
    ``parse_update`` read from the wire (which keeps the TTLs dnspython drops).  Order, as BIND
    9.18+: zone section; the update section prescan with the policy (``permit(name, rdtype)``,
    None permits everything) record by record; then the prerequisites; then the update.
    Checking permissions before prerequisites (RFC 2136 puts them after) keeps a requester from
    probing names it may not change.
    """
    if isinstance(message, ParsedUpdate):
        if len(message.zone) != 1 or message.zone[0][1] != SOA:
            return UpdatePlan(dns.rcode.FORMERR, None)
        zname, _type, zclass = message.zone[0]
        prereqs, updates = message.prerequisites, message.updates
    else:
        sections = message.sections
        zsec = sections[0]
        if len(zsec) != 1 or int(zsec[0].rdtype) != SOA:
            return UpdatePlan(dns.rcode.FORMERR, None)
        relative = message.origin is not None  # built in memory: names may be relative
        base = message.origin if message.origin is not None else zone.origin
        zname, zclass = zsec[0].name.derelativize(base), int(zsec[0].rdclass)
        prereqs = list(_records(sections[1], base, relative))
        updates = list(_records(sections[2], base, relative))
    if zclass != IN or zname != zone.origin:
        return UpdatePlan(dns.rcode.NOTAUTH, None)
    zorigin = zone.origin
    try:
        rcode = _prescan(updates, zorigin, zone, permit)
        if rcode != dns.rcode.NOERROR:
            return UpdatePlan(rcode, None)
        rcode = _check_prerequisites(prereqs, zone, zorigin)
        if rcode != dns.rcode.NOERROR:
            return UpdatePlan(rcode, None)
        state = _State(zone)
        for rec in updates:
            _apply(rec, state, zorigin)
        removed, added = state.changes()
    except _ZoneReadError:
        return UpdatePlan(dns.rcode.SERVFAIL, None)
    if not removed and not added:
        return UpdatePlan(dns.rcode.NOERROR, None)
    changeset = Changeset(
        zone=zorigin,
        removed=tuple(removed),
        added=tuple(added),
        origin=origin,
        cleared=tuple(state.cleared),
    )
    return UpdatePlan(dns.rcode.NOERROR, changeset)
