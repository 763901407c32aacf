"""The LMDB store: one commit path, derived serials, journal, history, durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import pytest

from xdnsd.model import RR, ChangeOp, Changeset, CommitResult, Dot, decode_changeset
from xdnsd.store import Store, StoreError, TransferCache, ZoneSnapshot
from xdnsd.zonefile import create_changeset, parse_zone_text

ZONE = dns.name.from_text("example.test.")
TEXT = """$TTL 300
@ SOA ns1 host 100 3600 900 604800 60
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.2
www A 192.0.2.3
WWW.Sub AAAA 2001:db8::1
"""


def rr(text: str) -> RR:
    owner, ttl, _cls, rdtype, rdata = text.split(None, 4)
    name = dns.name.from_text(owner, ZONE)
    return RR(name, int(ttl), dns.rdata.from_text("IN", rdtype, rdata, ZONE))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data", "n1")
    s.commit(create_changeset(ZONE, parse_zone_text(TEXT, ZONE), "test"))
    yield s
    s.close()


def test_create_serves_file_serial_and_records(store: Store) -> None:
    with store.snapshot() as snap:
        zone = snap.find_zone(dns.name.from_text("a.b.www.example.test."))
        assert zone is not None and zone.origin == ZONE
        assert zone.soa().rdata.serial == 100  # type: ignore[attr-defined]
        rrsets = zone.rrsets_at(dns.name.from_text("www.example.test."))
        assert set(rrsets) == {dns.rdatatype.A}
        assert sorted(r.address for r in rrsets[dns.rdatatype.A]) == ["192.0.2.2", "192.0.2.3"]
        # original owner case is kept
        sub = zone.rrsets_at(dns.name.from_text("www.sub.example.test."))
        assert sub[dns.rdatatype.AAAA].name.to_text() == "WWW.Sub.example.test."
        # empty non-terminal: sub has no data but has a subdomain
        assert zone.rrsets_at(dns.name.from_text("sub.example.test.")) == {}
        assert zone.has_subdomains(dns.name.from_text("sub.example.test."))
        assert not zone.has_subdomains(dns.name.from_text("www.example.test."))
        assert zone.has_subdomains(ZONE)
        assert snap.find_zone(dns.name.from_text("example.org.")) is None


def test_commit_changes_serial_journal_history(store: Store) -> None:
    result = store.commit(
        Changeset(
            ZONE,
            removed=(rr("www 300 IN A 192.0.2.2"),),
            added=(rr("mail 300 IN A 192.0.2.9"),),
            origin="key:test",
        )
    )
    assert (result.serial_from, result.serial_to) == (100, 101)
    assert result.dot == Dot("n1", 2)
    with store.snapshot() as snap:
        zone = snap.zone(ZONE)
        assert zone.soa().rdata.serial == 101  # type: ignore[attr-defined]
        www = zone.rrsets_at(dns.name.from_text("www.example.test."))[dns.rdatatype.A]
        assert [r.address for r in www] == ["192.0.2.3"]
        history = snap.history(ZONE)
        assert history[0]["origin"] == "key:test"
        assert history[0]["serial_to"] == 101 and history[1]["serial_to"] == 100
        assert snap.journal_depth(ZONE) == 1


def test_noop_change_does_not_raise_serial(store: Store) -> None:
    result = store.commit(Changeset(ZONE, added=(rr("www 300 IN A 192.0.2.2"),)))
    assert not result.applied and result.serial_to == 100


def test_remote_dot_applied_once(store: Store) -> None:
    cs = Changeset(
        ZONE, added=(rr("x 300 IN A 192.0.2.7"),), origin="peer:n2", dot=Dot("n2", 1), hlc=1
    )
    first = store.commit(cs)
    again = store.commit(cs)
    assert first.applied and not again.applied
    assert again.serial_to == first.serial_to == 101


def test_oplog_keeps_changesets(store: Store) -> None:
    store.commit(Changeset(ZONE, added=(rr('y 300 IN TXT "hello"'),), origin="t"))
    with store.snapshot() as snap:
        cursor = snap._txn.cursor(db=store._dbs["oplog"])
        entries = [decode_changeset(v) for _k, v in cursor]
    assert [e.dot for e in entries] == [Dot("n1", 1), Dot("n1", 2)]
    assert entries[1].added[0].rdata.to_text() == '"hello"'


def test_snapshot_isolation(store: Store) -> None:
    www = dns.name.from_text("www.example.test.")
    with store.snapshot() as snap:
        zone = snap.zone(ZONE)
        store.commit(Changeset(ZONE, added=(rr("www 300 IN A 192.0.2.4"),)))
        assert len(zone.rrsets_at(www)[dns.rdatatype.A]) == 2
    with store.snapshot() as snap:
        assert len(snap.zone(ZONE).rrsets_at(www)[dns.rdatatype.A]) == 3


def test_generation_published_on_commit(store: Store) -> None:
    with store.snapshot() as snap:
        slot, gen = snap.zone_generation(ZONE)
    assert store.generations.get(slot) == gen
    store.commit(Changeset(ZONE, added=(rr("g 300 IN A 192.0.2.5"),)))
    assert store.generations.get(slot) == gen + 1


def test_map_grows_when_full(tmp_path: Path) -> None:
    s = Store(tmp_path / "small", "n1", map_size=256 * 1024)
    try:
        s.commit(create_changeset(ZONE, parse_zone_text(TEXT, ZONE), "t"))
        added = tuple(rr(f'h{i} 300 IN TXT "{"x" * 200}"') for i in range(3000))
        s.commit(Changeset(ZONE, added=added))
        with s.snapshot() as snap:
            assert sum(1 for _ in snap.zone(ZONE).iter_records()) == 6 + 3000
    finally:
        s.close()


def test_drop_zone(store: Store) -> None:
    store.commit(Changeset(ZONE, op=ChangeOp.DROP, origin="t"))
    assert store.list_zones() == []
    with store.snapshot() as snap:
        assert snap.find_zone(ZONE) is None


def test_create_twice_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="already exists"):
        store.commit(create_changeset(ZONE, parse_zone_text(TEXT, ZONE), "t"))


def test_node_id_cannot_change(tmp_path: Path) -> None:
    Store(tmp_path / "n", "n1").close()
    with pytest.raises(StoreError, match="node id must never change"):
        Store(tmp_path / "n", "other")


WRITER = """
import sys, dns.name, dns.rdata
from xdnsd.model import RR, Changeset
from xdnsd.store import Store
from xdnsd.zonefile import create_changeset, parse_zone_text
zone = dns.name.from_text("example.test.")
s = Store(sys.argv[1], "n1")
if not s.list_zones():
    s.commit(create_changeset(zone, parse_zone_text(sys.argv[2], zone), "t"))
i = 0
while True:
    owner = dns.name.from_text(f"k{i}.example.test.")
    s.commit(Changeset(zone, added=(RR(owner, 60, dns.rdata.from_text("IN", "A", "10.0.0.1")),)))
    print(i, flush=True)  # acknowledged: committed and synced
    i += 1
"""


def test_sigkill_during_commits_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "crash"
    acknowledged = -1
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(data), TEXT],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 0.5 + 0.3 * _round
        last = -1
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert last >= 0, "writer acknowledged nothing"
        acknowledged = max(acknowledged, last)
        s = Store(data, "n1")
        try:
            with s.snapshot() as snap:
                zone = snap.zone(ZONE)
                for i in range(last + 1):
                    owner = dns.name.from_text(f"k{i}.example.test.")
                    assert zone.rrsets_at(owner), f"acknowledged k{i} lost"
                # serial = file serial + number of commits: consistent with the records
                count = sum(1 for r in zone.iter_records() if r.owner.labels[0].startswith(b"k"))
                assert zone.soa().rdata.serial == 100 + count  # type: ignore[attr-defined]
        finally:
            s.close()


# --- commit_batch: plan inside the write transaction (group commit) ---------------------------


def soa(owner: dns.name.Name, serial: int) -> RR:
    text = f"ns1.example.test. host.example.test. {serial} 3600 900 604800 60"
    return RR(owner, 300, dns.rdata.from_text("IN", "SOA", text))


def test_commit_batch_plans_see_earlier_changes_and_fail_alone(store: Store) -> None:
    seen: list[bool] = []

    def add(name: str) -> Callable[[ZoneSnapshot | None], Changeset | None]:
        def planner(view: ZoneSnapshot | None) -> Changeset | None:
            assert view is not None
            owner = dns.name.from_text(name, ZONE)
            if view.rrsets_at(owner):
                return None  # already there: nothing to do
            return Changeset(ZONE, added=(rr(f"{name} 300 IN A 192.0.2.9"),), origin="t")

        return planner

    def sees_first(view: ZoneSnapshot | None) -> Changeset | None:
        assert view is not None
        seen.append(bool(view.rrsets_at(dns.name.from_text("first", ZONE))))
        return None

    def broken(view: ZoneSnapshot | None) -> Changeset | None:
        raise RuntimeError("planner bug")

    def no_soa(view: ZoneSnapshot | None) -> Changeset | None:
        # removes and adds records, then fails inside _commit_txn: a new SOA off the apex
        return Changeset(
            ZONE,
            removed=(rr("www 300 IN A 192.0.2.2"),),
            added=(soa(dns.name.from_text("x", ZONE), 1),),
        )

    missing = dns.name.from_text("nothere.test.")
    outcomes = store.commit_batch(
        [
            (ZONE, add("first")),
            (ZONE, sees_first),
            (ZONE, broken),
            (ZONE, no_soa),
            (ZONE, add("first")),  # sees the first planner's record: no change
            (missing, lambda view: None if view is None else pytest.fail("zone exists?")),
            (ZONE, add("second")),
        ]
    )
    first, nothing, error, failed, again, absent, second = outcomes
    assert isinstance(first, CommitResult) and first.applied
    assert seen == [True]
    assert nothing is None and again is None and absent is None
    assert isinstance(error, RuntimeError) and isinstance(failed, StoreError)
    assert isinstance(second, CommitResult) and second.serial_to == first.serial_to + 1
    with store.snapshot() as snap:
        zone = snap.zone(ZONE)
        # the failed change left nothing behind: www keeps both addresses
        www = zone.rrsets_at(dns.name.from_text("www", ZONE))[dns.rdatatype.A]
        assert len(www) == 2
        assert zone.soa().rdata.serial == second.serial_to  # type: ignore[attr-defined]
        assert [h["origin"] for h in snap.history(ZONE, 2)] == ["t", "t"]


def test_operator_soa_serial_is_served(store: Store) -> None:
    """An SOA with a larger serial (an update's SOA replacement) is served as given."""
    result = store.commit(Changeset(ZONE, added=(soa(ZONE, 5000),)))
    assert result.serial_to == 5000
    after = store.commit(Changeset(ZONE, added=(rr("new 300 IN A 192.0.2.44"),)))
    assert after.serial_to == 5001


def test_journal_keeps_at_least_its_depth(tmp_path: Path) -> None:
    """Trimmed in chunks: never fewer than journal_depth entries, never 64 or more beyond."""
    s = Store(tmp_path / "data", "n1", journal_depth=10)
    s.commit(create_changeset(ZONE, parse_zone_text(TEXT, ZONE), "test"))
    depths = []
    for i in range(200):
        s.commit(Changeset(ZONE, added=(rr(f"j{i} 300 IN A 192.0.2.7"),)))
        with s.snapshot() as snap:
            depths.append(snap.journal_depth(ZONE))
    s.close()
    assert depths[:9] == list(range(1, 10))  # the creation has no journal entry
    assert min(depths[9:]) == 10 and max(depths) < 10 + 64


def test_journal_depth_per_zone(tmp_path: Path) -> None:
    """A zone's own journal_depth overrides the store's."""
    s = Store(tmp_path / "data", "n1", journal_depth=500, zone_journal_depths={ZONE: 5})
    s.commit(create_changeset(ZONE, parse_zone_text(TEXT, ZONE), "test"))
    for i in range(130):
        s.commit(Changeset(ZONE, added=(rr(f"j{i} 300 IN A 192.0.2.7"),)))
    with s.snapshot() as snap:
        depth = snap.journal_depth(ZONE)
    s.close()
    assert 5 <= depth < 5 + 64 and depth < 130


def _axfr_records(chunks: list[tuple[int, bytes]]) -> list[str]:
    """The records of transfer message bodies, as text (SOA first and last)."""
    out = []
    q = dns.name.from_text("example.test.").to_wire() + b"\x00\xfc\x00\x01"
    for i, (count, body) in enumerate(chunks):
        head = bytes(2) + b"\x84\x00" + (b"\x00\x01" if i == 0 else b"\x00\x00")
        wire = head + count.to_bytes(2, "big") + bytes(4) + (q if i == 0 else b"") + body
        message = dns.message.from_wire(wire, one_rr_per_rrset=True)
        out += [f"{r.name} {r.ttl} {r[0].to_text()}" for r in message.answer]
    return out


def test_wire_chunks_are_the_zone_soa_first_and_last(store: Store) -> None:
    with store.snapshot() as snap:
        chunks = list(snap.zone(ZONE).wire_chunks(60, 17))  # tiny messages: one record each
        whole = list(snap.zone(ZONE).wire_chunks(16384, 17))
    assert len(chunks) > 3 and len(whole) == 1
    got = _axfr_records(chunks)
    assert got == _axfr_records(whole)
    assert got[0] == got[-1] and got[0].startswith("example.test. 300 ns1.example.test.")
    assert sorted(got[1:-1]) == sorted(
        [
            "example.test. 300 ns1.example.test.",
            "ns1.example.test. 300 192.0.2.1",
            "www.example.test. 300 192.0.2.2",
            "www.example.test. 300 192.0.2.3",
            "WWW.Sub.example.test. 300 2001:db8::1",
        ]
    )


def test_transfer_cache_keeps_complete_versions_only(store: Store, tmp_path: Path) -> None:
    cache = TransferCache(tmp_path / "cache", map_size=1 << 24)
    with store.snapshot() as snap:
        view = snap.zone(ZONE)
        zid, gen = view.meta.zone_id, view.meta.generation
        rendered = list(view.wire_chunks(60, 17))
        assert cache.chunks(zid, gen) is None
        partial = cache.filling(zid, gen, view.wire_chunks(60, 17))
        next(partial)
        partial.close()  # the client left after the first message
        assert cache.chunks(zid, gen) is None
        assert list(cache.filling(zid, gen, view.wire_chunks(60, 17))) == rendered
    cached = cache.chunks(zid, gen)
    assert cached is not None and list(cached) == rendered and cache.hits == 1
    # a new version replaces the old one
    store.commit(Changeset(ZONE, added=(rr("new 300 IN A 192.0.2.9"),)))
    with store.snapshot() as snap:
        view = snap.zone(ZONE)
        assert view.meta.generation != gen
        assert cache.chunks(view.meta.zone_id, view.meta.generation) is None
        newer = list(
            cache.filling(view.meta.zone_id, view.meta.generation, view.wire_chunks(60, 17))
        )
    assert "new.example.test. 300 192.0.2.9" in _axfr_records(newer)
    assert cache.chunks(zid, gen) is None  # dropped
    cache.close()
