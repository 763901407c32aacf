"""The store applies changes from peers by the merge rules: a differential test against the pure
model (xdnsd/replication/merge.py).

Three stores (three nodes) make changes with ``Store.commit`` as updates would, and exchange
them, read from each other's oplog (``Snapshot.changes_since``), in random order with
duplicates; a change whose dependencies are not in yet is refused (``NotReady``) and offered
again later.  The same changes, as logged, go to a pure ``ZoneState`` per node.  Every store
must serve what its model serves and list the same conflicts, and in the end all agree.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.test_merge import OWNERS, plan_change, rr
from xdnsd.model import RR, ChangeOp, Changeset
from xdnsd.replication.merge import ZoneState
from xdnsd.store import NotReady, Store
from xdnsd.zonefile import parse_zone_text

ZONE = dns.name.from_text("example.test.")
NODES = ("n1", "n2", "n3")
A = int(dns.rdatatype.A)
ANY = int(dns.rdatatype.ANY)
CNAME = int(dns.rdatatype.CNAME)
BASE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fsync is cheap there


def deliver(store: Store, waiting: list[Changeset], cs: Changeset) -> list[Changeset]:
    """A change from a peer: committed now if what it depends on is in, else kept in
    ``waiting`` until it is (as the replicator does).  Returns the changes committed."""
    waiting.append(cs)
    done: list[Changeset] = []
    progress = True
    while progress:
        progress = False
        for change in list(waiting):
            try:
                result = store.commit(change)
            except NotReady:
                continue
            waiting.remove(change)
            if result.applied:
                done.append(change)
            progress = True
    return done


class Node:
    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.store = Store(directory / name, name)
        self.model = ZoneState(ZONE)
        self.waiting: list[Changeset] = []

    def served(self) -> list[str]:
        with self.store.snapshot() as snap:
            records = [r for r in snap.zone(ZONE).iter_records() if r.rdtype != dns.rdatatype.SOA]
        return sorted(f"{r.owner} {r.ttl} {r.rdata.rdtype} {r.rdata}".lower() for r in records)

    def model_served(self) -> list[str]:
        return sorted(
            f"{r.owner} {r.ttl} {r.rdata.rdtype} {r.rdata}".lower()
            for r in self.model.resolve()[0]
            if r.rdtype != dns.rdatatype.SOA
        )

    def conflicts(self) -> list[str]:
        with self.store.snapshot() as snap:
            return sorted(c["id"] for c in snap.conflicts(ZONE))

    def model_conflicts(self) -> list[str]:
        return sorted(c.id for c in self.model.resolve()[1])

    def take(self, cs: Changeset) -> None:
        """A change from a peer: applied now if its dependencies are in, else later."""
        for done in deliver(self.store, self.waiting, cs):
            self.model.apply(done)

    def check(self) -> None:
        assert self.served() == self.model_served()
        assert self.conflicts() == self.model_conflicts()


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    if SHM is None:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=SHM) as d:
        yield Path(d)


def make_cluster(directory: Path) -> tuple[dict[str, Node], list[Changeset]]:
    nodes = {n: Node(n, directory) for n in NODES}
    create = Changeset(ZONE, added=tuple(parse_zone_text(BASE, ZONE)), op=ChangeOp.CREATE)
    nodes["n1"].store.commit(create)
    with nodes["n1"].store.snapshot() as snap:
        (logged,) = snap.changes_since(ZONE, {})
    for name in ("n2", "n3"):
        nodes[name].store.commit(logged)
    for node in nodes.values():
        node.model.apply(logged)
    return nodes, []


def local_change(node: Node, kind: int, pick: int, ttl: int, log: list[Changeset]) -> None:
    planned = plan_change(node.model.resolve()[0], kind, pick, ttl)
    if planned is None:
        return
    removed, added, cleared = planned
    before = node.store.list_zones()[0].vv.get(node.name, 0)
    result = node.store.commit(
        Changeset(ZONE, tuple(removed), tuple(added), origin="test", cleared=tuple(cleared))
    )
    if not result.applied:
        return
    with node.store.snapshot() as snap:
        (logged,) = snap.changes_since(ZONE, {**result_vv(node), node.name: before})
    node.model.apply(logged)
    log.append(logged)


def result_vv(node: Node) -> dict[str, int]:
    return dict(node.store.list_zones()[0].vv)


# a node makes a change (plan_change's kind, pick, TTL), or is handed changes from the log
change_step = st.tuples(
    st.just("change"),
    st.sampled_from(NODES),
    st.integers(0, 6),
    st.integers(0, 11),
    st.sampled_from([300, 600]),
)
deliver_step = st.tuples(
    st.just("deliver"), st.sampled_from(NODES), st.lists(st.integers(0, 200), max_size=6)
)
steps = st.lists(st.one_of(change_step, deliver_step), min_size=15, max_size=40)


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(0, 2**32))
def test_store_merges_as_the_model(plan: list[tuple[object, ...]], seed: int) -> None:
    base = SHM or Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(dir=base) as d:
        nodes, log = make_cluster(Path(d))
        try:
            for step in plan:
                node = nodes[str(step[1])]
                if step[0] == "change":
                    _, _, kind, pick, ttl = step
                    local_change(node, int(kind), int(pick), int(ttl), log)  # type: ignore[call-overload]
                elif log:
                    for pick in step[2]:  # type: ignore[union-attr]
                        node.take(log[int(pick) % len(log)])
                node.check()
            shuffler = random.Random(seed)
            for node in nodes.values():
                order = log + shuffler.sample(log, len(log) // 2)
                shuffler.shuffle(order)
                for cs in order:
                    node.take(cs)
                assert not node.waiting
                node.check()
            first = nodes["n1"]
            event(f"changes: {min(len(log), 20) // 5 * 5}+")
            event(f"conflicts at the end: {min(len(first.conflicts()), 3)}")
            for node in nodes.values():
                assert node.served() == first.served()
                assert node.conflicts() == first.conflicts()
                with node.store.snapshot() as snap, first.store.snapshot() as other:
                    assert snap.zone(ZONE).soa().rdata.serial == other.zone(ZONE).soa().rdata.serial
        finally:
            for node in nodes.values():
                node.store.close()


@pytest.mark.parametrize("policy", ["alert", "last-writer-wins"])
def test_conflict_policy(directory: Path, policy: str) -> None:
    lww = [ZONE] if policy == "last-writer-wins" else []
    one = Store(directory / "one", "n1", last_writer_wins=lww)
    two = Store(directory / "two", "n2", last_writer_wins=lww)
    try:
        one.commit(Changeset(ZONE, added=tuple(parse_zone_text(BASE, ZONE)), op=ChangeOp.CREATE))
        with one.snapshot() as snap:
            (create,) = snap.changes_since(ZONE, {})
        two.commit(create)
        old = rr(OWNERS[0], 300, "A", "192.0.2.1")
        base = one.commit(Changeset(ZONE, added=(old,)))
        with one.snapshot() as snap:
            two.commit(snap.changes_since(ZONE, {"n1": base.dot.counter - 1})[0])
        one.commit(Changeset(ZONE, (old,), (RR(old.owner, 600, old.rdata),)))
        two.commit(Changeset(ZONE, (old,), (RR(old.owner, 900, old.rdata),)))  # the later
        for store, other in ((one, two), (two, one)):
            with other.snapshot() as snap:
                for cs in snap.changes_since(ZONE, store.list_zones()[0].vv):
                    store.commit(cs)
        for store in (one, two):
            with store.snapshot() as snap:
                ttls = {r.ttl for r in snap.zone(ZONE).iter_records() if r.owner == old.owner}
                open_ = snap.conflicts(ZONE)
                every = snap.conflicts(ZONE, closed=True)
            assert ttls == {900}  # the provisional winner either way
            assert len(every) == 1 and every[0]["kind"] == "record"
            assert len(open_) == (0 if lww else 1)
            assert store.counters() == {
                "conflicts_detected": 1
            }  # counted once, whatever the policy
    finally:
        one.close()
        two.close()


def test_concurrent_soa_edits_converge_with_one_conflict(directory: Path) -> None:
    """Both nodes edit SOA fields at once: both serve the same SOA (the later edit's fields,
    the same serial) and list the same conflict; an edit after both ends it everywhere."""
    one = Store(directory / "one", "n1")
    two = Store(directory / "two", "n2")
    try:
        one.commit(Changeset(ZONE, added=tuple(parse_zone_text(BASE, ZONE)), op=ChangeOp.CREATE))
        with one.snapshot() as snap:
            two.commit(snap.changes_since(ZONE, {})[0])

        def soa_edit(store: Store, refresh: int) -> None:
            with store.snapshot() as snap:
                old = snap.zone(ZONE).soa()
            new = RR(old.owner, old.ttl, old.rdata.replace(refresh=refresh))
            store.commit(Changeset(ZONE, (old,), (new,), origin="test"))

        soa_edit(one, 7200)
        time.sleep(0.002)
        soa_edit(two, 1800)  # the later: its fields win
        for store, other in ((one, two), (two, one)):
            with other.snapshot() as snap:
                for cs in snap.changes_since(ZONE, dict(store.list_zones()[0].vv)):
                    store.commit(cs)
        soas = []
        for store in (one, two):
            with store.snapshot() as snap:
                soas.append(snap.zone(ZONE).soa())
                (conflict,) = snap.conflicts(ZONE)
                assert conflict["kind"] == "replaced"
        assert soas[0].rdata == soas[1].rdata and soas[0].rdata.refresh == 1800
        # sequential edits after that: no conflict, the fields follow, serials agree
        soa_edit(one, 600)
        with one.snapshot() as snap:
            for cs in snap.changes_since(ZONE, dict(two.list_zones()[0].vv)):
                two.commit(cs)
        for store in (one, two):
            with store.snapshot() as snap:
                assert snap.conflicts(ZONE) == []
                assert snap.zone(ZONE).soa().rdata.refresh == 600
        with one.snapshot() as a, two.snapshot() as b:
            assert a.zone(ZONE).soa().rdata == b.zone(ZONE).soa().rdata
    finally:
        one.close()
        two.close()
