"""Start a real ``xdnsd serve`` process on free loopback ports for integration tests."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

ROOT = Path(__file__).resolve().parent.parent


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError):
        return 32768


_PORTS = random.Random()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``, below the system's ephemeral range: a
    server restarted after many client connections must not find its port taken by one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(max(1024, low - 12000), low)
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def write_config(
    directory: Path,
    zones: dict[str, Path | None],
    *,
    port: int,
    listen: Sequence[str] | None = None,
    node_id: str = "t1",
    extra_server: str = "",
    keys: dict[str, tuple[str, str]] | None = None,
    zone_options: dict[str, str] | None = None,
) -> Path:
    """``zones``: name -> master file (None for a zone without one: a secondary); ``keys``: TSIG
    key name -> (algorithm, base64 secret); ``zone_options``: zone name -> TOML lines added to
    that zone's ``[[zones]]`` table (e.g. ``update_policy = [...]``)."""
    listen = listen or [f"127.0.0.1:{port}"]
    lines = [
        "[server]",
        "listen = [" + ", ".join(f'"{a}"' for a in listen) + "]",
        f'data_dir = "{directory / "var"}"',
        extra_server,
        "[node]",
        f'id = "{node_id}"',
    ]
    for key_name, (algorithm, secret) in (keys or {}).items():
        lines += [f'[keys."{key_name}"]', f'algorithm = "{algorithm}"', f'secret = "{secret}"']
    for name, path in zones.items():
        lines += ["[[zones]]", f'name = "{name}"']
        if path is not None:
            lines.append(f'file = "{path}"')
        lines.append((zone_options or {}).get(name, ""))
    config = directory / "xdnsd.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


class XdnsdProcess:
    """A running ``xdnsd serve``; stop() sends SIGTERM and checks a clean exit."""

    def __init__(self, config: Path, port: int, host: str = "127.0.0.1") -> None:
        self.config = config
        self.port = port
        self.host = host
        self.log_path = config.parent / f"xdnsd-{port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xdnsd", "serve", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, probe: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        query = dns.message.make_query(probe, "SOA")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xdnsd exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                response = dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                if response.rcode() == dns.rcode.NOERROR:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"xdnsd did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"xdnsd ignored SIGTERM:\n{self.log()}") from None
        self._log.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running_xdnsd(
    directory: Path,
    zones: dict[str, Path | None],
    *,
    probe: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    **config_args: object,
) -> Iterator[XdnsdProcess]:
    """``host``, ``port``: where the server is probed and tested (give ``listen`` to match)."""
    port = port or free_port()
    config = write_config(directory, zones, port=port, **config_args)  # type: ignore[arg-type]
    server = XdnsdProcess(config, port, host)
    try:
        server.wait_ready(probe or next(iter(zones)))
        yield server
    finally:
        if server.proc.poll() is None:
            status = server.stop()
            assert status == 0, f"xdnsd exited with {status} on SIGTERM:\n{server.log()}"
        else:
            server.kill()


def run_cli(*args: str, config: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "xdnsd", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"xdnsd {' '.join(args)} failed: {result.stderr}")
    return result


class LinkProxy:
    """A TCP proxy on 127.0.0.1 to a local port, that a test cuts and restores (a link
    between two nodes, or to a provider's API)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # a slow answer (a large batch) is not a cut link
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()


def nsupdate(port: int, commands: str, key: str, zone: str = "example.test") -> None:
    """Run the real ``nsupdate`` against 127.0.0.1:``port``: ``commands`` (each message ended
    by ``send``; a last one is added when missing), signed with ``key``
    (``hmac-sha256:NAME:SECRET``).  Fails the test on any error."""
    script = f"server 127.0.0.1 {port}\nzone {zone}\n{commands}"
    if not script.rstrip().endswith("send"):
        script += "send\n"
    nsupdate_bin = shutil.which("nsupdate") or "/usr/bin/nsupdate"
    run = subprocess.run(
        [nsupdate_bin, "-y", key], input=script, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, (run.stdout, run.stderr)
