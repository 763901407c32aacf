"""Planning a mirror run, the same for every provider (pure: no I/O).

A zone and a target (a provider's copy of it) are compared as **RRsets**: (owner, type) ->
TTL and the set of values, every value in canonical presentation form (dnspython's, absolute
names, lowercased owners), so that a provider's spelling of the same data (quoting, escapes,
case, trailing dots) never shows as a difference.

The comparison is **three-way** per RRset (../shared/ARCHITECTURE.md, "Mirroring to
providers"): *desired* (the zone), *last applied* (what the previous run left at the target)
and *actual* (what the target holds now):

* desired == actual: in sync (nothing to do);
* actual == last applied: only the zone changed: **push** desired;
* desired == last applied: only the target changed (an edit made at the provider):
  **drift**, imported into the zone;
* both changed, differently: a **conflict**, held for an operator.

With no last applied state (a first run, or a target adopted from scratch) every difference is
pushed: the zone is the truth.  The apex SOA and NS belong to the provider and are left alone;
types a provider cannot hold are skipped and reported.  A run that would change or delete more
than ``SAFETY_SHARE`` of a target's records (zones of ``SAFETY_MIN`` or more) is held unless
forced.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from xdnsd.model import RR

SAFETY_SHARE = 0.30
SAFETY_MIN = 10
APEX_OWNED = frozenset({"SOA", "NS"})  # at the apex: the provider's


@dataclass(frozen=True, slots=True, order=True)
class RRset:
    """One RRset as every target compares it."""

    name: str  # absolute, lowercase, with the trailing dot
    type: str  # mnemonic: "A", "TXT", ...
    ttl: int
    values: tuple[str, ...]  # canonical presentation forms, sorted

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    def same_data(self, other: RRset | None) -> bool:
        return other is not None and self.ttl == other.ttl and self.values == other.values


Key = tuple[str, str]
Desired = Mapping[Key, RRset]


def canonical_value(rdtype: str, text: str, origin: dns.name.Name | None = None) -> str:
    """A value as xdnsd compares it: parsed and printed again by dnspython (absolute names,
    one spelling of TXT strings and escapes).  ValueError for data that does not parse."""
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text, origin=origin
        )
    except Exception as exc:
        raise ValueError(f"{rdtype} value {text!r}: {exc}") from exc
    return str(rdata.to_text(origin=None, relativize=False))


def owner_text(name: dns.name.Name | str) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    if not text.endswith("."):
        text += "."
    return text.lower()


def rrsets_from_records(records: Iterable[RR]) -> dict[Key, RRset]:
    """The zone's records as RRsets (every type; ``for_target`` leaves out what a target
    does not get)."""
    grouped: dict[Key, tuple[int, set[str]]] = {}
    for rr in records:
        key = (owner_text(rr.owner), dns.rdatatype.to_text(rr.rdata.rdtype))
        ttl, values = grouped.setdefault(key, (rr.ttl, set()))
        values.add(str(rr.rdata.to_text(origin=None, relativize=False)))
        if rr.ttl != ttl:  # RFC 2181 5.2: one TTL per RRset; the store keeps them equal
            grouped[key] = (min(ttl, rr.ttl), values)
    return {k: RRset(k[0], k[1], ttl, tuple(sorted(v))) for k, (ttl, v) in grouped.items()}


def for_target(
    rrsets: Mapping[Key, RRset], zone: str, supported: frozenset[str]
) -> tuple[dict[Key, RRset], list[RRset]]:
    """(what a target mirrors, what it cannot hold): the apex SOA and NS are the provider's
    and are in neither."""
    apex = owner_text(zone)
    kept: dict[Key, RRset] = {}
    skipped: list[RRset] = []
    for key, rrset in rrsets.items():
        if rrset.name == apex and rrset.type in APEX_OWNED:
            continue
        if rrset.type not in supported:
            skipped.append(rrset)
            continue
        kept[key] = rrset
    return kept, sorted(skipped)


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One RRset change at a target: ``old`` is what the target holds (for a compare-and-swap
    delete), ``new`` what it is to hold."""

    action: Action
    old: RRset | None
    new: RRset | None

    @property
    def key(self) -> Key:
        rrset = self.new or self.old
        assert rrset is not None
        return rrset.key


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both the zone and the target changed one RRset since the last run, differently."""

    key: Key
    desired: RRset | None
    last: RRset | None
    actual: RRset | None


@dataclass(slots=True)
class Plan:
    push: list[Change] = field(default_factory=list)  # to apply at the target
    drift: list[Change] = field(default_factory=list)  # made at the target: to import
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: list[RRset] = field(default_factory=list)  # types the target cannot hold
    held: str | None = None  # why the push is held for an operator (safety limit)
    in_sync: int = 0  # RRsets already equal

    @property
    def empty(self) -> bool:
        return not self.push and not self.drift and not self.conflicts


def _change(old: RRset | None, new: RRset | None) -> Change:
    if old is None:
        return Change(Action.CREATE, None, new)
    if new is None:
        return Change(Action.DELETE, old, None)
    return Change(Action.UPDATE, old, new)


def three_way(
    desired: Mapping[Key, RRset],
    last: Mapping[Key, RRset] | None,
    actual: Mapping[Key, RRset],
    *,
    force: bool = False,
    target_size: int | None = None,
) -> Plan:
    """The plan for one target (see the module's text).  ``last`` None: no previous run.
    ``target_size``: the target's records in all, when ``actual`` is only part of it (the
    safety limit is a share of the whole)."""
    plan = Plan()
    for key in sorted({*desired, *actual, *(last or {})}):
        d, a = desired.get(key), actual.get(key)
        if _equal(d, a):
            if d is not None:
                plan.in_sync += 1
            continue
        if last is None:
            plan.push.append(_change(a, d))
            continue
        prev = last.get(key)
        if _equal(a, prev):
            plan.push.append(_change(a, d))
        elif _equal(d, prev):
            plan.drift.append(_change(d, a))
        else:
            plan.conflicts.append(Conflict(key, d, prev, a))
    plan.held = None if force else _safety(plan.push, actual, target_size)
    return plan


def _equal(a: RRset | None, b: RRset | None) -> bool:
    return (a is None and b is None) or (a is not None and a.same_data(b))


def _safety(push: list[Change], actual: Mapping[Key, RRset], size: int | None = None) -> str | None:
    """Why an automatic run must wait for an operator, or None."""
    existing = sum(len(r.values) for r in actual.values()) if size is None else size
    if existing < SAFETY_MIN:
        return None
    touched = sum(
        len(c.old.values) for c in push if c.old is not None and c.action is not Action.CREATE
    )
    if touched > SAFETY_SHARE * existing:
        return (
            f"would change or delete {touched} of the target's {existing} records "
            f"(over {SAFETY_SHARE:.0%}); apply with --force"
        )
    return None
