"""Name keys: byte order of keys equals canonical DNS name order (RFC 4034 6.1)."""

from __future__ import annotations

import functools

import dns.name
from hypothesis import given
from hypothesis import strategies as st

from xdnsd.names import key_name, name_key, relative_key

labels = st.binary(min_size=1, max_size=8).filter(lambda b: True)
names = st.lists(
    st.one_of(labels, st.sampled_from([b"a", b"A", b"b", b"\x00", b"\x01", b"z", b"*"])),
    min_size=0,
    max_size=5,
).map(lambda ls: dns.name.Name([*ls, b""]))


def canonical_cmp(a: dns.name.Name, b: dns.name.Name) -> int:
    # dnspython's fullcompare implements RFC 4034 canonical ordering
    _relation, order, _common = a.fullcompare(b)
    return order


@given(st.lists(names, min_size=2, max_size=20))
def test_key_order_is_canonical_order(ns: list[dns.name.Name]) -> None:
    by_key = sorted(ns, key=name_key)
    by_dns = sorted(ns, key=functools.cmp_to_key(canonical_cmp))
    assert [name_key(n) for n in by_key] == [name_key(n) for n in by_dns]


@given(names)
def test_key_round_trips(name: dns.name.Name) -> None:
    assert key_name(name_key(name)) == name


@given(names, names)
def test_descendants_share_prefix(a: dns.name.Name, b: dns.name.Name) -> None:
    joined = dns.name.Name(a.labels[:-1] + b.labels) if len(a.labels) + len(b.labels) < 20 else b
    if joined.is_subdomain(b):
        assert name_key(joined).startswith(name_key(b))


def test_examples() -> None:
    zone = dns.name.from_text("Example.TEST.")
    assert name_key(zone) == b"test\x00example\x00"
    www = dns.name.from_text("www.example.test.")
    assert relative_key(www, zone) == b"www\x00"
    assert relative_key(zone, zone) == b""
    assert name_key(dns.name.root) == b""
