"""The single writer of a worker process: one thread that commits changes in batches.

Requests queue up while the thread is busy syncing the previous batch; the next batch takes all
of them (up to ``max_batch``) into one LMDB write transaction and one sync (group commit).  Each
request's Deferred fires in the reactor thread only after its batch is on disk, so every client
is answered after its own change is durable.  Across worker processes LMDB's writer lock
serializes the batches, and planning inside the transaction keeps check-then-write atomic.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import dns.name
from twisted.internet.defer import Deferred

from xdnsd.model import CommitResult
from xdnsd.store import Planner, Store

log = logging.getLogger("xdnsd.writer")

Outcome = CommitResult | Exception | None


class Writer:
    def __init__(self, store: Store, reactor: Any, max_batch: int = 512) -> None:
        self._store = store
        self._reactor = reactor
        self._max_batch = max_batch
        self._queue: deque[tuple[dns.name.Name, Planner, Deferred[Outcome]]] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self.batches = 0
        self.changes = 0
        self._thread = threading.Thread(target=self._run, name="xdnsd-writer", daemon=True)
        self._thread.start()

    def submit(self, zone: dns.name.Name, planner: Planner) -> Deferred[Outcome]:
        """Queue a planned change; the Deferred fires (in the reactor) once it is committed.

        Its result is the commit result, None when the planner decided on no change, or the
        exception that kept the change out of the store.
        """
        d: Deferred[Outcome] = Deferred()
        with self._wake:
            if self._stopping:
                raise RuntimeError("the writer is stopping")
            self._queue.append((zone, planner, d))
            self._wake.notify()
        return d

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return  # stopping and drained
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))
                ]
            try:
                outcomes: list[Outcome] = list(
                    self._store.commit_batch([(zone, planner) for zone, planner, _ in batch])
                )
            except Exception as exc:  # the whole transaction failed (disk, map): nothing landed
                log.exception("a batch of %d changes failed; none was applied", len(batch))
                outcomes = [exc] * len(batch)
            self.batches += 1
            self.changes += len(batch)
            # one wake-up of the reactor per batch, not per change
            fired = [(d, o) for (_z, _p, d), o in zip(batch, outcomes, strict=True)]
            self._reactor.callFromThread(_fire, fired)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)


def _fire(results: list[tuple[Deferred[Outcome], Outcome]]) -> None:
    for d, outcome in results:
        d.callback(outcome)
