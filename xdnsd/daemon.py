"""The one place that wires the wings: opens the store, loads configured zones, starts the DNS wing
in one or more worker processes."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from xdnsd.catalog import sync_catalog
from xdnsd.config import Config
from xdnsd.store import SharedResponseCache, Store, TransferCache
from xdnsd.zonefile import ZoneFileError, create_changeset, parse_zone_file

log = logging.getLogger("xdnsd")


class StartupError(Exception):
    """The server cannot start; the message tells the operator what to fix."""


def open_store(config: Config) -> Store:
    return Store(
        config.server.data_dir,
        config.node.id,
        journal_depth=config.server.journal_depth,
        zone_journal_depths={z.name: z.journal_depth for z in config.zones if z.journal_depth},
        last_writer_wins=[z.name for z in config.zones if z.conflicts == "last-writer-wins"],
    )


def open_shared_cache(config: Config) -> SharedResponseCache:
    """The response cache the workers of this node share (only with more than one worker)."""
    return SharedResponseCache(config.server.data_dir / "response-cache")


def open_transfer_cache(config: Config) -> TransferCache:
    """Full zone transfers as rendered, shared by the workers (see ``TransferCache``)."""
    return TransferCache(config.server.data_dir / "axfr-cache")


def load_configured_zones(config: Config, store: Store) -> None:
    """Create each configured zone from its master file on first start; the store is the truth
    afterwards (change a zone with ``xdnsd zone import`` or dynamic updates).  A zone that was
    dropped (on any node: its tombstone is here) is not created again from its file: that
    would bring it back on every node of the cluster at each restart."""
    present = {meta.name for meta in store.list_zones()}
    dropped = {tomb.zone: tomb for tomb in store.dropped_zones()}
    for zone in config.zones:
        if zone.name in present or zone.name == config.server.catalog_zone:
            continue  # the catalog's contents are made by xdnsd, not read from a file
        if zone.primaries:
            continue  # a secondary zone: its first transfer creates it
        tomb = dropped.get(zone.name)
        if tomb is not None:
            log.warning(
                "zone %s is configured but was deleted by %s (on node %s) at %s: not creating "
                "it again from %s; to serve it again: xdnsd zone import %s --zone %s "
                "(or remove it from the config)",
                zone.name,
                tomb.origin,
                tomb.dot.node,
                tomb.when,
                zone.file,
                zone.file or "FILE",
                zone.name,
            )
            continue
        if zone.file is None:
            raise StartupError(
                f"{config.path}: zone {zone.name} is not in the store and has no 'file' to load"
            )
        try:
            records = parse_zone_file(zone.file, zone.name)
        except ZoneFileError as exc:
            raise StartupError(f"zone {zone.name}: {exc}") from None
        result = store.commit(create_changeset(zone.name, records, f"import:{zone.file}"))
        log.info(
            "zone %s created from %s: %d records, serial %d",
            zone.name,
            zone.file,
            len(records),
            result.serial_to,
        )
    if config.server.catalog_zone is not None:
        sync_catalog(store, config.server.catalog_zone)
    configured = {z.name for z in config.zones}
    if config.server.catalog_zone is not None:
        configured.add(config.server.catalog_zone)
    for name in sorted(present - configured):
        log.info("zone %s is in the store but not in the config; serving it", name)


def secondary_specs(config: Config) -> dict[Any, Any]:
    """The secondary zones of the config (those with primaries), by name."""
    from xdnsd.server.secondary import SecondarySpec

    return {
        zone.name: SecondarySpec(zone.name, zone.primaries, zone.primary_key)
        for zone in config.zones
        if zone.primaries
    }


def notify_sources(config: Config) -> dict[int, str]:
    """Per address family, the first address the server listens on (not a wildcard): NOTIFYs
    leave from it, the address secondaries know as the primary's."""
    sources: dict[int, str] = {}
    for address in config.server.listen:
        family = socket.AF_INET6 if address.family_v6 else socket.AF_INET
        if address.host not in ("0.0.0.0", "::"):
            sources.setdefault(family, address.host)
    return sources


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the parent dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def serve(config: Config) -> int:
    """Run the server until SIGTERM / SIGINT.  Returns the exit status."""
    from xdnsd.server.service import ListenError, check_addresses_free
    from xdnsd.stats import clear_stats

    store = open_store(config)
    try:
        load_configured_zones(config, store)
        store.reset_generations()
        zone_count = len(store.list_zones())
    finally:
        store.close()  # never carry an LMDB environment across fork()

    workers = config.server.workers
    try:
        check_addresses_free(config.server.listen)
    except ListenError as exc:
        raise StartupError(str(exc)) from None
    clear_stats(config.server.data_dir)  # the counters of an earlier run (see xdnsd.stats)
    # the node's single writer (dynamic updates) runs in a process of its own, linked to each
    # worker by a socket pair
    links = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(workers)]
    # the writer wakes the replication process after each commit (a byte on a datagram pair)
    wake = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) if config.peers else None
    children = [_start_writer(config, links, wake)]
    if config.peers:
        run = lambda kept: _run_replicator(config, kept)  # noqa: E731
        children.append(_start_service("replication", links, wake, run, keep_wake=True))
    if any(t.owner == config.node.id for t in config.targets.values()):
        children.append(_start_service("sync", links, wake, lambda _: _run_sync(config)))
    if config.api is not None:
        children.append(_start_service("api", links, wake, lambda _: _run_api(config)))
    for _worker_end, writer_end in links:
        writer_end.close()
    for end in wake or ():
        end.close()
    index = 0
    cache = open_transfer_cache(config)
    cache.clear()  # not durable: a version rendered by an earlier run is not trusted
    cache.close()
    if workers > 1:
        shared = open_shared_cache(config)
        shared.clear()  # answers rendered by an earlier run may be stale
        shared.close()
        for i in range(1, workers):
            pid = os.fork()
            if pid == 0:
                _die_with_parent()
                index = i
                children = []
                break
            children.append(pid)
    mine = links[index][0]
    for i, (worker_end, _w) in enumerate(links):
        if i != index:
            worker_end.close()
    try:
        return _run_worker(config, index, zone_count, children, mine)
    finally:
        if index != 0:
            os._exit(0)


def _fork(what: str, body: Callable[[], int]) -> int:
    """Fork a child process that runs ``body`` and exits with its status (1 if it raised, the
    error logged); the child gets SIGTERM when this process dies.  Returns the child's pid."""
    pid = os.fork()
    if pid != 0:
        return pid
    status = 1
    try:
        _die_with_parent()
        status = body()
    except Exception:
        log.exception("the %s process failed", what)
    finally:
        os._exit(status)


def _start_writer(
    config: Config,
    links: list[tuple[socket.socket, socket.socket]],
    wake: tuple[socket.socket, socket.socket] | None = None,
) -> int:
    """Fork the writer process; it serves the worker links until they close or SIGTERM."""
    from xdnsd.catalog import CatalogKeeper
    from xdnsd.server.notify import NotifyTargets
    from xdnsd.server.writer import run_writer_process

    def body() -> int:
        for worker_end, _writer_end in links:
            worker_end.close()  # else a worker's exit would never show as end-of-file here
        ends = [writer_end for _worker_end, writer_end in links]
        store = open_store(config)
        if wake is not None:
            from xdnsd.replication.replicator import wake_on_commit

            wake[0].close()
            wake_on_commit(store, wake[1])
        acls = {zone.name: zone.update_acl for zone in config.zones}
        notify = {
            zone.name: NotifyTargets(zone.secondaries, zone.notify_key) for zone in config.zones
        }
        catalog = config.server.catalog_zone
        keeper = CatalogKeeper(store, catalog) if catalog is not None else None
        return run_writer_process(
            store, acls, ends, notify, keeper, secondary_specs(config), notify_sources(config)
        )

    return _fork("writer", body)


def _start_service(
    what: str,
    links: list[tuple[socket.socket, socket.socket]],
    wake: tuple[socket.socket, socket.socket] | None,
    run: Callable[[socket.socket | None], int],
    keep_wake: bool = False,
) -> int:
    """Fork a service process (replication, sync, API: its own loop and store handle) that
    runs until SIGTERM.  It closes the worker links and the wake pair, except the wake pair's
    reading end when ``keep_wake`` (handed to ``run``)."""

    def body() -> int:
        for worker_end, writer_end in links:
            worker_end.close()
            writer_end.close()
        kept = None
        if wake is not None:
            wake[1].close()
            if keep_wake:
                kept = wake[0]
            else:
                wake[0].close()
        return run(kept)

    return _fork(what, body)


def _run_api(config: Config) -> int:
    from twisted.internet import reactor as _reactor

    from xdnsd.api.server import make_site

    reactor: Any = _reactor
    api = config.api
    assert api is not None
    store = open_store(config)
    site = make_site(config, store)
    if api.tls_cert is not None and api.tls_key is not None:
        from OpenSSL import crypto  # pyOpenSSL (twisted[tls]): only for TLS
        from twisted.internet import ssl

        from xdnsd.config import load_tls_files

        # the leaf, then the intermediates the file holds, which are served with it
        chain, key = load_tls_files(api.tls_cert, api.tls_key, "[api]")
        context = ssl.CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(key),
            certificate=crypto.X509.from_cryptography(chain[0]),
            extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,  # TLS 1.2 and 1.3 only
        )
        reactor.listenSSL(api.listen.port, site, context, interface=api.listen.host)
    else:
        reactor.listenTCP(api.listen.port, site, interface=api.listen.host)
    log.info(
        "api: listening on %s (%s), %d token(s)",
        api.listen,
        "https" if api.tls_cert else "http",
        len(api.tokens),
    )

    def on_signal(signum: int, frame: object) -> None:
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.run(installSignalHandlers=False)
    store.close()
    return 0


def _run_sync(config: Config) -> int:
    from xdnsd.upstreams.sync import Mirror, SyncService, make_provider

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    store = open_store(config)
    try:
        mirrors = [
            Mirror(store, target, make_provider(target))
            for target in config.targets.values()
            if target.owner == config.node.id
        ]
        log.info(
            "sync: node %s mirrors to %s",
            config.node.id,
            ", ".join(f"{m.target.name} ({m.target.kind}, zone {m.zone})" for m in mirrors),
        )
        SyncService(store, mirrors).serve(lambda: stopping)
    finally:
        store.close()
    return 0


def _run_replicator(config: Config, wake: socket.socket | None = None) -> int:
    from twisted.internet import reactor as _reactor

    from xdnsd.replication.replicator import Replicator, WakeReader

    reactor: Any = _reactor
    store = open_store(config)
    peers = {p.id: (p.address.host, p.address.port, p.key) for p in config.peers}
    replicator = Replicator(
        store,
        config.node.id,
        peers,
        reactor,
        retention=config.node.tombstone_retention,
        digest_every=config.node.anti_entropy_interval,
    )
    listen = config.node.peer_listen
    replicator.start(None if listen is None else (listen.host, listen.port))
    if wake is not None:
        reactor.addReader(WakeReader(wake, replicator))
    log.info(
        "replication: node %s, %d peer(s), listening on %s (pid %d)",
        config.node.id,
        len(peers),
        listen or "(nothing: this node only dials)",
        os.getpid(),
    )

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:  # SIGTERM from the parent and from the operator: stop once
            stopping = True
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.run(installSignalHandlers=False)
    replicator.write_status()
    store.close()
    return 0


def _run_worker(
    config: Config, index: int, zone_count: int, children: list[int], writer: socket.socket
) -> int:
    # the reactor is imported only here, after fork(), so each worker has its own
    from twisted.internet import reactor as _reactor

    from xdnsd.server.service import DNSService, ListenError
    from xdnsd.stats import ProcessStats, stats_file

    reactor: Any = _reactor
    store = open_store(config)
    shared = open_shared_cache(config) if config.server.workers > 1 else None
    transfer_cache = open_transfer_cache(config)
    service = DNSService(
        config.server,
        store,
        reactor,
        reuseport=config.server.workers > 1,
        shared_cache=shared,
        keys=config.keys,
        update_acls={zone.name: zone.update_acl for zone in config.zones},
        transfer_acls={zone.name: zone.transfer_acl for zone in config.zones},
        secondaries=secondary_specs(config),
        transfer_cache=transfer_cache,
        writer_socket=writer,
        stats=ProcessStats(stats_file(config.server.data_dir, f"worker-{index}")),
    )
    try:
        sockets = service.bind()
    except ListenError as exc:
        store.close()
        _stop_children(children)
        raise StartupError(str(exc)) from None
    service.start(sockets)

    def shutdown() -> None:
        service.stop()
        _stop_children(children)

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    if index == 0:
        log.info(
            "xdnsd node %s serving %d zone(s) on %s with %d worker(s); data in %s",
            config.node.id,
            zone_count,
            ", ".join(str(a) for a in config.server.listen),
            config.server.workers,
            config.server.data_dir,
        )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:  # a second SIGTERM / SIGINT while stopping is ignored
            stopping = True
            log.info("received %s; shutting down", signal.Signals(signum).name)
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.run(installSignalHandlers=False)
    store.close()
    transfer_cache.close()
    if shared is not None:
        shared.close()
    return 0


def _stop_children(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # the cloud SDKs log every HTTP request at INFO; their warnings and errors are enough
    for noisy in ("azure", "botocore", "boto3", "urllib3", "msal"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
