"""Zone transfers out (AXFR RFC 5936, IXFR RFC 1995) from a real ``xdnsd serve``, checked with
dnspython's transfer client (which verifies multi-message TSIG) and with kdig/dig."""

from __future__ import annotations

import socket
import struct
import subprocess
from collections.abc import Iterator

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr
import dns.zone
import pytest

from tests.harness import XdnsdProcess, run_cli, running_xdnsd

SECRET = "eGZyLXRlc3Qta2V5LXNlY3JldC0zMi1vY3RldHMhIQ=="
KEY = dns.tsig.Key("xfr-key.", SECRET, dns.tsig.HMAC_SHA256)
KEYRING = {KEY.name: KEY}
NAMES = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdnsdProcess]:
    directory = tmp_path_factory.mktemp("xfr")
    lines = ["$TTL 300", "@ SOA ns1 host 100 3600 900 604800 60", "@ NS ns1", "ns1 A 192.0.2.1"]
    for i in range(NAMES):
        lines.append(f"h{i} A 10.{i >> 8 & 255}.{i & 255}.1")
        lines.append(f'h{i} TXT "host {i} {"x" * 40}"')
    big = directory / "big.test.zone"
    big.write_text("\n".join(lines) + "\n")
    small = directory / "small.test.zone"
    small.write_text("$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.1\n")
    with running_xdnsd(
        directory,
        {"big.test": big, "small.test": small},
        keys={"xfr-key": ("hmac-sha256", SECRET)},
        zone_options={
            "big.test": (
                'allow_transfer = ["127.0.0.1"]\nupdate_policy = ["grant xfr-key zonesub ANY"]'
            ),
            "small.test": 'allow_transfer = ["key xfr-key"]',
        },
    ) as proc:
        yield proc


def axfr(server: XdnsdProcess, zone: str, signed: bool = True) -> dns.zone.Zone:
    result = dns.zone.Zone(zone)
    query = dns.message.make_query(zone, "AXFR")
    if signed:
        query.use_tsig(KEY)
    dns.query.inbound_xfr(server.host, result, query=query, port=server.port, timeout=10)
    return result


def ixfr_query(serial: int) -> dns.message.Message:
    """An IXFR query for big.test from ``serial`` (the SOA in the authority section)."""
    query = dns.message.make_query("big.test", "IXFR")
    soa = dns.rdata.from_text("IN", "SOA", f"ns1.big.test. host.big.test. {serial} 1 1 1 1")
    name = dns.name.from_text("big.test.")
    query.find_rrset(query.authority, name, dns.rdataclass.IN, dns.rdatatype.SOA, create=True).add(
        soa, 0
    )
    return query


def udp_one_rr_per_rrset(server: XdnsdProcess, query: dns.message.Message) -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query.to_wire(), (server.host, server.port))
        data, _ = sock.recvfrom(65535)
    return dns.message.from_wire(data, one_rr_per_rrset=True)


def records(zone: dns.zone.Zone) -> set[str]:
    return {
        f"{name} {rdataset.ttl} {dns.rdatatype.to_text(rdataset.rdtype)} {rd}"
        for name, rdataset in zone.iterate_rdatasets()
        for rd in rdataset
    }


def test_axfr_streams_many_messages_signed(server: XdnsdProcess) -> None:
    zone = axfr(server, "big.test")
    got = records(zone)
    assert len(got) == 2 * NAMES + 3  # A + TXT per name, SOA, NS, ns1 A
    assert "h2999 300 A 10.11.183.1" in got
    # the same zone as the store holds
    export = run_cli("zone", "export", "big.test", config=server.config).stdout
    exported = dns.zone.from_text(export, origin="big.test", relativize=True)
    assert records(exported) == got


def test_kdig_and_dig_count_messages(server: XdnsdProcess) -> None:
    out = subprocess.run(
        ["kdig", "-p", str(server.port), "@127.0.0.1", "AXFR", "big.test", "+tcp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    total = next(line for line in out.splitlines() if line.startswith(";; Received"))
    # ";; Received 268650 B (5 messages, 6004 records)"
    messages, count = total.split("(")[1].rstrip(")").split(", ")
    assert int(messages.split()[0]) > 1  # many RRs per message, several messages
    assert int(count.split()[0]) == 2 * NAMES + 4  # the SOA counts twice
    out = subprocess.run(
        ["dig", "-p", str(server.port), "@127.0.0.1", "big.test", "AXFR"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert f"XFR size: {2 * NAMES + 4} records" in out  # the SOA counts twice


def _update(server: XdnsdProcess, name: str, address: str, delete: str | None = None) -> None:
    update = dns.update.UpdateMessage("big.test")
    if delete:
        update.delete(delete, "A")
    update.add(name, 300, "A", address)
    update.use_tsig(KEY)
    assert dns.query.tcp(update, server.host, port=server.port, timeout=5).rcode() == 0


def test_ixfr_brings_an_old_copy_up_to_date(server: XdnsdProcess) -> None:
    old = axfr(server, "big.test")
    for i in range(5):
        _update(server, f"new{i}", f"192.0.2.{i + 10}")
    _update(server, "h5", "192.0.2.99", delete="h5")  # a replaced address
    query, _serial = dns.xfr.make_query(old)
    assert query.question[0].rdtype == dns.rdatatype.IXFR
    query.use_tsig(KEY)
    dns.query.inbound_xfr(server.host, old, query=query, port=server.port, timeout=10)
    fresh = axfr(server, "big.test")
    assert records(old) == records(fresh)


def test_ixfr_of_a_current_copy_is_the_soa_alone(server: XdnsdProcess) -> None:
    zone = axfr(server, "big.test")
    query, _ = dns.xfr.make_query(zone)
    wire = query.to_wire()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))
        response = dns.message.from_wire(sock.recv(length, socket.MSG_WAITALL))
    assert [int(r.rdtype) for r in response.answer] == [dns.rdatatype.SOA]
    assert len(response.answer[0]) == 1


def test_ixfr_from_an_unknown_serial_is_a_full_transfer(server: XdnsdProcess) -> None:
    zone = dns.zone.Zone("big.test")
    query = ixfr_query(7)
    dns.query.inbound_xfr(server.host, zone, query=query, port=server.port, timeout=10)
    assert len(records(zone)) >= 2 * NAMES + 3


def test_ixfr_over_udp(server: XdnsdProcess) -> None:
    zone = axfr(server, "big.test")
    _update(server, "udp1", "192.0.2.77")
    query, _ = dns.xfr.make_query(zone)
    response = udp_one_rr_per_rrset(server, query)
    types = [int(r.rdtype) for r in response.answer]
    # RFC 1995 4: current SOA, old SOA, deletions, current SOA, additions, current SOA
    assert types == [dns.rdatatype.SOA, dns.rdatatype.SOA, dns.rdatatype.SOA, 1, 6]
    assert types[0] == dns.rdatatype.SOA and types[-1] == dns.rdatatype.SOA
    assert any(r.name.to_text().startswith("udp1.") for r in response.answer)
    # too much to fit: the current SOA alone, the client retries over TCP
    response = udp_one_rr_per_rrset(server, ixfr_query(7))
    assert [int(r.rdtype) for r in response.answer] == [dns.rdatatype.SOA]


def test_refusals_and_bad_requests(server: XdnsdProcess) -> None:
    with pytest.raises(dns.xfr.TransferError) as err:
        axfr(server, "small.test", signed=False)  # only the key may
    assert err.value.rcode == dns.rcode.REFUSED
    assert len(records(axfr(server, "small.test", signed=True))) == 3
    with pytest.raises(dns.xfr.TransferError) as err:
        axfr(server, "nothere.test")
    assert err.value.rcode == dns.rcode.NOTAUTH
    # AXFR over UDP is not a thing (RFC 5936 4.2)
    response = dns.query.udp(
        dns.message.make_query("big.test", "AXFR"), server.host, port=server.port, timeout=5
    )
    assert response.rcode() == dns.rcode.NOTIMP
    assert "AXFR of zone small.test. refused: unsigned from 127.0.0.1" in server.log()


def test_client_leaving_mid_transfer_does_not_hurt(server: XdnsdProcess) -> None:
    wire = dns.message.make_query("big.test", "AXFR").to_wire()
    for _ in range(5):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            sock.recv(1000)  # a little of the first message, then gone
    query = dns.message.make_query("h1.big.test", "A")
    assert dns.query.udp(query, server.host, port=server.port, timeout=5).answer
    assert len(records(axfr(server, "big.test"))) >= 2 * NAMES + 3


def test_ixfr_without_an_soa_in_authority_is_formerr(server: XdnsdProcess) -> None:
    query = dns.message.make_query("big.test", "IXFR")  # no SOA in the authority section
    wire = query.to_wire()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))
        response = dns.message.from_wire(sock.recv(length, socket.MSG_WAITALL))
    assert response.rcode() == dns.rcode.FORMERR
    # and the server is fine
    assert dns.query.udp(
        dns.message.make_query("h1.big.test", "A"), server.host, port=server.port, timeout=5
    ).answer


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed mid-message"
        data += chunk
    return data


def test_repeated_transfers_follow_every_change(server: XdnsdProcess) -> None:
    """The second AXFR of a version comes from the transfer cache, byte for byte the same; a
    change (an UPDATE here, a `zone import` from another process below) is in the next one."""

    def raw_axfr(qname: str = "big.test") -> list[bytes]:
        query = dns.message.make_query(qname, "AXFR")
        query.id = 4321
        wire = query.to_wire()
        out = []
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            while True:
                (length,) = struct.unpack("!H", recv_exact(sock, 2))
                message = recv_exact(sock, length)
                out.append(message)
                answer = dns.message.from_wire(message, one_rr_per_rrset=True).answer
                if answer[-1].rdtype == dns.rdatatype.SOA and (len(out) > 1 or len(answer) > 1):
                    return out

    first = raw_axfr()
    assert raw_axfr() == first  # the same version, the same bytes
    cased = raw_axfr("BIG.Test")  # the question as asked, the records as stored
    assert cased[0][:12] == first[0][:12] and cased[1:] == first[1:]
    assert b"\x03BIG\x04Test" in cased[0][:30]
    update = dns.update.UpdateMessage("big.test")
    update.add("cached-check", 300, "A", "192.0.2.77")
    update.use_tsig(KEY)
    assert dns.query.tcp(update, server.host, port=server.port, timeout=5).rcode() == 0
    assert "cached-check 300 A 192.0.2.77" in records(axfr(server, "big.test"))
    export = run_cli("zone", "export", "big.test", config=server.config).stdout
    changed = server.config.parent / "big-changed.zone"
    changed.write_text(export.replace("192.0.2.77", "192.0.2.78"))
    run_cli("zone", "import", str(changed), "--zone", "big.test", config=server.config)
    got = records(axfr(server, "big.test"))
    assert "cached-check 300 A 192.0.2.78" in got
    assert "cached-check 300 A 192.0.2.77" not in got
