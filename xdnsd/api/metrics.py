"""``/metrics`` in Prometheus' text format (prometheus-client), from the node's store: zones,
conflicts, peers, targets, the store's size.  Built per scrape from the state the other
processes keep in the store, so it needs no shared counters.  (Query, update and transfer
counters from the workers are not here yet: they need counters shared by the workers.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xdnsd.config import Config
from xdnsd.store import Store

STATES = ("in-sync", "pending", "out-of-sync", "held", "unknown")


class StoreCollector(Collector):
    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store

    def collect(self) -> Iterator[Metric]:
        serial = GaugeMetricFamily("xdnsd_zone_serial", "SOA serial served", labels=["zone"])
        open_ = GaugeMetricFamily(
            "xdnsd_conflicts_open", "conflicts waiting for an operator", labels=["zone", "kind"]
        )
        counts: dict[tuple[str, str], int] = {}
        with self.store.snapshot() as snap:
            for meta in snap.zones():
                zone = meta.name.to_text()
                serial.add_metric([zone], meta.serial)
                for found in snap.conflicts(meta.name):
                    key = (zone, str(found["kind"]))
                    counts[key] = counts.get(key, 0) + 1
        for conflict in self.store.statuses("target-conflict/").values():
            key = (str(conflict["zone"]), "provider")
            counts[key] = counts.get(key, 0) + 1
        for (zone, kind), n in sorted(counts.items()):
            open_.add_metric([zone, kind], n)
        yield serial
        yield open_
        detected = self.store.counters().get("conflicts_detected", 0)
        yield CounterMetricFamily(
            "xdnsd_conflicts_detected", "conflicts this node saw appear", value=detected
        )
        connected = GaugeMetricFamily("xdnsd_peer_connected", "1 when connected", labels=["peer"])
        lag = GaugeMetricFamily(
            "xdnsd_peer_lag_changes", "changes the peer has not acknowledged", labels=["peer"]
        )
        peers = self.store.statuses("peer/")
        for peer in self.config.peers:
            doc: dict[str, Any] = peers.get(f"peer/{peer.id}") or {}
            connected.add_metric([peer.id], 1.0 if doc.get("connected") else 0.0)
            lag.add_metric([peer.id], float(doc.get("lag") or 0))
        yield connected
        yield lag
        state = GaugeMetricFamily(
            "xdnsd_target_state", "1 for the target's current state", labels=["target", "state"]
        )
        duration = GaugeMetricFamily(
            "xdnsd_target_last_sync_seconds", "how long the last sync run took", labels=["target"]
        )
        calls = GaugeMetricFamily(
            "xdnsd_target_last_sync_calls", "API calls of the last sync run", labels=["target"]
        )
        targets = self.store.statuses("target/")
        for target in self.config.targets.values():
            doc = targets.get(f"target/{target.name}") or {}
            current = str(doc.get("state") or "unknown")
            for name in STATES:
                state.add_metric([target.name, name], 1.0 if name == current else 0.0)
            last = doc.get("last_run") or {}
            if last:
                duration.add_metric([target.name], float(last["end"]) - float(last["start"]))
                calls.add_metric([target.name], float(last["calls"]))
        yield state
        yield duration
        yield calls
        size = sum(f.stat().st_size for f in Path(self.store.path / "db").glob("*.mdb"))
        yield GaugeMetricFamily("xdnsd_store_bytes", "size of the LMDB store", value=size)


def render(config: Config, store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(config, store))
    return generate_latest(registry)
