"""In-memory ZoneView / ZoneFinder built from master-file text (test helper).

Implements the ``xdnsd.server.answer`` protocols structurally, the same way the LMDB store does,
so the answer tables can run against either.
"""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rrset
import dns.zone


class MemZoneView:
    """One zone held in dicts: owner -> {rdtype: RRset}; owners keep the zone file's case."""

    def __init__(self, origin: dns.name.Name, rrsets: list[dns.rrset.RRset]) -> None:
        self._origin = origin
        self._nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        self._parents: set[dns.name.Name] = set()  # names that have data strictly below them
        for rrset in rrsets:
            self._nodes.setdefault(rrset.name, {})[rrset.rdtype] = rrset
            name = rrset.name
            while name != origin and len(name) > 1:
                name = name.parent()
                self._parents.add(name)
        self.lookups = 0  # number of rrsets_at / has_subdomains calls (to watch the engine)

    @classmethod
    def from_text(cls, text: str, origin: str | dns.name.Name) -> MemZoneView:
        if isinstance(origin, str):
            origin = dns.name.from_text(origin)
        zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=True)
        rrsets = []
        for name, rdataset in zone.iterate_rdatasets():
            rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
            rrset.update(rdataset)
            rrsets.append(rrset)
        return cls(origin, rrsets)

    @property
    def origin(self) -> dns.name.Name:
        return self._origin

    @property
    def expired(self) -> bool:
        return False

    def rrsets_at(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset]:
        self.lookups += 1
        return dict(self._nodes.get(name, {}))

    def has_subdomains(self, name: dns.name.Name) -> bool:
        self.lookups += 1
        return name in self._parents


class MemZoneFinder:
    """Several zones; the longest matching origin wins (a parent and its child may coexist)."""

    def __init__(self, zones: list[MemZoneView]) -> None:
        self.zones = {zone.origin: zone for zone in zones}

    @classmethod
    def from_texts(cls, zones: dict[str, str]) -> MemZoneFinder:
        return cls([MemZoneView.from_text(text, origin) for origin, text in zones.items()])

    def find_zone(self, qname: dns.name.Name) -> MemZoneView | None:
        name = qname
        while True:
            zone = self.zones.get(name)
            if zone is not None:
                return zone
            if len(name) <= 1:
                return None
            name = name.parent()
