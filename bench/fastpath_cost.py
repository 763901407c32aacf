"""What the fast path costs per query, and what its invalidation check adds.

Runs the real ``QueryAnswerer`` of one worker in-process (no sockets) on the demo zone:

* hit, lowercase question (one slice, one dict lookup, one generation read);
* hit, mixed-case question (key with the name lowercased, question patched in);
* the generation check alone (the shared-memory read and compare on every hit);
* a miss (the answer engine: dnspython parse, LMDB snapshot, render).

Usage: .venv/bin/python bench/fastpath_cost.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xdnsd.server.answer import ServerIdentity  # noqa: E402
from xdnsd.server.fastpath import QueryAnswerer  # noqa: E402
from xdnsd.store import Store  # noqa: E402
from xdnsd.zonefile import create_changeset, parse_zone_file  # noqa: E402


def per_call_ns(fn: Callable[[], object], seconds: float) -> float:
    calls = 0
    batch = 10_000
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    zone = dns.name.from_text("example.test.")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, "bench")
        records = parse_zone_file(ROOT / "conf" / "zones" / "example.test.zone", zone)
        store.commit(create_changeset(zone, records, "bench"))
        answerer = QueryAnswerer(store, ServerIdentity())
        lower = dns.message.make_query("www.example.test", "A", use_edns=0).to_wire()
        mixed = dns.message.make_query("WwW.ExAmPlE.TeSt", "A", use_edns=0).to_wire()
        answerer.udp(lower)  # fill the cache
        assert answerer.udp(lower) is not None
        generations = store.generations.buffer
        unpack = struct.Struct("<Q").unpack_from
        generation = store.generations.get(1)

        def check() -> bool:
            return bool(unpack(generations, 8)[0] == generation)

        def miss() -> object:
            answerer.clear()
            return answerer.udp(lower)

        rows = [
            ("hit, lowercase question", per_call_ns(lambda: answerer.udp(lower), args.seconds)),
            ("hit, mixed-case question", per_call_ns(lambda: answerer.udp(mixed), args.seconds)),
            ("generation check alone", per_call_ns(check, args.seconds)),
            ("miss (answer engine)", per_call_ns(miss, args.seconds)),
        ]
        store.close()
    print(f"{'path':28} {'ns/query':>10} {'queries/s (1 core)':>20}")
    for name, ns in rows:
        print(f"{name:28} {ns:10.0f} {1e9 / ns:20,.0f}")
    hit = rows[0][1]
    print(f"invalidation check: {rows[2][1]:.0f} ns = {rows[2][1] / hit:.0%} of a lowercase hit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
