"""Secondary zones: xdnsd takes a zone from external primaries (RFC 1034 4.3.5, RFC 1995,
RFC 1996, RFC 5936), inside the writer process.

For each zone that has ``primaries`` in the config, a :class:`SecondaryKeeper` keeps the SOA
timers of the zone it holds: a check every *refresh* seconds, every *retry* seconds while the
primaries cannot be reached, and the zone *expires* (answered SERVFAIL, as BIND and Knot do) when
no check succeeded for *expire* seconds.  A NOTIFY from a primary (the workers pass it to the
writer over their link) and ``xdnsd zone retransfer`` start a check at once.

A check asks the primaries, in order, for their SOA (UDP, TCP when truncated); when the serial is
newer than ours it asks the same primary for an IXFR from our serial, or for an AXFR when the
zone is new here or a full copy was asked for (and when the primary does not do IXFR).  What a
transfer changes is committed as one changeset (origin ``xfr:PRIMARY``) through the store's one
commit path: it is journalled for our own secondaries' IXFR, NOTIFYs them, and reaches peers and
provider targets like any other change.  An IXFR is planned inside the write transaction (its
base serial must still be ours), an AXFR becomes the difference from what we hold.

The network side is blocking dnspython, so it runs in a small thread pool; each result comes
back to the writer's loop through a wake-up socket and is committed there, by the one thread
that writes.  The state operators see (last transfer, serial, errors, expiry) is kept in the
store's ``sync_status`` under ``xfr-in/ZONE``; ``xdnsd zone retransfer`` leaves a request under
``xfr-request/ZONE`` that the keeper picks up within a second.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.xfr

from xdnsd.config import ListenAddress
from xdnsd.model import RR, Changeset, CommitResult, serial_gt
from xdnsd.server.tsig import TsigKey
from xdnsd.server.xfr import JournalEntry, condense
from xdnsd.store import Store, ZoneSnapshot
from xdnsd.zonefile import create_changeset, plan_import

log = logging.getLogger("xdnsd.xfrin")

SOA = int(dns.rdatatype.SOA)
STATUS_PREFIX = "xfr-in/"
REQUEST_PREFIX = "xfr-request/"
SOA_TIMEOUT = 2.0  # seconds for each primary's SOA answer
MESSAGE_TIMEOUT = 30.0  # seconds for each message of a transfer
TRANSFER_LIFETIME = 3600.0  # a transfer that takes longer than this is abandoned
MIN_TIMER = 1  # refresh / retry / expire below this (seconds) are raised to it
MAX_TIMER = 7 * 86400  # refresh / retry above this are lowered to it (Knot caps at a day)
FIRST_RETRY_MAX = 60.0  # a zone not loaded yet is retried after 1, 2, 4 ... up to this
POLL_INTERVAL = 1.0  # look for ``xdnsd zone retransfer`` requests


@dataclass(frozen=True, slots=True)
class SecondarySpec:
    zone: dns.name.Name
    primaries: tuple[ListenAddress, ...]
    key: TsigKey | None = None


def status_key(zone: dns.name.Name) -> str:
    return STATUS_PREFIX + zone.to_text()


def request_key(zone: dns.name.Name) -> str:
    return REQUEST_PREFIX + zone.to_text()


# --------------------------------------------------------------------------- reading a transfer


class TransferFormError(Exception):
    """A transfer whose records do not make sense (the primary's fault); nothing is applied."""


class PrimaryError(Exception):
    """A primary's answer to the SOA query that cannot be used."""


@dataclass(slots=True)
class Fetched:
    """What a check brought back from a primary (or why it failed)."""

    zone: dns.name.Name
    primary: str = ""
    kind: str = ""  # "IXFR", "AXFR", "current" (nothing newer), "" when it failed
    soa: RR | None = None  # the primary's SOA
    base: int | None = None  # an IXFR: the serial its difference starts from
    removed: list[RR] = field(default_factory=list)  # an IXFR's net difference
    added: list[RR] = field(default_factory=list)
    records: list[RR] | None = None  # an AXFR: the whole zone
    error: str | None = None

    @property
    def serial(self) -> int | None:
        return None if self.soa is None else _serial(self.soa)


def _serial(soa: RR) -> int:
    return int(soa.rdata.serial)  # type: ignore[attr-defined]


def read_axfr(zone: dns.name.Name, rrs: list[RR]) -> tuple[RR, list[RR]]:
    """(SOA, every record with the SOA first) of an AXFR's answer records in order (RFC 5936:
    SOA first and last; dnspython may fold the closing SOA into the opening one)."""
    if not rrs or rrs[0].rdtype != SOA:
        raise TransferFormError("the transfer does not start with the SOA")
    soa = rrs[0]
    body = [rr for rr in rrs[1:] if rr.rdtype != SOA]
    if any(rr.rdtype == SOA and rr != soa for rr in rrs[1:]):
        raise TransferFormError("the transfer has a second, different SOA")
    outside = next((rr for rr in body if not rr.owner.is_subdomain(zone)), None)
    if outside is not None:
        raise TransferFormError(f"record {outside.owner} is outside the zone")
    if soa.owner != zone:
        raise TransferFormError(f"the SOA is at {soa.owner}, not at the zone apex")
    return soa, [soa, *body]


def read_ixfr(zone: dns.name.Name, rrs: list[RR]) -> Fetched:
    """An IXFR's answer records in order (RFC 1995 4): the current SOA alone (nothing newer),
    an AXFR-style answer, or sequences of (old SOA, deletions, new SOA, additions) condensed
    into one net difference."""
    if not rrs or rrs[0].rdtype != SOA:
        raise TransferFormError("the IXFR does not start with the SOA")
    final = rrs[0]
    if len(rrs) == 1:
        return Fetched(zone, kind="current", soa=final)
    if rrs[1].rdtype != SOA or (len(rrs) == 2 and rrs[1] == final):
        soa, records = read_axfr(zone, rrs)  # AXFR-style (RFC 1995 4)
        return Fetched(zone, kind="AXFR", soa=soa, records=records)
    if rrs[-1].rdtype != SOA or _serial(rrs[-1]) != _serial(final):
        raise TransferFormError("the IXFR does not end with the current SOA")
    body = rrs[1:-1]  # (old SOA, deletions, new SOA, additions) ...
    entries: list[JournalEntry] = []
    i = 0
    while i < len(body):
        old = body[i]
        gone: list[RR] = []
        i += 1
        while i < len(body) and body[i].rdtype != SOA:
            gone.append(body[i])
            i += 1
        if i >= len(body):
            raise TransferFormError("an IXFR sequence has no new SOA")
        new = body[i]
        came: list[RR] = []
        i += 1
        while i < len(body) and body[i].rdtype != SOA:
            came.append(body[i])
            i += 1
        if entries and entries[-1][1] != _serial(old):
            raise TransferFormError("IXFR sequences do not follow each other")
        entries.append((_serial(old), _serial(new), gone, came))
    if not entries or entries[-1][1] != _serial(final):
        raise TransferFormError("the IXFR does not end at the current serial")
    base = entries[0][0]
    for _from, _to, gone, came in entries:
        outside = next((rr for rr in gone + came if not rr.owner.is_subdomain(zone)), None)
        if outside is not None:
            raise TransferFormError(f"record {outside.owner} is outside the zone")
    removed, added = condense(entries)
    return Fetched(zone, kind="IXFR", soa=final, base=base, removed=removed, added=added)


def _records(messages: Iterable[dns.message.Message]) -> list[RR]:
    out: list[RR] = []
    for message in messages:
        for rrset in message.answer:
            out.extend(RR(rrset.name, rrset.ttl, rdata) for rdata in rrset)
    return out


# --------------------------------------------------------------------------- talking to primaries


def _keyring(key: TsigKey | None) -> dict[str, Any]:
    if key is None:
        return {}
    return {
        "keyring": {key.name: key.dnspython_key()},
        "keyname": key.name,
        "keyalgorithm": key.algorithm,
    }


def query_soa(spec: SecondarySpec, primary: ListenAddress, timeout: float = SOA_TIMEOUT) -> RR:
    query = dns.message.make_query(spec.zone, dns.rdatatype.SOA)
    query.flags &= ~dns.flags.RD
    if spec.key is not None:
        query.use_tsig(spec.key.dnspython_key(), algorithm=spec.key.algorithm)
    response, _tcp = dns.query.udp_with_fallback(
        query, primary.host, timeout=timeout, port=primary.port
    )
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise PrimaryError(f"SOA query answered {dns.rcode.to_text(rcode)}")
    if not response.flags & dns.flags.AA:
        raise PrimaryError("SOA answer is not authoritative")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == spec.zone and len(rrset) == 1:
            return RR(rrset.name, rrset.ttl, rrset[0])
    raise PrimaryError("SOA answer has no SOA of the zone")


def transfer(
    spec: SecondarySpec,
    primary: ListenAddress,
    ours: int | None,
    timeout: float = MESSAGE_TIMEOUT,
) -> Fetched:
    """An IXFR from serial ``ours`` (an AXFR when None); an IXFR the primary does not serve
    (NOTIMP, FORMERR, SERVFAIL) is asked again as an AXFR, as BIND does."""
    rdtype = dns.rdatatype.AXFR if ours is None else dns.rdatatype.IXFR
    try:
        messages = dns.query.xfr(
            primary.host,
            spec.zone,
            rdtype,
            port=primary.port,
            timeout=timeout,
            lifetime=TRANSFER_LIFETIME,
            relativize=False,
            serial=ours or 0,
            raise_on_serial_went_backwards=False,
            **_keyring(spec.key),
        )
        rrs = _records(messages)
    except dns.xfr.TransferError as exc:
        retry = (dns.rcode.NOTIMP, dns.rcode.FORMERR, dns.rcode.SERVFAIL)
        if ours is not None and exc.rcode in retry:
            log.info(
                "zone %s: %s answered IXFR with %s; asking for AXFR",
                spec.zone,
                primary,
                dns.rcode.to_text(exc.rcode),
            )
            return transfer(spec, primary, None, timeout)
        raise
    if ours is None:
        soa, records = read_axfr(spec.zone, rrs)
        return Fetched(spec.zone, kind="AXFR", soa=soa, records=records)
    return read_ixfr(spec.zone, rrs)


def fetch(spec: SecondarySpec, ours: int | None, full: bool) -> Fetched:
    """One refresh check (RFC 1034 4.3.5): the first primary that answers decides.  Blocking."""
    errors = []
    for primary in spec.primaries:
        where = str(primary)
        try:
            soa = query_soa(spec, primary)
        except (dns.exception.DNSException, OSError, PrimaryError) as exc:
            errors.append(f"{where}: SOA query failed: {_describe(exc)}")
            continue
        serial = _serial(soa)
        if ours is not None and not full and not serial_gt(serial, ours):
            if serial != ours:
                log.warning(
                    "zone %s: primary %s has serial %d, older than ours (%d); not transferring",
                    spec.zone,
                    where,
                    serial,
                    ours,
                )
            return Fetched(spec.zone, where, "current", soa)
        try:
            got = transfer(spec, primary, None if full else ours)
        except TransferFormError as exc:
            errors.append(f"{where}: bad transfer: {exc}")
            continue
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            kind = "AXFR" if ours is None or full else "IXFR"
            errors.append(f"{where}: {kind} failed: {_describe(exc)}")
            continue
        got.primary = where
        return got
    return Fetched(spec.zone, error="; ".join(errors) or "no primaries")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, dns.xfr.TransferError):
        return f"answered {dns.rcode.to_text(exc.rcode)}"
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    return text or type(exc).__name__


# --------------------------------------------------------------------------- the keeper


@dataclass(slots=True)
class _Zone:
    spec: SecondarySpec
    serial: int | None = None  # what we hold (None: nothing yet)
    refresh: float = 0.0
    retry: float = 0.0
    expire: float = 0.0
    next_check: float = 0.0  # monotonic
    expires_at: float | None = None  # wall clock: when the zone expires without a check
    expired: bool = False
    running: concurrent.futures.Future[Fetched] | None = None
    again: bool = False  # a NOTIFY came while a check was running
    full: bool = False  # the next check transfers the whole zone
    failures: int = 0
    status: dict[str, Any] = field(default_factory=dict)


def _timers(soa: RR) -> tuple[float, float, float]:
    rdata: Any = soa.rdata
    refresh = min(max(int(rdata.refresh), MIN_TIMER), MAX_TIMER)
    retry = min(max(int(rdata.retry), MIN_TIMER), MAX_TIMER)
    expire = max(int(rdata.expire), MIN_TIMER, refresh)
    return float(refresh), float(retry), float(expire)


class SecondaryKeeper:
    """The timers, checks and commits of this node's secondary zones (writer process)."""

    def __init__(
        self,
        store: Store,
        specs: Mapping[dns.name.Name, SecondarySpec],
        on_commit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        fetcher: Callable[[SecondarySpec, int | None, bool], Fetched] = fetch,
        threads: int = 4,
    ) -> None:
        self._store = store
        self._clock = clock
        self._wall = wall
        self._fetch = fetcher
        self._on_commit = on_commit
        self._zones = {zone: _Zone(spec) for zone, spec in specs.items()}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._threads = threads
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sockets = [self._wake_r]
        self._next_poll = 0.0
        self._load()

    @property
    def enabled(self) -> bool:
        return bool(self._zones)

    def _load(self) -> None:
        """Take up what the store holds: serials, timers, and expiry deadlines kept across
        restarts (a zone that expired while xdnsd was stopped is expired now)."""
        now, wall = self._clock(), self._wall()
        present = {meta.name: meta for meta in self._store.list_zones()}
        for zone, state in self._zones.items():
            state.status = self._store.status(status_key(zone)) or {
                "zone": zone.to_text(),
                "primaries": [str(p) for p in state.spec.primaries],
            }
            meta = present.get(zone)
            state.next_check = now  # check at start, as BIND does
            if meta is None:
                continue
            with self._store.snapshot() as snap:
                soa = snap.zone(zone).soa()
            state.serial = meta.serial
            state.refresh, state.retry, state.expire = _timers(soa)
            state.expired = meta.expired
            kept = state.status.get("expires_at")
            state.expires_at = float(kept) if kept is not None else wall + state.expire
            if not state.expired and wall >= state.expires_at:
                self._expire(state)

    # --- events ---------------------------------------------------------------------------

    def notify(self, zone: dns.name.Name, serial: int | None, source: str) -> int:
        """A NOTIFY a worker accepted from a primary: check now, unless its serial is one we
        hold already.  Returns the rcode to answer."""
        state = self._zones.get(zone)
        if state is None:
            return int(dns.rcode.NOTAUTH)
        current = state.serial
        if serial is not None and current is not None and not serial_gt(serial, current):
            log.info(
                "NOTIFY for zone %s serial %d from %s: up to date (we have %d)",
                zone,
                serial,
                source,
                current,
            )
            return int(dns.rcode.NOERROR)
        log.info("NOTIFY for zone %s serial %s from %s: checking now", zone, serial, source)
        if state.running is not None:
            state.again = True
        else:
            state.next_check = self._clock()
        return int(dns.rcode.NOERROR)

    def retransfer(self, zone: dns.name.Name) -> bool:
        state = self._zones.get(zone)
        if state is None:
            return False
        state.full = True
        if state.running is not None:
            state.again = True
        else:
            state.next_check = self._clock()
        return True

    def readable(self, sock: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while sock.recv(512):
                pass
        self._collect()

    # --- the loop's side --------------------------------------------------------------------

    def timeout(self) -> float:
        now = self._clock()
        due = [self._next_poll]
        for state in self._zones.values():
            if state.running is None:
                due.append(state.next_check)
            if state.expires_at is not None and not state.expired:
                due.append(now + max(0.0, state.expires_at - self._wall()))
        return max(0.0, min(due) - now)

    def tick(self) -> None:
        now = self._clock()
        if now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL
            self._take_requests()
        self._collect()
        wall = self._wall()
        for state in self._zones.values():
            if not state.expired and state.expires_at is not None and wall >= state.expires_at:
                self._expire(state)
            if state.running is None and now >= state.next_check:
                self._start(state)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()

    def _take_requests(self) -> None:
        for key in self._store.statuses(REQUEST_PREFIX):
            zone = dns.name.from_text(key[len(REQUEST_PREFIX) :])
            self._store.put_status(key, None)
            if self.retransfer(zone):
                log.info("zone %s: a full transfer was asked for (xdnsd zone retransfer)", zone)
            else:
                log.warning("retransfer asked for zone %s, which is not a secondary here", zone)

    def _start(self, state: _Zone) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self._threads, thread_name_prefix="xfrin"
            )
        full, state.full = state.full, False
        state.again = False
        state.status["last_check"] = self._wall()
        if full:
            state.status["full_check"] = state.status["last_check"]  # xdnsd zone retransfer
        state.running = self._pool.submit(self._fetch, state.spec, state.serial, full)
        state.running.add_done_callback(self._wake)

    def _wake(self, _future: object) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")

    def _collect(self) -> None:
        for state in self._zones.values():
            future = state.running
            if future is None or not future.done():
                continue
            state.running = None
            try:
                got = future.result()
            except Exception as exc:  # a bug, not the network: keep the timers going
                log.exception("zone %s: refresh check failed", state.spec.zone)
                got = Fetched(state.spec.zone, error=f"internal error: {exc}")
            self._finish(state, got)
            if state.again:
                state.next_check = self._clock()

    def _finish(self, state: _Zone, got: Fetched) -> None:
        now, wall = self._clock(), self._wall()
        zone = state.spec.zone
        status = state.status
        if got.error is None and got.kind in ("IXFR", "AXFR"):
            outcome = self._commit(state, got)
            if isinstance(outcome, str):
                got.error = outcome
        if got.error is not None:
            state.failures += 1
            if state.serial is None:
                delay = min(2.0 ** (state.failures - 1), FIRST_RETRY_MAX)
            else:
                delay = state.retry
            state.next_check = now + delay
            if status.get("error") is None:
                status["error_since"] = wall
            status["error"] = got.error
            log.warning("zone %s: refresh failed (retry in %.0f s): %s", zone, delay, got.error)
        else:
            assert got.soa is not None
            state.failures = 0
            state.refresh, state.retry, state.expire = _timers(got.soa)
            state.next_check = now + state.refresh
            state.expires_at = wall + state.expire
            status["error"] = None
            status["error_since"] = None
            status["last_ok"] = wall
            status["primary"] = got.primary
            if state.expired and self._store.set_expired(zone, False):
                log.info("zone %s: primary %s reached again; serving it", zone, got.primary)
            state.expired = False
        status["serial"] = state.serial
        status["checked"] = wall  # the check started at last_check is over
        status["expires_at"] = state.expires_at
        status["expired"] = state.expired
        status["next_check"] = wall + max(0.0, state.next_check - now)
        self._save(state)

    def _commit(self, state: _Zone, got: Fetched) -> str | None:
        """Commit a transfer; an error message when it could not be applied."""
        zone = state.spec.zone
        origin = f"xfr:{got.primary}"
        mismatch: list[int] = []

        def planner(view: ZoneSnapshot | None) -> Changeset | None:
            mismatch.clear()
            if got.kind == "AXFR":
                assert got.records is not None and got.soa is not None
                if view is None:
                    return create_changeset(zone, got.records, origin)
                cs = plan_import(zone, view.iter_records(), got.records, origin)
                if cs.is_empty() and _serial(view.soa()) == _serial(got.soa):
                    return None  # a full copy of what we hold already
                added = (*[rr for rr in cs.added if rr.rdtype != SOA], got.soa)
                return Changeset(zone, cs.removed, added, origin, exact_serial=True)
            held = None if view is None else _serial(view.soa())
            if held != got.base:
                mismatch.append(-1 if held is None else held)
                return None
            assert got.soa is not None
            added = (*got.added, got.soa)
            return Changeset(zone, tuple(got.removed), added, origin, exact_serial=True)

        (outcome,) = self._store.commit_batch([(zone, planner)])
        if mismatch:
            state.full = True  # start over from a whole copy
            return f"IXFR from {got.primary} starts at serial {got.base}, we hold {mismatch[0]}"
        if isinstance(outcome, Exception):
            return f"transfer from {got.primary} could not be applied: {outcome}"
        assert got.soa is not None
        if got.kind == "AXFR":
            changes = len(got.records or ())
            summary = f"{changes} records"
        else:
            changes = len(got.removed) + len(got.added)
            summary = f"{len(got.removed)} records removed, {len(got.added)} added"
        before: object
        if isinstance(outcome, CommitResult):
            state.serial = outcome.serial_to
            before = "new" if outcome.serial_from is None else outcome.serial_from
        else:  # the copy equals what we hold
            before = state.serial
            summary += ", no change"
        log.info(
            "zone %s: %s from %s, serial %s -> %s (%s)",
            zone,
            got.kind,
            got.primary,
            before,
            state.serial,
            summary,
        )
        state.status.update(
            last_transfer=self._wall(), transfer=got.kind, primary=got.primary, records=changes
        )
        if self._on_commit is not None:
            self._on_commit()
        return None

    def _expire(self, state: _Zone) -> None:
        state.expired = True
        zone = state.spec.zone
        if self._store.set_expired(zone, True):
            log.warning(
                "zone %s expired: no primary reached for %.0f s; answering SERVFAIL",
                zone,
                state.expire,
            )
        state.status["expired"] = True
        self._save(state)

    def _save(self, state: _Zone) -> None:
        try:
            self._store.put_status(status_key(state.spec.zone), state.status)
        except Exception:
            log.exception("zone %s: could not record the transfer status", state.spec.zone)
