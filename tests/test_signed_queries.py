"""Queries that carry a TSIG (RFC 8945): answered and signed with the request's key."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import pytest

from tests.harness import XdnsdProcess, running_xdnsd

SECRET = "c2lnbmVkLXF1ZXJ5IHRlc3Qga2V5LCAzMiBvY3RldHMh"
KEY = dns.tsig.Key("qkey.", SECRET, dns.tsig.HMAC_SHA256)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdnsdProcess]:
    directory = tmp_path_factory.mktemp("signed")
    zone = directory / "example.test.zone"
    big = "\n".join(f'big 300 TXT "{i:03d} {"x" * 200}"' for i in range(12))
    zone.write_text(
        "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.1\n"
        f"www A 192.0.2.10\n{big}\n"
    )
    with running_xdnsd(
        directory, {"example.test": zone}, keys={"qkey": ("hmac-sha256", SECRET)}
    ) as proc:
        yield proc


def test_signed_query_gets_a_signed_answer(server: XdnsdProcess) -> None:
    query = dns.message.make_query("www.example.test", "A")
    query.use_tsig(KEY)
    # dnspython verifies the response's MAC against the request's and raises if it is wrong
    response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=3)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.had_tsig
    assert response.answer[0][0].address == "192.0.2.10"


def test_dig_verifies_the_signed_answer(server: XdnsdProcess) -> None:
    out = subprocess.run(
        [
            "dig",
            "@127.0.0.1",
            "-p",
            str(server.port),
            "-y",
            f"hmac-sha256:qkey:{SECRET}",
            "www.example.test",
            "A",
            "+tries=1",
            "+time=3",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert "status: NOERROR" in out and "192.0.2.10" in out
    assert "TSIG PSEUDOSECTION" in out and "Couldn't verify" not in out


def test_unknown_key_on_a_query_is_badkey(server: XdnsdProcess) -> None:
    query = dns.message.make_query("www.example.test", "A")
    query.use_tsig(dns.tsig.Key("nokey.", SECRET, dns.tsig.HMAC_SHA256))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(query.to_wire(), ("127.0.0.1", server.port))
        data, _ = sock.recvfrom(65535)
    response = dns.message.from_wire(data, keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADKEY


def test_signed_answer_too_big_for_udp_is_truncated_then_served_over_tcp(
    server: XdnsdProcess,
) -> None:
    query = dns.message.make_query("big.example.test", "TXT")  # no EDNS: 512 bytes
    query.use_tsig(KEY)
    response = dns.query.udp(
        query, "127.0.0.1", port=server.port, timeout=3, raise_on_truncation=False
    )
    assert response.flags & dns.flags.TC and response.had_tsig and not response.answer
    response = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=3)
    assert response.had_tsig and len(response.answer[0]) == 12
