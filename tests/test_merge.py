"""The pure merge (xdnsd/replication/merge.py): convergence, no lost change, one conflict per
non-commuting concurrent pair, identical on every node, whatever the delivery order.

Hypothesis drives three nodes: each makes changes from what it serves (add, delete, change an
RRset's TTL, delete an RRset or a name as a whole, put a CNAME, as an UPDATE would), and partial
deliveries of the changes made so far reach random nodes in random order, with duplicates.  At
the end every node gets every change, each in its own shuffled order, and the nodes are compared.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdatatype
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from xdnsd.model import RR, Changeset, Dot
from xdnsd.replication.merge import ANY, Conflict, ZoneState, pick_side, plan_resolution, slot_key

ZONE = dns.name.from_text("example.test.")
NODES = ("n1", "n2", "n3")
OWNERS = [dns.name.from_text(o, ZONE) for o in ("a", "b", "www")]
ADDRESSES = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
TARGETS = ["t1.example.net.", "t2.example.net."]
A = int(dns.rdatatype.A)
CNAME = int(dns.rdatatype.CNAME)


def rr(owner: dns.name.Name, ttl: int, rdtype: str, text: str) -> RR:
    return RR(owner, ttl, dns.rdata.from_text("IN", rdtype, text, origin=ZONE))


Planned = tuple[list[RR], list[RR], list[tuple[dns.name.Name, int]]]


def plan_change(served: list[RR], kind: int, pick: int, ttl: int) -> Planned | None:
    """(removed, added, cleared) of one change made from what a node serves, as an UPDATE would
    make it: 0 add an A record (the RRset takes its TTL, RFC 2136), 1 delete one, 2 change the A
    RRset's TTL, 3 delete the A RRset as a whole, 4 delete the name, 5 put or replace the CNAME,
    6 replace the A RRset (delete it as a whole and add one record, in one change); None when
    that makes no sense there (data beside a CNAME, nothing to delete)."""
    owner = OWNERS[pick % len(OWNERS)]
    second = pick // len(OWNERS)
    here = [r for r in served if r.owner == owner]
    a_set = [r for r in here if r.rdtype == A]
    cname = [r for r in here if r.rdtype == CNAME]
    if kind == 0 and not cname:
        new = rr(owner, ttl, "A", ADDRESSES[second % len(ADDRESSES)])
        removed = [r for r in a_set if r.ttl != ttl]
        return removed, [RR(r.owner, ttl, r.rdata) for r in removed if r != new] + [new], []
    if kind == 1 and a_set:
        return [a_set[second % len(a_set)]], [], []
    if kind == 2 and a_set:
        return a_set, [RR(r.owner, ttl, r.rdata) for r in a_set], []
    if kind == 3:
        return a_set, [], [(owner, A)]
    if kind == 4:
        return here, [], [(owner, ANY)]
    if kind == 5 and not a_set:
        return cname, [rr(owner, ttl, "CNAME", TARGETS[second % len(TARGETS)])], []
    if kind == 6 and a_set:
        new = rr(owner, ttl, "A", ADDRESSES[second % len(ADDRESSES)])
        return [r for r in a_set if r != new], [new], [(owner, A)]
    return None


@dataclass
class Cluster:
    states: dict[str, ZoneState] = field(
        default_factory=lambda: {n: ZoneState(ZONE) for n in NODES}
    )
    log: list[Changeset] = field(default_factory=list)
    clock: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODES, 0))

    def hlc(self, node: str, skew: int) -> int:
        seen = max((cs.hlc or 0 for cs in self.log if self.states[node].seen(cs.dot)), default=0)
        self.clock[node] = max(self.clock[node] + 1, seen + 1) + skew
        return self.clock[node]

    def change(self, node: str, kind: int, pick: int, ttl: int, skew: int) -> None:
        """One change at ``node``, as an UPDATE would make it from what the node serves."""
        state = self.states[node]
        planned = plan_change(state.resolve()[0], kind, pick, ttl)
        if planned is not None:
            self.log.append(state.local(node, self.hlc(node, skew), *planned))

    def deliver(self, node: str, picks: list[int]) -> None:
        if not self.log:
            return
        for pick in picks:
            self.states[node].apply(self.log[pick % len(self.log)])


steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("change"),
            st.sampled_from(NODES),
            st.integers(0, 6),
            st.integers(0, 11),
            st.sampled_from([300, 600]),
            st.integers(0, 3),
        ),
        st.tuples(
            st.just("deliver"), st.sampled_from(NODES), st.lists(st.integers(0, 200), max_size=8)
        ),
    ),
    min_size=10,
    max_size=60,
)


def final_view(state: ZoneState) -> tuple[object, ...]:
    served, conflicts = state.resolve()
    slots = {k: tuple(w.dot for w in v) for k, v in state.slots.items()}
    clears = {k: tuple(c.dot for c in v) for k, v in state.clears.items()}
    return (
        dict(state.vv),
        slots,
        clears,
        [r.to_text() for r in served],
        [(c.id, c.kind, c.subject, c.sides) for c in conflicts],
    )


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(0, 2**32))
def test_any_delivery_order_converges(plan: list[tuple[object, ...]], seed: int) -> None:
    cluster = Cluster()
    for step in plan:
        if step[0] == "change":
            _, node, kind, pick, ttl, skew = step
            cluster.change(str(node), int(kind), int(pick), int(ttl), int(skew))  # type: ignore[call-overload]
        else:
            _, node, picks = step
            cluster.deliver(str(node), list(picks))  # type: ignore[call-overload]
    shuffler = random.Random(seed)
    for state in cluster.states.values():
        order = cluster.log + shuffler.sample(cluster.log, len(cluster.log) // 2)
        shuffler.shuffle(order)
        for cs in order:
            state.apply(cs)
        assert not state.pending
    views = [final_view(s) for s in cluster.states.values()]
    assert views[0] == views[1] == views[2]
    state = cluster.states["n1"]
    assert state.vv == {
        n: c for n in NODES if (c := sum(1 for cs in cluster.log if cs.dot.node == n))
    }
    _assert_nothing_lost(cluster.log, state)
    _assert_one_conflict_per_disagreeing_pair(state)
    for kind in sorted({c.kind for c in state.resolve()[1]}):
        event(f"conflict: {kind}")  # --hypothesis-show-statistics: what the examples reached


def _assert_nothing_lost(log: list[Changeset], state: ZoneState) -> None:
    """Every slot keeps exactly the writes to it that no later write to it has seen."""
    writes: dict[object, list[tuple[Dot, dict[str, int]]]] = {}
    for cs in log:
        assert cs.dot is not None
        for record in (*cs.removed, *cs.added):
            entry = (cs.dot, dict(cs.context))
            bucket = writes.setdefault(slot_key(record), [])
            if entry not in bucket:
                bucket.append(entry)
    for key, entries in writes.items():
        maximal = {
            dot
            for dot, _ctx in entries
            if not any(
                ctx.get(dot.node, 0) >= dot.counter for other, ctx in entries if other != dot
            )
        }
        assert {w.dot for w in state.slots[key]} == maximal, key  # type: ignore[index]


def _assert_one_conflict_per_disagreeing_pair(state: ZoneState) -> None:
    _, conflicts = state.resolve()
    record_conflicts = [c for c in conflicts if c.kind == "record"]
    for siblings in state.slots.values():
        record = siblings[0].rr
        subject = f"{record.owner} {dns.rdatatype.to_text(record.rdata.rdtype)} {record.rdata}"
        for i, first in enumerate(siblings):
            for second in siblings[i + 1 :]:
                if first.value == second.value:
                    continue
                holding = [
                    c
                    for c in record_conflicts
                    if c.subject == subject and {first.dot, second.dot} <= {s.dot for s in c.sides}
                ]
                assert len(holding) == 1, (subject, first, second, record_conflicts)
    # a delete-as-a-whole and a concurrent add under it: one conflict of the name holds them,
    # unless the two changes also wrote that record differently (its record conflict)
    clear_conflicts = [c for c in conflicts if c.kind == "delete-vs-add"]
    for clears in state.clears.values():
        for clear in clears:
            for siblings in state.slots.values():
                top = siblings[0]
                if not (
                    top.present
                    and clear.covers(top.rr)
                    and top.dot != clear.dot
                    and not top.saw(clear.dot)
                    and dict(clear.context).get(top.dot.node, 0) < top.dot.counter
                    and clear.dot not in {w.dot for w in siblings}
                ):
                    continue
                holding = [
                    c for c in clear_conflicts if {clear.dot, top.dot} <= {s.dot for s in c.sides}
                ]
                assert len(holding) == 1, (clear, top, clear_conflicts)


# --------------------------------------------------------------------------- examples


def two_nodes() -> tuple[ZoneState, ZoneState]:
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    base = one.local("n1", 1, added=[rr(OWNERS[0], 300, "A", "192.0.2.1")])
    two.apply(base)
    return one, two


def exchange(one: ZoneState, two: ZoneState, a: Changeset, b: Changeset) -> list[Conflict]:
    one.apply(b)
    two.apply(a)
    assert one.resolve() == two.resolve()
    return one.resolve()[1]


def test_different_records_of_one_rrset_merge_silently() -> None:
    one, two = two_nodes()
    a = one.local("n1", 5, added=[rr(OWNERS[0], 300, "A", "192.0.2.2")])
    b = two.local("n2", 6, added=[rr(OWNERS[0], 300, "A", "192.0.2.3")])
    assert exchange(one, two, a, b) == []
    assert len(one.resolve()[0]) == 3


def test_the_same_change_on_both_sides_is_no_conflict() -> None:
    one, two = two_nodes()
    a = one.local("n1", 5, added=[rr(OWNERS[1], 300, "A", "192.0.2.9")])
    b = two.local("n2", 6, added=[rr(OWNERS[1], 300, "A", "192.0.2.9")])
    assert exchange(one, two, a, b) == []


@pytest.mark.parametrize("later", ["n1", "n2"])
def test_ttl_disagreement_is_a_conflict_the_later_write_wins(later: str) -> None:
    one, two = two_nodes()
    old = rr(OWNERS[0], 300, "A", "192.0.2.1")
    a = one.local("n1", 10 if later == "n1" else 5, [old], [RR(old.owner, 600, old.rdata)])
    b = two.local("n2", 10 if later == "n2" else 5, [old], [RR(old.owner, 900, old.rdata)])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "record" and len(conflict.sides) == 2
    assert conflict.winner.dot.node == later
    served = one.resolve()[0]
    assert [r.ttl for r in served] == [600 if later == "n1" else 900]
    # an operator's resolution has seen both sides: it ends the conflict everywhere
    fix = one.local("n1", 20, [served[0]], [RR(old.owner, 900, old.rdata)], origin="operator:x")
    two.apply(fix)
    assert one.resolve() == two.resolve()
    assert one.resolve()[1] == [] and one.resolve()[0][0].ttl == 900


def test_delete_rrset_against_a_concurrent_add_is_a_conflict() -> None:
    one, two = two_nodes()
    a = one.local("n1", 9, removed=[rr(OWNERS[0], 300, "A", "192.0.2.1")], cleared=[(OWNERS[0], A)])
    b = two.local("n2", 5, added=[rr(OWNERS[0], 300, "A", "192.0.2.7")])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "delete-vs-add"
    assert conflict.winner.dot == a.dot  # the delete is later: the added record is held back
    assert one.resolve()[0] == []


@pytest.mark.parametrize("keep", ["n1", "n2"])
def test_two_replacements_of_one_rrset_are_one_conflict(keep: str) -> None:
    """Both nodes replace the A RRset (RFC 2136 delete RRset + add): one conflict with both
    deletes and both adds; keeping a node's side serves exactly what that node put."""
    one, two = two_nodes()
    owner = OWNERS[0]
    old = rr(owner, 300, "A", "192.0.2.1")
    a = one.local("n1", 9, [old], [rr(owner, 300, "A", "192.0.2.8")], cleared=[(owner, A)])
    b = two.local("n2", 5, [old], [rr(owner, 300, "A", "192.0.2.9")], cleared=[(owner, A)])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "delete-vs-add" and len(conflict.sides) == 4
    assert [r.to_text() for r in one.resolve()[0]] == ["a.example.test. 300 IN A 192.0.2.8"]
    removed, added = plan_resolution(conflict, pick_side(conflict, keep, local_node="n1"))
    fix = one.local("n1", 20, removed, added, origin="operator:test")
    two.apply(fix)
    assert one.resolve() == two.resolve() and one.resolve()[1] == []
    wanted = "192.0.2.8" if keep == "n1" else "192.0.2.9"
    assert [r.to_text() for r in one.resolve()[0]] == [f"a.example.test. 300 IN A {wanted}"]


def test_two_ttl_replacements_are_the_record_conflict_only() -> None:
    one, two = two_nodes()
    old = rr(OWNERS[0], 300, "A", "192.0.2.1")
    a = one.local("n1", 9, [old], [RR(old.owner, 600, old.rdata)], cleared=[(old.owner, A)])
    b = two.local("n2", 5, [old], [RR(old.owner, 900, old.rdata)], cleared=[(old.owner, A)])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "record"


def test_different_cname_replacements_conflict() -> None:
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    base = one.local("n1", 1, added=[rr(OWNERS[2], 300, "CNAME", "t1.example.net.")])
    two.apply(base)
    old = base.added[0]
    a = one.local("n1", 5, [old], [rr(OWNERS[2], 300, "CNAME", "t2.example.net.")])
    b = two.local("n2", 7, [old], [rr(OWNERS[2], 300, "CNAME", "t3.example.net.")])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "replaced" and conflict.winner.dot == b.dot
    assert [r.rdata.to_text() for r in one.resolve()[0]] == ["t3.example.net."]


def test_cname_beside_concurrent_data_conflicts() -> None:
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    a = one.local("n1", 5, added=[rr(OWNERS[1], 300, "CNAME", "t1.example.net.")])
    b = two.local("n2", 4, added=[rr(OWNERS[1], 300, "A", "192.0.2.4")])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "cname-and-other" and conflict.winner.dot == a.dot
    assert [r.rdtype for r in one.resolve()[0]] == [CNAME]


def test_rrset_ttls_must_agree() -> None:
    one, two = two_nodes()
    a = one.local("n1", 5, added=[rr(OWNERS[0], 300, "A", "192.0.2.2")])
    b = two.local(
        "n2",
        8,
        removed=[rr(OWNERS[0], 300, "A", "192.0.2.1")],
        added=[rr(OWNERS[0], 600, "A", "192.0.2.1")],
    )
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "ttl"
    assert {r.ttl for r in one.resolve()[0]} == {600}  # the later write's TTL, for the RRset


def test_out_of_order_and_repeated_delivery() -> None:
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    changes = [
        one.local("n1", i, added=[rr(OWNERS[0], 300, "A", f"192.0.2.{i}")]) for i in (1, 2, 3)
    ]
    assert two.apply(changes[2]) == [] and two.apply(changes[1]) == []
    assert two.pending and two.resolve()[0] == []
    assert two.apply(changes[0]) == changes  # releases the two waiting, in order
    assert two.apply(changes[1]) == [] and not two.pending
    assert one.resolve() == two.resolve()


def test_soa_serial_is_not_part_of_the_slot() -> None:
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    a = one.local("n1", 5, added=[rr(ZONE, 300, "SOA", "ns1 host 10 3600 900 604800 60")])
    b = two.local("n2", 6, added=[rr(ZONE, 300, "SOA", "ns1 host 11 3600 900 604800 60")])
    assert exchange(one, two, a, b) == []  # the same SOA fields: they agree


def test_concurrent_soa_edits_are_a_replacement_conflict() -> None:
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    a = one.local("n1", 5, added=[rr(ZONE, 300, "SOA", "ns1 host 10 7200 900 604800 60")])
    b = two.local("n2", 6, added=[rr(ZONE, 300, "SOA", "ns1 host 11 3600 900 604800 30")])
    (conflict,) = exchange(one, two, a, b)
    assert conflict.kind == "replaced" and conflict.winner.dot == b.dot
    (soa,) = one.resolve()[0]
    assert soa.rdata.refresh == 3600 and soa.rdata.minimum == 30  # the later edit's fields
    removed, added = plan_resolution(conflict, pick_side(conflict, "n1", local_node="n1"))
    fix = one.local("n1", 20, removed, added, origin="operator:test")
    two.apply(fix)
    assert one.resolve() == two.resolve() and one.resolve()[1] == []
    assert one.resolve()[0][0].rdata.refresh == 7200


def _conflicted(kind: str) -> tuple[ZoneState, ZoneState, Conflict]:
    """Two nodes with one conflict of ``kind`` between them (n2's side the later)."""
    one, two = ZoneState(ZONE), ZoneState(ZONE)
    www, a = OWNERS[2], OWNERS[0]
    if kind == "record":
        base = one.local("n1", 1, added=[rr(a, 300, "A", "192.0.2.1")])
        two.apply(base)
        x = one.local("n1", 5, removed=[base.added[0]])
        y = two.local("n2", 6, removed=[base.added[0]], added=[rr(a, 900, "A", "192.0.2.1")])
    elif kind == "delete-vs-add":
        base = one.local("n1", 1, added=[rr(a, 300, "A", "192.0.2.1")])
        two.apply(base)
        x = one.local("n1", 5, removed=[base.added[0]], cleared=[(a, A)])
        y = two.local("n2", 6, added=[rr(a, 300, "A", "192.0.2.2")])
    elif kind == "replaced":
        base = one.local("n1", 1, added=[rr(www, 300, "CNAME", "t1.example.net.")])
        two.apply(base)
        x = one.local("n1", 5, [base.added[0]], [rr(www, 300, "CNAME", "t2.example.net.")])
        y = two.local("n2", 6, [base.added[0]], [rr(www, 300, "CNAME", "t3.example.net.")])
    elif kind == "cname-and-other":
        x = one.local("n1", 5, added=[rr(www, 300, "A", "192.0.2.4")])
        y = two.local("n2", 6, added=[rr(www, 300, "CNAME", "t1.example.net.")])
    else:  # ttl
        base = one.local("n1", 1, added=[rr(a, 300, "A", "192.0.2.1")])
        two.apply(base)
        x = one.local("n1", 5, added=[rr(a, 300, "A", "192.0.2.2")])
        y = two.local("n2", 6, [base.added[0]], [rr(a, 600, "A", "192.0.2.1")])
    (conflict,) = exchange(one, two, x, y)
    assert conflict.kind == kind
    return one, two, conflict


@pytest.mark.parametrize("kind", ["record", "delete-vs-add", "replaced", "cname-and-other", "ttl"])
@pytest.mark.parametrize("keep", ["n1", "n2"])
def test_keeping_a_side_ends_the_conflict_everywhere(kind: str, keep: str) -> None:
    one, two, conflict = _conflicted(kind)
    side = pick_side(conflict, keep, local_node="n1")
    assert side.dot.node == keep
    removed, added = plan_resolution(conflict, side)
    fix = one.local("n1", 20, removed, added, origin="operator:test")
    two.apply(fix)
    assert one.resolve() == two.resolve()
    assert one.resolve()[1] == [], one.resolve()[1]
    served = sorted(r.to_text() for r in one.resolve()[0])
    assert served == KEPT[kind, keep]


KEPT = {
    ("record", "n1"): [],
    ("record", "n2"): ["a.example.test. 900 IN A 192.0.2.1"],
    ("delete-vs-add", "n1"): [],
    ("delete-vs-add", "n2"): ["a.example.test. 300 IN A 192.0.2.2"],
    ("replaced", "n1"): ["www.example.test. 300 IN CNAME t2.example.net."],
    ("replaced", "n2"): ["www.example.test. 300 IN CNAME t3.example.net."],
    ("cname-and-other", "n1"): ["www.example.test. 300 IN A 192.0.2.4"],
    ("cname-and-other", "n2"): ["www.example.test. 300 IN CNAME t1.example.net."],
    ("ttl", "n1"): ["a.example.test. 300 IN A 192.0.2.1", "a.example.test. 300 IN A 192.0.2.2"],
    ("ttl", "n2"): ["a.example.test. 600 IN A 192.0.2.1", "a.example.test. 600 IN A 192.0.2.2"],
}


def test_a_value_ends_a_replacement_conflict() -> None:
    one, two, conflict = _conflicted("replaced")
    removed, added = plan_resolution(conflict, value="t9.example.net.")
    two.apply(one.local("n1", 20, removed, added))
    assert one.resolve() == two.resolve()
    assert [r.rdata.to_text() for r in one.resolve()[0]] == ["t9.example.net."]
    assert one.resolve()[1] == []
    with pytest.raises(ValueError, match="no side from 'n7'"):
        pick_side(conflict, "n7", local_node="n1")
