"""The pure planning shared by every mirror target (xdnsd/upstreams/plan.py)."""

from __future__ import annotations

import dns.name
import dns.rdata
from hypothesis import given, settings
from hypothesis import strategies as st

from xdnsd.model import RR
from xdnsd.upstreams.plan import (
    Action,
    Change,
    RRset,
    canonical_value,
    for_target,
    rrsets_from_records,
    three_way,
)

ZONE = "example.test."


def rrset(name: str, rdtype: str, ttl: int, *values: str) -> RRset:
    return RRset(name, rdtype, ttl, tuple(sorted(values)))


def test_one_spelling_per_value() -> None:
    assert canonical_value("TXT", "abc") == canonical_value("TXT", '"abc"') == '"abc"'
    assert canonical_value("TXT", '"a\\"b"') == '"a\\"b"'
    assert canonical_value("CNAME", "Target.Example.") == "Target.Example."
    assert canonical_value("MX", "10 mail.example.test.") == "10 mail.example.test."
    assert canonical_value("AAAA", "2001:DB8:0::1") == "2001:db8::1"


def test_records_become_rrsets_and_the_apex_is_left_alone() -> None:
    origin = dns.name.from_text(ZONE)

    def rr(owner: str, ttl: int, rdtype: str, text: str) -> RR:
        return RR(dns.name.from_text(owner, origin), ttl, dns.rdata.from_text("IN", rdtype, text))

    records = [
        rr("@", 300, "SOA", "ns1.example.test. h.example.test. 1 2 3 4 5"),
        rr("@", 300, "NS", "ns1.example.test."),
        rr("@", 300, "MX", "10 mail.example.test."),
        rr("WWW", 300, "A", "192.0.2.1"),
        rr("www", 300, "A", "192.0.2.2"),
        rr("sub", 300, "NS", "ns.elsewhere."),
        rr("loc", 300, "LOC", "52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m"),
    ]
    rrsets = rrsets_from_records(records)
    assert rrsets[("www.example.test.", "A")].values == ("192.0.2.1", "192.0.2.2")
    kept, skipped = for_target(rrsets, ZONE, frozenset({"A", "MX", "NS"}))
    assert set(kept) == {
        ("www.example.test.", "A"),
        ("example.test.", "MX"),
        ("sub.example.test.", "NS"),  # a delegation is data; only the apex NS is the provider's
    }
    assert [(r.name, r.type) for r in skipped] == [("loc.example.test.", "LOC")]


A1 = rrset("a.example.test.", "A", 300, "192.0.2.1")
A2 = rrset("a.example.test.", "A", 300, "192.0.2.2")
A3 = rrset("a.example.test.", "A", 600, "192.0.2.1")


def test_three_way() -> None:
    key = A1.key
    # only the zone changed: push
    plan = three_way({key: A2}, {key: A1}, {key: A1})
    assert plan.push == [Change(Action.UPDATE, A1, A2)] and not plan.drift
    # only the target changed: drift to import
    plan = three_way({key: A1}, {key: A1}, {key: A3})
    assert plan.drift == [Change(Action.UPDATE, A1, A3)] and not plan.push
    # deleted at the target only: drift (a delete to import)
    plan = three_way({key: A1}, {key: A1}, {})
    assert plan.drift == [Change(Action.DELETE, A1, None)]
    # both, differently: a conflict, nothing pushed nor imported
    plan = three_way({key: A2}, {key: A1}, {key: A3})
    assert [c.key for c in plan.conflicts] == [key] and not plan.push and not plan.drift
    # both, the same way: in sync
    plan = three_way({key: A2}, {key: A1}, {key: A2})
    assert plan.empty and plan.in_sync == 1
    # a first run: the zone is the truth, whatever the target holds
    plan = three_way({key: A1}, None, {key: A3, ("b.example.test.", "A"): A1})
    assert {c.action for c in plan.push} == {Action.UPDATE, Action.DELETE}


def test_safety_limit_holds_a_run_that_rewrites_too_much() -> None:
    actual = {
        r.key: r for r in (rrset(f"h{i}.example.test.", "A", 300, "192.0.2.1") for i in range(20))
    }
    half = dict(list(actual.items())[:10])
    plan = three_way(half, actual, actual)
    assert plan.held is not None and "10 of the target's 20 records" in plan.held
    assert three_way(half, actual, actual, force=True).held is None
    few = dict(list(actual.items())[:16])  # 4 of 20 deleted: 20 %, under the limit
    assert three_way(few, actual, actual).held is None
    small = dict(list(actual.items())[:9])
    assert three_way({}, small, small).held is None  # under 10 records: no limit


names = st.sampled_from([f"n{i}.example.test." for i in range(6)])
values = st.lists(st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3"]), min_size=1, max_size=3)
sets = st.dictionaries(
    names,
    st.tuples(st.sampled_from([60, 300]), values),
    max_size=6,
).map(lambda d: {(n, "A"): rrset(n, "A", t, *set(v)) for n, (t, v) in d.items()})


def apply(
    actual: dict[tuple[str, str], RRset], changes: list[Change]
) -> dict[tuple[str, str], RRset]:
    out = dict(actual)
    for change in changes:
        if change.old is not None:
            assert out.pop(change.key) == change.old  # the compare-and-swap holds
        if change.new is not None:
            out[change.key] = change.new
    return out


@settings(max_examples=200, deadline=None)
@given(sets, sets, sets)
def test_a_run_leaves_the_target_as_the_zone_then_nothing_to_do(
    desired: dict[tuple[str, str], RRset],
    last: dict[tuple[str, str], RRset],
    actual: dict[tuple[str, str], RRset],
) -> None:
    plan = three_way(desired, None, actual, force=True)
    after = apply(actual, plan.push)
    assert after == desired
    assert three_way(desired, desired, after).empty
    # with a last state: every key is pushed, imported, in conflict or in sync, once
    plan = three_way(desired, last, actual, force=True)
    keys = (
        [c.key for c in plan.push] + [c.key for c in plan.drift] + [c.key for c in plan.conflicts]
    )
    assert len(keys) == len(set(keys))
    assert set(keys) == {k for k in {*desired, *actual} if desired.get(k) != actual.get(k)}
