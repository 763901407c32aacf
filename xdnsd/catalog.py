"""The catalog zone (RFC 9432, version 2): the list of the zones this node serves, as a zone.

A BIND or Knot secondary configured with the catalog provisions every member zone by itself and
drops the ones that leave.  The catalog is a zone of the store like any other (transfers,
NOTIFY, replication); ``sync_catalog`` brings it in line with the zone list through one
``store.commit()``.  Member labels are a hash of the member's name, so they stay stable.
"""

from __future__ import annotations

import hashlib

import dns.name
import dns.rdata

from xdnsd.model import RR, ChangeOp, Changeset, canonical_rdata
from xdnsd.store import Store

TTL = 0  # catalogs are not for resolvers (RFC 9432 4)


def member_label(zone: dns.name.Name) -> bytes:
    """A stable unique label for a member zone (RFC 9432 4.1)."""
    return hashlib.sha1(zone.canonicalize().to_wire() or b"").hexdigest()[:16].encode()


def catalog_records(catalog: dns.name.Name, members: list[dns.name.Name], serial: int) -> list[RR]:
    invalid = dns.name.from_text("invalid.")
    soa = dns.rdata.from_text("IN", "SOA", f"invalid. invalid. {serial} 3600 600 2147483646 0")
    records = [
        RR(catalog, TTL, soa),
        RR(catalog, TTL, dns.rdata.from_text("IN", "NS", invalid.to_text())),
        RR(dns.name.from_text("version", catalog), TTL, dns.rdata.from_text("IN", "TXT", '"2"')),
    ]
    zones = dns.name.from_text("zones", catalog)
    for member in sorted(members):
        owner = dns.name.Name((member_label(member), *zones.labels))
        records.append(RR(owner, TTL, dns.rdata.from_text("IN", "PTR", member.to_text())))
    return records


def sync_catalog(store: Store, catalog: dns.name.Name) -> bool:
    """Make the catalog list the store's other zones; True when something was committed."""
    with store.snapshot() as snap:
        metas = snap.zones()
        members = [m.name for m in metas if m.name != catalog]
        exists = any(m.name == catalog for m in metas)
        current = list(snap.zone(catalog).iter_records()) if exists else []
    wanted = catalog_records(catalog, members, 1)
    if not exists:
        store.commit(Changeset(catalog, added=tuple(wanted), origin="catalog", op=ChangeOp.CREATE))
        return True

    def key(rr: RR) -> tuple[object, ...]:
        return (rr.owner, rr.rdtype, canonical_rdata(rr.rdata))

    have = {key(rr): rr for rr in current if rr.rdtype != 6}
    want = {key(rr): rr for rr in wanted if rr.rdtype != 6}
    removed = tuple(rr for k, rr in have.items() if k not in want)
    added = tuple(rr for k, rr in want.items() if k not in have)
    if not removed and not added:
        return False
    store.commit(Changeset(catalog, removed=removed, added=added, origin="catalog"))
    return True


class CatalogKeeper:
    """Keeps the catalog in line from the writer process: a zone added or dropped elsewhere
    (``xdnsd zone import``) bumps the store's zone-set generation, checked on every tick."""

    def __init__(self, store: Store, catalog: dns.name.Name) -> None:
        self._store = store
        self._catalog = catalog
        self._seen = -1

    def tick(self) -> None:
        generation = self._store.generations.get(0)
        if generation != self._seen:
            self._seen = generation
            if sync_catalog(self._store, self._catalog):
                self._seen = self._store.generations.get(0)
