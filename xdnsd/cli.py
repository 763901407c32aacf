"""Command line: ``xdnsd serve``, ``check-config``, and the operator's commands (``zone``,
``records``, ``history``, ``peers``, ``targets``, ``conflicts``).  Those marked [API] work on
this node's store, or through a running node's HTTP API with ``--server URL`` and a token:
the same documents (``xdnsd.api.ops``) either way, printed as tables or, with ``--json``, as
they are.  Errors print one line and exit non-zero."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata

from xdnsd.api.ops import Operations, OpError
from xdnsd.config import Config, ConfigError, load_config
from xdnsd.daemon import StartupError, notify_sources, open_store, serve, setup_logging
from xdnsd.store import StoreError
from xdnsd.zonefile import (
    ZoneFileError,
    parse_zone_file,
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


def cmd_zone_list(config: Config | None, args: argparse.Namespace) -> int:
    found = _docs(config, args, lambda ops: ops.zones(count=True))
    if found is None:
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


def cmd_zone_import(config: Config | None, args: argparse.Namespace) -> int:
    """Make a zone hold exactly a master file's records, in one change (created if new)."""
    zone = _zone_name(args.zone)
    with operations(config, args) as ops:
        if isinstance(ops, Operations):  # on the node: $INCLUDE works, relative to the file
            records = parse_zone_file(args.file, zone)
            result = ops.import_records(zone, records, f"import:{Path(args.file).resolve()}")
        else:
            try:
                text = Path(args.file).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise CLIError(f"{args.file}: cannot read zone file: {exc}") from None
            result = ops.import_zone(zone.to_text(), text, _who())
    if result["created"]:
        print(f"{zone}: created with {result['added']} records, serial {result['serial_to']}")
    elif not result["added"] and not result["removed"]:
        print(f"{zone}: no changes")
    else:
        print(
            f"{zone}: {result['removed']} removed, {result['added']} added, "
            f"serial {result['serial_from']} -> {result['serial_to']}"
        )
    return 0


def cmd_zone_create(config: Config | None, args: argparse.Namespace) -> int:
    """A new zone: from a master file, or with only an SOA and the name servers given."""
    if (args.file is None) == (not args.ns):
        raise CLIError("give either --file FILE or --ns NAME (repeatable)")
    text = None
    if args.file is not None:
        try:
            text = Path(args.file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"{args.file}: cannot read zone file: {exc}") from None
    with operations(config, args) as ops:
        result = ops.create_zone(args.zone, _who(), file=text, ns=args.ns, email=args.email)
    print(
        f"{result['zone']}: created with {result['records']} records, serial {result['serial_to']}"
    )
    return 0


def cmd_zone_delete(config: Config | None, args: argparse.Namespace) -> int:
    """Delete a zone and everything in it, on every node of the cluster."""
    zone = _zone_name(args.zone)
    if not args.yes:
        raise CLIError(
            f"deleting {zone} deletes it and all its records on every node: add --yes to do so"
        )
    with operations(config, args) as ops:
        result = ops.drop_zone(zone.to_text(), _who())
    print(f"{result['zone']}: deleted (its last serial was {result['serial']})")
    return 0


def cmd_zone_deleted(config: Config | None, args: argparse.Namespace) -> int:
    """The zones deleted in the cluster: who deleted each, on which node, when."""
    docs = _docs(config, args, lambda ops: ops.deleted_zones())
    if docs is None:
        return 0
    rows = [
        (
            d["zone"],
            datetime.datetime.fromtimestamp(d["time"], datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            d["node"],
            d["deleted_by"],
            str(d["serial"]),
        )
        for d in docs
    ]
    _print_table(("ZONE", "DELETED (UTC)", "ON NODE", "BY", "LAST SERIAL"), rows)
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


def cmd_zone_export(config: Config | None, args: argparse.Namespace) -> int:
    with operations(config, args) as ops:
        text = ops.export_zone(_zone_name(args.zone).to_text())
    if args.output and args.output != "-":
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_zone_history(config: Config | None, args: argparse.Namespace) -> int:
    zone = _zone_name(args.zone).to_text()
    entries = _docs(config, args, lambda ops: ops.history(zone, args.limit, args.records))
    if entries is None:
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
                "-" if e["dot"] is None else f"{e['dot'][0]}:{e['dot'][1]}",
                e["origin"],
            )
        )
    lines = _table_lines(("TIME (UTC)", "SERIAL", "CHANGES", "DOT", "WHO"), rows)
    print(lines[0])
    for e, line in zip(entries, lines[1:], strict=True):
        print(line)
        if args.records:
            changes = e.get("changes")
            if changes is None:
                print("    (records no longer in the journal)" if e["serial_from"] else "")
                continue
            for sign, key in (("-", "removed"), ("+", "added")):
                for r in changes[key]:
                    print(f"    {sign} {r['name']} {r['ttl']} {r['type']} {r['data']}")
    return 0


def cmd_records_list(config: Config | None, args: argparse.Namespace) -> int:
    found = _docs(
        config, args, lambda ops: ops.records(_zone_name(args.zone).to_text(), args.name, args.type)
    )
    if found is None:
        return 0
    _print_table(
        ("NAME", "TTL", "TYPE", "DATA"),
        [(r["name"], str(r["ttl"]), r["type"], r["data"]) for r in found],
    )
    return 0


def cmd_records_write(config: Config | None, args: argparse.Namespace) -> int:
    """``records set`` (the RRset becomes DATA), ``add`` (DATA joins it) or ``delete`` (the
    RRset, or only the records DATA names): one change, planned as an RFC 2136 update."""
    doc: dict[str, Any] = {"name": args.name, "type": args.type, "ttl": args.ttl}
    if args.mode != "delete" or args.data:
        doc["data"] = list(args.data)
    with operations(config, args) as ops:
        result = ops.write_rrset(_zone_name(args.zone).to_text(), args.mode, doc, _who())
    if result["changed"]:
        print(f"{result['zone']}: changed, serial {result['serial']}")
    else:
        print(f"{result['zone']}: nothing to change (serial {result['serial']})")
    return 0


def _table_lines(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    for line in _table_lines(header, rows):
        print(line)


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


def cmd_peers(config: Config | None, args: argparse.Namespace) -> int:
    """Each configured peer: connected or not, since when, its lag and last error."""
    docs = _docs(config, args, lambda ops: ops.peers())
    if docs is None:
        return 0
    now = time.time()
    rows = []
    for doc in docs:
        since = doc.get("since")
        rows.append(
            (
                doc["peer"],
                str(doc.get("address", "")),
                "yes" if doc.get("connected") else "no",
                _ago(since, now) if since else "-",
                str(doc.get("lag", "-")),
                doc.get("error") or "",
            )
        )
    _print_table(("PEER", "ADDRESS", "CONNECTED", "SINCE", "LAG", "LAST ERROR"), rows)
    return 0


def cmd_targets(config: Config | None, args: argparse.Namespace) -> int:
    """Each configured target: its zone, owner node, state, since when, why, last run."""
    docs = _docs(config, args, lambda ops: ops.targets())
    if docs is None:
        return 0
    now = time.time()
    rows = []
    for doc in docs:
        last = doc.get("last_run") or {}
        rows.append(
            (
                doc["target"],
                str(doc.get("kind")),
                str(doc.get("zone")),
                str(doc.get("owner")),
                str(doc.get("state")),
                _ago(doc["since"], now) if doc.get("since") else "-",
                _ago(last["end"], now) if last.get("end") else "-",
                doc.get("reason") or "",
            )
        )
    _print_table(("TARGET", "KIND", "ZONE", "OWNER", "STATE", "SINCE", "LAST RUN", "WHY"), rows)
    return 0


def _target(config: Config, name: str) -> Any:
    target = config.targets.get(name)
    if target is None:
        known = ", ".join(sorted(config.targets)) or "none"
        raise CLIError(f"no target {name!r} in the config (targets: {known})")
    return target


def cmd_targets_history(config: Config | None, args: argparse.Namespace) -> int:
    runs = _docs(config, args, lambda ops: ops.target_history(args.target))
    if runs is None:
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


def cmd_conflicts_list(config: Config | None, args: argparse.Namespace) -> int:
    """Every open conflict: zone, what, each side (node, time, who), the provisional winner."""
    with operations(config, args) as ops:
        docs = ops.conflicts()
        detected = ops.conflicts_detected()
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    print(f"{len(docs)} open; {detected} detected by this node in all")
    for doc in docs:
        if "target" in doc:  # a zone against a provider
            print(
                f"{doc['id']}  zone {doc['zone']}  provider  {doc['owner']} {doc['rdtype']}  "
                f"(target {doc['target']})"
            )
            for side, label in (("local", "zone  "), ("remote", "target")):
                rrset = doc[side]
                what = "deleted" if rrset is None else f"{rrset[2]} {' '.join(rrset[3])}"
                print(f"    {label}  {what}")
            continue
        print(f"{doc['id']}  zone {doc['zone']}  {doc['kind']}  {doc['subject']}")
        for i, side in enumerate(doc["sides"]):
            when = datetime.datetime.fromtimestamp((side["hlc"] >> 16) / 1000, datetime.UTC)
            mark = "serving" if i == 0 else "       "
            print(
                f"    {mark}  {side['node']}:{side['counter']}  "
                f"{when.strftime('%Y-%m-%d %H:%M:%S')}  {side['origin'] or '-'}  {side['what']}"
            )
    return 0


def cmd_conflicts_resolve(config: Config | None, args: argparse.Namespace) -> int:
    """End a conflict: keep one side (``--keep local|remote|NODE``) or put a value."""
    if (args.keep is None) == (args.value is None):
        raise CLIError("give exactly one of --keep and --value")
    with operations(config, args) as ops:
        result = ops.resolve(args.id, _who(), keep=args.keep, value=args.value)
    print(result["message"])
    return 0


def _docs(config: Config | None, args: argparse.Namespace, read: Callable[[Any], Any]) -> Any:
    """What ``read`` gets from the node's operations; with ``--json`` it is printed as it is
    and None is returned (the command is done)."""
    with operations(config, args) as ops:
        docs = read(ops)
    if args.json:
        print(json.dumps(docs, indent=2))
        return None
    return docs


def _who() -> str:
    """The origin of a change made from this command line: ``operator:USER``."""
    import getpass

    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid
        return "operator"


@contextlib.contextmanager
def operations(config: Config | None, args: argparse.Namespace) -> Iterator[Any]:
    """The node's operations: through its API (``--server``), else on its store directly."""
    if config is None:
        from xdnsd.api.client import Remote

        yield Remote(args.server, args.token, cafile=args.cacert)
        return
    store = open_store(config)
    try:
        yield Operations(config, store)
    finally:
        store.close()


REMOTE_HELP = {
    "--server": "a running node's API, e.g. https://ns1.example:8053 (or XDNSD_SERVER): work "
    "through it instead of on this node's store",
    "--token": "the API token (or XDNSD_TOKEN, or --token-file)",
    "--token-file": "a file holding the API token",
    "--cacert": "CA certificate(s) to trust for an https --server (or XDNSD_CACERT)",
}


def _remote_options(parser: argparse.ArgumentParser, default: Any) -> None:
    for flag, text in REMOTE_HELP.items():
        parser.add_argument(flag, default=default, help=text, metavar=flag[2:].upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdnsd",
        description="multi-master authoritative DNS",
        epilog="Commands marked [API] also work against a running node with --server URL.",
    )
    parser.add_argument(
        "--config", "-c", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})"
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    _remote_options(parser, None)
    # --config is accepted before or after the subcommand ("xdnsd serve --config FILE")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file")
    # commands that also work through a node's API
    api = argparse.ArgumentParser(add_help=False, parents=[common])
    _remote_options(api, argparse.SUPPRESS)
    api.set_defaults(remote=True)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="answer queries until SIGTERM")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("check-config", parents=[common], help="check the config and its zone files")
    p.set_defaults(func=cmd_check_config)

    zone = sub.add_parser("zone", help="zone operations").add_subparsers(
        dest="zone_cmd", required=True
    )
    p = zone.add_parser("list", parents=[api], help="[API] list the zones")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zone_list)
    p = zone.add_parser(
        "create", parents=[api], help="[API] a new zone, from a master file or name servers"
    )
    p.add_argument("zone")
    p.add_argument("--file", help="master file with the zone's records")
    p.add_argument("--ns", action="append", help="the new zone's name server (repeatable)")
    p.add_argument("--email", help="the SOA's mailbox (default hostmaster.ZONE)")
    p.set_defaults(func=cmd_zone_create)
    p = zone.add_parser(
        "import", parents=[api], help="[API] make a zone's content a master file's (one change)"
    )
    p.add_argument("file")
    p.add_argument("--zone", required=True)
    p.set_defaults(func=cmd_zone_import)
    p = zone.add_parser("delete", parents=[api], help="[API] delete a zone on every node")
    p.add_argument("zone")
    p.add_argument("--yes", action="store_true", help="yes, delete it and all its records")
    p.set_defaults(func=cmd_zone_delete)
    p = zone.add_parser("deleted", parents=[api], help="[API] deleted zones: who, where, when")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zone_deleted)
    p = zone.add_parser(
        "import-from", parents=[common], help="create or fill a zone from a target's records"
    )
    p.add_argument("target")
    p.add_argument("zone")
    p.add_argument("--ns", action="append", help="a new zone's name server (repeatable)")
    p.set_defaults(func=cmd_zone_import_from)
    p = zone.add_parser("export", parents=[api], help="[API] write a zone as a master file")
    p.add_argument("zone")
    p.add_argument("--output", "-o", default="-")
    p.set_defaults(func=cmd_zone_export)
    for name, text in (("history", "[API] a zone's changes, newest first"),):
        for where in (zone, sub):  # "xdnsd zone history Z" and "xdnsd history Z"
            p = where.add_parser(name, parents=[api], help=text)
            p.add_argument("zone")
            p.add_argument("--limit", type=int, default=50)
            p.add_argument("--records", action="store_true", help="with what each changed")
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

    records = sub.add_parser("records", help="[API] a zone's records").add_subparsers(
        dest="records_cmd", required=True
    )
    p = records.add_parser("list", parents=[api], help="[API] the records, filtered")
    p.add_argument("zone")
    p.add_argument("--name", help="only this owner (relative to the zone)")
    p.add_argument("--type", help="only this type")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_records_list)
    for mode, verb, text in (
        ("replace", "set", "[API] make an RRset exactly DATA"),
        ("add", "add", "[API] add DATA to an RRset"),
        ("delete", "delete", "[API] delete an RRset, or only the records DATA names"),
    ):
        p = records.add_parser(verb, parents=[api], help=text)
        p.add_argument("zone")
        p.add_argument("name", help="owner, relative to the zone (@ for the apex)")
        p.add_argument("type")
        p.add_argument("data", nargs="*" if mode == "delete" else "+", help="record data")
        p.add_argument("--ttl", type=int, default=300)
        p.set_defaults(func=cmd_records_write, mode=mode)

    conflicts = sub.add_parser("conflicts", help="concurrent changes that need an operator")
    csub = conflicts.add_subparsers(dest="conflicts_cmd", required=True)
    p = csub.add_parser("list", parents=[api], help="[API] the open conflicts, both sides")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_conflicts_list)
    p = csub.add_parser("resolve", parents=[api], help="[API] keep one side, or put a value")
    p.add_argument("id")
    p.add_argument("--keep", help="local, remote or a node id")
    p.add_argument("--value", help="RDATA to serve instead of every side")
    p.set_defaults(func=cmd_conflicts_resolve)
    p = sub.add_parser("peers", parents=[api], help="[API] the cluster's other nodes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_peers)
    targets = sub.add_parser("targets", parents=[api], help="[API] providers mirroring the zones")
    targets.add_argument("--json", action="store_true")
    targets.set_defaults(func=cmd_targets)
    tsub = targets.add_subparsers(dest="targets_cmd")
    p = tsub.add_parser("history", parents=[api], help="[API] a target's recent sync runs")
    p.add_argument("target")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_targets_history)
    p = tsub.add_parser("plan", parents=[common], help="what a sync would change (dry run)")
    p.add_argument("target")
    p.add_argument("--force", action="store_true", help="plan as if forced past the safety limit")
    p.set_defaults(func=cmd_targets_plan, remote=False)
    p = tsub.add_parser("sync", parents=[common], help="sync a target now")
    p.add_argument("target")
    p.add_argument("--force", action="store_true", help="apply even past the safety limit")
    p.add_argument("--anyway", action="store_true", help="even if another node owns it")
    p.set_defaults(func=cmd_targets_sync, remote=False)
    return parser


def _remote_target(args: argparse.Namespace) -> bool:
    """Resolve --server / --token (flags, then the environment); True when the command is to
    go through a node's API."""
    import os

    args.server = args.server or os.environ.get("XDNSD_SERVER") or None
    if not args.server:
        return False
    if not getattr(args, "remote", False):
        raise CLIError(
            f"xdnsd {args.command} works on the node itself, not through its API: run it there "
            "without --server"
        )
    if args.token_file:
        try:
            args.token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise CLIError(f"{args.token_file}: cannot read the token: {exc.strerror}") from None
    args.token = args.token or os.environ.get("XDNSD_TOKEN")
    if not args.token:
        raise CLIError("--server needs a token: --token, --token-file or XDNSD_TOKEN")
    args.cacert = args.cacert or os.environ.get("XDNSD_CACERT") or None
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    try:
        config = None if _remote_target(args) else load_config(args.config)
        status: int = args.func(config, args)
        return status
    except OpError as exc:
        where = f" ({args.server})" if args.server else ""
        print(f"xdnsd: error{where}: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, ZoneFileError, StoreError, StartupError, CLIError) as exc:
        print(f"xdnsd: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
