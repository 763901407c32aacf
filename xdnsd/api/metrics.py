"""``/metrics`` in Prometheus' text format (prometheus-client), built per scrape.

From the node's store: zones, conflicts, peers, targets, the store's size (the state the other
processes keep there).  From the DNS wing's processes: queries (by transport, QTYPE, RCODE) and
their durations, updates, transfers served and NOTIFYs, which each worker and the writer count
in their own memory and flush every second to a file under the data directory; the files are
summed here (:mod:`xdnsd.stats`), so a scrape may lag the last second of traffic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from xdnsd.config import Config
from xdnsd.stats import DURATION_BOUNDS_NS, read_totals
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


class ServerCollector(Collector):
    """The counters of the workers and the writer, summed over their files."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def collect(self) -> Iterator[Metric]:
        totals = read_totals(self.data_dir)
        queries = CounterMetricFamily(
            "xdnsd_queries",
            "queries answered, by transport, QTYPE (common types, the rest as other) and RCODE",
            labels=["transport", "qtype", "rcode"],
        )
        for key, n in sorted(totals.queries.items()):
            queries.add_metric(list(key), n)
        yield queries
        durations = HistogramMetricFamily(
            "xdnsd_query_duration_seconds",
            "time a worker spent on a query answered inline, from receiving to sending",
            labels=["transport"],
        )
        bounds = [repr(ns / 1e9) for ns in DURATION_BOUNDS_NS] + ["+Inf"]
        for transport, histogram in sorted(totals.durations.items()):
            cumulative, buckets = 0, []
            for bound, n in zip(bounds, histogram.buckets, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            durations.add_metric([transport], buckets, histogram.sum_ns / 1e9)
        yield durations
        for name, doc, names, counts in (
            (
                "xdnsd_updates",
                "RFC 2136 updates answered: accepted (NOERROR), failed (SERVFAIL) or refused",
                ["result", "rcode"],
                totals.updates,
            ),
            (
                "xdnsd_transfers",
                "zone transfers served, by result (ok, aborted, failed or the RCODE)",
                ["kind", "result"],
                totals.transfers,
            ),
            (
                "xdnsd_notifies",
                "NOTIFYs received (answered) and sent (answered, timed out or superseded)",
                ["direction", "result"],
                totals.notifies,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=names)
            for pair, n in sorted(counts.items()):
                family.add_metric(list(pair), n)
            yield family


def render(config: Config, store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(config, store))
    registry.register(ServerCollector(store.path))
    return generate_latest(registry)
