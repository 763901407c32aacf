"""The writer process: its request loop in-process, and a server whose writer died."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.update

from tests.harness import ROOT, running_xdnsd
from xdnsd.server.acl import Requester, UpdateAcl, parse_allow
from xdnsd.server.writer import (
    UpdateProcessor,
    UpdateRequest,
    decode_reply,
    encode_request,
    serve_writer,
)
from xdnsd.store import Store
from xdnsd.zonefile import create_changeset, parse_zone_file

ZONE = dns.name.from_text("example.test.")
ZONE_FILE = ROOT / "conf" / "zones" / "example.test.zone"
LOCAL = Requester(None, ipaddress.ip_address("127.0.0.1"))


def _update(name: str) -> bytes:
    update = dns.update.UpdateMessage("example.test")
    update.add(name, 300, "TXT", '"x"')
    return update.to_wire()


def _reply(sock: socket.socket) -> tuple[int, int]:
    (length,) = struct.unpack("!I", sock.recv(4, socket.MSG_WAITALL))
    return decode_reply(sock.recv(length, socket.MSG_WAITALL))


def test_requests_from_two_links_are_committed_and_answered(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", "w1")
    store.commit(create_changeset(ZONE, parse_zone_file(ZONE_FILE, ZONE), "test"))
    acls = {ZONE: UpdateAcl(allow=(parse_allow("127.0.0.1"),))}
    processor = UpdateProcessor(store, acls)
    (a, a_end), (b, b_end) = socket.socketpair(), socket.socketpair()
    loop = threading.Thread(target=serve_writer, args=(processor, [a_end, b_end]))
    loop.start()
    try:
        # several requests in one write: one batch; a frame split across two writes
        a.sendall(
            b"".join(encode_request(UpdateRequest(i, LOCAL, _update(f"a{i}"))) for i in range(5))
        )
        frame = encode_request(UpdateRequest(7, LOCAL, _update("b7")))
        b.sendall(frame[:10])
        time.sleep(0.05)
        b.sendall(frame[10:])
        assert sorted(_reply(a) for _ in range(5)) == [(i, 0) for i in range(5)]
        assert _reply(b) == (7, 0)
        # malformed UPDATE: FORMERR; an unsigned request from elsewhere: REFUSED
        a.sendall(encode_request(UpdateRequest(8, LOCAL, b"\x00" * 12 + b"\xff")))
        assert _reply(a) == (8, dns.rcode.FORMERR)
        other = Requester(None, ipaddress.ip_address("192.0.2.1"))
        a.sendall(encode_request(UpdateRequest(9, other, _update("no"))))
        assert _reply(a) == (9, dns.rcode.REFUSED)
    finally:
        a.close()
        b.close()
        loop.join(5)  # both links closed: the loop ends by itself
    assert not loop.is_alive()
    assert processor.changes == 6 and processor.batches <= 6
    with store.snapshot() as snap:
        zone = snap.zone(ZONE)
        for name in ("a0", "a4", "b7"):
            assert zone.rrsets_at(dns.name.from_text(name, ZONE))
        assert not zone.rrsets_at(dns.name.from_text("no", ZONE))
    store.close()


def test_updates_answer_servfail_when_the_writer_is_gone(tmp_path: Path) -> None:
    options = {"example.test": 'allow_update = ["127.0.0.1"]'}
    with running_xdnsd(tmp_path, {"example.test": ZONE_FILE}, zone_options=options) as srv:
        update = dns.update.UpdateMessage("example.test")
        update.add("before", 300, "A", "192.0.2.1")
        assert dns.query.tcp(update, srv.host, port=srv.port, timeout=5).rcode() == 0
        children = subprocess.run(
            ["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 1  # one worker: its only child is the writer
        os.kill(int(children[0]), signal.SIGKILL)
        time.sleep(0.3)
        update = dns.update.UpdateMessage("example.test")
        update.add("after", 300, "A", "192.0.2.2")
        assert dns.query.tcp(update, srv.host, port=srv.port, timeout=5).rcode() == (
            dns.rcode.SERVFAIL
        )
        # queries are still answered, from what was committed
        query = dns.message.make_query("before.example.test", "A")
        assert dns.query.udp(query, srv.host, port=srv.port, timeout=2).answer
        assert "the writer process is gone" in srv.log()
