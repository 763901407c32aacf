#!/usr/bin/env python3
"""Time from an update committed at xdnsd to the change served by a real BIND secondary.

xdnsd (primary, the zone's ``secondaries`` point at BIND, NOTIFY signed with a TSIG key) and
BIND 9 (``type secondary``, pulling with the same key) run on loopback ports.  Each round sends
one update with the real ``nsupdate``; the clock starts when nsupdate returns (the commit is
acknowledged, so on disk) and stops when BIND answers the new SOA serial (polled every 2 ms).
BIND often has the change before nsupdate's process has exited, so the time from nsupdate's
start (its process start-up, about 45 ms, included) is printed too: the truth lies between.
Between them: xdnsd's NOTIFY, BIND's SOA check, an IXFR, BIND applying it.

    .venv/bin/python bench/run_notify_bench.py [--rounds 20]

Loopback only; every wait is bounded (``--timeout`` per round).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _common import free_port  # noqa: E402

SECRET = "YmVuY2gtbm90aWZ5LWtleSwgMzIgb2N0ZXRzIGxvbmch"
ZONE = "example.test"


def serial_of(sock: socket.socket, port: int) -> int | None:
    """The SOA serial BIND answers, or None (no answer yet / not loaded)."""
    sock.sendto(dns.message.make_query(ZONE, "SOA").to_wire(), ("127.0.0.1", port))
    try:
        response = dns.message.from_wire(sock.recv(4096))
    except (TimeoutError, dns.exception.DNSException):
        return None
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per round at most")
    args = ap.parse_args(argv)
    named = shutil.which("named") or "/usr/sbin/named"
    nsupdate = shutil.which("nsupdate") or "/usr/bin/nsupdate"
    work = Path(tempfile.mkdtemp(prefix="xdnsd-nbench-"))
    xport, bport = free_port(), free_port()
    (work / "zone").write_text(
        "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.1\n"
    )
    (work / "xdnsd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1:{xport}"]\ndata_dir = "{work}/var"\n[node]\nid = "nb"\n'
        f'[keys.bench]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
        f'[[zones]]\nname = "{ZONE}"\nfile = "{work}/zone"\n'
        'update_policy = ["grant bench zonesub ANY"]\nallow_transfer = ["key bench"]\n'
        f'secondaries = ["127.0.0.1:{bport}"]\nnotify_key = "bench"\n'
    )
    bind = work / "bind"
    bind.mkdir()
    (bind / "named.conf").write_text(
        f'key "bench" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'
        f'options {{ directory "{bind}"; pid-file "{bind}/named.pid"; '
        f'session-keyfile "{bind}/s.key";\n  listen-on port {bport} {{ 127.0.0.1; }}; '
        "listen-on-v6 { none; }; recursion no; dnssec-validation no; notify no;\n"
        # BIND queues every NOTIFY-triggered SOA check through a rate limiter; at the default
        # serial-query-rate 20 it ticks every 500 ms (10 per tick), so a NOTIFY arriving within
        # 500 ms of the previous SOA check waits for the next tick (~450 ms) - every other round
        # here.  1000/s makes the tick 10 ms: we measure xdnsd's path, not that queue.
        "  serial-query-rate 1000; };\n"
        "controls { };\n"
        f'zone "{ZONE}" {{ type secondary; file "{bind}/zone.db";\n'
        f'  primaries {{ 127.0.0.1 port {xport} key "bench"; }};\n'
        "  allow-notify { 127.0.0.1; }; };\n"
    )
    logs = [open(work / "xdnsd.log", "w"), open(bind / "named.log", "w")]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "xdnsd",
                "serve",
                "--config",
                str(work / "xdnsd.toml"),
            ],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    ]
    delays: list[float] = []
    from_launch: list[float] = []
    try:
        time.sleep(1.0)
        procs.append(
            subprocess.Popen(
                [named, "-g", "-c", str(bind / "named.conf")],
                stdout=logs[1],
                stderr=subprocess.STDOUT,
            )
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.05)
        deadline = time.monotonic() + 30
        while serial_of(sock, bport) != 1:
            if time.monotonic() > deadline:
                print("BIND did not load the zone:\n" + (bind / "named.log").read_text())
                return 1
            time.sleep(0.05)
        for i in range(args.rounds):
            script = (
                f"server 127.0.0.1 {xport}\nzone {ZONE}\n"
                f"update add r{i}.{ZONE} 300 A 192.0.2.{i % 250 + 1}\nsend\n"
            )
            launched = time.monotonic()
            done = subprocess.run(
                [nsupdate, "-y", f"hmac-sha256:bench:{SECRET}"],
                input=script,
                text=True,
                capture_output=True,
                timeout=30,
            )
            if done.returncode != 0:
                print(f"nsupdate failed: {done.stderr}")
                return 1
            started = time.monotonic()
            while serial_of(sock, bport) != 2 + i:
                if time.monotonic() - started > args.timeout:
                    print(f"round {i}: BIND did not get serial {2 + i} in {args.timeout}s")
                    return 1
                time.sleep(0.002)
            served = time.monotonic()
            delays.append(served - started)
            from_launch.append(served - launched)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
    ms = sorted(d * 1000 for d in delays)
    whole = sorted(d * 1000 for d in from_launch)
    result = {
        "rounds": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
        "min_ms": round(ms[0], 1),
        "delays_ms": [round(x, 1) for x in ms],
        "from_nsupdate_start_median_ms": round(statistics.median(whole), 1),
        "from_nsupdate_start_max_ms": round(whole[-1], 1),
    }
    print(
        f"commit (nsupdate answered) -> served by the BIND secondary, {len(ms)} rounds: "
        f"median {result['median_ms']} ms, p90 {result['p90_ms']} ms, "
        f"min {result['min_ms']} ms, max {result['max_ms']} ms (goal: median < 100 ms)\n"
        f"from nsupdate's start (its own start-up, TSIG and the commit included): median "
        f"{result['from_nsupdate_start_median_ms']} ms, "
        f"max {result['from_nsupdate_start_max_ms']} ms"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"notify-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path}")
    if not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
