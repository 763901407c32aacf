"""The response cache: hits, case, invalidation by commits, sharing between workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import pytest

from xdnsd.model import RR, Changeset
from xdnsd.server.answer import ServerIdentity
from xdnsd.server.fastpath import QueryAnswerer
from xdnsd.store import SharedResponseCache, Store
from xdnsd.zonefile import create_changeset, parse_zone_file

ROOT = Path(__file__).resolve().parent.parent
ZONE = dns.name.from_text("example.test.")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", "n1")
    records = parse_zone_file(ROOT / "conf" / "zones" / "example.test.zone", ZONE)
    s.commit(create_changeset(ZONE, records, "test"))
    yield s
    s.close()


def address(wire: bytes | None) -> list[str]:
    assert wire is not None
    return sorted(rd.address for rd in dns.message.from_wire(wire).answer[0])


def test_hit_patches_id_and_case(store: Store) -> None:
    answerer = QueryAnswerer(store, ServerIdentity())
    first = dns.message.make_query("www.example.test", "A")
    answerer.udp(first.to_wire())
    assert answerer.misses == 1
    for name in ("www.example.test", "WWW.example.TEST"):
        query = dns.message.make_query(name, "A")
        wire = answerer.udp(query.to_wire())
        assert wire is not None and wire[:2] == query.to_wire()[:2]
        assert dns.message.from_wire(wire).question[0].name.to_text() == name + "."
    assert answerer.misses == 1


def test_commit_invalidates(store: Store) -> None:
    answerer = QueryAnswerer(store, ServerIdentity())
    query = dns.message.make_query("www.example.test", "A").to_wire()
    assert address(answerer.udp(query)) == ["192.0.2.10"]
    owner = dns.name.from_text("www.example.test.")
    store.commit(
        Changeset(ZONE, added=(RR(owner, 3600, dns.rdata.from_text("IN", "A", "192.0.2.99")),))
    )
    assert address(answerer.udp(query)) == ["192.0.2.10", "192.0.2.99"]
    assert answerer.misses == 2


def test_new_child_zone_invalidates_parent_answers(store: Store) -> None:
    answerer = QueryAnswerer(store, ServerIdentity())
    query = dns.message.make_query("host.sub.example.test", "A").to_wire()
    referral = dns.message.from_wire(answerer.udp(query) or b"")
    assert not referral.answer and referral.authority  # the parent's referral
    child = dns.name.from_text("sub.example.test.")
    text = "$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.53\nhost A 192.0.2.7\n"
    from xdnsd.zonefile import parse_zone_text

    store.commit(create_changeset(child, parse_zone_text(text, child), "test"))
    assert address(answerer.udp(query)) == ["192.0.2.7"]


def test_workers_share_rendered_answers(store: Store, tmp_path: Path) -> None:
    shared = SharedResponseCache(tmp_path / "cache")
    try:
        first = QueryAnswerer(store, ServerIdentity(), shared=shared)
        second = QueryAnswerer(store, ServerIdentity(), shared=shared)
        query = dns.message.make_query("mail.example.test", "A").to_wire()
        assert address(first.udp(query)) == ["192.0.2.25"]
        assert address(second.udp(query)) == ["192.0.2.25"]
        # ``misses`` counts answer-engine runs: the second worker found the first one's answer
        assert (first.misses, second.misses) == (1, 0)
        owner = dns.name.from_text("mail.example.test.")
        store.commit(
            Changeset(
                ZONE,
                removed=(RR(owner, 3600, dns.rdata.from_text("IN", "A", "192.0.2.25")),),
                added=(RR(owner, 3600, dns.rdata.from_text("IN", "A", "192.0.2.26")),),
            )
        )
        # the shared entry is stale now: both render the new answer
        assert address(second.udp(query)) == ["192.0.2.26"]
        assert address(first.udp(query)) == ["192.0.2.26"]
    finally:
        shared.close()


def test_reset_generations_after_restore(store: Store) -> None:
    with store.snapshot() as snap:
        slot, generation = snap.zone_generation(ZONE)
    store.generations.publish(slot, generation + 100)  # as if the store were restored from a backup
    store.reset_generations()
    assert store.generations.get(slot) == generation
