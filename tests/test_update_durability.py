"""Dynamic updates under stress, against a real ``xdnsd serve``: SIGKILL at random points,
many concurrent clients (two worker processes), the largest possible message, malformed input.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from tests.harness import ROOT, XdnsdProcess, free_port, running_xdnsd, write_config

ZONE = "example.test"
ZONE_FILE = ROOT / "conf" / "zones" / "example.test.zone"
SECRET = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw=="
KEY = dns.tsig.Key("k1.", SECRET, dns.tsig.HMAC_SHA256)
KEYS = {"k1": ("hmac-sha256", SECRET)}
POLICY = {ZONE: 'update_policy = ["grant k1 zonesub ANY"]'}


def add_update(name: str, address: str, *, prereq_absent: bool = False) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage(ZONE)
    if prereq_absent:
        update.absent(name)
    update.add(name, 300, "A", address)
    update.use_tsig(KEY)
    return update


def soa_serial(host: str, port: int) -> int:
    response = dns.query.udp(dns.message.make_query(ZONE, "SOA"), host, port=port, timeout=2)
    return int(response.answer[0][0].serial)


def present(port: int, name: str) -> bool:
    query = dns.message.make_query(f"{name}.{ZONE}", "A")
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


# --------------------------------------------------------------------------- crash


def _writer_loop(port: int, prefix: str, acked: list[str], stop: threading.Event) -> None:
    """Send one update after another until the server dies; remember what was acknowledged."""
    i = 0
    while not stop.is_set() and i < 100_000:
        name = f"{prefix}-{i}"
        try:
            response = dns.query.tcp(
                add_update(name, "192.0.2.1"), "127.0.0.1", port=port, timeout=2
            )
        except (OSError, EOFError, dns.exception.DNSException):
            return  # the server was killed
        if response.rcode() == dns.rcode.NOERROR:
            acked.append(name)
        i += 1


def test_acknowledged_updates_survive_sigkill(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, {ZONE: ZONE_FILE}, port=port, keys=KEYS, zone_options=POLICY)
    rng = random.Random(3)
    acked: list[str] = []
    for round_ in range(4):
        server = XdnsdProcess(config, port)
        try:
            server.wait_ready(ZONE)
            for name in acked:  # everything acknowledged in earlier rounds is still there
                assert present(port, name), f"{name} was acknowledged but is gone"
            stop = threading.Event()
            threads = [
                threading.Thread(target=_writer_loop, args=(port, f"r{round_}c{c}", acked, stop))
                for c in range(3)
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.3, 1.2))
        finally:
            server.kill()  # SIGKILL, mid-stream
        stop.set()
        for thread in threads:
            thread.join(10)
    assert len(acked) > 20, "too few updates were acknowledged to make the test meaningful"
    server = XdnsdProcess(config, port)
    try:
        server.wait_ready(ZONE)
        missing = [name for name in acked if not present(port, name)]
        assert not missing, (
            f"{len(missing)} of {len(acked)} acknowledged updates lost: {missing[:5]}"
        )
    finally:
        assert server.stop() == 0


# --------------------------------------------------------------------------- concurrency


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdnsdProcess]:
    directory = tmp_path_factory.mktemp("two-workers")
    with running_xdnsd(
        directory,
        {ZONE: ZONE_FILE},
        keys=KEYS,
        zone_options=POLICY,
        extra_server="workers = 2",
    ) as server:
        yield server


def test_twenty_clients_fifty_updates_each(two_workers: XdnsdProcess) -> None:
    port = two_workers.port
    before = soa_serial("127.0.0.1", port)

    def client(c: int) -> list[int]:
        serials = []
        for i in range(50):
            update = add_update(f"cc{c}-{i}", f"198.51.100.{c + 1}")
            if i % 2:
                response = dns.query.tcp(update, "127.0.0.1", port=port, timeout=10)
            else:
                response = dns.query.udp(update, "127.0.0.1", port=port, timeout=10)
            assert response.rcode() == dns.rcode.NOERROR, (c, i, response.rcode())
            serials.append(soa_serial("127.0.0.1", port))
        return serials

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(client, range(20)))
    for serials in results:  # each client sees the serial only rise
        assert serials == sorted(serials) and len(set(serials)) == len(serials)
    missing = [(c, i) for c in range(20) for i in range(50) if not present(port, f"cc{c}-{i}")]
    assert not missing
    assert soa_serial("127.0.0.1", port) == before + 1000  # one serial step per committed update


def test_prerequisites_are_atomic_across_workers(two_workers: XdnsdProcess) -> None:
    """20 clients race to create the same name with 'name not in use': exactly one wins."""
    port = two_workers.port

    def claim(c: int) -> int:
        update = add_update("lock", f"203.0.113.{c + 1}", prereq_absent=True)
        return int(dns.query.tcp(update, "127.0.0.1", port=port, timeout=10).rcode())

    with ThreadPoolExecutor(20) as pool:
        rcodes = list(pool.map(claim, range(20)))
    assert rcodes.count(dns.rcode.NOERROR) == 1
    assert rcodes.count(dns.rcode.YXDOMAIN) == 19
    response = dns.query.udp(dns.message.make_query(f"lock.{ZONE}", "A"), "127.0.0.1", port=port)
    assert len(response.answer[0]) == 1


# --------------------------------------------------------------------------- size and bad input


def test_largest_update_message_over_tcp(two_workers: XdnsdProcess) -> None:
    port = two_workers.port
    update = dns.update.UpdateMessage(ZONE)
    count = 0
    for i in range(4000):  # 4,000 A records at one name: about 64 KB with compression
        update.add("bulk", 300, "A", f"10.{i >> 8}.{i & 255}.1")
        count += 1
    update.use_tsig(KEY)
    wire = update.to_wire()
    assert 60_000 < len(wire) <= 65_535
    before = soa_serial("127.0.0.1", port)
    started = time.monotonic()
    response = dns.query.tcp(update, "127.0.0.1", port=port, timeout=60)
    elapsed = time.monotonic() - started
    assert response.rcode() == dns.rcode.NOERROR
    query = dns.message.make_query(f"bulk.{ZONE}", "A")
    answer = dns.query.tcp(query, "127.0.0.1", port=port, timeout=10)
    assert len(answer.answer[0]) == count
    assert soa_serial("127.0.0.1", port) == before + 1  # one message, one change
    print(f"4,000-record update: {len(wire)} bytes, committed and answered in {elapsed:.3f}s")


def _tcp_exchange(port: int, wire: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        head = sock.recv(2, socket.MSG_WAITALL)
        (length,) = struct.unpack("!H", head)
        return sock.recv(length, socket.MSG_WAITALL)


def test_update_claiming_ten_thousand_records_is_formerr(two_workers: XdnsdProcess) -> None:
    """10,000 RRs do not fit in one 65,535-byte message; a header that claims them is FORMERR."""
    port = two_workers.port
    update = dns.update.UpdateMessage(ZONE)
    for i in range(3000):
        update.add("claim", 300, "A", f"10.9.{i >> 8}.{i & 255}")
    wire = bytearray(update.to_wire())
    struct.pack_into("!H", wire, 8, 10_000)  # UPCOUNT
    before = soa_serial("127.0.0.1", port)
    response = dns.message.from_wire(_tcp_exchange(port, bytes(wire)))
    assert response.rcode() == dns.rcode.FORMERR
    assert not present(port, "claim")
    assert soa_serial("127.0.0.1", port) == before


def test_malformed_updates_get_formerr_and_change_nothing(two_workers: XdnsdProcess) -> None:
    port = two_workers.port
    before = soa_serial("127.0.0.1", port)
    base = bytearray(add_update("fuzz", "192.0.2.77").to_wire())
    rng = random.Random(11)
    rcodes: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for n in range(300):
            wire = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(12, len(wire))
                wire[i] = (wire[i] + rng.randrange(1, 256)) % 256  # a different byte
            if n % 3 == 0:
                wire = wire[: rng.randrange(12, len(wire))]
            wire[0:2] = struct.pack("!H", n)
            sock.sendto(bytes(wire), ("127.0.0.1", port))
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue  # dropping a hopeless packet is allowed
            # read the header only: an echoed zone section may be as mangled as the request
            ident, flags = struct.unpack_from("!HH", data)
            assert ident == n and flags & 0x8000 and (flags >> 11) & 0xF == 5  # QR, UPDATE
            rcodes.add(flags & 0xF)
    # The MAC or the parser catches a mangled update.  The one change that keeps a valid MAC is
    # the letter case of the key or algorithm name (names are compared, and digested, in
    # lowercase: RFC 8945 4.3.3), which leaves the update as sent: fuzz A 192.0.2.77.
    errors = {dns.rcode.FORMERR, dns.rcode.NOTAUTH, dns.rcode.REFUSED, dns.rcode.NOTZONE}
    assert rcodes <= errors | {dns.rcode.NOERROR}
    assert dns.rcode.FORMERR in rcodes and dns.rcode.NOTAUTH in rcodes
    after = soa_serial("127.0.0.1", port)
    if dns.rcode.NOERROR in rcodes:
        assert after == before + 1 and present(port, "fuzz")
    else:
        assert after == before and not present(port, "fuzz")
    assert present(port, "www")  # the server still answers
