"""Replicated zone deletion (``ChangeOp.DROP``): tombstones, concurrent drop and change,
re-creation, no resurrection; in the store, across stores in any delivery order, and on real
``xdnsd serve`` nodes.

Semantics under test: a drop leaves a tombstone (zone, incarnation, covered vector, who and
when) that reaches every node; the deletion wins over changes it had not seen (they are
discarded everywhere, counted in ``conflicts_detected`` and logged); nothing of a dropped
incarnation comes back (changes, states, the master file at start-up); a zone created again is
a new incarnation whose dots never meet the old ones.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests import test_store_merge
from tests.harness import XdnsdProcess, free_port, run_cli
from tests.test_peer_session import pair as sessions
from tests.test_peer_session import pump
from tests.test_store_merge import SHM, deliver
from xdnsd.catalog import member_label, sync_catalog
from xdnsd.model import RR, ChangeOp, Changeset, Dot, StateTransfer, ZoneTombstone
from xdnsd.replication.session import (
    AckReceived,
    ChangesReceived,
    StateReceived,
    VectorsReceived,
)
from xdnsd.store import NotReady, Store, ZoneMeta
from xdnsd.zonefile import create_changeset, parse_zone_text

ZONE = dns.name.from_text("example.test.")
BASE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
directory = test_store_merge.directory  # stores on /dev/shm where there is one


def a_record(name: str, address: str, zone: dns.name.Name = ZONE) -> RR:
    return RR(dns.name.from_text(name, zone), 300, dns.rdata.from_text("IN", "A", address))


class Node:
    """One store and the peer changes that wait for others (as the replicator keeps them)."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.store = Store(directory / name, name)
        self.waiting: list[Changeset] = []

    def take(self, cs: Changeset) -> None:
        deliver(self.store, self.waiting, cs)

    def meta(self) -> ZoneMeta | None:
        return next((m for m in self.store.list_zones() if m.name == ZONE), None)

    def served(self) -> tuple[int, list[str]] | None:
        """(incarnation, records but the SOA) of the zone, None when it is not served."""
        metas = {m.name: m for m in self.store.list_zones()}
        if ZONE not in metas:
            return None
        with self.store.snapshot() as snap:
            records = [r for r in snap.zone(ZONE).iter_records() if r.rdtype != dns.rdatatype.SOA]
        lines = sorted(f"{r.owner} {r.ttl} {r.rdata.rdtype} {r.rdata}".lower() for r in records)
        return metas[ZONE].incarnation, lines

    def serial(self) -> int:
        with self.store.snapshot() as snap:
            return int(snap.zone(ZONE).soa().rdata.serial)  # type: ignore[attr-defined]

    def changes_since(self, vv: dict[str, int]) -> list[Changeset]:
        with self.store.snapshot() as snap:
            return snap.changes_since(ZONE, vv)

    def last_change(self) -> Changeset:
        with self.store.snapshot() as snap:
            return snap.changes_since(ZONE, {})[-1]

    def state(self) -> Changeset:
        with self.store.snapshot() as snap:
            meta, entries = snap.state_entries(ZONE)
            transfer = StateTransfer(
                dict(meta.vv), meta.serial_base, tuple(entries), incarnation=meta.incarnation
            )
        return Changeset(ZONE, origin=f"peer:{self.name}", op=ChangeOp.STATE, state=transfer)

    def drop(self, origin: str = "operator:test") -> Changeset:
        """Drop the zone here; the drop as peers get it."""
        self.store.commit(Changeset(ZONE, origin=origin, op=ChangeOp.DROP))
        tomb = self.store.tombstone(ZONE)
        assert tomb is not None
        return tomb.changeset()

    def create(self, text: str = BASE) -> Changeset:
        self.store.commit(create_changeset(ZONE, parse_zone_text(text, ZONE), "import:test"))
        return self.last_change()

    def change(self, *added: RR) -> Changeset:
        self.store.commit(Changeset(ZONE, added=added, origin="key:test"))
        return self.last_change()

    def conflicts(self) -> int:
        return self.store.counters().get("conflicts_detected", 0)


@pytest.fixture
def pair(directory: Path) -> Iterator[tuple[Node, Node]]:
    one, two = Node("n1", directory), Node("n2", directory)
    two.take(one.create())
    try:
        yield one, two
    finally:
        one.store.close()
        two.store.close()


def test_drop_leaves_a_tombstone_and_reaches_a_peer(pair: tuple[Node, Node]) -> None:
    one, two = pair
    www = one.change(a_record("www", "192.0.2.1"))
    two.take(www)
    serial = one.serial()
    drop = one.drop()
    assert one.served() is None
    tomb = one.store.tombstone(ZONE)
    assert tomb is not None
    assert tomb.incarnation == 0 and tomb.origin == "operator:test"
    assert tomb.dot.node == "n1" and tomb.vv == {"n1": 3}  # create, change, the drop itself
    assert tomb.serial == serial and abs(tomb.time_ms - time.time() * 1000) < 60_000
    assert drop.op is ChangeOp.DROP and drop.dot == tomb.dot
    two.take(drop)
    assert two.served() is None
    assert two.store.tombstone(ZONE) == tomb  # the same tombstone
    assert two.conflicts() == 0  # everything it had was covered
    two.take(drop)  # a repeated delivery changes nothing
    assert two.store.tombstone(ZONE) == tomb


def test_covered_changes_and_states_are_ignored(pair: tuple[Node, Node]) -> None:
    one, two = pair
    www = one.change(a_record("www", "192.0.2.1"))
    two.take(www)
    old_state = two.state()
    two.take(one.drop())
    # a late copy of a change the drop covers, or a peer's state of the dropped zone: ignored
    for late in (www, old_state):
        result = two.store.commit(late)
        assert not result.applied
        assert two.served() is None
    assert two.conflicts() == 0
    # a node that never had the zone keeps the tombstone and refuses the state too
    three = Node("n3", one.store.path.parent)
    try:
        three.take(one.store.tombstone(ZONE).changeset())  # type: ignore[union-attr]
        assert not three.store.commit(old_state).applied
        assert three.served() is None and three.store.tombstone(ZONE) is not None
    finally:
        three.store.close()


def test_concurrent_change_loses_to_the_drop_on_both_sides(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    one, two = pair
    concurrent = two.change(a_record("new", "192.0.2.9"), a_record("new2", "192.0.2.10"))
    drop = one.drop()
    with caplog.at_level(logging.WARNING, logger="xdnsd.store"):
        two.take(drop)
    assert two.served() is None
    assert two.conflicts() == 1
    assert any(
        "example.test." in r.getMessage() and "1 change(s)" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xdnsd.store"):
        one.take(concurrent)  # the other side: the change arrives after the drop
    assert one.served() is None
    assert one.conflicts() == 1
    assert "deletion wins" in caplog.text
    one.take(concurrent)  # once only
    assert one.conflicts() == 1
    # both tombstones now cover the discarded change: nothing of it ever comes back
    for node in (one, two):
        tomb = node.store.tombstone(ZONE)
        assert tomb is not None and tomb.covers(concurrent.dot)  # type: ignore[arg-type]


def test_recreation_is_a_new_incarnation(pair: tuple[Node, Node]) -> None:
    one, two = pair
    old = one.change(a_record("old", "192.0.2.1"))
    two.take(old)
    serial = one.serial()
    drop = one.drop()
    two.take(drop)
    create = two.create(BASE + "fresh A 192.0.2.77\n")
    assert create.incarnation == 1
    assert two.serial() > serial  # secondaries take the new zone as newer
    one.take(create)
    assert one.served() == two.served()
    assert one.served() == (1, [line for line in two.served()[1]])  # type: ignore[index]
    assert not any(line.startswith("old.") for line in one.served()[1])  # type: ignore[index]
    # the old life's changes stay dead; the new life's dots restart without meeting them
    assert not one.store.commit(old).applied
    mine = two.change(a_record("after", "192.0.2.78"))
    assert mine.incarnation == 1 and mine.dot is not None
    one.take(mine)
    assert one.served() == two.served()
    assert one.serial() == two.serial()


def test_a_node_that_missed_the_drop_gets_the_new_incarnation_only(directory: Path) -> None:
    one, two, three = (Node(n, directory) for n in ("n1", "n2", "n3"))
    try:
        create = one.create()
        two.take(create)
        three.take(create)
        three.take(three.change(a_record("stale", "192.0.2.5")))  # n3's own, never sent
        drop = one.drop()
        two.take(drop)
        new = two.create(BASE + "fresh A 192.0.2.77\n")
        # n3 gets the new life before the drop: it waits for it
        three.take(new)
        assert three.waiting and three.served() is not None
        assert three.served()[0] == 0  # type: ignore[index]
        three.take(drop)
        assert not three.waiting
        assert three.served() == two.served()
        assert three.conflicts() == 1  # its own change the drop had not seen
        # same by state transfer: a node at the old life takes the new one's state after the
        # drop, never before
        four = Node("n4", directory)
        try:
            four.take(create)
            with pytest.raises(NotReady):
                four.store.commit(two.state())
            four.take(drop)
            four.store.commit(two.state())
            assert four.served() == two.served()
        finally:
            four.store.close()
    finally:
        for node in (one, two, three):
            node.store.close()


def test_catalog_drops_the_member(directory: Path) -> None:
    catalog = dns.name.from_text("catalog.invalid.")
    node = Node("n1", directory)
    try:
        node.create()
        assert sync_catalog(node.store, catalog)
        node.drop()
        assert sync_catalog(node.store, catalog)
        with node.store.snapshot() as snap:
            owners = {rr.owner for rr in snap.zone(catalog).iter_records()}
        assert dns.name.from_text(f"{member_label(ZONE).decode()}.zones", catalog) not in owners
    finally:
        node.store.close()


# --- any delivery order: three stores converge ---------------------------------------------

NODES = ("n1", "n2", "n3")

step = st.one_of(
    st.tuples(st.just("change"), st.sampled_from(NODES), st.integers(0, 7)),
    st.tuples(st.just("drop"), st.sampled_from(NODES), st.just(0)),
    st.tuples(st.just("create"), st.sampled_from(NODES), st.integers(0, 7)),
    st.tuples(st.just("deliver"), st.sampled_from(NODES), st.integers(0, 200)),
    st.tuples(st.just("sync"), st.sampled_from(NODES), st.sampled_from(NODES)),
)


def sync(src: Node, dst: Node) -> None:
    """What the replicator sends: tombstones first, then changes (same incarnation) or the
    state (the peer lacks the zone or has an older life of it)."""
    for tomb in src.store.dropped_zones():
        dst.take(tomb.changeset())
    mine = src.meta()
    if mine is None:
        return
    theirs = dst.meta()
    if theirs is not None and theirs.incarnation == mine.incarnation:
        for cs in src.changes_since(dict(theirs.vv)):
            dst.take(cs)
    elif theirs is None or theirs.incarnation < mine.incarnation:
        dst.take(src.state())


@settings(max_examples=int(os.environ.get("XDNSD_EXAMPLES", "40")), deadline=None)
@given(st.lists(step, min_size=5, max_size=30), st.integers(0, 2**32))
def test_drops_changes_and_recreations_converge_in_any_order(
    plan: list[tuple[str, str, object]], seed: int
) -> None:
    base = SHM or Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(dir=base) as d:
        nodes = {n: Node(n, Path(d)) for n in NODES}
        log: list[Changeset] = []
        try:
            create = nodes["n1"].create()
            log.append(create)
            for name in ("n2", "n3"):
                nodes[name].take(create)
            for kind, name, arg in plan:
                node = nodes[name]
                live = node.meta() is not None
                # every record names the incarnation it was written in
                if kind == "change" and live:
                    life = node.meta().incarnation  # type: ignore[union-attr]
                    log.append(node.change(a_record(f"h{arg}-{name}-i{life}", f"192.0.2.{arg}")))
                elif kind == "drop" and live:
                    log.append(node.drop())
                    event("drop")
                elif kind == "create" and not live:
                    tomb = node.store.tombstone(ZONE)
                    life = 0 if tomb is None else tomb.incarnation + 1
                    text = BASE + f"c{arg}-i{life} A 192.0.2.{100 + int(arg)}\n"  # type: ignore[call-overload]
                    log.append(node.create(text))
                    assert node.meta().incarnation == life  # type: ignore[union-attr]
                    event("re-creation")
                elif kind == "deliver" and log:
                    node.take(log[int(arg) % len(log)])  # type: ignore[call-overload]
                elif kind == "sync" and name != arg:
                    sync(nodes[str(arg)], node)
            shuffler = random.Random(seed)
            for node in nodes.values():
                for cs in shuffler.sample(log, len(log)):
                    node.take(cs)
            for _ in range(3):
                for src in nodes.values():
                    for dst in nodes.values():
                        if src is not dst:
                            sync(src, dst)
            first = nodes["n1"]
            for node in nodes.values():
                assert not node.waiting, node.waiting
                assert node.served() == first.served()
                mine = node.store.tombstone(ZONE)
                theirs = first.store.tombstone(ZONE)
                assert (mine is None) == (theirs is None)
                if mine is not None and theirs is not None:
                    assert (mine.incarnation, mine.dot) == (theirs.incarnation, theirs.dot)
            served = first.served()
            if served is None:
                event("dropped everywhere")
            else:  # nothing of an earlier life is mixed in
                life, lines = served
                for line in lines:
                    assert line.startswith(("ns1.", "example.test.")) or f"-i{life}." in line, lines
            if any(n.conflicts() for n in nodes.values()):
                event("concurrent change discarded")
        finally:
            for node in nodes.values():
                node.store.close()


# --- real nodes -----------------------------------------------------------------------------

PEER_KEY = "dGhlIGNsdXN0ZXIncyBzaGFyZWQgcGVlciBrZXkhISE="
KEEP = "keep.test"


class TwoNodes:
    """ns1 and ns2 serving example.test (dropped in the test) and keep.test (the probe)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nodes = ("ns1", "ns2")
        self.dns = {n: free_port() for n in self.nodes}
        self.peer = {n: free_port() for n in self.nodes}
        self.procs: dict[str, XdnsdProcess] = {}
        zone_file = directory / "example.test.zone"
        zone_file.write_text(BASE + "old A 192.0.2.1\n")
        keep_file = directory / "keep.test.zone"
        keep_file.write_text(BASE)
        self.configs: dict[str, Path] = {}
        for node in self.nodes:
            d = directory / node
            d.mkdir()
            other = next(n for n in self.nodes if n != node)
            config = d / "xdnsd.toml"
            config.write_text(
                f'[server]\nlisten = ["127.0.0.1:{self.dns[node]}"]\ndata_dir = "{d / "var"}"\n'
                f'[node]\nid = "{node}"\npeer_listen = "127.0.0.1:{self.peer[node]}"\n'
                f'[[peers]]\nid = "{other}"\naddress = "127.0.0.1:{self.peer[other]}"\n'
                f'key = "{PEER_KEY}"\n'
                f'[[zones]]\nname = "example.test"\nfile = "{zone_file}"\n'
                f'[[zones]]\nname = "{KEEP}"\nfile = "{keep_file}"\n'
            )
            self.configs[node] = config

    def start(self, node: str) -> None:
        proc = XdnsdProcess(self.configs[node], self.dns[node])
        self.procs[node] = proc
        proc.wait_ready(KEEP)

    def stop(self, node: str) -> None:
        assert self.procs[node].stop() == 0, self.procs[node].log()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.proc.poll() is None:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log()[-4000:]}" for n, p in self.procs.items())

    def answer(
        self, node: str, name: str = "example.test", rdtype: str = "SOA"
    ) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return dns.query.udp(query, "127.0.0.1", port=self.dns[node], timeout=2)

    def served(self, node: str) -> bool:
        return self.answer(node).rcode() == dns.rcode.NOERROR

    def wait(self, what: str, check: object, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout} s\n{self.logs()}")

    def records(self, node: str, name: str) -> set[str]:
        response = self.answer(node, f"{name}.example.test", "A")
        if response.rcode() != dns.rcode.NOERROR:
            return set()
        return {rd.to_text() for rrset in response.answer for rd in rrset}


def drop_on(cluster: TwoNodes, node: str) -> None:
    """Drop example.test on a running node, as the API does: one commit to its store."""
    store = Store(cluster.directory / node / "var", node)
    try:
        store.commit(Changeset(ZONE, origin="operator:test", op=ChangeOp.DROP))
    finally:
        store.close()


@pytest.mark.slow
def test_drop_and_recreate_on_real_nodes(tmp_path: Path) -> None:
    cluster = TwoNodes(tmp_path)
    try:
        for node in cluster.nodes:
            cluster.start(node)
        assert all(cluster.served(n) for n in cluster.nodes)
        cluster.wait("peers linked", lambda: "peer ns2 connected" in cluster.procs["ns1"].log())
        # dropped on ns1 while both run: gone on both
        drop_on(cluster, "ns1")
        for node in cluster.nodes:
            cluster.wait(f"example.test gone on {node}", lambda n=node: not cluster.served(n))
            assert cluster.answer(node).rcode() == dns.rcode.REFUSED
        # ns2 restarted: still gone (its master file does not bring it back)
        cluster.stop("ns2")
        cluster.start("ns2")
        assert not cluster.served("ns2")
        assert "was deleted by operator:test" in cluster.procs["ns2"].log()
        time.sleep(2.5)  # a vector exchange: nothing comes back to ns1 either
        assert not cluster.served("ns1") and not cluster.served("ns2")

        # re-created on ns2 (xdnsd zone import): served on both, the new content only
        new_file = tmp_path / "new.zone"
        new_file.write_text(BASE + "fresh A 192.0.2.77\n")
        run_cli(
            "zone", "import", str(new_file), "--zone", "example.test", config=cluster.configs["ns2"]
        )
        for node in cluster.nodes:
            cluster.wait(f"re-created on {node}", lambda n=node: cluster.served(n))
            cluster.wait(
                f"new content on {node}",
                lambda n=node: cluster.records(n, "fresh") == {"192.0.2.77"},
            )
            assert cluster.records(node, "old") == set()

        # ns2 offline while ns1 drops the new zone: ns2 drops it once back, and keeps it
        # dropped through a restart
        cluster.stop("ns2")
        drop_on(cluster, "ns1")
        assert not cluster.served("ns1")
        cluster.start("ns2")
        cluster.wait("gone on ns2 once back", lambda: not cluster.served("ns2"))
        cluster.stop("ns2")
        cluster.start("ns2")
        time.sleep(2.5)
        assert not cluster.served("ns2") and not cluster.served("ns1")
        for node in cluster.nodes:
            assert cluster.answer(node, "keep.test", "SOA").rcode() == dns.rcode.NOERROR

        # and created again once more, now on ns1: both serve the newest content
        newer = tmp_path / "newer.zone"
        newer.write_text(BASE + "third A 192.0.2.99\n")
        run_cli(
            "zone", "import", str(newer), "--zone", "example.test", config=cluster.configs["ns1"]
        )
        for node in cluster.nodes:
            cluster.wait(
                f"third life on {node}",
                lambda n=node: cluster.records(n, "third") == {"192.0.2.99"},
            )
            assert cluster.records(node, "fresh") == set()
        for node in cluster.nodes:
            cluster.stop(node)
    finally:
        cluster.close()


def test_wire_carries_incarnations_and_drops() -> None:
    """Vectors name each zone's incarnation, a state its incarnation, and a tombstone travels
    as a DROP change with its dot, HLC, origin and covered vector."""
    a, b = sessions()
    pump(a, b, a.hello(), b.hello())
    vv = {ZONE: {"ns1": 2}}
    tomb = ZoneTombstone(ZONE, 3, {"ns1": 7, "ns2": 4}, Dot("ns1", 7), 99 << 16, "operator:x")
    got, _ = b.receive(
        a.vectors(vv, {ZONE: 4})
        + a.ack(vv)
        + a.changes([tomb.changeset()])
        + a.state(ZONE, {"ns1": 2}, 0, False, None, [], True, 4)
    )
    assert got[0] == VectorsReceived(vv, {ZONE: 4})
    assert got[1] == AckReceived(vv, {})
    assert isinstance(got[2], ChangesReceived)
    assert ZoneTombstone.of_drop(got[2].changes[0]) == tomb
    assert isinstance(got[3], StateReceived) and got[3].incarnation == 4
