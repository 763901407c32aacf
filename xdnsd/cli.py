"""Command line: ``xdnsd serve | check-config | zone list/import/export/history``."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata

from xdnsd.config import Config, ConfigError, load_config
from xdnsd.daemon import StartupError, notify_sources, open_store, serve, setup_logging
from xdnsd.store import Store, StoreError
from xdnsd.zonefile import (
    ZoneFileError,
    create_changeset,
    parse_zone_file,
    plan_import,
    to_text,
)

DEFAULT_CONFIG = "conf/xdnsd.toml"


class CLIError(Exception):
    """An error to print (without a traceback) before exiting non-zero."""


def _zone_name(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise CLIError(f"{text!r} is not a domain name: {exc}") from None


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    return serve(config)


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    for zone in config.zones:
        if zone.file is not None:
            records = parse_zone_file(zone.file, zone.name)
            print(f"{zone.name}: {zone.file}: {len(records)} records, OK")
    print(f"{config.path}: OK")
    return 0


def cmd_zone_list(config: Config, args: argparse.Namespace) -> int:
    from xdnsd.server.secondary import STATUS_PREFIX

    kinds = {z.name: z.kind for z in config.zones}
    store = open_store(config)
    try:
        zones = store.list_zones()
        transfers = {
            dns.name.from_text(key[len(STATUS_PREFIX) :]): doc
            for key, doc in store.statuses(STATUS_PREFIX).items()
        }
        found: list[dict[str, Any]] = []
        with store.snapshot() as snap:
            for meta in zones:
                zone = snap.zone(meta.name)
                count = sum(1 for _ in zone.iter_records())
                found.append(
                    {
                        "zone": meta.name.to_text(),
                        "kind": kinds.get(meta.name, meta.kind),
                        "serial": meta.serial,
                        "records": count,
                        "expired": meta.expired,
                        "transfer": transfers.get(meta.name),
                    }
                )
        held = {meta.name for meta in zones}
        for z in config.zones:  # secondary zones not transferred yet
            if z.primaries and z.name not in held:
                found.append(
                    {
                        "zone": z.name.to_text(),
                        "kind": "secondary",
                        "serial": None,
                        "records": 0,
                        "expired": True,
                        "transfer": transfers.get(z.name),
                    }
                )
    finally:
        store.close()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    now = time.time()
    rows = [
        (
            row["zone"],
            row["kind"],
            "-" if row["serial"] is None else str(row["serial"]),
            str(row["records"]),
            _transfer_text(row, now),
        )
        for row in found
    ]
    _print_table(("ZONE", "KIND", "SERIAL", "RECORDS", "TRANSFER"), rows)
    return 0


def _ago(when: float, now: float) -> str:
    seconds = max(0, int(now - when))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _transfer_text(row: dict[str, Any], now: float) -> str:
    """A secondary zone's transfer state in a few words (``-`` for a primary zone)."""
    if row["kind"] != "secondary":
        return "-"
    status = row["transfer"] or {}
    parts = []
    if row["expired"]:
        parts.append("EXPIRED" if row["serial"] is not None else "not loaded")
    if status.get("last_transfer"):
        parts.append(
            f"{status['transfer']} from {status['primary']} {_ago(status['last_transfer'], now)}"
        )
    if status.get("error"):
        parts.append(f"failing since {_ago(status['error_since'], now)}: {status['error']}")
    elif status.get("last_ok"):
        parts.append(f"checked {_ago(status['last_ok'], now)}")
    return "; ".join(parts) or "waiting for the first check"


def cmd_zone_import(config: Config, args: argparse.Namespace) -> int:
    zone = _zone_name(args.zone)
    if any(z.name == zone and z.primaries for z in config.zones):
        raise CLIError(
            f"zone {zone} is a secondary: its data comes from its primaries "
            "(xdnsd zone retransfer takes a fresh copy)"
        )
    records = parse_zone_file(args.file, zone)
    origin = f"import:{Path(args.file).resolve()}"
    store = open_store(config)
    try:
        if zone in {m.name for m in store.list_zones()}:
            with store.snapshot() as snap:
                current = list(snap.zone(zone).iter_records())
            cs = plan_import(zone, current, records, origin)
            if cs.is_empty():
                print(f"{zone}: no changes")
                return 0
            result = store.commit(cs)
            print(
                f"{zone}: {len(cs.removed)} removed, {len(cs.added)} added, "
                f"serial {result.serial_from} -> {result.serial_to}"
            )
        else:
            result = store.commit(create_changeset(zone, records, origin))
            print(f"{zone}: created with {len(records)} records, serial {result.serial_to}")
    finally:
        store.close()
    return 0


def cmd_zone_import_from(config: Config, args: argparse.Namespace) -> int:
    """Create or fill a zone from what a target holds now (adopting a provider's zone).

    A zone xdnsd has gets the provider's RRsets (each replacing the zone's RRset of that name
    and type; the zone's others stay); a new zone is created with them, an SOA and the apex NS
    given with ``--ns``.  The target's baseline is set to what it holds, so its next sync
    pushes only what differs."""
    from xdnsd.model import RR, ChangeOp, Changeset
    from xdnsd.upstreams.base import ProviderError
    from xdnsd.upstreams.sync import Mirror, make_provider, rrs_of

    target = _target(config, args.target)
    zone = _zone_name(args.zone)
    if target.zone != zone:
        raise CLIError(f"target {target.name} mirrors zone {target.zone}, not {zone}")
    provider = make_provider(target)
    store = open_store(config)
    try:
        mirror = Mirror(store, target, provider)
        try:
            held = mirror.actual()
        except ProviderError as exc:
            raise CLIError(f"target {target.name}: {exc}") from None
        added = [rr for rrset in held.values() for rr in rrs_of(rrset)]
        origin = f"provider:{target.name}"
        exists = zone in {m.name for m in store.list_zones()}
        if exists:
            with store.snapshot() as snap:
                current = list(snap.zone(zone).iter_records())
            replaced = {(rr.owner, rr.rdtype) for rr in added}
            removed = [rr for rr in current if (rr.owner, rr.rdtype) in replaced]
            cs = Changeset(zone, tuple(removed), tuple(added), origin)
        else:
            if not args.ns:
                raise CLIError(f"zone {zone} is new here: name its servers with --ns NAME")
            servers = [dns.name.from_text(n, zone) for n in args.ns]
            soa = dns.rdata.from_text(
                "IN", "SOA", f"{servers[0]} hostmaster.{zone} 1 3600 900 604800 300"
            )
            apex = [RR(zone, 3600, soa)] + [
                RR(zone, 3600, dns.rdata.from_text("IN", "NS", n.to_text())) for n in servers
            ]
            cs = Changeset(zone, (), tuple(apex + added), origin, ChangeOp.CREATE)
        result = store.commit(cs)
        mirror.set_baseline(held)
    finally:
        store.close()
    print(
        f"{zone}: {'filled' if exists else 'created'} from target {target.name}: "
        f"{len(held)} RRsets ({len(added)} records), serial {result.serial_to}"
    )
    return 0


def cmd_zone_export(config: Config, args: argparse.Namespace) -> int:
    zone = _zone_name(args.zone)
    store = open_store(config)
    try:
        with store.snapshot() as snap:
            records = list(snap.zone(zone).iter_records())
    finally:
        store.close()
    text = to_text(records, zone)
    if args.output and args.output != "-":
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_zone_history(config: Config, args: argparse.Namespace) -> int:
    zone = _zone_name(args.zone)
    store = open_store(config)
    try:
        with store.snapshot() as snap:
            entries = snap.history(zone, args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = []
    for e in entries:
        when = datetime.datetime.fromtimestamp(e["time_ms"] / 1000, datetime.UTC)
        rows.append(
            (
                when.strftime("%Y-%m-%d %H:%M:%S"),
                # a zone's creation has no serial before it
                f"{'new' if e['serial_from'] is None else e['serial_from']} -> {e['serial_to']}",
                f"+{e['added']} -{e['removed']}",
                f"{e['dot'][0]}:{e['dot'][1]}",
                e["origin"],
            )
        )
    _print_table(("TIME (UTC)", "SERIAL", "CHANGES", "DOT", "WHO"), rows)
    return 0


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_zone_notify(config: Config, args: argparse.Namespace) -> int:
    """Send a NOTIFY for the zone's current serial to its secondaries now; wait for answers."""
    import select

    from xdnsd.server.notify import Notifier, NotifyTargets

    zone = _zone_name(args.zone)
    configured = {z.name: z for z in config.zones}
    if zone not in configured or not configured[zone].secondaries:
        raise CLIError(f"zone {zone} has no 'secondaries' in {config.path}")
    entry = configured[zone]
    store = open_store(config)
    targets = {zone: NotifyTargets(entry.secondaries, entry.notify_key)}
    notifier = Notifier(store, targets, sources=notify_sources(config))
    try:
        notifier.check()
        deadline = time.monotonic() + args.timeout
        sockets = list(notifier.sockets.values())
        while notifier.pending and time.monotonic() < deadline:
            wait = min(notifier.timeout(), max(0.0, deadline - time.monotonic()))
            ready, _, _ = select.select(sockets, [], [], wait)
            for sock in ready:
                notifier.readable(sock)
            notifier.tick()
        answered = notifier.acknowledged
        total = len(entry.secondaries)
        print(f"{zone}: NOTIFY sent to {total} secondaries, {answered} answered")
        return 0 if answered == total else 1
    finally:
        notifier.close()
        store.close()


def cmd_zone_retransfer(config: Config, args: argparse.Namespace) -> int:
    """Ask the running server for a full transfer (AXFR) of a secondary zone; wait for it."""
    from xdnsd.server.secondary import request_key, status_key

    zone = _zone_name(args.zone)
    if not any(z.name == zone and z.primaries for z in config.zones):
        raise CLIError(f"zone {zone} has no 'primaries' in {config.path}: not a secondary")
    store = open_store(config)
    try:
        asked = time.time()
        store.put_status(request_key(zone), {"asked": asked})
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            status = store.status(status_key(zone)) or {}
            started = status.get("full_check", 0)
            if started >= asked and status.get("checked", 0) >= started:
                if status.get("last_transfer", 0) >= started:
                    print(
                        f"{zone}: {status['transfer']} from {status['primary']}, "
                        f"serial {status['serial']}, {status['records']} records"
                    )
                    return 0
                raise CLIError(f"{zone}: transfer failed: {status.get('error')}")
            time.sleep(0.1)
        store.put_status(request_key(zone), None)
        raise CLIError(
            f"{zone}: no transfer within {args.timeout:g} s (is xdnsd serve running with "
            f"{config.path}?)"
        )
    finally:
        store.close()


def cmd_peers(config: Config, args: argparse.Namespace) -> int:
    """Each configured peer: connected or not, since when, its lag and last error."""
    store = open_store(config)
    try:
        found = store.statuses("peer/")
    finally:
        store.close()
    rows = []
    docs = []
    now = time.time()
    for peer in config.peers:
        doc = found.get(f"peer/{peer.id}") or {"peer": peer.id, "connected": False}
        doc.setdefault("address", str(peer.address))
        docs.append(doc)
        since = doc.get("since")
        rows.append(
            (
                peer.id,
                str(peer.address),
                "yes" if doc.get("connected") else "no",
                _ago(since, now) if since else "-",
                str(doc.get("lag", "-")),
                doc.get("error") or "",
            )
        )
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    _print_table(("PEER", "ADDRESS", "CONNECTED", "SINCE", "LAG", "LAST ERROR"), rows)
    return 0


def cmd_targets(config: Config, args: argparse.Namespace) -> int:
    """Each configured target: its zone, owner node, state, since when, why, last run."""
    store = open_store(config)
    try:
        found = store.statuses("target/")
    finally:
        store.close()
    now = time.time()
    rows, docs = [], []
    for target in config.targets.values():
        doc = found.get(f"target/{target.name}") or {
            "target": target.name,
            "kind": target.kind,
            "zone": target.zone.to_text() if target.zone else None,
            "owner": target.owner,
            "state": "unknown" if target.owner != config.node.id else "pending",
        }
        docs.append(doc)
        last = doc.get("last_run") or {}
        rows.append(
            (
                target.name,
                target.kind,
                str(doc.get("zone")),
                target.owner,
                str(doc.get("state")),
                _ago(doc["since"], now) if doc.get("since") else "-",
                _ago(last["end"], now) if last.get("end") else "-",
                doc.get("reason") or "",
            )
        )
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    _print_table(("TARGET", "KIND", "ZONE", "OWNER", "STATE", "SINCE", "LAST RUN", "WHY"), rows)
    return 0


def _target(config: Config, name: str) -> Any:
    target = config.targets.get(name)
    if target is None:
        known = ", ".join(sorted(config.targets)) or "none"
        raise CLIError(f"no target {name!r} in the config (targets: {known})")
    return target


def cmd_targets_history(config: Config, args: argparse.Namespace) -> int:
    target = _target(config, args.target)
    store = open_store(config)
    try:
        runs = (store.status(f"target-history/{target.name}") or {"runs": []})["runs"]
    finally:
        store.close()
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    rows = []
    for run in runs[-args.limit :]:
        start = datetime.datetime.fromtimestamp(run["start"], datetime.UTC)
        rows.append(
            (
                start.strftime("%Y-%m-%d %H:%M:%S"),
                f"{(run['end'] - run['start']) * 1000:.0f} ms",
                str(run["pushed"]),
                str(run["imported"]),
                str(run["conflicts"]),
                str(run["calls"]),
                run["error"] or run["held"] or "",
            )
        )
    _print_table(("START", "TOOK", "PUSHED", "IMPORTED", "CONFLICTS", "CALLS", "ERROR"), rows)
    return 0


def _print_plan(plan: Any) -> None:
    for label, changes in (("push", plan.push), ("import", plan.drift)):
        for c in changes:
            old = "-" if c.old is None else f"{c.old.ttl} {' '.join(c.old.values)}"
            new = "-" if c.new is None else f"{c.new.ttl} {' '.join(c.new.values)}"
            print(f"{label:7} {c.action.value:7} {c.key[0]} {c.key[1]}: {old} -> {new}")
    for conflict in plan.conflicts:
        print(f"conflict        {conflict.key[0]} {conflict.key[1]}")
    for rrset in plan.skipped:
        print(f"skipped         {rrset.name} {rrset.type} (the target cannot hold it)")
    if plan.held:
        print(f"held: {plan.held}")
    print(
        f"{len(plan.push)} to push, {len(plan.drift)} to import, {len(plan.conflicts)} in "
        f"conflict, {plan.in_sync} in sync"
    )


def cmd_targets_plan(config: Config, args: argparse.Namespace) -> int:
    """What a sync would change now, changing nothing (a dry run)."""
    from xdnsd.upstreams.base import ProviderError
    from xdnsd.upstreams.sync import Mirror, make_provider

    target = _target(config, args.target)
    store = open_store(config)
    try:
        plan = Mirror(store, target, make_provider(target)).plan(force=args.force)
    except ProviderError as exc:
        raise CLIError(f"target {target.name}: {exc}") from None
    finally:
        store.close()
    _print_plan(plan)
    return 0


def cmd_targets_sync(config: Config, args: argparse.Namespace) -> int:
    """Run a sync now (``--force`` applies a run the safety limit holds)."""
    from xdnsd.upstreams.sync import Mirror, make_provider

    target = _target(config, args.target)
    if target.owner != config.node.id and not args.anyway:
        raise CLIError(
            f"target {target.name} is driven by node {target.owner}, not this one "
            f"({config.node.id}): run it there (or --anyway)"
        )
    store = open_store(config)
    try:
        result = Mirror(store, target, make_provider(target)).run(force=args.force)
    finally:
        store.close()
    _print_plan(result.plan)
    if result.error:
        raise CLIError(f"target {target.name}: {result.error}")
    print(f"pushed {result.pushed}, imported {result.imported}, {result.calls} API call(s)")
    return 0


def _all_conflicts(store: Store) -> list[tuple[dns.name.Name, dict[str, Any]]]:
    with store.snapshot() as snap:
        return [(meta.name, doc) for meta in snap.zones() for doc in snap.conflicts(meta.name)]


def cmd_conflicts_list(config: Config, args: argparse.Namespace) -> int:
    """Every open conflict: zone, what, each side (node, time, who), the provisional winner."""
    store = open_store(config)
    try:
        found = _all_conflicts(store)
        targets = list(store.statuses("target-conflict/").values())
        detected = store.counters().get("conflicts_detected", 0)
    finally:
        store.close()
    if args.json:
        docs = [{"zone": zone.to_text(), **doc} for zone, doc in found]
        print(json.dumps(docs + targets, indent=2))
        return 0
    print(f"{len(found) + len(targets)} open; {detected} detected by this node in all")
    for doc in targets:
        print(
            f"{doc['id']}  zone {doc['zone']}  provider  {doc['owner']} {doc['rdtype']}  "
            f"(target {doc['target']})"
        )
        for side, label in (("local", "zone  "), ("remote", "target")):
            rrset = doc[side]
            what = "deleted" if rrset is None else f"{rrset[2]} {' '.join(rrset[3])}"
            print(f"    {label}  {what}")
    if not found:
        return 0
    for zone, doc in found:
        print(f"{doc['id']}  zone {zone}  {doc['kind']}  {doc['subject']}")
        for i, side in enumerate(doc["sides"]):
            when = datetime.datetime.fromtimestamp((side["hlc"] >> 16) / 1000, datetime.UTC)
            mark = "serving" if i == 0 else "       "
            print(
                f"    {mark}  {side['node']}:{side['counter']}  "
                f"{when.strftime('%Y-%m-%d %H:%M:%S')}  {side['origin'] or '-'}  {side['what']}"
            )
    return 0


def cmd_conflicts_resolve(config: Config, args: argparse.Namespace) -> int:
    """End a conflict: keep one side (``--keep local|remote|NODE``) or put a value."""
    from xdnsd.model import Changeset
    from xdnsd.replication.merge import conflict_from_doc, pick_side, plan_resolution

    if (args.keep is None) == (args.value is None):
        raise CLIError("give exactly one of --keep and --value")
    store = open_store(config)
    try:
        for key, doc in store.statuses("target-conflict/").items():
            if doc["id"] == args.id:  # a zone against a provider: keep local or remote
                from xdnsd.upstreams.sync import resolve_conflict

                if args.keep not in ("local", "remote", doc["target"]):
                    raise CLIError(f"{key}: keep 'local' (the zone) or 'remote' (the provider)")
                side = "local" if args.keep == "local" else "remote"
                print(f"conflict {args.id} resolved: {resolve_conflict(store, doc, side)}")
                return 0
        matches = [(z, d) for z, d in _all_conflicts(store) if d["id"] == args.id]
        if not matches:
            raise CLIError(f"no open conflict {args.id} (xdnsd conflicts list)")
        zone, doc = matches[0]
        conflict = conflict_from_doc(doc)
        try:
            keep = pick_side(conflict, args.keep, config.node.id) if args.keep else None
            removed, added = plan_resolution(conflict, keep, args.value)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        change = Changeset(
            zone, tuple(removed), tuple(added), origin=f"operator:resolve {conflict.id}"
        )
        result = store.commit(change)
    finally:
        store.close()
    chosen = f"side {keep.dot.node}:{keep.dot.counter}" if keep is not None else "the value"
    print(f"conflict {conflict.id} resolved with {chosen}: serial {result.serial_to}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdnsd", description="multi-master authoritative DNS")
    parser.add_argument(
        "--config", "-c", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})"
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    # --config is accepted before or after the subcommand ("xdnsd serve --config FILE")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="answer queries until SIGTERM")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("check-config", parents=[common], help="check the config and its zone files")
    p.set_defaults(func=cmd_check_config)

    zone = sub.add_parser("zone", help="zone operations").add_subparsers(
        dest="zone_cmd", required=True
    )
    p = zone.add_parser("list", parents=[common], help="list the zones in the store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zone_list)
    p = zone.add_parser(
        "import", parents=[common], help="replace a zone's content with a master file (one change)"
    )
    p.add_argument("file")
    p.add_argument("--zone", required=True)
    p.set_defaults(func=cmd_zone_import)
    p = zone.add_parser(
        "import-from", parents=[common], help="create or fill a zone from a target's records"
    )
    p.add_argument("target")
    p.add_argument("zone")
    p.add_argument("--ns", action="append", help="a new zone's name server (repeatable)")
    p.set_defaults(func=cmd_zone_import_from)
    p = zone.add_parser("export", parents=[common], help="write a zone as a master file")
    p.add_argument("zone")
    p.add_argument("--output", "-o", default="-")
    p.set_defaults(func=cmd_zone_export)
    p = zone.add_parser("history", parents=[common], help="a zone's changes, newest first")
    p.add_argument("zone")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zone_history)
    p = zone.add_parser("notify", parents=[common], help="send a NOTIFY to the secondaries now")
    p.add_argument("zone")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for answers")
    p.set_defaults(func=cmd_zone_notify)
    p = zone.add_parser(
        "retransfer", parents=[common], help="secondary zone: take a full copy from a primary now"
    )
    p.add_argument("zone")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    p.set_defaults(func=cmd_zone_retransfer)
    conflicts = sub.add_parser("conflicts", help="concurrent changes that need an operator")
    csub = conflicts.add_subparsers(dest="conflicts_cmd", required=True)
    p = csub.add_parser("list", parents=[common], help="the open conflicts, both sides")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_conflicts_list)
    p = csub.add_parser("resolve", parents=[common], help="keep one side, or put a value")
    p.add_argument("id")
    p.add_argument("--keep", help="local, remote or a node id")
    p.add_argument("--value", help="RDATA to serve instead of every side")
    p.set_defaults(func=cmd_conflicts_resolve)
    p = sub.add_parser("peers", parents=[common], help="the cluster's other nodes and their state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_peers)
    targets = sub.add_parser("targets", parents=[common], help="providers mirroring the zones")
    targets.add_argument("--json", action="store_true")
    targets.set_defaults(func=cmd_targets)
    tsub = targets.add_subparsers(dest="targets_cmd")
    p = tsub.add_parser("history", parents=[common], help="a target's recent sync runs")
    p.add_argument("target")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_targets_history)
    p = tsub.add_parser("plan", parents=[common], help="what a sync would change (dry run)")
    p.add_argument("target")
    p.add_argument("--force", action="store_true", help="plan as if forced past the safety limit")
    p.set_defaults(func=cmd_targets_plan)
    p = tsub.add_parser("sync", parents=[common], help="sync a target now")
    p.add_argument("target")
    p.add_argument("--force", action="store_true", help="apply even past the safety limit")
    p.add_argument("--anyway", action="store_true", help="even if another node owns it")
    p.set_defaults(func=cmd_targets_sync)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    try:
        config = load_config(args.config)
        status: int = args.func(config, args)
        return status
    except (ConfigError, ZoneFileError, StoreError, StartupError, CLIError) as exc:
        print(f"xdnsd: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
