"""The operator's operations on one node, as JSON-ready documents: what the HTTP API serves
and what the CLI prints (``xdnsd zone list`` reads the same document from the store or,
with ``--server``, from a running node's API).

Every write is a changeset committed through ``Store.commit`` / ``Store.commit_batch`` (the
one commit path), with the caller as its origin (``api:TOKEN`` for the API), so it is
journalled, replicated, mirrored and named in the zone's history.  Record writes are RFC 2136
updates planned by ``plan_update``, inside the writer's transaction: the same rules as
nsupdate's (CNAME and apex checks, SOA handling).

Errors are ``OpError(status, code, message)``: the HTTP status the API answers, a short code,
and a message that names the field or line at fault.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.update

from xdnsd.config import Config
from xdnsd.model import RR, ChangeOp, Changeset, canonical_rdata
from xdnsd.store import Store
from xdnsd.zonefile import (
    ZoneFileError,
    check_zone,
    create_changeset,
    parse_zone_text,
    plan_import,
    to_text,
)

# a cell of the status matrix
IN_SYNC, PENDING, OUT_OF_SYNC, HELD, DOWN, UNKNOWN = (
    "in-sync",
    "pending",
    "out-of-sync",
    "held",
    "down",
    "unknown",
)
RECENT = 20  # changes and sync runs on the status page


class OpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def zone_name(text: object) -> dns.name.Name:
    if not isinstance(text, str) or not text:
        raise OpError(400, "bad-field", "zone: a domain name is needed")
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise OpError(400, "bad-field", f"zone: {text!r} is not a domain name: {exc}") from None


def _rdtype(text: object) -> dns.rdatatype.RdataType:
    if not isinstance(text, str) or not text:
        raise OpError(400, "bad-field", "type: a record type such as A or TXT is needed")
    try:
        return dns.rdatatype.from_text(text)
    except (dns.exception.DNSException, ValueError):  # TYPE70000: ValueError
        raise OpError(400, "bad-field", f"type: {text!r} is not a record type") from None


def _owner(text: object, zone: dns.name.Name) -> dns.name.Name:
    if not isinstance(text, str) or not text:
        raise OpError(400, "bad-field", "name: a domain name (relative to the zone) is needed")
    try:
        name = dns.name.from_text(text, zone)
    except dns.exception.DNSException as exc:
        raise OpError(400, "bad-field", f"name: {text!r}: {exc}") from None
    if not name.is_subdomain(zone):
        raise OpError(400, "bad-field", f"name: {name} is not in zone {zone}")
    return name


def record_doc(rr: RR) -> dict[str, Any]:
    return {
        "name": rr.owner.to_text(),
        "type": dns.rdatatype.to_text(rr.rdata.rdtype),
        "ttl": rr.ttl,
        "data": rr.rdata.to_text(),
    }


class Operations:
    """One node's operations over its store (``who``: the origin recorded for writes)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    # --- zones ------------------------------------------------------------------------------

    def _meta(self, zone: dns.name.Name) -> Any:
        for meta in self.store.list_zones():
            if meta.name == zone:
                return meta
        raise OpError(404, "no-zone", f"zone {zone} is not here")

    def _secondary(self, zone: dns.name.Name) -> bool:
        return any(z.name == zone and z.primaries for z in self.config.zones)

    def _writable(self, zone: dns.name.Name) -> None:
        if self._secondary(zone):
            raise OpError(
                409,
                "secondary",
                f"zone {zone} is a secondary: its data comes from its primaries",
            )
        if zone == self.config.server.catalog_zone:
            raise OpError(409, "catalog", f"zone {zone} is the catalog, which xdnsd maintains")

    def zones(self, count: bool = False, only: dns.name.Name | None = None) -> list[dict[str, Any]]:
        """Every zone (or ``only`` that one): name, kind, serial, version vector, expired, the
        secondary's transfer state, the targets mirroring it, and (``count``) its number of
        records."""
        from xdnsd.server.secondary import STATUS_PREFIX

        kinds = {z.name: z.kind for z in self.config.zones}
        transfers = {
            key[len(STATUS_PREFIX) :]: doc
            for key, doc in self.store.statuses(STATUS_PREFIX).items()
        }
        mirrors: dict[dns.name.Name, list[str]] = {}
        for target in self.config.targets.values():
            if target.zone is not None:
                mirrors.setdefault(target.zone, []).append(target.name)
        found: list[dict[str, Any]] = []
        with self.store.snapshot() as snap:
            metas = [m for m in snap.zones() if only is None or m.name == only]
            for meta in metas:
                doc: dict[str, Any] = {
                    "zone": meta.name.to_text(),
                    "kind": kinds.get(meta.name, meta.kind),
                    "serial": meta.serial,
                    "vv": dict(meta.vv),
                    "expired": meta.expired,
                    "transfer": transfers.get(meta.name.to_text()),
                    "targets": sorted(mirrors.get(meta.name, [])),
                }
                if count:
                    doc["records"] = sum(1 for _ in snap.zone(meta.name).iter_records())
                found.append(doc)
        held = {meta.name for meta in metas}
        for z in self.config.zones:  # secondary zones not transferred yet
            if z.primaries and z.name not in held and only in (None, z.name):
                doc = {
                    "zone": z.name.to_text(),
                    "kind": "secondary",
                    "serial": None,
                    "vv": {},
                    "expired": True,
                    "transfer": transfers.get(z.name.to_text()),
                    "targets": sorted(mirrors.get(z.name, [])),
                }
                if count:
                    doc["records"] = 0
                found.append(doc)
        return found

    def zone(self, zone_text: str) -> dict[str, Any]:
        zone = zone_name(zone_text)
        for doc in self.zones(count=True, only=zone):
            if doc["serial"] is not None:
                return doc
        raise OpError(404, "no-zone", f"zone {zone} is not here")

    def _parse(self, zone: dns.name.Name, text: object, source: str) -> list[RR]:
        if not isinstance(text, str):
            raise OpError(400, "bad-field", "file: master file text is needed")
        try:
            records = parse_zone_text(text, zone, source, allow_include=False)
            check_zone(records, zone, source)
        except ZoneFileError as exc:
            raise OpError(400, "bad-zone-file", str(exc)) from None
        return records

    def create_zone(
        self,
        zone_text: object,
        who: str,
        *,
        file: object = None,
        ns: object = None,
        email: object = None,
    ) -> dict[str, Any]:
        """A new zone: from master file text (``file``), or empty but for an SOA and the apex
        NS records ``ns`` names.  409 when the zone is here already."""
        zone = zone_name(zone_text)
        self._writable(zone)
        if zone in {m.name for m in self.store.list_zones()}:
            raise OpError(409, "exists", f"zone {zone} exists already")
        if file is not None:
            if ns is not None:
                raise OpError(400, "bad-field", "ns: give either a master file or ns, not both")
            records = self._parse(zone, file, "file")
        else:
            if not isinstance(ns, list) or not ns or not all(isinstance(n, str) and n for n in ns):
                raise OpError(
                    400, "bad-field", "ns: a non-empty list of name server names is needed"
                )
            try:
                servers = [dns.name.from_text(n, zone) for n in ns]
            except dns.exception.DNSException as exc:
                raise OpError(400, "bad-field", f"ns: {exc}") from None
            mbox = dns.name.Name((b"hostmaster", *zone.labels)).to_text()
            if email is not None:
                if not isinstance(email, str) or not email:
                    raise OpError(400, "bad-field", "email: the SOA RNAME as a name")
                mbox = email.replace("@", ".", 1)
            try:
                soa = dns.rdata.from_text(
                    "IN",
                    "SOA",
                    f"{servers[0]} {mbox} 1 3600 900 604800 300",
                    origin=zone,
                    relativize=False,
                )
            except dns.exception.DNSException as exc:
                raise OpError(400, "bad-field", f"email: {exc}") from None
            records = [RR(zone, 3600, soa)] + [
                RR(zone, 3600, dns.rdata.from_text("IN", "NS", n.to_text())) for n in servers
            ]
        result = self.store.commit(create_changeset(zone, records, who))
        return {
            "zone": zone.to_text(),
            "created": True,
            "records": len(records),
            **_serials(result),
        }

    def import_zone(self, zone_text: str, text: object, who: str) -> dict[str, Any]:
        """Make a zone hold exactly a master file's records (one change; the zone is created
        when it is new): what ``xdnsd zone import`` does."""
        zone = zone_name(zone_text)
        return self.import_records(zone, self._parse(zone, text, "file"), who)

    def import_records(self, zone: dns.name.Name, records: list[RR], who: str) -> dict[str, Any]:
        """``import_zone`` with the file read already (the CLI reads a local file itself, so
        that its ``$INCLUDE`` lines work)."""
        self._writable(zone)
        if zone not in {m.name for m in self.store.list_zones()}:
            result = self.store.commit(create_changeset(zone, records, who))
            return {
                "zone": zone.to_text(),
                "created": True,
                "added": len(records),
                "removed": 0,
                **_serials(result),
            }
        with self.store.snapshot() as snap:
            current = list(snap.zone(zone).iter_records())
        cs = plan_import(zone, current, records, who)
        if cs.is_empty():
            serial = self._meta(zone).serial
            return {
                "zone": zone.to_text(),
                "created": False,
                "added": 0,
                "removed": 0,
                "serial_from": serial,
                "serial_to": serial,
            }
        result = self.store.commit(cs)
        return {
            "zone": zone.to_text(),
            "created": False,
            "added": len(cs.added),
            "removed": len(cs.removed),
            **_serials(result),
        }

    def export_zone(self, zone_text: str) -> str:
        zone = zone_name(zone_text)
        self._meta(zone)
        with self.store.snapshot() as snap:
            records = list(snap.zone(zone).iter_records())
        return to_text(records, zone)

    def drop_zone(self, zone_text: str, who: str) -> dict[str, Any]:
        """Delete a zone and everything in it, on every node of the cluster."""
        zone = zone_name(zone_text)
        if zone == self.config.server.catalog_zone:
            raise OpError(409, "catalog", f"zone {zone} is the catalog, which xdnsd maintains")
        meta = self._meta(zone)
        self.store.commit(Changeset(zone, (), (), who, ChangeOp.DROP))
        return {"zone": zone.to_text(), "deleted": True, "serial": meta.serial}

    def deleted_zones(self) -> list[dict[str, Any]]:
        """The tombstones of deleted zones: who deleted each, on which node, when."""
        docs = [
            {
                "zone": tomb.zone.to_text(),
                "incarnation": tomb.incarnation,
                "deleted_by": tomb.origin,
                "node": tomb.dot.node,
                "time": tomb.time_ms / 1000,
                "serial": tomb.serial,
            }
            for tomb in self.store.dropped_zones()
        ]
        return sorted(docs, key=lambda d: -float(d["time"]))

    # --- records ----------------------------------------------------------------------------

    def records(
        self, zone_text: str, name: str | None = None, rdtype: str | None = None
    ) -> list[dict[str, Any]]:
        zone = zone_name(zone_text)
        self._meta(zone)
        owner = None if name is None else _owner(name, zone)
        wanted = None if rdtype is None else _rdtype(rdtype)
        with self.store.snapshot() as snap:
            return [
                record_doc(rr)
                for rr in snap.zone(zone).iter_records()
                if (owner is None or rr.owner == owner) and (wanted is None or rr.rdtype == wanted)
            ]

    def write_rrset(
        self,
        zone_text: str,
        mode: str,
        doc: Mapping[str, Any],
        who: str,
    ) -> dict[str, Any]:
        """``mode`` "replace" (the RRset becomes ``data``), "add" (``data`` joins the RRset)
        or "delete" (the RRset goes, or only the records ``data`` names): an RFC 2136 update
        of that one RRset, planned as nsupdate's would be."""
        zone = zone_name(zone_text)
        self._meta(zone)
        self._writable(zone)
        name = _owner(doc.get("name"), zone)
        rdtype = _rdtype(doc.get("type"))
        ttl = doc.get("ttl", 300)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl < 2**31:
            raise OpError(400, "bad-field", f"ttl: {ttl!r} is not a TTL (0 .. 2147483647)")
        data = doc.get("data")
        if mode == "delete" and data is None:
            data = []
        elif not isinstance(data, list) or not data:
            raise OpError(400, "bad-field", "data: a non-empty list of record data strings")
        rdatas = []
        for i, text in enumerate(data):
            if not isinstance(text, str):
                raise OpError(400, "bad-field", f"data[{i}]: a string such as '192.0.2.1'")
            try:
                rdatas.append(
                    dns.rdata.from_text("IN", rdtype, text, origin=zone, relativize=False)
                )
            except Exception as exc:  # dnspython raises many kinds of errors for bad data
                raise OpError(400, "bad-field", f"data[{i}]: {text!r}: {exc}") from None
        message = dns.update.UpdateMessage(zone)
        if mode == "replace":
            message.delete(name, rdtype)
            for rdata in rdatas:
                message.add(name, ttl, rdata)
        elif mode == "add":
            for rdata in rdatas:
                message.add(name, ttl, rdata)
        elif rdatas:
            for rdata in rdatas:
                message.delete(name, rdata)
        else:
            message.delete(name, rdtype)
        wanted = [] if mode == "delete" else rdatas
        return self._update(zone, message, who, name, wanted)

    def _update(
        self,
        zone: dns.name.Name,
        message: Any,
        who: str,
        name: dns.name.Name,
        wanted: list[dns.rdata.Rdata],
    ) -> dict[str, Any]:
        """Plan and commit ``message``; refused (422) when RFC 2136 would ignore a record the
        caller asked for (a CNAME beside other data, a second SOA...): an API caller gets a
        clear answer where nsupdate gets a silent NOERROR."""
        from xdnsd.server.update import plan_update

        outcome: dict[str, int] = {}

        def planner(view: Any) -> Any:
            if view is None:
                raise OpError(404, "no-zone", f"zone {zone} is not here")
            plan = plan_update(message, view, origin=who)
            outcome["rcode"] = plan.rcode
            if plan.rcode != 0 or not wanted:
                return plan.changeset
            have = view.rrsets_at(name).get(wanted[0].rdtype)
            result = {canonical_rdata(rd) for rd in have or ()}
            if plan.changeset is not None:
                result -= {canonical_rdata(rr.rdata) for rr in plan.changeset.removed}
                result |= {canonical_rdata(rr.rdata) for rr in plan.changeset.added}
            missing = [rd for rd in wanted if canonical_rdata(rd) not in result]
            if missing:
                raise OpError(
                    422,
                    "ignored",
                    f"data: {missing[0]} would be ignored by the update rules (RFC 2136 "
                    "3.4.2: a CNAME beside other data, another SOA, ...): nothing was changed",
                )
            return plan.changeset

        (result,) = self.store.commit_batch([(zone, planner)])
        if isinstance(result, OpError):
            raise result
        if isinstance(result, Exception):
            raise OpError(500, "not-applied", f"the change was not applied: {result}")
        rcode = outcome.get("rcode", 0)
        if rcode != 0:
            raise OpError(
                422,
                "refused",
                "the change was refused as an update would be: "
                f"{dns.rcode.to_text(dns.rcode.Rcode.make(rcode))}",
            )
        if result is None:
            serial = self._meta(zone).serial
            return {"zone": zone.to_text(), "changed": False, "serial": serial}
        return {"zone": zone.to_text(), "changed": True, "serial": result.serial_to}

    def history(
        self, zone_text: str, limit: int = 50, records: bool = False
    ) -> list[dict[str, Any]]:
        """The zone's latest commits, newest first: who, when, serials, how many records.
        ``records``: also what each removed and added (``changes``), while the IXFR journal
        still holds it (null once trimmed, and for the zone's creation); the SOA serial step
        every change makes is left out."""
        zone = zone_name(zone_text)
        self._meta(zone)
        if not 0 < limit <= 10_000:
            raise OpError(400, "bad-field", f"limit: {limit} is not in 1 .. 10000")
        with self.store.snapshot() as snap:
            entries = snap.history(zone, limit)
            if records:
                for entry in entries:
                    found = snap.journal_entry(zone, int(entry["sequence"]))
                    entry["changes"] = None
                    if found is not None:
                        removed, added = found
                        entry["changes"] = {
                            "removed": [record_doc(rr) for rr in removed[1:]],
                            "added": [record_doc(rr) for rr in added[1:]],
                        }
        return entries

    # --- cluster and targets ----------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        found = self.store.statuses("peer/")
        docs = []
        for peer in self.config.peers:
            doc = dict(found.get(f"peer/{peer.id}") or {"peer": peer.id, "connected": False})
            doc.setdefault("address", str(peer.address))
            docs.append(doc)
        return docs

    def _target(self, name: str) -> Any:
        target = self.config.targets.get(name)
        if target is None:
            known = ", ".join(sorted(self.config.targets)) or "none"
            raise OpError(404, "no-target", f"no target {name!r} (targets: {known})")
        return target

    def targets(self) -> list[dict[str, Any]]:
        found = self.store.statuses("target/")
        return [
            found.get(f"target/{t.name}")
            or {
                "target": t.name,
                "kind": t.kind,
                "zone": t.zone.to_text() if t.zone else None,
                "owner": t.owner,
                "state": UNKNOWN if t.owner != self.config.node.id else PENDING,
            }
            for t in self.config.targets.values()
        ]

    def target_history(self, name: str) -> list[dict[str, Any]]:
        target = self._target(name)
        runs: list[dict[str, Any]] = (
            self.store.status(f"target-history/{target.name}") or {"runs": []}
        )["runs"]
        return runs

    # --- conflicts --------------------------------------------------------------------------

    def conflicts(self) -> list[dict[str, Any]]:
        with self.store.snapshot() as snap:
            found = [
                {"zone": meta.name.to_text(), **doc}
                for meta in snap.zones()
                for doc in snap.conflicts(meta.name)
            ]
        return found + list(self.store.statuses("target-conflict/").values())

    def conflicts_detected(self) -> int:
        """How many conflicts this node saw appear, in all (a durable counter)."""
        return int(self.store.counters().get("conflicts_detected", 0))

    def resolve(
        self, conflict_id: str, who: str, keep: object = None, value: object = None
    ) -> dict[str, Any]:
        """End a conflict: keep one side (``local``, ``remote`` or a node id; for a zone
        against a provider, ``local`` is the zone's and ``remote`` the provider's) or put a
        value (RDATA text) in place of every side."""
        from xdnsd.replication.merge import conflict_from_doc, pick_side, plan_resolution
        from xdnsd.upstreams.sync import resolve_conflict

        if (keep is None) == (value is None):
            raise OpError(400, "bad-field", "keep / value: give exactly one of them")
        if keep is not None and (not isinstance(keep, str) or not keep):
            raise OpError(400, "bad-field", "keep: 'local', 'remote' or a node id")
        if value is not None and (not isinstance(value, str) or not value):
            raise OpError(400, "bad-field", "value: record data text")
        for doc in self.store.statuses("target-conflict/").values():
            if doc["id"] == conflict_id:
                if keep not in ("local", "remote", doc["target"]):
                    raise OpError(
                        400,
                        "bad-field",
                        "keep: 'local' (the zone's version) or 'remote' (the provider's)",
                    )
                side = "local" if keep == "local" else "remote"
                message = f"conflict {conflict_id} resolved: " + resolve_conflict(
                    self.store, doc, side, by=who
                )
                return {"id": conflict_id, "resolved": True, "message": message}
        with self.store.snapshot() as snap:
            matches = [
                (meta.name, doc)
                for meta in snap.zones()
                for doc in snap.conflicts(meta.name)
                if doc["id"] == conflict_id
            ]
        if not matches:
            raise OpError(404, "no-conflict", f"no open conflict {conflict_id}")
        zone, doc = matches[0]
        conflict = conflict_from_doc(doc)
        try:
            chosen = (
                pick_side(conflict, keep, self.config.node.id) if isinstance(keep, str) else None
            )
            removed, added = plan_resolution(
                conflict, chosen, value if isinstance(value, str) else None
            )
        except ValueError as exc:
            raise OpError(400, "bad-field", str(exc)) from None
        except Exception as exc:  # dnspython's many errors for bad record data
            raise OpError(400, "bad-field", f"value: {value!r}: {exc}") from None
        result = self.store.commit(
            Changeset(zone, tuple(removed), tuple(added), origin=f"{who} resolve {conflict.id}")
        )
        what = f"side {chosen.dot.node}:{chosen.dot.counter}" if chosen is not None else "the value"
        return {
            "id": conflict_id,
            "resolved": True,
            "message": f"conflict {conflict.id} resolved with {what}: serial {result.serial_to}",
            "serial": result.serial_to,
        }

    # --- the status page's one view ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every zone against every node and target, with the conflicts, the latest changes
        and the latest sync runs (``GET /api/v1/status``)."""
        me = self.config.node.id
        kinds = {z.name: z.kind for z in self.config.zones}
        peers = self.peers()
        targets = self.targets()
        nodes: list[dict[str, Any]] = [{"id": me, "self": True, "connected": True}]
        for doc in peers:
            nodes.append(
                {
                    "id": doc["peer"],
                    "self": False,
                    "address": doc.get("address"),
                    "connected": bool(doc.get("connected")),
                    "since": doc.get("since"),
                    "lag": int(doc.get("lag") or 0),
                    "error": doc.get("error"),
                }
            )
        zones = []
        changes: list[dict[str, Any]] = []
        with self.store.snapshot() as snap:
            for meta in snap.zones():
                text = meta.name.to_text()
                cells = {me: OUT_OF_SYNC if meta.expired else IN_SYNC}
                for doc in peers:
                    cells[doc["peer"]] = _peer_cell(doc, text, meta.vv)
                for tdoc in targets:
                    if tdoc.get("zone") == text:
                        state = str(tdoc.get("state") or UNKNOWN)
                        cells[str(tdoc["target"])] = state
                zones.append(
                    {
                        "zone": text,
                        "kind": kinds.get(meta.name, meta.kind),
                        "serial": meta.serial,
                        "cells": cells,
                    }
                )
                changes.extend({"zone": text, **h} for h in snap.history(meta.name, RECENT))
        changes.sort(key=lambda h: -int(h["time_ms"]))
        syncs = [
            {"target": name, **run}
            for name in self.config.targets
            for run in self.target_history(name)[-RECENT:]
        ]
        syncs.sort(key=lambda r: -float(r["start"]))
        return {
            "node": me,
            "time": time.time(),
            "nodes": nodes,
            "targets": targets,
            "zones": zones,
            "conflicts": self.conflicts(),
            "conflicts_detected": self.conflicts_detected(),
            "changes": changes[:RECENT],
            "syncs": syncs[:RECENT],
        }


def _peer_cell(doc: Mapping[str, Any], zone: str, vv: Mapping[str, int]) -> str:
    """A peer's state for a zone: down (not connected), in sync (it acknowledged everything
    this node has of the zone) or pending."""
    if not doc.get("connected"):
        return DOWN
    acked = (doc.get("acked") or {}).get(zone) or {}
    behind = any(acked.get(node, 0) < counter for node, counter in vv.items())
    return PENDING if behind else IN_SYNC


def _serials(result: Any) -> dict[str, Any]:
    return {"serial_from": result.serial_from, "serial_to": result.serial_to}


__all__: Sequence[str] = ["OpError", "Operations", "record_doc", "zone_name"]
