"""NOTIFY out (RFC 1996) from a real ``xdnsd serve`` to secondaries: a listening socket playing
the secondary, then a real BIND ``named`` secondary that pulls on NOTIFY."""

from __future__ import annotations

import socket
import statistics
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update

from tests.harness import free_port, running_xdnsd
from tests.named import CONTROLS_NONE, NAMED, named_options

SECRET = "bm90aWZ5LXRlc3Qta2V5LXNlY3JldC0zMi1vY3RldHMh"
KEY = dns.tsig.Key("nkey.", SECRET, dns.tsig.HMAC_SHA256)
ZONE_TEXT = "$TTL 300\n@ SOA ns1 host 10 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.1\n"


def _receive(sock: socket.socket, timeout: float) -> tuple[dns.message.Message, tuple[str, int]]:
    sock.settimeout(timeout)
    data, address = sock.recvfrom(65535)
    return dns.message.from_wire(data, keyring={KEY.name: KEY}), address


def _update(port: int, name: str) -> None:
    update = dns.update.UpdateMessage("example.test")
    update.add(name, 300, "A", "192.0.2.50")
    update.use_tsig(KEY)
    assert dns.query.tcp(update, "127.0.0.1", port=port, timeout=5).rcode() == 0


def test_notify_is_sent_signed_retried_and_stops_when_answered(tmp_path: Path) -> None:
    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    secondary.bind(("127.0.0.1", 0))
    port = secondary.getsockname()[1]
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE_TEXT)
    options = (
        f'secondaries = ["127.0.0.1:{port}"]\nnotify_key = "nkey"\n'
        'update_policy = ["grant nkey zonesub ANY"]'
    )
    with running_xdnsd(
        tmp_path,
        {"example.test": zone},
        keys={"nkey": ("hmac-sha256", SECRET)},
        zone_options={"example.test": options},
    ) as server:
        # at start-up: the serial the zone has, signed with the zone's notify key
        notify, source = _receive(secondary, 5)
        assert notify.opcode() == dns.opcode.NOTIFY and notify.flags & dns.flags.AA
        assert notify.question[0].name == dns.name.from_text("example.test.")
        assert notify.question[0].rdtype == dns.rdatatype.SOA
        assert notify.answer[0][0].serial == 10
        assert notify.had_tsig  # dnspython verified the MAC with the key
        # unanswered: sent again after about a second
        started = time.monotonic()
        again, _ = _receive(secondary, 5)
        assert again.id == notify.id and 0.5 < time.monotonic() - started < 3
        reply = dns.message.make_response(again)
        secondary.sendto(reply.to_wire(), source)
        # answered: quiet until the next change; a change announces its serial at once
        _update(server.port, "new")
        changed, source = _receive(secondary, 5)
        assert changed.answer[0][0].serial == 11
        secondary.sendto(dns.message.make_response(changed).to_wire(), source)
        secondary.settimeout(2.5)
        try:
            extra = dns.message.from_wire(secondary.recvfrom(65535)[0], keyring={KEY.name: KEY})
        except TimeoutError:
            extra = None
        assert extra is None, "an answered NOTIFY was sent again"
    secondary.close()


def test_notify_leaves_from_the_listening_address_unsigned(tmp_path: Path) -> None:
    """What a Windows DNS secondary needs (it cannot run here): an unsigned NOTIFY that comes
    from the address it knows as the primary, the one xdnsd listens on (127.0.0.5 here: left to
    itself, the system would pick 127.0.0.1 to reach 127.0.0.1), and then an AXFR / IXFR without
    TSIG from that address (tests/test_xfr.py: many records per message)."""
    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    secondary.bind(("127.0.0.1", 0))
    port = secondary.getsockname()[1]
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE_TEXT)
    listen_port = free_port("127.0.0.5")
    with running_xdnsd(
        tmp_path,
        {"example.test": zone},
        listen=[f"127.0.0.5:{listen_port}"],
        zone_options={
            "example.test": f'secondaries = ["127.0.0.1:{port}"]\nallow_transfer = ["127.0.0.1"]'
        },
        host="127.0.0.5",
        port=listen_port,
    ) as server:
        notify, source = _receive(secondary, 5)
        assert source[0] == "127.0.0.5"
        assert notify.opcode() == dns.opcode.NOTIFY and not notify.had_tsig
        secondary.sendto(dns.message.make_response(notify).to_wire(), source)
        # the secondary pulls from the primary's address, unsigned
        xfr = dns.query.xfr("127.0.0.5", "example.test", port=server.port, source="127.0.0.1")
        assert sum(len(rrset) for m in xfr for rrset in m.answer) == 4  # SOA, NS, A, SOA
    secondary.close()


def test_bind_secondary_follows_by_notify_and_ixfr(tmp_path: Path) -> None:
    """A real BIND secondary: loads by AXFR, then each change reaches it by NOTIFY + IXFR."""
    bind_port = free_port()
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE_TEXT)
    options = (
        f'secondaries = ["127.0.0.1:{bind_port}"]\nnotify_key = "nkey"\n'
        'update_policy = ["grant nkey zonesub ANY"]\nallow_transfer = ["key nkey"]'
    )
    (tmp_path / "x").mkdir()
    with running_xdnsd(
        tmp_path / "x",
        {"example.test": zone},
        keys={"nkey": ("hmac-sha256", SECRET)},
        zone_options={"example.test": options},
    ) as server:
        bind_dir = tmp_path / "bind"
        bind_dir.mkdir()
        conf = bind_dir / "named.conf"
        conf.write_text(
            f'key "nkey" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'
            + named_options(bind_dir, bind_port)
            + CONTROLS_NONE
            + f'zone "example.test" {{ type secondary; file "{bind_dir}/example.test.db";\n'
            f'  primaries {{ 127.0.0.1 port {server.port} key "nkey"; }};\n'
            "  allow-notify { 127.0.0.1; }; };\n"
        )
        log = (bind_dir / "named.log").open("w")
        named = subprocess.Popen([NAMED, "-g", "-c", str(conf)], stdout=log, stderr=log)
        try:
            query = dns.message.make_query("example.test", "SOA")

            def bind_serial() -> int | None:
                try:
                    r = dns.query.udp(query, "127.0.0.1", port=bind_port, timeout=0.5)
                except (TimeoutError, OSError, dns.exception.DNSException):
                    return None
                return int(r.answer[0][0].serial) if r.answer else None

            deadline = time.monotonic() + 20
            while bind_serial() != 10:
                assert time.monotonic() < deadline, (bind_dir / "named.log").read_text()
                time.sleep(0.1)
            delays = []
            for i in range(5):
                _update(server.port, f"n{i}")
                started = time.monotonic()
                while bind_serial() != 11 + i:
                    assert time.monotonic() - started < 10, (bind_dir / "named.log").read_text()
                    time.sleep(0.005)
                delays.append(time.monotonic() - started)
            text = (bind_dir / "named.log").read_text()
            assert "Transfer status: success" in text
            assert "notify from 127.0.0.1" in text  # BIND pulled because of our NOTIFY
            # BIND does not log the transfer type: xdnsd does, one AXFR then IXFRs
            assert server.log().count("AXFR of zone example.test.") == 1
            assert server.log().count("IXFR of zone example.test.") >= 5
            answer = dns.query.udp(
                dns.message.make_query("n4.example.test", "A"), "127.0.0.1", port=bind_port
            )
            assert answer.answer and answer.answer[0][0].address == "192.0.2.50"
            print(f"commit to served by BIND: median {statistics.median(delays) * 1000:.0f} ms")
        finally:
            named.terminate()
            named.wait(10)
            log.close()


def test_cli_zone_notify(tmp_path: Path) -> None:
    """`xdnsd zone notify NAME` sends one now and reports who answered."""
    import threading

    from tests.harness import run_cli, write_config

    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    secondary.bind(("127.0.0.1", 0))
    port = secondary.getsockname()[1]
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE_TEXT)
    config = write_config(
        tmp_path,
        {"example.test": zone},
        port=free_port(),
        zone_options={"example.test": f'secondaries = ["127.0.0.1:{port}"]'},
    )
    run_cli("zone", "import", str(zone), "--zone", "example.test", config=config)

    def answer_once() -> None:
        notify, source = _receive(secondary, 10)
        secondary.sendto(dns.message.make_response(notify).to_wire(), source)

    responder = threading.Thread(target=answer_once)
    responder.start()
    result = run_cli("zone", "notify", "example.test", config=config)
    responder.join(10)
    assert "NOTIFY sent to 1 secondaries, 1 answered" in result.stdout
    # nobody answering: a clear non-zero exit once the time is up
    result = run_cli(
        "zone", "notify", "example.test", "--timeout", "1.5", config=config, check=False
    )
    assert result.returncode == 1 and "0 answered" in result.stdout
    secondary.close()
