#!/usr/bin/env python3
"""Replication between xdnsd nodes on loopback: latency, catch-up, a new node joining.

Three nodes (``xdnsd serve``, each with its own store, all peers of each other) serve one zone.

1. **Latency.** ``--count`` signed updates (dnspython over TCP) go to node A at each rate of
   ``--rates`` (updates per second; ``max`` = back to back, one at a time); for each, the time
   from A's answer to the moment B and C serve it (their SOA serial polled over UDP in a tight
   loop: one origin, so serial N served means change N is).  p50 / p99 / max per rate.
   Updates leave on schedule (up to 8 in flight); with ``max``, one after the other.
2. **Catch-up.** Node C is stopped, ``--missed`` updates are made at A (8 clients in parallel),
   C is started again: seconds from its start until it serves A's serial.
3. **Joining.** A fourth node with an empty store and no zone in its config joins a cluster
   whose zone has ``--join-names`` names (genzone.py): seconds from its start until it serves
   the whole zone (the creation and every change since come by replication).

    .venv/bin/python bench/run_replication_bench.py [--count 200] [--rates 1,100,max]
        [--missed 10000] [--join-names 100000]

Everything on 127.0.0.1; every loop is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import genzone  # noqa: E402
from _common import free_port  # noqa: E402

SECRET = base64.b64encode(b"replication bench tsig key 32 b!").decode()
KEY = dns.tsig.Key("upd.", SECRET, dns.tsig.HMAC_SHA256)
PEER_KEY = base64.b64encode(b"replication bench peer key 32 b!").decode()
SMALL_ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"


class Node:
    def __init__(self, work: Path, name: str, dns_port: int, peer_port: int) -> None:
        self.name, self.work = name, work / name
        self.dns_port, self.peer_port = dns_port, peer_port
        self.work.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, peers: list[Node], zone: Path | None, origin: str) -> None:
        lines = [
            f'[server]\nlisten = ["127.0.0.1:{self.dns_port}"]\ndata_dir = "{self.work / "var"}"',
            f'[node]\nid = "{self.name}"\npeer_listen = "127.0.0.1:{self.peer_port}"',
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"',
        ]
        for p in peers:
            lines.append(
                f'[[peers]]\nid = "{p.name}"\naddress = "127.0.0.1:{p.peer_port}"\n'
                f'key = "{PEER_KEY}"'
            )
        if zone is not None:
            lines.append(
                f'[[zones]]\nname = "{origin}"\nfile = "{zone}"\n'
                'update_policy = ["grant upd zonesub ANY"]'
            )
        (self.work / "xdnsd.toml").write_text("\n".join(lines) + "\n")

    def start(self) -> float:
        log = (self.work / "xdnsd.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xdnsd", "serve", "--config", str(self.work / "xdnsd.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        return time.monotonic()

    def stop(self) -> None:
        """SIGTERM to the whole session (workers, writer, replication), then wait until every
        process of it is gone, so that a restart finds its ports free."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.proc = None


def serial(port: int, origin: str, sock: socket.socket) -> int | None:
    sock.sendto(dns.message.make_query(origin, "SOA").to_wire(), ("127.0.0.1", port))
    try:
        response = dns.message.from_wire(sock.recv(4096))
    except (TimeoutError, OSError, dns.exception.DNSException):
        return None
    if response.rcode() != dns.rcode.NOERROR or not response.answer:
        return None
    return int(response.answer[0][0].serial)


def wait_serial(port: int, origin: str, want: int, timeout: float) -> float:
    """Seconds until ``port`` serves serial ``want`` (or more); raises after ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        started = time.monotonic()
        while True:
            got = serial(port, origin, sock)
            if got is not None and got >= want:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"port {port}: serial {got}, not {want}, after {timeout} s")
            time.sleep(0.0005)


def update(port: int, origin: str, name: str) -> None:
    message = dns.update.UpdateMessage(origin)
    message.add(name, 300, "A", "192.0.2.1")
    message.use_tsig(KEY)
    response = dns.query.tcp(message, "127.0.0.1", port=port, timeout=10)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"update refused: {dns.rcode.to_text(response.rcode())}")


def latency(
    nodes: list[Node], origin: str, rate: str, count: int, timeout: float
) -> dict[str, float]:
    a, others = nodes[0], nodes[1:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        base = serial(a.dns_port, origin, sock)
    assert base is not None
    answered: list[float] = []
    served: dict[int, list[float]] = {n.dns_port: [] for n in others}

    def watch(port: int) -> None:
        # the observer must not compete with the nodes for the CPU: one query built once (the
        # same ID, so an unchanged zone gives the same answer bytes), parsed only when its
        # bytes change
        query = dns.message.make_query(origin, "SOA")
        query.id = 4242
        wire = query.to_wire()
        last_answer = b""
        got: int | None = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            seen = 0
            deadline = time.monotonic() + timeout + count / (1 if rate == "1" else 50)
            while seen < count and time.monotonic() < deadline:
                sock.sendto(wire, ("127.0.0.1", port))
                try:
                    answer = sock.recv(4096)
                except OSError:
                    continue
                now = time.monotonic()
                if answer != last_answer:
                    last_answer = answer
                    response = dns.message.from_wire(answer)
                    got = int(response.answer[0][0].serial) if response.answer else None
                if got is not None:
                    while seen < count and got >= base + seen + 1:
                        served[port].append(now)
                        seen += 1
                time.sleep(0.001)

    interval = 0.0 if rate == "max" else 1.0 / float(rate)

    def send(i: int) -> None:
        update(a.dns_port, origin, f"lat-{rate}-{i}")
        answered.append(time.monotonic())

    # updates leave on schedule (up to 8 in flight), whatever the answers take; with "max",
    # one after the other.  Change k is the k-th answered (A answers after its commit).
    clients = 1 if rate == "max" else 8
    with (
        concurrent.futures.ThreadPoolExecutor(len(others)) as pool,
        concurrent.futures.ThreadPoolExecutor(clients) as senders,
    ):
        watchers = [pool.submit(watch, n.dns_port) for n in others]
        started = time.monotonic()
        sent = []
        for i in range(count):
            if interval:
                time.sleep(max(0.0, started + i * interval - time.monotonic()))
            sent.append(senders.submit(send, i))
        for f in sent:
            f.result()
        for w in watchers:
            w.result()
    answered.sort()
    delays = []
    for times in served.values():
        if len(times) != count:
            raise RuntimeError(f"only {len(times)} of {count} changes served in time")
        delays += [max(0.0, t - a_t) * 1000 for t, a_t in zip(times, answered, strict=True)]
    delays.sort()
    elapsed = answered[-1] - started
    return {
        "rate": rate,
        "achieved_per_s": round(count / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(delays), 2),
        "p99_ms": round(delays[min(len(delays) - 1, int(0.99 * len(delays)))], 2),
        "max_ms": round(delays[-1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--rates", default="1,100,max")
    ap.add_argument("--missed", type=int, default=10_000)
    ap.add_argument("--join-names", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xdnsd-repl-bench-"))
    origin = "example.test."
    results: dict[str, object] = {}
    nodes = [Node(work, f"n{i}", free_port(), free_port()) for i in (1, 2, 3)]
    zone = work / "small.zone"
    zone.write_text(SMALL_ZONE)
    try:
        for node in nodes:
            node.configure([p for p in nodes if p is not node], zone, origin)
            node.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            deadline = time.monotonic() + 60
            while any(serial(n.dns_port, origin, sock) != 3 for n in nodes):  # three creations
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not come up")
                time.sleep(0.1)
        time.sleep(5)  # every link up (a refused first dial is retried after 1, 2, 4 s)
        rows = []
        for rate in a.rates.split(","):
            row = latency(nodes, origin, rate, a.count, a.timeout)
            rows.append(row)
            print(
                f"[latency] {rate}/s: {a.count} changes at {row['achieved_per_s']}/s: "
                f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms",
                flush=True,
            )
        results["latency"] = rows

        c = nodes[2]
        c.stop()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(lambda i: update(nodes[0].dns_port, origin, f"miss-{i}"), range(a.missed))
            )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            target = serial(nodes[0].dns_port, origin, sock)
        assert target is not None
        started = c.start()
        took = wait_serial(c.dns_port, origin, target, a.timeout)
        took = time.monotonic() - started
        results["catch_up"] = {"missed": a.missed, "seconds": round(took, 2)}
        print(f"[catch-up] {a.missed} missed changes: served {took:.2f} s after start", flush=True)
    finally:
        for node in nodes:
            node.stop()

    # a new, empty node joining a large zone
    big_origin = "bench.test."
    big = work / "big.zone"
    genzone.generate_zone(str(big), a.join_names, 1)
    joined = [Node(work, f"j{i}", free_port(), free_port()) for i in (1, 2)]
    first, newcomer = joined
    try:
        first.configure([newcomer], big, big_origin)
        newcomer.configure([first], None, big_origin)
        first.start()
        wait_serial(first.dns_port, big_origin, 1, a.timeout)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            target = serial(first.dns_port, big_origin, sock)
        assert target is not None
        started = newcomer.start()
        wait_serial(newcomer.dns_port, big_origin, target, a.timeout)
        took = time.monotonic() - started
        results["join"] = {"names": a.join_names, "seconds": round(took, 2)}
        print(f"[join] empty node serving the {a.join_names:,}-name zone {took:.2f} s after start")
    finally:
        for node in joined:
            node.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"replication-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    if not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
