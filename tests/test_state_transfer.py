"""State transfer, tombstone collection and digests in the store, against the pure model.

A node that cannot be caught up change by change (new, away longer than the tombstone
retention, or found diverged by digest) gets a peer's whole merge state
(``ChangeOp.STATE``).  Merging it must leave the node exactly where applying every change
the peer had would: the differential test below interleaves changes, deliveries, state
transfers and tombstone collection on three stores, and follows each with the pure
``ZoneState`` model (a state transfer = the peer's changes the node lacked, in order).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import dns.name
import lmdb
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.test_merge import OWNERS, rr
from tests.test_store_merge import (
    BASE,
    NODES,
    SHM,
    ZONE,
    Node,
    change_step,
    deliver_step,
    directory,  # noqa: F401 (fixture)
    local_change,
    make_cluster,
    result_vv,
)
from xdnsd.model import ChangeOp, Changeset, StateTransfer
from xdnsd.store import Store
from xdnsd.zonefile import parse_zone_text

FUTURE_MS = int(time.time() * 1000) + 3600_000


def state_of(node: Node, buckets: frozenset[int] | None = None, repair: bool = False) -> Changeset:
    with node.store.snapshot() as snap:
        meta, entries = snap.state_entries(ZONE, buckets)
        transfer = StateTransfer(dict(meta.vv), meta.serial_base, tuple(entries), repair, buckets)
    return Changeset(ZONE, origin=f"peer:{node.name}", op=ChangeOp.STATE, state=transfer)


def take_state(dst: Node, src: Node, log: list[Changeset]) -> None:
    """``dst`` merges ``src``'s state; its model applies what ``src`` had and it lacked."""
    src_vv = result_vv(src)
    dst.store.commit(state_of(src))
    for cs in log:
        assert cs.dot is not None
        if src_vv.get(cs.dot.node, 0) >= cs.dot.counter and not dst.model.seen(cs.dot):
            dst.model.apply(cs)
    # what waited for a change the state brought is ready now (or seen)
    if dst.waiting:
        dst.take(dst.waiting.pop())


def collect(node: Node, nodes: dict[str, Node]) -> None:
    """Tombstone collection at ``node`` as the replicator does it: only when ``node`` has
    seen everything every peer acknowledged, up to what all of them have."""
    mine = result_vv(node)
    others = [result_vv(n) for n in nodes.values()]
    if any(vv.get(k, 0) > mine.get(k, 0) for vv in others for k in vv):
        return
    horizon = {k: min(vv.get(k, 0) for vv in others) for k in mine}
    counts = node.store.collect_garbage(ZONE, horizon, FUTURE_MS)
    if counts["tombstones"] + counts["slots"] + counts["clears"]:
        event("tombstones collected")


steps = st.lists(
    st.one_of(
        change_step,
        deliver_step,
        st.tuples(st.just("state"), st.sampled_from(NODES), st.sampled_from(NODES)),
        st.tuples(st.just("collect"), st.sampled_from(NODES)),
    ),
    min_size=15,
    max_size=40,
)


@settings(max_examples=int(os.environ.get("XDNSD_EXAMPLES", "60")), deadline=None)
@given(steps, st.integers(0, 2**32))
def test_state_transfer_merges_as_the_changes_would(
    plan: list[tuple[object, ...]], seed: int
) -> None:
    base = SHM or Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(dir=base) as d:
        nodes, log = make_cluster(Path(d))
        try:
            for step in plan:
                node = nodes[str(step[1])]
                if step[0] == "change":
                    _, _, kind, pick, ttl = step
                    local_change(node, int(kind), int(pick), int(ttl), log)  # type: ignore[call-overload]
                elif step[0] == "deliver" and log:
                    for pick in step[2]:  # type: ignore[union-attr]
                        node.take(log[int(pick) % len(log)])
                elif step[0] == "state" and step[1] != step[2]:
                    take_state(node, nodes[str(step[2])], log)
                    event("state transfer")
                elif step[0] == "collect":
                    collect(node, nodes)
                node.check()
            shuffler = random.Random(seed)
            for node in nodes.values():
                for cs in shuffler.sample(log, len(log)):
                    node.take(cs)
                assert not node.waiting
                node.check()
            first = nodes["n1"]
            for node in nodes.values():
                assert node.served() == first.served()
                assert node.conflicts() == first.conflicts()
                with node.store.snapshot() as snap, first.store.snapshot() as other:
                    assert snap.zone(ZONE).soa().rdata.serial == other.zone(ZONE).soa().rdata.serial
                    assert snap.digest(ZONE) == other.digest(ZONE)
            # a new node seeded by state from any of them serves the same, conflicts included
            fresh = Node("n9", Path(d))
            try:
                fresh.store.commit(state_of(nodes[NODES[seed % 3]]))
                assert fresh.served() == first.served()
                assert fresh.conflicts() == first.conflicts()
                with fresh.store.snapshot() as snap, first.store.snapshot() as other:
                    assert snap.digest(ZONE) == other.digest(ZONE)
            finally:
                fresh.store.close()
        finally:
            for node in nodes.values():
                node.store.close()


def test_collected_delete_is_not_resurrected(directory: Path) -> None:  # noqa: F811
    """A node away while a record was deleted and the delete collected gets the state, not
    the changes: the record it still holds goes, what it added meanwhile stays."""
    nodes, _log = make_cluster(directory)
    one, two = nodes["n1"], nodes["n2"]
    old = rr(OWNERS[0], 300, "A", "192.0.2.1")
    one.store.commit(Changeset(ZONE, added=(old,)))
    with one.store.snapshot() as snap:
        two.store.commit(snap.changes_since(ZONE, result_vv(two))[0])
    # n2 goes away; n1 deletes the record and, the retention past, collects the delete
    one.store.commit(Changeset(ZONE, removed=(old,)))
    counts = one.store.collect_garbage(ZONE, result_vv(one), FUTURE_MS)
    assert counts["tombstones"] == 1 and counts["oplog"] == 3
    with one.store.snapshot() as snap:
        assert snap.oplog_gap(ZONE, result_vv(two))  # n2 cannot be caught up by changes
        assert not snap.oplog_gap(ZONE, result_vv(one))
    new = rr(OWNERS[1], 300, "A", "192.0.2.2")
    two.store.commit(Changeset(ZONE, added=(new,)))  # n2's own change while away
    two.store.commit(state_of(one))
    assert f"{OWNERS[0]}".lower() not in " ".join(two.served())
    assert any(line.startswith(f"{OWNERS[1]}".lower()) for line in two.served())
    # and n1 gets n2's change the usual way
    with two.store.snapshot() as snap:
        for cs in snap.changes_since(ZONE, result_vv(one)):
            one.store.commit(cs)
    assert one.served() == two.served()
    with one.store.snapshot() as a, two.store.snapshot() as b:
        assert a.digest(ZONE) == b.digest(ZONE)
        assert a.zone(ZONE).soa().rdata.serial == b.zone(ZONE).soa().rdata.serial
    for node in nodes.values():
        node.store.close()


def test_digest_finds_and_repair_mends_a_divergence(directory: Path) -> None:  # noqa: F811
    """Two nodes at the same vector that serve different data (a record lost behind the
    store's back): the digests differ in that name's bucket only, and a repair state of
    that bucket puts the record back."""
    one = Store(directory / "one", "n1")
    two = Store(directory / "two", "n2")
    text = BASE + "".join(f"h{i} A 192.0.2.{i}\n" for i in range(1, 60))
    one.commit(Changeset(ZONE, added=tuple(parse_zone_text(text, ZONE)), op=ChangeOp.CREATE))
    with one.snapshot() as snap:
        two.commit(snap.changes_since(ZONE, {})[0])
    victim = dns.name.from_text("h7", ZONE)
    two.close()
    env = lmdb.open(str(directory / "two" / "db"), max_dbs=20)
    records = env.open_db(b"records")
    with env.begin(write=True) as txn:
        cursor = txn.cursor(db=records)
        found = [bytes(k) for k, v in cursor if victim.to_wire() in bytes(v)]
        assert len(found) == 1
        txn.delete(found[0], db=records)
    env.close()
    two = Store(directory / "two", "n2")
    with one.snapshot() as a, two.snapshot() as b:
        vv1, d1 = a.digest(ZONE)
        vv2, d2 = b.digest(ZONE)
    assert vv1 == vv2
    differ = frozenset(i for i, (x, y) in enumerate(zip(d1, d2, strict=True)) if x != y)
    assert len(differ) == 1
    with one.snapshot() as snap:
        meta, entries = snap.state_entries(ZONE, differ)
        transfer = StateTransfer(dict(meta.vv), meta.serial_base, tuple(entries), True, differ)
    two.commit(Changeset(ZONE, origin="peer:n1", op=ChangeOp.STATE, state=transfer))
    with one.snapshot() as a, two.snapshot() as b:
        assert a.digest(ZONE) == b.digest(ZONE)
        assert b.zone(ZONE).rrsets_at(victim)
    one.close()
    two.close()
