"""The peer protocol (xdnsd/replication/session.py), sans-I/O: two sessions wired together."""

from __future__ import annotations

import struct

import dns.name
import dns.rdata
from hypothesis import given, settings
from hypothesis import strategies as st

from xdnsd.model import RR, Changeset, Dot
from xdnsd.replication.session import (
    MAX_FRAME,
    AckReceived,
    Authenticated,
    ChangesReceived,
    Event,
    Failed,
    PeerSession,
    VectorsReceived,
)

ZONE = dns.name.from_text("example.test.")
KEY = b"a shared key of the two nodes..."


def pair(
    a_keys: dict[str, bytes] | None = None, b_keys: dict[str, bytes] | None = None
) -> tuple[PeerSession, PeerSession]:
    a = PeerSession("ns1", a_keys or {"ns2": KEY}, expect="ns2")  # dials ns2
    b = PeerSession("ns2", b_keys or {"ns1": KEY})  # accepts
    return a, b


def pump(
    a: PeerSession, b: PeerSession, a_out: bytes, b_out: bytes
) -> tuple[list[Event], list[Event]]:
    """Deliver bytes both ways until neither side has more to say."""
    a_events: list[Event] = []
    b_events: list[Event] = []
    while a_out or b_out:
        got, b_out_more = b.receive(a_out)
        b_events += got
        got, a_out_more = a.receive(b_out)
        a_events += got
        a_out, b_out = a_out_more, b_out_more
    return a_events, b_events


def test_both_sides_authenticate_then_exchange() -> None:
    a, b = pair()
    a_events, b_events = pump(a, b, a.hello(), b.hello())
    assert a_events == [Authenticated("ns2")] and b_events == [Authenticated("ns1")]
    assert a.open and b.open
    vv = {ZONE: {"ns1": 4, "ns2": 7}}
    cs = Changeset(
        ZONE,
        added=(
            RR(dns.name.from_text("www", ZONE), 300, dns.rdata.from_text("IN", "A", "192.0.2.1")),
        ),
        origin="key:k",
        dot=Dot("ns1", 5),
        hlc=123 << 16,
        context=(("ns1", 4), ("ns2", 7)),
        cleared=((dns.name.from_text("old", ZONE), 1),),
    )
    got, _ = b.receive(a.vectors(vv) + a.changes([cs]) + a.ack(vv))
    assert got == [VectorsReceived(vv), ChangesReceived((cs,)), AckReceived(vv)]


def test_wrong_key_fails_both_ways_and_tells_nothing() -> None:
    a, b = pair(a_keys={"ns2": b"not the right key, 32 bytes long"})
    a_events, b_events = pump(a, b, a.hello(), b.hello())
    assert any(isinstance(e, Failed) for e in a_events)
    assert any(isinstance(e, Failed) for e in b_events)
    assert not a.open and not b.open
    # nothing more is read once failed
    assert b.receive(a.hello()) == ([], b"")


def test_unknown_node_gets_no_proof() -> None:
    stranger = PeerSession("ns9", {"ns2": KEY}, expect="ns2")
    b = PeerSession("ns2", {"ns1": KEY})
    events, out = b.receive(stranger.hello())
    assert events == [Failed("node 'ns9' is not a configured peer")] and out == b""


def test_dialled_node_must_be_the_one_expected() -> None:
    a = PeerSession("ns1", {"ns2": KEY, "ns3": KEY}, expect="ns2")
    c = PeerSession("ns3", {"ns1": KEY})
    events, out = a.receive(c.hello())
    assert isinstance(events[0], Failed) and out == b""


def test_nothing_before_authentication() -> None:
    a, b = pair()
    b.receive(a.hello())
    forged = struct.pack("!IB", 3, 3) + b"{}"  # VECTORS before the proof
    events, _ = b.receive(forged)
    assert isinstance(events[0], Failed) and not b.open


def test_oversized_frame_is_refused() -> None:
    b = PeerSession("ns2", {"ns1": KEY})
    events, _ = b.receive(struct.pack("!IB", MAX_FRAME + 1, 1))
    assert isinstance(events[0], Failed)


def test_malformed_changes_end_the_session() -> None:
    a, b = pair()
    pump(a, b, a.hello(), b.hello())
    events, _ = b.receive(struct.pack("!IB", 9, 4) + struct.pack("!I", 100) + b"zzzz")
    assert isinstance(events[0], Failed) and b.closed


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_garbage_never_raises(data: bytes, authenticated: bool) -> None:
    a, b = pair()
    if authenticated:
        pump(a, b, a.hello(), b.hello())
    events, _ = b.receive(data)
    assert all(
        isinstance(e, (Failed, VectorsReceived, ChangesReceived, AckReceived, Authenticated))
        for e in events
    )
