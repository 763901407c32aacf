"""Counters of the DNS wing's processes (queries, updates, transfers, NOTIFYs), shared with the
API's ``/metrics`` through small files under the data directory.

Each process counts in plain Python ints and lists of its own (the query path adds one to a
list item per answer: no lock, no shared memory, no system call) and :meth:`ProcessStats.flush`
writes the totals, every second and at exit, to ``<data_dir>/stats/<role>.json`` (a temporary
file renamed over it: a reader never sees half a file).  The API sums the files at each scrape.
Files are named by role and worker index (``worker-0``, ``writer``), not by pid, and ``xdnsd
serve`` empties the directory when it starts, so nothing is counted twice; a process restarted
within a run starts again from zero, which Prometheus reads as a counter reset.

Queries are counted by transport, QTYPE (a fixed list of common types, the rest as ``other``)
and RCODE, in a flat list indexed by :func:`query_slot` so the hot path does one list update.
Durations go into a fixed set of histogram buckets (nanoseconds), observed by the transports
(see :class:`~xdnsd.server.protocols.UDPListener` for how UDP keeps that off the hot path).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype

log = logging.getLogger("xdnsd.stats")

FORMAT = 1
FLUSH_INTERVAL = 1.0  # seconds between two flushes of a process's counters

TRANSPORTS = ("udp", "tcp")
QTYPES = (
    "A",
    "AAAA",
    "CNAME",
    "MX",
    "NS",
    "PTR",
    "SOA",
    "SRV",
    "TXT",
    "CAA",
    "DS",
    "DNSKEY",
    "HTTPS",
    "SVCB",
    "NAPTR",
    "ANY",
    "other",
)
_QTYPE_INDEX = {int(dns.rdatatype.from_text(t)): i for i, t in enumerate(QTYPES[:-1])}
_OTHER = len(QTYPES) - 1
RCODE_SLOTS = 17  # RCODEs 0 to 15 (the header's four bits) and BADVERS (16, with EDNS)
RCODES = tuple(dns.rcode.to_text(dns.rcode.Rcode.make(i)) for i in range(RCODE_SLOTS))
QUERY_SLOTS = len(QTYPES) * RCODE_SLOTS

# upper bounds of the query duration buckets, in nanoseconds (+Inf is implied)
DURATION_BOUNDS_NS = (
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
)
FIRST_BOUND_NS = DURATION_BOUNDS_NS[0]


def query_slot(qtype: int, rcode: int) -> int:
    """The index of (QTYPE, RCODE) in a transport's query counts."""
    return _QTYPE_INDEX.get(qtype, _OTHER) * RCODE_SLOTS + min(max(rcode, 0), RCODE_SLOTS - 1)


def response_rcode(wire: bytes) -> int:
    """The RCODE of a response: the header's four bits, with the OPT record's upper bits when
    the response is an error carrying only the question and an OPT (how BADVERS is sent)."""
    rcode = wire[3] & 0xF
    if rcode == 0 and wire[4:12] == b"\x00\x01\x00\x00\x00\x00\x00\x01":
        end = wire.find(b"\x00", 12) + 5  # after the question (an error echoes it as sent)
        if wire[end : end + 3] == b"\x00\x00\x29" and len(wire) >= end + 11:
            rcode |= wire[end + 5] << 4
    return rcode


@dataclass
class Histogram:
    """Observations in ``DURATION_BOUNDS_NS`` buckets (not cumulative) and their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS_NS) + 1))
    sum_ns: int = 0

    def observe(self, ns: int) -> None:
        self.buckets[bisect.bisect_left(DURATION_BOUNDS_NS, ns)] += 1
        self.sum_ns += ns

    def observe_shared(self, total_ns: int, count: int) -> None:
        """``count`` observations that took ``total_ns`` together, each counted at the mean."""
        self.buckets[bisect.bisect_left(DURATION_BOUNDS_NS, total_ns // count)] += count
        self.sum_ns += total_ns


class ProcessStats:
    """The counters of one process, flushed to ``path`` (None: counted, never written)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        # per transport: query counts by query_slot(), durations
        self.queries: tuple[list[int], list[int]] = ([0] * QUERY_SLOTS, [0] * QUERY_SLOTS)
        self.durations = (Histogram(), Histogram())
        # UDP answers the answer engine computed (timed one by one) and their time, for the
        # transport to take out of its batches (see UDPListener.doRead)
        self.udp_fresh = 0
        self.udp_fresh_ns = 0
        self.updates: dict[tuple[str, str], int] = {}  # (result, rcode)
        self.transfers: dict[tuple[str, str], int] = {}  # (kind, result)
        self.notifies: dict[tuple[str, str], int] = {}  # (direction, result)
        self._written = ""
        self._next_flush = 0.0

    # --- counting (the hot path's part is inline in the transports and the fast path) ---

    def count_query(self, tcp: bool, qtype: int, response: bytes | None) -> None:
        if response:
            self.queries[tcp][query_slot(qtype, response_rcode(response))] += 1

    def count_update(self, rcode: int) -> None:
        result = "accepted" if rcode == 0 else "failed" if rcode == 2 else "refused"
        _add(self.updates, (result, _rcode_text(rcode)))

    def count_transfer(self, kind: str, result: str) -> None:
        _add(self.transfers, (kind, result))

    def count_notify(self, direction: str, result: str) -> None:
        _add(self.notifies, (direction, result))

    # --- the file ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        queries = [
            [transport, QTYPES[slot // RCODE_SLOTS], RCODES[slot % RCODE_SLOTS], n]
            for transport, counts in zip(TRANSPORTS, self.queries, strict=True)
            for slot, n in enumerate(counts)
            if n
        ]
        durations = {
            transport: {"buckets": list(h.buckets), "sum_ns": h.sum_ns}
            for transport, h in zip(TRANSPORTS, self.durations, strict=True)
            if any(h.buckets)
        }
        return {
            "format": FORMAT,
            "bounds_ns": list(DURATION_BOUNDS_NS),
            "queries": queries,
            "durations": durations,
            "updates": [[*labels, n] for labels, n in sorted(self.updates.items())],
            "transfers": [[*labels, n] for labels, n in sorted(self.transfers.items())],
            "notifies": [[*labels, n] for labels, n in sorted(self.notifies.items())],
        }

    def flush(self) -> None:
        """Write the totals if they changed since the last write (errors are logged)."""
        if self.path is None:
            return
        text = json.dumps(self.snapshot(), separators=(",", ":"))
        if text == self._written:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot write the counters to %s: %s", self.path, exc)
            return
        self._written = text

    def maybe_flush(self, now: float) -> None:
        """``flush()`` at most once per ``FLUSH_INTERVAL`` (``now``: a monotonic clock)."""
        if now >= self._next_flush:
            self._next_flush = now + FLUSH_INTERVAL
            self.flush()


def _add(counts: dict[tuple[str, str], int], labels: tuple[str, str]) -> None:
    counts[labels] = counts.get(labels, 0) + 1


def _rcode_text(rcode: int) -> str:
    return RCODES[min(max(rcode, 0), RCODE_SLOTS - 1)]


def rcode_result(rcode: int) -> str:
    """A result label for an error answer: the RCODE's name in lower case (``refused``)."""
    return _rcode_text(rcode).lower()


# --------------------------------------------------------------------------- files


def stats_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "stats"


def stats_file(data_dir: Path, role: str) -> Path:
    """Where the process ``role`` (``worker-0``, ``writer``) writes its counters."""
    return stats_dir(data_dir) / f"{role}.json"


def clear_stats(data_dir: Path) -> None:
    """Remove the files of an earlier run (``xdnsd serve`` starting)."""
    directory = stats_dir(data_dir)
    for path in directory.glob("*.json*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass
class Totals:
    """The counters of every process of the node, summed (what ``/metrics`` exports)."""

    queries: dict[tuple[str, str, str], int] = field(default_factory=dict)
    durations: dict[str, Histogram] = field(default_factory=dict)
    updates: dict[tuple[str, str], int] = field(default_factory=dict)
    transfers: dict[tuple[str, str], int] = field(default_factory=dict)
    notifies: dict[tuple[str, str], int] = field(default_factory=dict)


def read_totals(data_dir: Path) -> Totals:
    """Sum the counters the processes last flushed; unreadable files are skipped (logged)."""
    totals = Totals()
    for path in sorted(stats_dir(data_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            _merge(totals, doc)
        except FileNotFoundError:
            continue  # removed by a server starting
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("counters in %s skipped: %s", path, exc)
    return totals


def _merge(totals: Totals, doc: dict[str, Any]) -> None:
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
    for transport, qtype, rcode, n in doc["queries"]:
        key = (str(transport), str(qtype), str(rcode))
        totals.queries[key] = totals.queries.get(key, 0) + int(n)
    if doc["durations"] and list(doc["bounds_ns"]) != list(DURATION_BOUNDS_NS):
        raise ValueError("duration buckets of another version")
    for transport, h in doc["durations"].items():
        into = totals.durations.setdefault(str(transport), Histogram())
        for i, n in enumerate(h["buckets"]):
            into.buckets[i] += int(n)
        into.sum_ns += int(h["sum_ns"])
    for name in ("updates", "transfers", "notifies"):
        target: dict[tuple[str, str], int] = getattr(totals, name)
        for a, b, n in _rows(doc[name]):
            target[(a, b)] = target.get((a, b), 0) + n


def _rows(rows: Iterable[list[Any]]) -> Iterator[tuple[str, str, int]]:
    for a, b, n in rows:
        yield str(a), str(b), int(n)
