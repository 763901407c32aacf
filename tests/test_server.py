"""Integration: a real ``xdnsd serve`` process queried with dig, kdig and dnspython."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.harness import ROOT, XdnsdProcess, free_port, run_cli, running_xdnsd, write_config

DEMO_ZONE = ROOT / "conf" / "zones" / "example.test.zone"


@pytest.fixture
def zone_file(tmp_path: Path) -> Path:
    path = tmp_path / "example.test.zone"
    shutil.copy(DEMO_ZONE, path)
    return path


@pytest.fixture
def server(tmp_path: Path, zone_file: Path) -> Iterator[XdnsdProcess]:
    with running_xdnsd(
        tmp_path,
        {"example.test": zone_file},
        extra_server="tcp_idle_timeout = 1.0\ntcp_max_connections = 4",
    ) as srv:
        yield srv


def dig(server: XdnsdProcess, *args: str, tool: str = "dig") -> str:
    result = subprocess.run(
        [tool, f"@{server.host}", "-p", str(server.port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return result.stdout


def import_www_address(zone_file: Path, address: str, config: Path) -> None:
    """Change www's address in the zone file and commit it with ``xdnsd zone import``."""
    text = zone_file.read_text().replace(
        "www         A     192.0.2.10", f"www         A     {address}"
    )
    zone_file.write_text(text)
    run_cli("zone", "import", str(zone_file), "--zone", "example.test", config=config)


def test_dig_answers_demo_zone(server: XdnsdProcess) -> None:
    out = dig(server, "www.example.test", "A", "+norec")
    assert "status: NOERROR" in out
    assert " aa" in out.split("flags:")[1].split(";")[0]
    assert "192.0.2.10" in out


def test_kdig_over_tcp(server: XdnsdProcess) -> None:
    out = dig(server, "+tcp", "mail.example.test", "A", tool="kdig")
    assert "NOERROR" in out and "192.0.2.25" in out and "TCP" in out


def test_dnspython_udp_tcp_agree(server: XdnsdProcess) -> None:
    for name, rdtype in [
        ("www.example.test", "AAAA"),
        ("nope.example.test", "A"),
        ("ftp.example.test", "A"),
        ("x.apps.example.test", "A"),
    ]:
        q = dns.message.make_query(name, rdtype)
        udp = dns.query.udp(q, server.host, port=server.port, timeout=2)
        tcp = dns.query.tcp(q, server.host, port=server.port, timeout=2)
        assert udp.id == q.id and tcp.id == q.id
        assert udp.rcode() == tcp.rcode()
        assert udp.answer == tcp.answer and udp.authority == tcp.authority


def test_refused_outside_zones(server: XdnsdProcess) -> None:
    q = dns.message.make_query("example.org", "A")
    r = dns.query.udp(q, server.host, port=server.port, timeout=2)
    assert r.rcode() == dns.rcode.REFUSED


def test_question_case_is_preserved_on_cached_answers(server: XdnsdProcess) -> None:
    # mixed case first: a lowercase question must not get the cached mixed-case bytes
    for name in ["WwW.ExAmPlE.tEsT", "www.example.test", "WWW.EXAMPLE.TEST"]:
        for _ in range(2):  # the second is a fast-path hit
            q = dns.message.make_query(name, "A")
            wire = q.to_wire()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(wire, (server.host, server.port))
                data = s.recv(65535)
            assert data[:2] == wire[:2]
            assert data[12 : 12 + len(name) + 2] == wire[12 : 12 + len(name) + 2]
            r = dns.message.from_wire(data)
            assert r.answer[0][0].address == "192.0.2.10"


def test_commit_invalidates_cached_answers(server: XdnsdProcess, zone_file: Path) -> None:
    q = dns.message.make_query("www.example.test", "A")
    for _ in range(3):
        r = dns.query.udp(q, server.host, port=server.port, timeout=2)
        assert r.answer[0][0].address == "192.0.2.10"
    import_www_address(zone_file, "192.0.2.11", server.config)
    # the import has returned: no answer may show the old address any more
    for _ in range(50):
        r = dns.query.udp(q, server.host, port=server.port, timeout=2)
        assert [rr.address for rr in r.answer[0]] == ["192.0.2.11"]
    soa = dns.query.udp(
        dns.message.make_query("example.test", "SOA"), server.host, port=server.port, timeout=2
    )
    assert soa.answer[0][0].serial == 2026112202


def test_tcp_pipelining(server: XdnsdProcess) -> None:
    queries = [
        dns.message.make_query(n, "A")
        for n in ("www.example.test", "mail.example.test", "nope.example.test")
    ]
    with socket.create_connection((server.host, server.port), timeout=3) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries)))
        answers = {}
        buf = b""
        while len(answers) < 3:
            chunk = s.recv(65535)
            assert chunk, "connection closed before all answers"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                msg = dns.message.from_wire(buf[2 : 2 + n])
                answers[msg.id] = msg
                buf = buf[2 + n :]
    assert {q.id for q in queries} == set(answers)
    assert answers[queries[2].id].rcode() == dns.rcode.NXDOMAIN


def test_tcp_idle_timeout_closes(server: XdnsdProcess) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        start = time.monotonic()
        assert s.recv(10) == b""  # closed by the server
        assert 0.5 < time.monotonic() - start < 4


def test_tcp_connection_limit(server: XdnsdProcess) -> None:
    held = [socket.create_connection((server.host, server.port), timeout=3) for _ in range(4)]
    try:
        time.sleep(0.2)  # let the server accept them
        # the fifth is closed unserved: EOF, or a reset (which can come as early as connect)
        try:
            with socket.create_connection((server.host, server.port), timeout=3) as extra:
                extra.settimeout(3)
                data = extra.recv(10)
        except ConnectionResetError:
            data = b""
        assert data == b""
    finally:
        for s in held:
            s.close()
    # once the others are gone, a new connection is served again
    q = dns.message.make_query("www.example.test", "A")
    deadline = time.monotonic() + 5
    while True:
        try:
            r = dns.query.tcp(q, server.host, port=server.port, timeout=2)
            break
        except (ConnectionError, EOFError):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert r.rcode() == dns.rcode.NOERROR


def test_ipv6_listener(tmp_path: Path, zone_file: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        {"example.test": zone_file},
        port=port,
        listen=[f"127.0.0.1:{port}", f"[::1]:{port}"],
    )
    server = XdnsdProcess(config, port)
    try:
        server.wait_ready("example.test")
        q = dns.message.make_query("www.example.test", "AAAA")
        r = dns.query.udp(q, "::1", port=port, timeout=2)
        assert r.answer[0][0].address == "2001:db8::10"
        r = dns.query.tcp(q, "::1", port=port, timeout=2)
        assert r.answer[0][0].address == "2001:db8::10"
    finally:
        assert server.stop() == 0


def test_two_workers_share_the_port_and_see_commits(tmp_path: Path, zone_file: Path) -> None:
    with running_xdnsd(tmp_path, {"example.test": zone_file}, extra_server="workers = 2") as srv:
        q = dns.message.make_query("www.example.test", "A")
        for _ in range(100):  # many source ports: both workers answer and cache
            assert dns.query.udp(q, srv.host, port=srv.port, timeout=2).answer
        import_www_address(zone_file, "192.0.2.12", srv.config)
        for _ in range(100):
            r = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
            assert [rr.address for rr in r.answer[0]] == ["192.0.2.12"]
        pids = subprocess.run(
            ["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        # the parent is worker 0; its children: one forked worker and the writer process
        assert len(pids) == 2


def test_port_taken_is_a_clear_error(tmp_path: Path, zone_file: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", port))
        config = write_config(tmp_path, {"example.test": zone_file}, port=port)
        result = subprocess.run(
            [sys.executable, "-m", "xdnsd", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}/udp: address already in use" in result.stderr


def test_bad_config_names_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nlisten = ["127.0.0.1:5353"]\nworkers = "two"\n')
    result = run_cli("serve", config=config, check=False)
    assert result.returncode == 2
    assert f"{config}: [server].workers: expected an integer" in result.stderr


def test_bad_zone_file_names_file_and_line(tmp_path: Path, zone_file: Path) -> None:
    zone_file.write_text(
        zone_file.read_text().replace(
            "mail        A     192.0.2.25", "mail        A     192.0.2.300"
        )
    )
    config = write_config(tmp_path, {"example.test": zone_file}, port=free_port())
    result = run_cli("serve", config=config, check=False)
    assert result.returncode == 1
    assert f"{zone_file}:16:" in result.stderr


def test_zone_cli_list_export_round_trip(tmp_path: Path, zone_file: Path) -> None:
    config = write_config(tmp_path, {"example.test": zone_file}, port=free_port())
    run_cli("zone", "import", str(zone_file), "--zone", "example.test", config=config)
    listing = run_cli("zone", "list", config=config).stdout
    assert "example.test." in listing and "2026112201" in listing
    exported = tmp_path / "out.zone"
    run_cli("zone", "export", "example.test", "-o", str(exported), config=config)
    # importing the export changes nothing
    again = run_cli("zone", "import", str(exported), "--zone", "example.test", config=config)
    assert "no changes" in again.stdout
    history = run_cli("zone", "history", "example.test", config=config).stdout
    assert "import:" in history
