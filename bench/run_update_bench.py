#!/usr/bin/env python3
"""Durable dynamic-update (RFC 2136) throughput of xdnsd against BIND 9 and Knot, same run.

Every server gets the same small zone (``example.test.``, 10 records) and the same TSIG key
(hmac-sha256). Each update is ONE TSIG-signed message adding ONE new TXT record
(``r<run>-c<client>-u<n>.example.test. 300 IN TXT "..."``); a client waits for the answer
(TSIG-verified, must be NOERROR) before it sends its next update, so the rate is the number of
updates each server has committed and acknowledged per second.

For every server (``--servers bind,knot,xdnsd``; ``knot-journal`` = Knot with
``zonefile-sync: -1``), on its own fresh copy of the zone:

1. warm-up: ``--warmup`` updates from one client (not timed);
2. for each client count (``--clients 1,8``; a thread with its own socket per client): a run
   bounded by ``--count`` updates in total and ``--seconds``; ``--repeat N`` runs each;
3. after every run, every acknowledged name is queried (dnsperf ``-n 1``: all must be NOERROR,
   none NXDOMAIN) and a sample is checked for the exact TXT data with dnspython;
   the SOA serial before/after is recorded (BIND and xdnsd: +1 per update; Knot: +1 per
   zone update, which may carry several queued updates);
4. ``--big N`` (default 1000): one message adding N records, over TCP: seconds to commit and
   answer, then every name checked the same way;
5. ``--strace-updates K`` (default 40): a separate, fresh instance of the server under
   ``strace -f`` receives K sequential updates, then 4K from the largest client count at once;
   the fsync-family calls and writes to O_DSYNC files made meanwhile are counted (syncs per
   update: the durability actually paid, and whether commits are grouped).

Updates are rendered and TSIG-signed before a run starts, and answers are parsed and verified
after it ends, so the Python client spends ~0.1 ms of CPU per update during the run.

Output: a table on stdout and JSON in bench/results/update-*.json.

Usage:
  .venv/bin/python bench/run_update_bench.py [--servers bind,knot,xdnsd] [--clients 1,8]
        [--count 2000] [--seconds 20] [--repeat 1] [--transport udp|tcp] [--big 1000]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

ALL_SERVERS = ["bind", "knot", "knot-journal", "xdnsd"]
DEFAULT_SERVERS = ["bind", "knot", "xdnsd"]
# knot-journal (opt-in): the same knotd with zonefile-sync: -1 (see DURABILITY)
BINARY = {"bind": "bind", "knot": "knot", "knot-journal": "knot", "xdnsd": "xdnsd"}
ORIGIN = "example.test."
KEY_NAME = "bench-key"
ALGORITHM = "hmac-sha256"

ZONE_TEXT = """$ORIGIN example.test.
$TTL 3600
@        SOA   ns1 hostmaster 1 7200 900 1209600 300
@        NS    ns1
@        NS    ns2
@        MX    10 mail
@        TXT   "v=bench"
ns1      A     127.0.0.1
ns2      A     127.0.0.2
www      A     192.0.2.10
www      AAAA  2001:db8::10
mail     A     192.0.2.25
"""
PROBE = "www.example.test."

# What each server promises when it answers NOERROR, in the configuration written below.
DURABILITY = {
    "bind": (
        "BIND 9 (defaults): each update is one transaction appended to the zone's .jnl; "
        "dns_journal_commit() fflush+fsync()s the journal data, rewrites the header and "
        "fsync()s again, before the answer is sent (not configurable). Updates are applied one "
        "at a time per zone (no group commit). The zone file itself is only rewritten later "
        "(dump ~15 min after a change)."
    ),
    "knot": (
        "Knot (defaults): journal-db-mode: robust (the journal is an LMDB env opened with sync "
        "on commit: fdatasync of data + meta page), journal-content: changes, zonefile-sync: 0 "
        "(the zone file is also rewritten right after each change, as a separate zone event). "
        "DDNS requests queued for a zone are applied together in one zone update and one "
        "journal commit (group commit), then all of them are answered."
    ),
    "knot-journal": (
        "Knot as above (journal-db-mode: robust, same journal commit before the answer) but "
        "zonefile-sync: -1: the zone file is not rewritten after each change (the changes live "
        "in the journal until a manual `knotc zone-flush`), like BIND's .jnl and xdnsd's store. "
        "With the default (0) each update also waits for the previous update's zone-file "
        "rewrite (a zone event of the same zone), which grows with the zone."
    ),
    "xdnsd": (
        "the store is an LMDB env opened with sync=True, metasync=True (mdb_txn_commit "
        "fdatasync()s the data pages, then writes the meta page through an O_DSYNC descriptor); "
        "the workers hand updates to the node's writer process, updates that queue while it "
        "syncs are committed together in one write transaction (group commit across workers), "
        "and every update is answered only after its transaction returned. The SOA serial "
        "still goes up by one per update."
    ),
}


# --------------------------------------------------------------------------- server configs


def write_zone(directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "example.test.zone")
    with open(path, "w") as f:
        f.write(ZONE_TEXT)
    return path


def bind_update_spec(work: str, port: int, workers: int, secret: str) -> c.ServerSpec:
    d = os.path.join(work, "bind")
    zone_file = write_zone(d)
    conf = os.path.join(d, "named.conf")
    with open(conf, "w") as f:
        f.write(f'key "{KEY_NAME}" {{ algorithm {ALGORITHM}; secret "{secret}"; }};\n')
        f.write(c.named_options(d, port))
        f.write(f"""zone "{ORIGIN.rstrip(".")}" {{
    type primary;
    file "{zone_file}";
    update-policy {{ grant {KEY_NAME} zonesub ANY; }};
    allow-transfer {{ key {KEY_NAME}; }};
}};
""")
    return c.named_spec(conf, d, port, workers)


def knot_update_spec(
    work: str, port: int, workers: int, secret: str, zonefile_sync: str, name: str = "knot"
) -> c.ServerSpec:
    d = os.path.join(work, name)
    zone_file = write_zone(d)
    os.makedirs(os.path.join(d, "db"), exist_ok=True)
    conf = os.path.join(d, "knot.conf")
    with open(conf, "w") as f:
        f.write(c.knot_server(d, port, workers, database="    journal-db-mode: robust\n"))
        f.write(f"""key:
  - id: {KEY_NAME}
    algorithm: {ALGORITHM}
    secret: {secret}
acl:
  - id: bench-update
    key: {KEY_NAME}
    action: [update, transfer]
template:
  - id: default
    storage: "{d}"
    journal-content: changes
    zonefile-sync: {zonefile_sync}
zone:
  - domain: {ORIGIN.rstrip(".")}
    file: "{os.path.basename(zone_file)}"
    acl: bench-update
""")
    return c.ServerSpec(
        name, ["knotd", "-c", conf], d, port, workers, os.path.join(d, "stderr.log")
    )


def xdnsd_update_spec(work: str, port: int, workers: int, secret: str) -> c.ServerSpec:
    d = os.path.join(work, "xdnsd")
    zone_file = write_zone(d)
    data_dir = os.path.join(d, "var")
    conf = os.path.join(d, "xdnsd.toml")
    with open(conf, "w") as f:
        f.write(f"""[server]
listen = ["127.0.0.1:{port}"]
data_dir = "{data_dir}"
workers = {workers}

[node]
id = "bench"

[keys."{KEY_NAME}"]
algorithm = "{ALGORITHM}"
secret = "{secret}"

[[zones]]
name = "{ORIGIN.rstrip(".")}"
file = "{zone_file}"
update_policy = ["grant {KEY_NAME} zonesub ANY"]
""")
    return c.ServerSpec(
        "xdnsd",
        [c.VENV_PY, "-m", "xdnsd", "serve", "--config", conf],
        d,
        port,
        workers,
        os.path.join(d, "stderr.log"),
        start_timeout=120.0,
        data_dir=data_dir,
    )


def make_spec(kind: str, work: str, port: int, a: argparse.Namespace, secret: str) -> c.ServerSpec:
    if kind == "bind":
        return bind_update_spec(work, port, a.workers, secret)
    if kind == "knot":
        return knot_update_spec(work, port, a.workers, secret, "0")
    if kind == "knot-journal":
        return knot_update_spec(work, port, a.workers, secret, "-1", "knot-journal")
    return xdnsd_update_spec(work, port, a.workers, secret)


# --------------------------------------------------------------------------- DNS client


class Client:
    """One socket (UDP or a persistent TCP connection) to a server; TSIG-signed exchanges."""

    def __init__(self, port: int, transport: str, timeout: float) -> None:
        self.port = port
        self.transport = transport
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.sock is None:
            if self.transport == "tcp":
                s = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.connect(("127.0.0.1", self.port))
            self.sock = s
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def _recv_exact(self, s: socket.socket, n: int, deadline: float) -> bytes:
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("tcp read timed out")
            s.settimeout(left)
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by server")
            buf += chunk
        return buf

    def exchange(self, q: dns.message.Message, wire: bytes) -> dns.message.Message:
        """Send an already rendered (signed) message, return the verified answer."""
        return check_answer(q, self.exchange_raw(wire))

    def exchange_raw(self, wire: bytes) -> bytes:
        """Send a rendered message, return the wire of the answer with the same id."""
        s = self._connect()
        deadline = time.monotonic() + self.timeout
        try:
            if self.transport == "tcp":
                s.sendall(struct.pack("!H", len(wire)) + wire)
                while True:
                    (n,) = struct.unpack("!H", self._recv_exact(s, 2, deadline))
                    data = self._recv_exact(s, n, deadline)
                    if data[:2] == wire[:2]:
                        break
            else:
                s.send(wire)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("no answer")
                    s.settimeout(left)
                    data = s.recv(65535)
                    if data[:2] == wire[:2]:  # a late answer to an earlier query: skip it
                        break
        except (OSError, TimeoutError, ConnectionError, struct.error):
            self.close()  # a TCP stream in an unknown state is not reused
            raise
        return data


def check_answer(q: dns.message.Message, data: bytes) -> dns.message.Message:
    """Parse an answer, verifying its TSIG signature against the request's MAC."""
    r = dns.message.from_wire(data, keyring=q.keyring, request_mac=q.mac)
    if not q.is_response(r):
        raise ValueError("answer does not match the update")
    return r


def keyring_for(secret: str) -> dict[dns.name.Name, dns.tsig.Key]:
    kr: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
        {KEY_NAME + ".": (ALGORITHM, secret)}
    )
    return kr


def make_update(
    keyring: dict[dns.name.Name, dns.tsig.Key], adds: list[tuple[str, str]]
) -> tuple[dns.update.UpdateMessage, bytes]:
    upd = dns.update.UpdateMessage(ORIGIN, keyring=keyring)
    for name, txt in adds:
        upd.add(name, 300, "TXT", txt)
    wire = upd.to_wire()  # signs; sets upd.mac for verifying the answer
    return upd, wire


def txt_for(name: str) -> str:
    return f'"xdnsd bench {name.split(".")[0]}"'


def soa_serial(port: int) -> int | None:
    q = dns.message.make_query(ORIGIN, "SOA")
    cl = Client(port, "udp", 2.0)
    try:
        r = cl.exchange(q, q.to_wire())
        for rr in r.answer:
            if rr.rdtype == dns.rdatatype.SOA:
                return int(rr[0].serial)
    except Exception:
        return None
    finally:
        cl.close()
    return None


def serial_delta(before: int | None, after: int | None) -> int | None:
    if before is None or after is None:
        return None
    return (after - before) % (1 << 32)


# --------------------------------------------------------------------------- one load run


@dataclass
class ClientStats:
    fail: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    # (name, update, answer wire): answers are parsed and TSIG-verified after the run, so the
    # Python client spends its CPU (shared with the server) on the exchange only
    answers: list[tuple[str, dns.message.Message, bytes]] = field(default_factory=list)
    t_end: float = 0.0

    def error(self, kind: str) -> None:
        self.fail += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1


def client_thread(
    names: list[str],
    port: int,
    a: argparse.Namespace,
    keyring: dict[dns.name.Name, dns.tsig.Key],
    ready: threading.Barrier,
    go: threading.Barrier,
    out: ClientStats,
) -> None:
    cl = Client(port, a.transport, a.timeout)
    try:
        # rendered and TSIG-signed before the start (the signatures' time stays well within
        # the 300 s fudge: --seconds is capped)
        msgs = [make_update(keyring, [(name, txt_for(name))]) for name in names]
        try:
            ready.wait(timeout=120)
            go.wait(timeout=120)
        except threading.BrokenBarrierError:
            return
        deadline = time.monotonic() + a.seconds
        for name, (q, wire) in zip(names, msgs, strict=True):
            if time.monotonic() >= deadline:
                break
            t0 = time.perf_counter()
            try:
                data = cl.exchange_raw(wire)
            except Exception as e:
                out.error(type(e).__name__)
                continue
            out.latencies.append(time.perf_counter() - t0)
            out.answers.append((name, q, data))
    finally:
        out.t_end = time.perf_counter()
        cl.close()


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def run_load(
    sp: c.ServerProcess,
    port: int,
    clients: int,
    tag: str,
    a: argparse.Namespace,
    keyring: dict[dns.name.Name, dns.tsig.Key],
) -> dict[str, Any]:
    """`clients` threads, each its own socket, `a.count` updates in all, `a.seconds` at most."""
    per: list[list[str]] = [[] for _ in range(clients)]
    for i in range(a.count):
        per[i % clients].append(f"{tag}-c{i % clients}-u{i // clients}.{ORIGIN}")
    stats = [ClientStats() for _ in range(clients)]
    ready = threading.Barrier(clients + 1)  # every client has rendered its updates
    go = threading.Barrier(clients + 1)  # the readings before the run are taken
    threads = [
        threading.Thread(
            target=client_thread,
            args=(per[k], port, a, keyring, ready, go, stats[k]),
            daemon=True,
            name=f"upd-client-{k}",
        )
        for k in range(clients)
    ]
    for t in threads:
        t.start()
    serial0 = soa_serial(port)
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        go.abort()
        raise
    srv0 = c.cpu_seconds(sp.pid)
    all0, _ = c.cpu_busy(None)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    go.wait(timeout=30)
    t_start = time.perf_counter()
    for t in threads:
        t.join(timeout=a.seconds + a.timeout + 30)
    t_stop = time.perf_counter()
    hung = sum(1 for t in threads if t.is_alive())
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    all1, _ = c.cpu_busy(None)
    srv1 = c.cpu_seconds(sp.pid)
    serial1 = soa_serial(port)
    elapsed = max((s.t_end for s in stats), default=t_stop) - t_start
    if hung:
        elapsed = t_stop - t_start
    lat = sorted(x for s in stats for x in s.latencies)
    # now (outside the measurement) parse every answer, verify its TSIG, check NOERROR
    acked: list[str] = []
    for s in stats:
        for name, q, data in s.answers:
            try:
                rc = check_answer(q, data).rcode()
            except Exception as e:
                s.error(type(e).__name__)
                continue
            if rc == dns.rcode.NOERROR:
                acked.append(name)
            else:
                s.error(dns.rcode.to_text(rc))
    ok = len(acked)
    fail = sum(s.fail for s in stats)
    errors: dict[str, int] = {}
    for s in stats:
        for k, v in s.errors.items():
            errors[k] = errors.get(k, 0) + v
    srv_cpu = srv1 - srv0
    cli_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    other = (all1 - all0) - srv_cpu - cli_cpu
    return {
        "clients": clients,
        "tag": tag,
        "sent": ok + fail,
        "ok": ok,
        "failures": fail,
        "errors": errors,
        "hung_clients": hung,
        "elapsed_s": round(elapsed, 3),
        "stopped_by": "count" if ok + fail >= a.count else "time",
        "updates_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_p50_ms": round(percentile(lat, 50) * 1e3, 3),
        "latency_p99_ms": round(percentile(lat, 99) * 1e3, 3),
        "latency_mean_ms": round(statistics.fmean(lat) * 1e3, 3) if lat else 0.0,
        "latency_max_ms": round(lat[-1] * 1e3, 3) if lat else 0.0,
        "serial_before": serial0,
        "serial_after": serial1,
        "zone_versions": serial_delta(serial0, serial1),
        "server_cpu_s": round(srv_cpu, 2),
        "server_cpu_ms_per_update": round(1e3 * srv_cpu / ok, 3) if ok else None,
        "client_cpu_s": round(cli_cpu, 2),
        "other_cpu_s": round(other, 2),
        "noisy": other > 0.10 * elapsed * (os.cpu_count() or 1),
        "_acked": acked,
    }


# --------------------------------------------------------------------------- verification


def verify(port: int, names: list[str], work: str, label: str, sample: int) -> dict[str, Any]:
    """Every acknowledged name must exist (dnsperf -n 1, all NOERROR); a sample must hold the
    exact TXT data (dnspython)."""
    out: dict[str, Any] = {"acked": len(names)}
    if not names:
        out["ok"] = True
        return out
    if shutil.which("dnsperf"):
        path = os.path.join(work, f"verify-{label}.txt")
        with open(path, "w") as f:
            for n in names:
                f.write(f"{n} TXT\n")
        p = c.run_dnsperf(port, path, 120, 1, 20, max_runs=1)
        out["queried"] = p.completed
        out["present"] = p.rcodes.get("NOERROR", 0)
        out["nxdomain"] = p.rcodes.get("NXDOMAIN", 0)
        out["lost"] = p.lost
        out["rcodes"] = p.rcodes
        if not p.ok:
            out["error"] = p.error
    else:
        present = 0
        deadline = time.monotonic() + 120
        cl = Client(port, "udp", 1.0)
        for n in names:
            if time.monotonic() > deadline:
                break
            q = dns.message.make_query(n, "TXT")
            with contextlib.suppress(Exception):
                if cl.exchange(q, q.to_wire()).rcode() == dns.rcode.NOERROR:
                    present += 1
        cl.close()
        out["present"] = present
    rnd = random.Random(len(names))
    pick = rnd.sample(names, min(sample, len(names)))
    bad = []
    cl = Client(port, "udp", 2.0)
    for n in pick:
        q = dns.message.make_query(n, "TXT")
        try:
            r = cl.exchange(q, q.to_wire())
            got = [rd.to_text() for rr in r.answer if rr.rdtype == dns.rdatatype.TXT for rd in rr]
        except Exception as e:
            got = [f"{type(e).__name__}"]
        if got != [txt_for(n)]:
            bad.append({"name": n, "got": got})
    cl.close()
    out["sample_checked"] = len(pick)
    out["sample_bad"] = len(bad)
    out["sample_bad_examples"] = bad[:3]
    out["ok"] = out.get("present") == len(names) and not bad
    return out


# --------------------------------------------------------------------------- big update


def big_update(
    port: int,
    n: int,
    tag: str,
    keyring: dict[dns.name.Name, dns.tsig.Key],
    timeout: float,
) -> dict[str, Any]:
    names = [f"{tag}-{i}.{ORIGIN}" for i in range(n)]
    out: dict[str, Any] = {"records": n}
    try:
        q, wire = make_update(keyring, [(x, txt_for(x)) for x in names])
    except Exception as e:  # e.g. more records than fit in a 64 KB message
        out.update(seconds=0.0, rcode=None, error=f"{type(e).__name__}: {e}", _names=[])
        return out
    out["message_bytes"] = len(wire)
    serial0 = soa_serial(port)
    cl = Client(port, "tcp", timeout)
    t0 = time.perf_counter()
    try:
        r = cl.exchange(q, wire)
        out["seconds"] = round(time.perf_counter() - t0, 4)
        out["rcode"] = dns.rcode.to_text(r.rcode())
    except Exception as e:
        out["seconds"] = round(time.perf_counter() - t0, 4)
        out["rcode"] = None
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        cl.close()
    out["zone_versions"] = serial_delta(serial0, soa_serial(port))
    out["_names"] = names if out["rcode"] == "NOERROR" else []
    return out


# --------------------------------------------------------------------------- syscalls


SYNC_CALLS = ("fsync", "fdatasync", "msync", "sync_file_range", "syncfs", "sync")
# openat: to know which descriptors are O_DSYNC / O_SYNC (LMDB writes its meta page through
# one); a positional write to such a descriptor is a synchronous write, counted apart
WRITE_CALLS = ("pwrite64", "pwritev", "pwritev2")
_LINE_RE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_START_RE = re.compile(r"^(\w+)\((.*)$")
_RESUMED_RE = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RESULT_RE = re.compile(r"\)\s+=\s+(-?\d+)")


def parse_strace(path: str, t0: float, t1: float, t2: float) -> dict[str, Any]:
    """Count sync calls and writes to O_(D)SYNC descriptors started in [t0, t1] and (t1, t2]."""
    pending: dict[tuple[str, str], str] = {}
    dsync_fds: set[int] = set()
    during: dict[str, int] = {}
    after: dict[str, int] = {}

    def note(call: str, ts: float) -> None:
        if t0 <= ts <= t1:
            during[call] = during.get(call, 0) + 1
        elif t1 < ts <= t2:
            after[call] = after.get(call, 0) + 1

    with open(path, errors="replace") as f:
        for line in f:
            m = _LINE_RE.match(line)
            if not m:
                continue
            pid, ts, rest = m.group(1), float(m.group(2)), m.group(3)
            r = _RESUMED_RE.match(rest)
            if r:
                call, text = r.group(1), pending.pop((pid, r.group(1)), "") + r.group(2)
            else:
                st = _START_RE.match(rest)
                if not st:
                    continue
                call, text = st.group(1), st.group(2)
                if call in SYNC_CALLS:
                    note(call, ts)
                elif call in WRITE_CALLS:
                    fd = text.split(",", 1)[0].strip()
                    if fd.isdigit() and int(fd) in dsync_fds:
                        note("O_DSYNC " + call, ts)
                if text.endswith("<unfinished ...>"):
                    pending[(pid, call)] = text[: -len("<unfinished ...>")]
                    continue
            if call == "openat" and ("O_DSYNC" in text or "O_SYNC" in text):
                res = _RESULT_RE.search(text)
                if res and int(res.group(1)) >= 0:
                    dsync_fds.add(int(res.group(1)))
    return {"during": during, "after": after}


def strace_syncs(
    kind: str,
    work: str,
    a: argparse.Namespace,
    secret: str,
    keyring: dict[dns.name.Name, dns.tsig.Key],
    conc_clients: int,
) -> dict[str, Any]:
    """A fresh instance under `strace -f`: sync calls made while K sequential updates ran, then
    while 4K updates from `conc_clients` concurrent clients ran (group commit shows there)."""
    port = c.free_port()
    spec = make_spec(kind, os.path.join(work, "strace"), port, a, secret)
    trace = os.path.join(spec.cwd, "strace.out")
    spec.cmd = [
        "strace",
        "-f",
        "-qq",
        "-ttt",
        "-e",
        "trace=" + ",".join((*SYNC_CALLS, *WRITE_CALLS, "openat")),
        "-o",
        trace,
        *spec.cmd,
    ]
    spec.start_timeout = max(spec.start_timeout, 120.0)
    sp = c.ServerProcess(spec)
    out: dict[str, Any] = {"updates": a.strace_updates}
    ok = 0
    try:
        sp.start()
        sp.wait_ready(PROBE)
        # a few untimed updates first (journal files created, first flush done)
        cl = Client(port, "udp", a.timeout)
        for i in range(5):
            name = f"st-w{i}.{ORIGIN}"
            q, wire = make_update(keyring, [(name, txt_for(name))])
            with contextlib.suppress(Exception):
                cl.exchange(q, wire)
        time.sleep(1.0)  # let a zone-file flush after the warm-up settle
        t0 = time.time()
        for i in range(a.strace_updates):
            name = f"st-{i}.{ORIGIN}"
            q, wire = make_update(keyring, [(name, txt_for(name))])
            with contextlib.suppress(Exception):
                if cl.exchange(q, wire).rcode() == dns.rcode.NOERROR:
                    ok += 1
        t1 = time.time()
        time.sleep(0.5)  # work the server does right after the last answer counts apart
        t2 = time.time()
        cl.close()
        conc: dict[str, Any] | None = None
        if conc_clients > 1:
            ca = argparse.Namespace(**{**vars(a), "count": 4 * a.strace_updates, "seconds": 60.0})
            t3 = time.time()
            conc = run_load(sp, port, conc_clients, "stc", ca, keyring)
            t4 = time.time()
    except RuntimeError as e:
        out["error"] = str(e)[-500:]
        return out
    finally:
        sp.stop()
    out["ok"] = ok
    try:
        counts = parse_strace(trace, t0, t1, t2)
    except OSError as e:
        out["error"] = f"no strace output: {e}"
        return out
    during = counts["during"]
    out["calls"] = during
    out["calls_in_0.5s_after"] = counts["after"]
    syncs = sum(v for k, v in during.items() if k in SYNC_CALLS)
    dsync = sum(v for k, v in during.items() if k.startswith("O_DSYNC"))
    out["syncs_per_update"] = round(syncs / ok, 2) if ok else None
    out["dsync_writes_per_update"] = round(dsync / ok, 2) if ok else None
    if conc is not None:
        cc = parse_strace(trace, t3, t4, t4)["during"]
        n = conc["ok"]
        out["concurrent"] = {
            "clients": conc_clients,
            "ok": n,
            "failures": conc["failures"],
            "serial+": conc["zone_versions"],
            "calls": cc,
            "syncs_per_update": (
                round(sum(v for k, v in cc.items() if k in SYNC_CALLS) / n, 2) if n else None
            ),
        }
    return out


# --------------------------------------------------------------------------- per server


def fsync_probe(directory: str, n: int = 50) -> dict[str, float]:
    """fdatasync latency of a small append on the file system the servers write to."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    ts = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 256)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            ts.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    ts.sort()
    return {
        "p50_ms": round(percentile(ts, 50) * 1e3, 3),
        "p99_ms": round(percentile(ts, 99) * 1e3, 3),
    }


def storage_info(path: str) -> dict[str, Any]:
    """File system under `path`: device, type, mount options, and (ext4) whether it journals."""
    best: list[str] = []
    real = os.path.realpath(path)
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if len(p) < 4:
                continue
            mnt = p[1]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[1] if best else ""):
                best = p
    if not best:
        return {}
    out: dict[str, Any] = {"device": best[0], "mount": best[1], "fstype": best[2]}
    out["options"] = best[3]
    if best[2] == "ext4":
        dev = os.path.basename(best[0])
        try:
            out["ext4_journal"] = any(e.startswith(dev + "-") for e in os.listdir("/proc/fs/jbd2"))
        except OSError:
            out["ext4_journal"] = False
    return out


def measure(
    kind: str,
    work: str,
    a: argparse.Namespace,
    secret: str,
    keyring: dict[dns.name.Name, dns.tsig.Key],
    client_counts: list[int],
) -> dict[str, Any]:
    port = c.free_port()
    row: dict[str, Any] = {
        "server": kind,
        "port": port,
        "workers": a.workers,
        "transport": a.transport,
        "available": False,
        "durability": DURABILITY[kind],
    }
    if not c.binary_available(BINARY[kind]):
        row["reason"] = "binary not installed"
        return row
    spec = make_spec(kind, work, port, a, secret)
    row["config_file"] = spec.cmd[-1] if kind != "bind" else spec.cmd[4]
    sp = c.ServerProcess(spec)
    runs: list[dict[str, Any]] = []
    row["runs"] = runs
    try:
        sp.start()
        try:
            row["startup_s"] = round(sp.wait_ready(PROBE), 3)
        except RuntimeError as e:
            row["reason"] = str(e)[-1500:]
            return row
        # does it take a signed update at all?
        q, wire = make_update(keyring, [(f"probe.{ORIGIN}", txt_for(f"probe.{ORIGIN}"))])
        cl = Client(port, "tcp", 5.0)
        try:
            r = cl.exchange(q, wire)
            if r.rcode() != dns.rcode.NOERROR:
                row["reason"] = f"update refused: {dns.rcode.to_text(r.rcode())}"
                return row
        except Exception as e:
            row["reason"] = f"update failed: {type(e).__name__}: {e}; log: {sp.log_tail(5)}"
            return row
        finally:
            cl.close()
        row["available"] = True
        if a.warmup > 0:
            wa = argparse.Namespace(**{**vars(a), "count": a.warmup, "seconds": 30.0})
            w = run_load(sp, port, 1, "warm", wa, keyring)
            row["warmup"] = {"ok": w["ok"], "failures": w["failures"]}
        for rep in range(a.repeat):
            for clients in client_counts:
                attempt = 0
                while True:
                    tag = f"r{rep}a{attempt}n{clients}"
                    label = f"{kind} {clients} client(s) run {rep + 1}/{a.repeat}"
                    busy = None
                    if a.wait_quiet > 0:
                        busy = c.wait_quiet(a.wait_quiet)
                        if busy > 0.10:
                            c.eprint(f"[warn] machine {busy:.0%} busy before {label}: noisy")
                    res = run_load(sp, port, clients, tag, a, keyring)
                    res["background_busy_before"] = round(busy, 3) if busy is not None else None
                    res["repeat"] = rep
                    acked = res.pop("_acked")
                    res["verify"] = verify(port, acked, work, f"{kind}-{tag}", a.sample)
                    runs.append(res)
                    v = res["verify"]
                    c.eprint(
                        f"[run] {label}: {res['updates_per_s']:,.0f} upd/s, "
                        f"p50 {res['latency_p50_ms']:.2f} ms, p99 {res['latency_p99_ms']:.2f} ms, "
                        f"ok {res['ok']}, fail {res['failures']} {res['errors'] or ''}, "
                        f"versions {res['zone_versions']}, srv cpu {res['server_cpu_s']} s, "
                        f"verified {v.get('present')}/{v['acked']}"
                        + (" NOISY" if res["noisy"] else "")
                    )
                    if not sp.alive():
                        row["reason"] = f"server died: {sp.log_tail()}"
                        return row
                    if res["noisy"] and attempt < a.max_retries:
                        attempt += 1
                        c.eprint(f"[warn] other load {res['other_cpu_s']} CPU-s; retrying")
                        continue
                    break
        if a.big > 0:
            bigs = []
            for rep in range(a.repeat):
                if a.wait_quiet > 0:
                    c.wait_quiet(a.wait_quiet)
                b = big_update(port, a.big, f"big{rep}", keyring, max(a.timeout, 60.0))
                names = b.pop("_names")
                b["verify"] = verify(port, names, work, f"{kind}-big{rep}", a.sample)
                c.eprint(
                    f"[big] {kind}: {b['records']} records in one update: {b['seconds']:.3f} s, "
                    f"{b['rcode'] or b.get('error')}, verified {b['verify'].get('present')}"
                    f"/{b['verify']['acked']}"
                )
                bigs.append(b)
            row["big"] = bigs
        row["server_alive_after"] = sp.alive()
        row["journal_files"] = journal_sizes(spec.cwd)
        return row
    finally:
        sp.stop()


def journal_sizes(directory: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for root, _dirs, files in os.walk(directory):
        for fn in files:
            if fn.endswith((".jnl", ".mdb", ".zone")):
                p = os.path.join(root, fn)
                with contextlib.suppress(OSError):
                    out[os.path.relpath(p, directory)] = os.path.getsize(p)
    return out


# --------------------------------------------------------------------------- report


def best_runs(row: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per client count: the best clean run (all runs noisy: the best noisy one), plus min."""
    out: dict[int, dict[str, Any]] = {}
    by: dict[int, list[dict[str, Any]]] = {}
    for r in row.get("runs", []):
        by.setdefault(r["clients"], []).append(r)
    for k, rs in by.items():
        clean = [r for r in rs if not r["noisy"]] or rs
        best = dict(max(clean, key=lambda r: r["updates_per_s"]))
        best["all_noisy"] = all(r["noisy"] for r in rs)
        best["min_updates_per_s"] = min(r["updates_per_s"] for r in clean)
        best["runs_total"] = len(rs)
        best["failures_all_runs"] = sum(r["failures"] for r in rs)
        best["verified_all_runs"] = all(r["verify"].get("ok") for r in rs)
        out[k] = best
    return out


def fmt_table(hdr: list[str], body: list[list[str]], left: int = 2) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(hdr)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            x.ljust(widths[i]) if i < left else x.rjust(widths[i]) for i, x in enumerate(cells)
        )

    return "\n".join([line(hdr), "  ".join("-" * w for w in widths), *(line(b) for b in body)])


def report(rows: list[dict[str, Any]], client_counts: list[int]) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    hdr = [
        "server",
        "clients",
        "updates/s",
        "min",
        "p50 ms",
        "p99 ms",
        "ok",
        "fail(all)",
        "serial+",
        "srv CPU-ms/upd",
        "verified",
        "other CPU-s",
    ]
    body: list[list[str]] = []
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if not row.get("available"):
            reason = (row.get("reason") or "").splitlines()[0][:90] if row.get("reason") else ""
            body.append([row["server"], "-", "n/a", "", "", "", "", "", "", "", reason, ""])
            continue
        for k, b in sorted(best_runs(row).items()):
            best[(row["server"], k)] = b
            v = b["verify"]
            body.append(
                [
                    row["server"],
                    str(k) + ("*" if b["all_noisy"] else ""),
                    f"{b['updates_per_s']:,.0f}",
                    f"{b['min_updates_per_s']:,.0f}",
                    f"{b['latency_p50_ms']:.2f}",
                    f"{b['latency_p99_ms']:.2f}",
                    str(b["ok"]),
                    str(b["failures_all_runs"]),
                    "-" if b["zone_versions"] is None else str(b["zone_versions"]),
                    f"{b['server_cpu_ms_per_update']:.2f}"
                    if b.get("server_cpu_ms_per_update")
                    else "-",
                    f"{v.get('present')}/{v['acked']}"
                    + ("" if b["verified_all_runs"] else " FAIL"),
                    f"{max(0.0, b['other_cpu_s']):.2f}",
                ]
            )
    # the n/a reason goes in a wide column: keep the table narrow by printing it after
    na = [cells for cells in body if cells[2] == "n/a"]
    ok_body = [cells for cells in body if cells[2] != "n/a"]
    if ok_body:
        lines.append(fmt_table(hdr, ok_body))
    for cells in na:
        lines.append(f"{cells[0]}: not available: {cells[10]}")
    for row in rows:
        if row.get("available") and row.get("reason"):
            # e.g. the server died during a run: its rows above include the failed runs
            lines.append(f"{row['server']}: {' | '.join(row['reason'].splitlines()[-3:])[:300]}")
    if any(b["all_noisy"] for b in best.values()):
        lines.append("* = every run of this row had other load on the machine: suspect")

    ratios: dict[str, Any] = {}
    lines.append("")
    present = {r["server"] for r in rows}
    refs = [s for s in ("bind", "knot", "knot-journal") if s in present]
    for k in client_counts:
        x = best.get(("xdnsd", k))
        for ref in refs:
            y = best.get((ref, k))
            key = f"xdnsd/{ref} {k} client(s)"
            if x is None or y is None or not y["updates_per_s"] or not y["latency_p50_ms"]:
                ratios[key] = None
                lines.append(f"{key}: n/a")
                continue
            ratios[key] = {
                "updates_per_s": round(x["updates_per_s"] / y["updates_per_s"], 3),
                "latency_p50": round(x["latency_p50_ms"] / y["latency_p50_ms"], 3),
            }
            lines.append(
                f"{key}: updates/s x{ratios[key]['updates_per_s']:.2f}, "
                f"p50 latency x{ratios[key]['latency_p50']:.2f}"
            )

    bigs = [(r["server"], b) for r in rows if r.get("available") for b in r.get("big", [])]
    if bigs:
        lines.append("")
        lines.append(
            fmt_table(
                ["server", "records in 1 update (TCP)", "seconds", "rcode", "verified"],
                [
                    [
                        s,
                        str(b["records"]),
                        f"{b['seconds']:.3f}",
                        str(b["rcode"] or b.get("error", "")),
                        f"{b['verify'].get('present')}/{b['verify']['acked']}",
                    ]
                    for s, b in bigs
                ],
                left=1,
            )
        )
        xb = [b["seconds"] for s, b in bigs if s == "xdnsd" and b["rcode"] == "NOERROR"]
        for ref in refs:
            yb = [b["seconds"] for s, b in bigs if s == ref and b["rcode"] == "NOERROR"]
            if xb and yb:
                ratios[f"xdnsd/{ref} big update time"] = round(min(xb) / min(yb), 3)
                lines.append(f"xdnsd/{ref} big update time: x{min(xb) / min(yb):.2f}")
    return "\n".join(lines), ratios


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for k, cmd in (("knot", ["knotd", "-V"]), ("bind", ["named", "-v"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[k] = (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception as e:
            out[k] = str(e)
    try:
        p = subprocess.run(
            ["git", "-C", c.REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        out["xdnsd"] = "git " + p.stdout.strip()
    except Exception as e:
        out["xdnsd"] = str(e)
    import dns.version

    out["dnspython"] = dns.version.version
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="comma list of " + ",".join(ALL_SERVERS),
    )
    ap.add_argument("--clients", default="1,8", help="comma list of client counts (threads)")
    ap.add_argument("--count", type=int, default=2000, help="updates per run (all clients)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time limit of a run")
    ap.add_argument("--repeat", type=int, default=1, help="runs per client count")
    ap.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    ap.add_argument("--timeout", type=float, default=2.0, help="per-update answer timeout (s)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed updates first (0 = none)")
    ap.add_argument(
        "--big", type=int, default=1000, help="records in the one big update (0 = skip)"
    )
    ap.add_argument("--sample", type=int, default=50, help="names checked for exact TXT data")
    ap.add_argument(
        "--workers",
        type=int,
        default=2,
        help="server threads/processes (BIND -n, Knot udp/tcp-workers, xdnsd workers)",
    )
    ap.add_argument(
        "--strace-updates",
        type=int,
        default=40,
        help="updates sent to a separate instance under strace to count sync calls (0 = skip)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="before each run wait up to this long for an idle machine (0 = don't)",
    )
    ap.add_argument(
        "--max-retries", type=int, default=1, help="extra runs when a run was disturbed"
    )
    ap.add_argument("--tmp", default=None, help="work dir (default: a new temp dir, removed)")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument(
        "--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    )
    a = ap.parse_args(argv)

    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in servers:
        if s not in ALL_SERVERS:
            ap.error(f"unknown server {s}")
    try:
        client_counts = [int(x) for x in a.clients.split(",") if x.strip()]
    except ValueError:
        ap.error("--clients: comma list of integers")
    if not client_counts or min(client_counts) < 1 or max(client_counts) > 64:
        ap.error("--clients: 1..64")
    if a.count < 1 or not 0 < a.seconds <= 240:
        # updates are signed before the run starts: TSIG's time check allows 300 s
        ap.error("--count must be positive, --seconds in (0, 240]")
    if a.strace_updates and shutil.which("strace") is None:
        c.eprint("[warn] strace not installed: no sync-call counts")
        a.strace_updates = 0

    secret = base64.b64encode(os.urandom(32)).decode()
    keyring = keyring_for(secret)
    work = a.tmp or tempfile.mkdtemp(prefix="xdnsd-ubench-")
    os.makedirs(work, exist_ok=True)
    rows: list[dict[str, Any]] = []
    syncs: dict[str, Any] = {}
    fsync = fsync_probe(work)
    storage = storage_info(work)
    c.eprint(f"[host] fdatasync of a 256-byte append in {work}: {fsync}; {storage}")
    try:
        for kind in servers:
            c.eprint(f"[run] {kind} ...")
            row = measure(kind, os.path.join(work, kind), a, secret, keyring, client_counts)
            rows.append(row)
            if not row.get("available"):
                c.eprint(f"[run] {kind}: not available: {(row.get('reason') or '')[:300]}")
        if a.strace_updates > 0:
            for row in rows:
                if not row.get("available"):
                    continue
                kind = row["server"]
                syncs[kind] = strace_syncs(
                    kind, os.path.join(work, kind), a, secret, keyring, max(client_counts)
                )
                c.eprint(f"[strace] {kind}: {syncs[kind]}")
    finally:
        if not a.keep_tmp and not a.tmp:
            shutil.rmtree(work, ignore_errors=True)

    table, ratios = report(rows, client_counts)
    print()
    print(
        f"zone {ORIGIN} ({len(ZONE_TEXT.splitlines()) - 2} records), TSIG {ALGORITHM}, "
        f"1 TXT record added per update over {a.transport}, each client waits for its answer; "
        f"runs of --count {a.count} updates / --seconds {a.seconds:g}, "
        f"{a.workers} server workers, nothing pinned ({os.cpu_count()} CPUs shared with "
        f"the client threads)"
    )
    fs = storage.get("fstype", "?")
    if "ext4_journal" in storage:
        fs += " with journal" if storage["ext4_journal"] else " WITHOUT journal"
    print(
        f"storage: {work} on {storage.get('device', '?')} ({fs}), fdatasync of a small append "
        f"p50 {fsync['p50_ms']} ms / p99 {fsync['p99_ms']} ms"
    )
    print(table)
    print()
    print(
        "ok = NOERROR answers in the run shown; fail(all) = failures over all runs of the row; "
        "serial+ = SOA serial increase during the run (BIND and xdnsd: +1 per update; Knot: +1 "
        "per zone update, i.e. per group of queued updates); verified = acknowledged names "
        "found (NOERROR) afterwards / acknowledged"
    )
    print("durability as configured:")
    for row in rows:
        k = row["server"]
        s = syncs.get(k)
        extra = ""
        if s and s.get("syncs_per_update") is not None:
            extra = (
                f" Measured (strace -f, {s['ok']} sequential updates): per update "
                f"{s['syncs_per_update']} fsync/fdatasync + {s['dsync_writes_per_update']} "
                f"writes to O_DSYNC files {s['calls']}."
            )
            cc = s.get("concurrent")
            if cc and cc.get("syncs_per_update") is not None:
                extra += (
                    f" With {cc['clients']} concurrent clients ({cc['ok']} updates): "
                    f"{cc['syncs_per_update']} fsync/fdatasync per update {cc['calls']}."
                )
        elif s:
            extra = f" strace: {s.get('error', 'no data')}"
        print(f"  {k}: {DURABILITY[k]}{extra}")

    os.makedirs(a.results, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(a.results, f"update-{stamp}.json")
    with open(path, "w") as f:
        json.dump(
            {
                "benchmark": "update",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": {
                    "cpus": os.cpu_count(),
                    "kernel": platform.release(),
                    "python": platform.python_version(),
                    "fdatasync": fsync,
                    "storage": storage,
                },
                "versions": versions(),
                "settings": {k: v for k, v in vars(a).items() if k != "tmp"},
                "zone": ZONE_TEXT,
                "rows": rows,
                "best": {
                    f"{r['server']}/{k}": {kk: vv for kk, vv in b.items() if kk != "verify"}
                    for r in rows
                    if r.get("available")
                    for k, b in best_runs(r).items()
                },
                "ratios": ratios,
                "syscalls": syncs,
            },
            f,
            indent=2,
        )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
