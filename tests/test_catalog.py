"""The catalog zone (RFC 9432 v2): its contents, and a real BIND that provisions member zones
from it, including one added while everything runs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype

from tests.harness import free_port, run_cli, running_xdnsd
from tests.named import CONTROLS_NONE, NAMED, named_options
from xdnsd.catalog import member_label, sync_catalog
from xdnsd.store import Store
from xdnsd.zonefile import create_changeset, parse_zone_text

CATALOG = dns.name.from_text("catalog.invalid.")
ZONE_TEXT = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.1\n"


def test_catalog_follows_the_zone_list(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", "c1")
    a = dns.name.from_text("a.test.")
    store.commit(create_changeset(a, parse_zone_text(ZONE_TEXT, a), "t"))
    assert sync_catalog(store, CATALOG)  # created
    assert not sync_catalog(store, CATALOG)  # nothing to do
    b = dns.name.from_text("b.test.")
    store.commit(create_changeset(b, parse_zone_text(ZONE_TEXT, b), "t"))
    assert sync_catalog(store, CATALOG)
    with store.snapshot() as snap:
        records = {
            (rr.owner.to_text(), rr.rdtype, rr.rdata.to_text())
            for rr in snap.zone(CATALOG).iter_records()
        }
        serial = snap.zone(CATALOG).soa().rdata.serial  # type: ignore[attr-defined]
    assert ("version.catalog.invalid.", dns.rdatatype.TXT, '"2"') in records
    for member in (a, b):
        owner = f"{member_label(member).decode()}.zones.catalog.invalid."
        assert (owner, dns.rdatatype.PTR, member.to_text()) in records
    assert serial == 2  # one change after the creation
    assert member_label(a) == member_label(dns.name.from_text("A.TEST."))  # stable, case-blind
    store.close()


def test_bind_provisions_zones_from_the_catalog(tmp_path: Path) -> None:
    bind_port = free_port()
    (tmp_path / "x").mkdir()
    zone = tmp_path / "a.test.zone"
    zone.write_text(ZONE_TEXT)
    # the catalog's entry names its secondaries (they get a NOTIFY when it changes)
    extra = (
        'catalog_zone = "catalog.invalid"\nallow_transfer = ["127.0.0.1"]\n'
        f'[[zones]]\nname = "catalog.invalid"\nsecondaries = ["127.0.0.1:{bind_port}"]'
    )
    with running_xdnsd(tmp_path / "x", {"a.test": zone}, extra_server=extra) as server:
        config = server.config
        bind = tmp_path / "bind"
        bind.mkdir()
        conf = bind / "named.conf"
        conf.write_text(
            named_options(
                bind,
                bind_port,
                "allow-new-zones yes;",
                'catalog-zones { zone "catalog.invalid" default-primaries '
                f"{{ 127.0.0.1 port {server.port}; }} in-memory yes; }};",
            )
            + CONTROLS_NONE
            + f'zone "catalog.invalid" {{ type secondary; file "{bind}/catalog.db";\n'
            f"  primaries {{ 127.0.0.1 port {server.port}; }}; allow-notify {{ 127.0.0.1; }}; }};\n"
        )
        log = (bind / "named.log").open("w")
        named = subprocess.Popen([NAMED, "-g", "-c", str(conf)], stdout=log, stderr=log)
        try:

            def served(name: str) -> bool:
                try:
                    q = dns.message.make_query(name, "SOA")
                    r = dns.query.udp(q, "127.0.0.1", port=bind_port, timeout=0.5)
                except Exception:
                    return False
                return bool(r.answer) and r.flags & dns.flags.AA != 0

            deadline = time.monotonic() + 20
            while not served("a.test"):
                assert time.monotonic() < deadline, (bind / "named.log").read_text()
                time.sleep(0.1)
            # a zone added to xdnsd while it runs: the catalog changes, BIND follows
            other = tmp_path / "b.test.zone"
            other.write_text(ZONE_TEXT)
            run_cli("zone", "import", str(other), "--zone", "b.test", config=config)
            deadline = time.monotonic() + 20
            while not served("b.test"):
                assert time.monotonic() < deadline, (bind / "named.log").read_text()
                time.sleep(0.1)
        finally:
            named.terminate()
            named.wait(10)
            log.close()
