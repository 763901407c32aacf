"""The sync service: keeps each (zone, target) pair mirrored (../shared/ARCHITECTURE.md,
"Mirroring to providers").

A run (``Mirror.run``) reads the zone from the store (desired), the target's last applied
state (``cursors``, ``applied/TARGET``) and the target itself (actual), plans three-way
(``plan.three_way``), imports the drift (changes made at the provider) as one changeset from
``provider:TARGET`` through ``Store.commit`` (so it reaches every node and every other
target), pushes the rest, and records the outcome:

* ``sync_status`` ``target/TARGET``: the state operators see: ``in-sync``, ``pending`` (the
  zone changed; a run is due), ``out-of-sync`` (the last run failed: why, since when, next
  try), ``held`` (a conflict, or the safety limit: an operator decides);
* ``target-history/TARGET``: the last ``HISTORY`` runs (start, end, pushed, imported, calls,
  error);
* ``target-conflict/TARGET/ID``: an RRset changed both in the zone and at the provider since
  the last run, differently.  It is left as it is on both sides until resolved
  (``xdnsd conflicts resolve ID --keep local|remote``), which only moves the baseline: the
  next run then pushes the zone's version, or imports the provider's.

``SyncService`` runs the targets this node owns in a process of its own: a run after each
change of the zone (debounced), a full reconcile every ``reconcile_every`` seconds, and after
a failure a retry with exponential backoff and jitter; a target that comes back gets one run
that sends it everything it missed.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from xdnsd.config import TargetConfig
from xdnsd.model import RR, Changeset
from xdnsd.store import Store, StoreError
from xdnsd.upstreams.base import ChangedMeanwhile, Provider, ProviderError
from xdnsd.upstreams.plan import (
    Key,
    Plan,
    RRset,
    for_target,
    owner_text,
    rrsets_from_records,
    three_way,
)

log = logging.getLogger("xdnsd.sync")

HISTORY = 100
DEBOUNCE = 0.2  # seconds after a change before the run (changes close together go together)
RETRY_MIN, RETRY_MAX = 1.0, 300.0
POLL = 0.1  # seconds between looks at the zones' generations (shared memory)


def make_provider(target: TargetConfig) -> Provider:
    """The provider client a target's settings describe."""
    s = target.settings
    if target.kind == "route53":
        from xdnsd.upstreams.route53 import Route53

        return Route53(
            str(s["hosted_zone_id"]),
            endpoint_url=s.get("endpoint_url"),
            region=str(s.get("region", "us-east-1")),
            profile=s.get("profile"),
            access_key_id=s.get("access_key_id"),
            secret_access_key=s.get("secret_access_key"),
        )
    if target.kind == "azure":
        from xdnsd.upstreams.azure import Azure

        zone = target.zone.to_text(omit_final_dot=True) if target.zone else ""
        return Azure(
            subscription_id=str(s["subscription_id"]),
            resource_group=str(s["resource_group"]),
            zone_name=str(s.get("zone_name", zone)),
            tenant_id=s.get("tenant_id"),
            client_id=s.get("client_id"),
            client_secret=s.get("client_secret"),
            authority_host=s.get("authority_host"),
            base_url=str(s.get("base_url", "https://management.azure.com")),
            connection_verify=s.get("ca_file", True),
            # a few quick tries (and any Retry-After): past them, the service's backoff
            retry_total=2,
            retry_backoff_factor=0.5,
            connection_timeout=5.0,
            read_timeout=30.0,
        )
    if target.kind == "rfc2136":
        import dns.tsig

        from xdnsd.upstreams.rfc2136 import Rfc2136

        server = s["server"]
        key = None
        if target.key is not None:
            key = dns.tsig.Key(target.key.name, target.key.secret, target.key.algorithm)
        zone_text = target.zone.to_text() if target.zone else None
        return Rfc2136(
            server.host,
            server.port,
            zone_text,
            key=key,
            timeout=float(s.get("timeout", 5.0)),
        )
    raise ValueError(f"unknown target kind {target.kind!r}")


def rrs_of(rrset: RRset | None) -> list[RR]:
    """An RRset's records (none for None)."""
    if rrset is None:
        return []
    owner = dns.name.from_text(rrset.name)
    rdtype = dns.rdatatype.from_text(rrset.type)
    return [
        RR(owner, rrset.ttl, dns.rdata.from_text(dns.rdataclass.IN, rdtype, value))
        for value in rrset.values
    ]


def _rrset_json(rrset: RRset | None) -> list[Any] | None:
    return None if rrset is None else [rrset.name, rrset.type, rrset.ttl, list(rrset.values)]


def _rrset_from(item: list[Any] | None) -> RRset | None:
    if item is None:
        return None
    return RRset(str(item[0]), str(item[1]), int(item[2]), tuple(str(v) for v in item[3]))


def conflict_id(target: str, key: Key) -> str:
    return hashlib.sha256(f"{target}|{key[0]}|{key[1]}".encode()).hexdigest()[:16]


@dataclass
class RunResult:
    plan: Plan
    full: bool = True  # the target was read (a reconcile), not assumed
    pushed: int = 0
    imported: int = 0
    calls: int = 0
    error: str | None = None
    retry: bool = True


@dataclass
class Mirror:
    """One zone mirrored to one target."""

    store: Store
    target: TargetConfig
    provider: Provider
    clock: Callable[[], float] = time.time
    # the service's bookkeeping
    generation: int = -1  # the zone generation the last good run saw
    # who resolved a conflict the next run acts on (named in its history line and its import)
    requested_by: str | None = None
    due: float = 0.0  # when the next run is due (0: now)
    failures: int = 0
    changed_at: float | None = None  # when a change was first noticed, not yet run
    history: list[dict[str, Any]] = field(default_factory=list)
    # the zone as the target should hold it, at a serial: kept up to date from the journal,
    # so that a push after a change costs what the change touched, not the zone's size
    _cache: tuple[int, dict[Key, RRset], dict[Key, RRset]] | None = None
    _baseline: dict[Key, RRset] | None = None  # the store's applied/TARGET, as loaded

    @property
    def zone(self) -> dns.name.Name:
        assert self.target.zone is not None
        return self.target.zone

    # --- state kept in the store ------------------------------------------------------------

    def forget(self) -> None:
        """Drop what is cached (the baseline changed outside: a resolved conflict)."""
        self._cache = None
        self._baseline = None

    def _last_applied(self) -> dict[Key, RRset] | None:
        if self._baseline is not None:
            return dict(self._baseline)
        name = self.target.name
        head = self.store.status(f"applied/{name}", table="cursors")
        if head is None or head.get("zone") != self.zone.to_text():
            return None
        out: dict[Key, RRset] = {}
        for doc in self.store.statuses(f"applied/{name}/", table="cursors").values():
            rrset = _rrset_from(doc["rrset"])
            assert rrset is not None
            out[rrset.key] = rrset
        self._baseline = dict(out)
        return out

    def _save_applied(self, rrsets: Mapping[Key, RRset]) -> None:
        """The baseline, one document per RRset (``applied/TARGET/NAME TYPE``): a run writes
        only the RRsets it changed."""
        old = self._baseline
        if old is None:
            old = self._last_applied() or {}
        if old == rrsets and self._baseline is not None:
            return
        name = self.target.name
        docs: list[tuple[str, dict[str, Any] | None, str]] = [
            (f"applied/{name}", {"zone": self.zone.to_text()}, "cursors")
        ]
        for key in {*old, *rrsets}:
            if old.get(key) != rrsets.get(key):
                doc = {"rrset": _rrset_json(rrsets[key])} if key in rrsets else None
                docs.append((f"applied/{name}/{key[0]} {key[1]}", doc, "cursors"))
        self.store.put_statuses(docs)
        self._baseline = dict(rrsets)

    def set_baseline(self, rrsets: Mapping[Key, RRset]) -> None:
        """Take ``rrsets`` as what the last run left at the target (an adopted zone)."""
        self._save_applied(rrsets)

    def desired(self) -> tuple[dict[Key, RRset], list[RRset], int]:
        """(what the target should hold, what it cannot, the zone's generation)."""
        kept, skipped, generation, _touched = self._desired()
        return kept, sorted(skipped.values()), generation

    def _desired(
        self,
    ) -> tuple[dict[Key, RRset], dict[Key, RRset], int, set[Key] | None]:
        """... and the RRsets changed since the cached version (None: any may have)."""
        origin = self.zone.to_text()
        with self.store.snapshot() as snap:
            zone = snap.zone(self.zone)
            serial, generation = zone.meta.serial, zone.meta.generation
            found = None
            if self._cache is not None and self._cache[0] != serial:
                found = snap.journal_since(self.zone, self._cache[0])
            if self._cache is not None and (self._cache[0] == serial or found is not None):
                kept, skipped = dict(self._cache[1]), dict(self._cache[2])
                touched: set[Key] = set()
                for _from, _to, removed, added in found[0] if found else []:
                    for rr in (*removed[1:], *added[1:]):  # the SOAs first: not mirrored
                        touched.add((owner_text(rr.owner), dns.rdatatype.to_text(rr.rdata.rdtype)))
                for key in touched:
                    kept.pop(key, None)
                    skipped.pop(key, None)
                    rrset = zone.rrsets_at(dns.name.from_text(key[0])).get(
                        dns.rdatatype.from_text(key[1])
                    )
                    if rrset is None:
                        continue
                    records = [RR(rrset.name, rrset.ttl, rd) for rd in rrset]
                    now, cannot = for_target(
                        rrsets_from_records(records), origin, self.provider.supported
                    )
                    kept.update(now)
                    skipped.update((r.key, r) for r in cannot)
                self._cache = (serial, kept, skipped)
                return dict(kept), dict(skipped), generation, touched
            records = list(zone.iter_records())
        kept, cannot = for_target(rrsets_from_records(records), origin, self.provider.supported)
        skipped = {r.key: r for r in cannot}
        self._cache = (serial, kept, skipped)
        return dict(kept), dict(skipped), generation, None

    def actual(self) -> dict[Key, RRset]:
        return for_target(
            self.provider.read(self.zone.to_text()), self.zone.to_text(), self.provider.supported
        )[0]

    # --- a run --------------------------------------------------------------------------------

    def plan(self, force: bool = False) -> Plan:
        """What a run would do now (reads the target; changes nothing)."""
        desired, skipped, _generation = self.desired()
        plan = three_way(desired, self._last_applied(), self.actual(), force=force)
        plan.skipped = skipped
        return plan

    def run(self, force: bool = False, full: bool = True) -> RunResult:
        """One run.  ``full``: read the whole target (a reconcile: finds drift and
        conflicts); else the target is taken to hold what the last run left there and only
        the zone's changes are pushed, each conditional on that (a push after a commit: no
        listing of the target).  A conditional change that fails means the target moved: the
        run starts again, full."""
        started = self.clock()
        calls_before = getattr(self.provider, "calls", 0)
        result = RunResult(Plan())
        try:
            for attempt in range(3):
                try:
                    self._run_once(result, force, full or attempt > 0)
                    break
                except ChangedMeanwhile as exc:  # the target moved under us: read it again
                    log.info("target %s changed during the run (%s); again", self.target.name, exc)
                    if attempt == 2:
                        raise
        except ProviderError as exc:
            result.error, result.retry = str(exc), exc.retry
        except (StoreError, ValueError) as exc:
            result.error, result.retry = f"{type(exc).__name__}: {exc}", False
        result.calls = getattr(self.provider, "calls", 0) - calls_before
        self._record(result, started)
        return result

    def _run_once(self, result: RunResult, force: bool, full: bool) -> None:
        desired, skipped_by_key, generation, touched = self._desired()
        skipped = sorted(skipped_by_key.values())
        last = self._last_applied()
        result.full = full or last is None
        if result.full:
            actual = self.actual()
            plan = three_way(desired, last, actual, force=force)
        else:  # the target holds what the last run left: only what changed since is looked at
            assert last is not None
            actual = last
            keys = set(desired) | set(last) if touched is None else touched
            plan = three_way(
                {k: desired[k] for k in keys if k in desired},
                {k: last[k] for k in keys if k in last},
                {k: last[k] for k in keys if k in last},
                force=force,
                target_size=sum(len(r.values) for r in last.values()),
            )
        plan.skipped = skipped
        result.plan = plan
        # conflicts: left alone on both sides, listed for an operator
        baseline: dict[Key, RRset] = dict(last or {})
        self._write_conflicts(plan)
        if plan.drift:
            removed = [rr for c in plan.drift for rr in rrs_of(c.old)]
            added = [rr for c in plan.drift for rr in rrs_of(c.new)]
            origin = f"provider:{self.target.name}"
            if self.requested_by:
                origin += f" (conflict resolved by {self.requested_by})"
            cs = Changeset(self.zone, tuple(removed), tuple(added), origin)
            self.store.commit(cs)
            result.imported = len(plan.drift)
            log.info(
                "zone %s: imported %d RRset change(s) made at target %s",
                self.zone,
                len(plan.drift),
                self.target.name,
            )
        if plan.push and plan.held is None:
            self.provider.apply(self.zone.to_text(), plan.push)
            result.pushed = len(plan.push)
        # the new baseline: what both sides now agree on, per RRset; a held push or a
        # conflict keeps the old one (so it is still told apart next time)
        held_keys = {c.key for c in plan.conflicts}
        if plan.held is not None:
            held_keys |= {c.key for c in plan.push}
        looked_at = {*desired, *actual} if result.full or touched is None else touched
        for key in looked_at:
            if key in held_keys:
                continue
            now = actual.get(key) if any(c.key == key for c in plan.drift) else desired.get(key)
            if now is None:
                baseline.pop(key, None)
            else:
                baseline[key] = now
        self._save_applied(baseline)
        self.generation = generation

    # --- conflicts --------------------------------------------------------------------------

    def _write_conflicts(self, plan: Plan) -> None:
        prefix = f"target-conflict/{self.target.name}/"
        old = self.store.statuses(prefix)
        now: dict[str, dict[str, Any]] = {}
        for c in plan.conflicts:
            cid = conflict_id(self.target.name, c.key)
            now[prefix + cid] = {
                "id": cid,
                "kind": "provider",
                "target": self.target.name,
                "zone": self.zone.to_text(),
                "owner": c.key[0],
                "rdtype": c.key[1],
                "local": _rrset_json(c.desired),
                "remote": _rrset_json(c.actual),
                "last": _rrset_json(c.last),
                "since": old.get(prefix + cid, {}).get("since", self.clock()),
            }
            if prefix + cid not in old:
                log.warning(
                    "conflict %s: %s %s changed in zone %s and at target %s since the last "
                    "sync, differently; held until an operator decides: xdnsd conflicts "
                    "resolve %s --keep local|remote",
                    cid,
                    c.key[0],
                    c.key[1],
                    self.zone,
                    self.target.name,
                    cid,
                )
                self.store.count("conflicts_detected")
        docs: list[tuple[str, dict[str, Any] | None]] = [(k, v) for k, v in now.items()]
        docs += [(k, None) for k in old if k not in now]
        for key, doc in docs:
            self.store.put_status(key, doc)

    # --- bookkeeping ------------------------------------------------------------------------

    def _record(self, result: RunResult, started: float) -> None:
        now = self.clock()
        name = self.target.name
        plan = result.plan
        entry = {
            "start": started,
            "end": now,
            "pushed": result.pushed,
            "imported": result.imported,
            "conflicts": len(plan.conflicts),
            "held": plan.held,
            "skipped": [f"{r.name} {r.type}" for r in plan.skipped],
            "calls": result.calls,
            "error": result.error,
            "full": result.full,
        }
        if self.requested_by:
            entry["requested_by"] = self.requested_by
            self.requested_by = None
        history = self.store.status(f"target-history/{name}") or {"runs": []}
        runs = [*history["runs"], entry][-HISTORY:]
        self.store.put_status(f"target-history/{name}", {"runs": runs})
        previous = self.store.status(f"target/{name}") or {}
        if result.error is not None:
            self.failures += 1
            delay = min(RETRY_MAX, RETRY_MIN * 2 ** (self.failures - 1))
            self.due = now + random.uniform(delay / 2, delay)
            state, reason = "out-of-sync", result.error
            log.warning(
                "target %s is out of sync: %s (next try in %.0f s)", name, reason, self.due - now
            )
        else:
            self.failures = 0
            if result.full:
                self.due = now + self.target.reconcile_every
            self.changed_at = None
            if plan.conflicts or plan.held:
                state = "held"
                reason = plan.held or f"{len(plan.conflicts)} conflict(s): xdnsd conflicts list"
            else:
                state, reason = "in-sync", None
        since = previous.get("since") if previous.get("state") == state else now
        self.store.put_status(
            f"target/{name}",
            {
                "target": name,
                "kind": self.target.kind,
                "zone": self.zone.to_text(),
                "owner": self.target.owner,
                "state": state,
                "reason": reason,
                "since": since,
                "last_run": entry,
                "next_run": self.due,
            },
        )

    def mark_pending(self) -> None:
        name = self.target.name
        doc = self.store.status(f"target/{name}") or {
            "target": name,
            "kind": self.target.kind,
            "zone": self.zone.to_text(),
            "owner": self.target.owner,
        }
        if doc.get("state") in ("in-sync", None):
            doc.update(state="pending", reason="the zone changed", since=self.clock())
            self.store.put_status(f"target/{name}", doc)


def resolve_conflict(store: Store, doc: Mapping[str, Any], keep: str, by: str | None = None) -> str:
    """End a target conflict: ``keep`` "local" (the zone's version is pushed at the next run)
    or "remote" (the provider's is imported): only the baseline moves.  ``by``: who resolved
    it, named in the next run's history line and in the zone's history for an import."""
    target = str(doc["target"])
    # the baseline becomes the side that lost: the next run sees only the kept side changed
    base = doc["remote"] if keep == "local" else doc["local"]
    store.put_statuses(
        [
            (
                f"applied/{target}/{doc['owner']} {doc['rdtype']}",
                None if base is None else {"rrset": base},
                "cursors",
            ),
            (f"target-conflict/{target}/{doc['id']}", None, "sync_status"),
            (
                f"target-request/{target}",
                {"run": True, "forget": True, **({"by": by} if by else {})},
                "sync_status",
            ),
        ]
    )
    side = "the zone's version is pushed" if keep == "local" else "the provider's is imported"
    return f"{side} at the next run of target {target}"


class SyncService:
    """Runs this node's targets until ``stopping()``."""

    def __init__(self, store: Store, mirrors: list[Mirror]) -> None:
        self.store = store
        self.mirrors = mirrors
        self._zone_ids: dict[dns.name.Name, int] = {}

    def _generation(self, mirror: Mirror) -> int:
        zone_id = self._zone_ids.get(mirror.zone)
        if zone_id is None:
            meta = self.store.zone_for(mirror.zone)
            if meta is None or meta.name != mirror.zone:
                return -1
            zone_id = self._zone_ids[mirror.zone] = meta.zone_id
        return self.store.generations.get(zone_id)

    def tick(self, now: float | None = None) -> None:
        for mirror in self.mirrors:
            self.tick_one(mirror, now)

    def tick_one(self, mirror: Mirror, now: float | None = None) -> None:
        now = time.time() if now is None else now
        generation = self._generation(mirror)
        if generation < 0:
            return  # the zone is not here (yet)
        request = self.store.status(f"target-request/{mirror.target.name}")
        if request is not None:
            self.store.put_status(f"target-request/{mirror.target.name}", None)
            mirror.forget()  # the baseline may have changed outside this process
            mirror.requested_by = request.get("by")
            mirror.due = 0.0
        if now >= mirror.due:  # a reconcile, or a retry after a failure
            mirror.run(full=True)
        elif generation != mirror.generation and mirror.failures == 0:
            if mirror.changed_at is None:
                mirror.changed_at = now
                mirror.mark_pending()
            if now - mirror.changed_at >= DEBOUNCE:
                mirror.run(full=False)  # push the zone's changes

    def serve(self, stopping: Callable[[], bool]) -> None:
        """Each target in a thread of its own: a slow or unreachable provider does not hold
        the others back."""

        def loop(mirror: Mirror) -> None:
            while not stopping():
                try:
                    self.tick_one(mirror)
                except Exception:
                    log.exception("sync of target %s failed", mirror.target.name)
                time.sleep(POLL)

        threads = [
            threading.Thread(target=loop, args=(m,), name=f"sync-{m.target.name}", daemon=True)
            for m in self.mirrors
        ]
        for thread in threads:
            thread.start()
        while not stopping():
            time.sleep(POLL)
        # a run in progress may be waiting on its provider: give it a moment, no more (the
        # threads are daemons; a commit cut short is rolled back by LMDB)
        deadline = time.monotonic() + 2.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
