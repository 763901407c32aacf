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

import dns.exception
import dns.name

from xdnsd.config import Config, ConfigError, load_config
from xdnsd.daemon import StartupError, open_store, serve, setup_logging
from xdnsd.store import StoreError
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
    store = open_store(config)
    try:
        zones = store.list_zones()
        rows = []
        with store.snapshot() as snap:
            for meta in zones:
                zone = snap.zone(meta.name)
                count = sum(1 for _ in zone.iter_records())
                rows.append((meta.name.to_text(), meta.kind, str(meta.serial), str(count)))
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                [dict(zip(("zone", "kind", "serial", "records"), r, strict=True)) for r in rows],
                indent=2,
            )
        )
        return 0
    _print_table(("ZONE", "KIND", "SERIAL", "RECORDS"), rows)
    return 0


def cmd_zone_import(config: Config, args: argparse.Namespace) -> int:
    zone = _zone_name(args.zone)
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
    notifier = Notifier(store, {zone: NotifyTargets(entry.secondaries, entry.notify_key)})
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
