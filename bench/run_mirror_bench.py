#!/usr/bin/env python3
"""Mirroring a zone to Route 53 (moto's server) and Azure DNS (the tests' ARM emulator), on
loopback, through a real ``xdnsd serve``:

1. **From scratch.** xdnsd starts with a zone of ``--records`` A records and two targets:
   seconds from the server answering until the end of the run that pushed every record to
   each target (from ``xdnsd targets history``; the targets are counted after).  moto's server
   slows as a zone grows (each batch costs more than the one before), and shares the 2 cores
   with the emulator and xdnsd: the Route 53 figure is moto's as much as xdnsd's.
2. **Latency.** ``--count`` signed updates (dnspython over TCP), one at a time: for each, the
   time from xdnsd's answer until each target shows the new record.
3. **API calls per 1,000 changes.** One update with 1,000 new records: the API calls the run
   that pushed them made at each target (from ``xdnsd targets history``), against the minimum
   the providers' limits allow (Route 53: 1,000 records per batch; Azure: one record set per
   request).

    .venv/bin/python bench/run_mirror_bench.py [--records 10000] [--count 20]

Everything on 127.0.0.1; every wait is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.query
import dns.tsig
import dns.update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.fakes.azure import AzureDns  # noqa: E402
from tests.fakes.moto import MotoServer  # noqa: E402
from tests.harness import XdnsdProcess, free_port  # noqa: E402

SECRET = base64.b64encode(b"mirror bench tsig key, 32 bytes!").decode()
KEY = dns.tsig.Key("upd.", SECRET, dns.tsig.HMAC_SHA256)
HEAD = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"


def update(port: int, adds: list[tuple[str, str]]) -> float:
    message = dns.update.UpdateMessage("example.test")
    for name, address in adds:
        message.add(name, 300, "A", address)
    message.use_tsig(KEY)
    answer = dns.query.tcp(message, "127.0.0.1", port=port, timeout=30)
    if answer.rcode() != 0:
        raise RuntimeError(f"update refused: {answer.rcode()}")
    return time.monotonic()


class Targets:
    def __init__(self, moto: MotoServer, azure: AzureDns, zone_id: str) -> None:
        self.moto, self.azure, self.zone_id = moto, azure, zone_id
        self.r53: object = moto.client()

    def r53_count(self) -> int:
        count = 0
        pages = self.r53.get_paginator("list_resource_record_sets")  # type: ignore[attr-defined]
        for page in pages.paginate(HostedZoneId=self.zone_id):
            count += sum(
                len(s.get("ResourceRecords", []))
                for s in page["ResourceRecordSets"]
                if s["Type"] == "A"
            )
        return count

    def r53_has(self, name: str) -> bool:
        page = self.r53.list_resource_record_sets(  # type: ignore[attr-defined]
            HostedZoneId=self.zone_id, StartRecordName=name, StartRecordType="A", MaxItems="1"
        )
        sets = page["ResourceRecordSets"]
        return bool(sets) and sets[0]["Name"] == name

    def azure_count(self) -> int:
        return sum(
            len(s["properties"].get("ARecords", []))
            for (name, rdtype), s in self.azure.sets("example.test").items()
            if rdtype == "A"
        )

    def azure_has(self, name: str) -> bool:
        relative = name.removesuffix(".example.test.")
        return (relative, "A") in self.azure.sets("example.test")


def wait(check: object, timeout: float, step: float = 0.002) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise RuntimeError("timed out")
        time.sleep(step)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xdnsd-mirror-bench-"))
    moto = MotoServer(work / "moto.log")
    azure = AzureDns(work)
    proc = None
    results: dict[str, object] = {}
    try:
        zone_id = moto.create_zone("example.test.")
        azure.create_zone("example.test")
        targets = Targets(moto, azure, zone_id)
        zone = work / "example.test.zone"
        zone.write_text(
            HEAD
            + "".join(f"h{i} A 10.{i >> 16}.{(i >> 8) & 255}.{i & 255}\n" for i in range(a.records))
        )
        port = free_port()
        config = work / "xdnsd.toml"
        config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{port}"]\ndata_dir = "{work / "var"}"\n'
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f'[targets.r53]\nkind = "route53"\nhosted_zone_id = "{zone_id}"\n'
            f'endpoint_url = "{moto.url}"\naccess_key_id = "bench"\nsecret_access_key = "bench"\n'
            "reconcile_every = 3600\n"
            f'[targets.azure]\nkind = "azure"\nsubscription_id = "{azure.subscription}"\n'
            f'resource_group = "{azure.group}"\ntenant_id = "{azure.tenant}"\n'
            f'client_id = "{azure.client_id}"\nclient_secret = "{azure.client_secret}"\n'
            f'authority_host = "{azure.url}"\nbase_url = "{azure.url}"\n'
            f'ca_file = "{azure.ca_path}"\nreconcile_every = 3600\n'
            f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
            'update_policy = ["grant upd zonesub ANY"]\ntargets = ["r53", "azure"]\n'
        )
        proc = XdnsdProcess(config, port)
        proc.wait_ready("example.test", timeout=a.timeout)
        ready = time.time()
        want = a.records + 1  # and ns1
        done: dict[str, float] = {}
        while len(done) < 2:  # the end of the run that pushed them, from the target's history
            for k in ("r53", "azure"):
                for run in history(config, k):
                    if k not in done and int(str(run["pushed"])) >= want and not run["error"]:
                        done[k] = float(str(run["end"])) - ready
            if time.time() - ready > a.timeout:
                raise RuntimeError(f"not mirrored in {a.timeout} s: {done}\n{proc.log()[-2000:]}")
            time.sleep(1.0)
        if targets.r53_count() < want or targets.azure_count() < want:
            raise RuntimeError("a target does not hold every record")
        results["scratch_s"] = {k: round(v, 2) for k, v in done.items()}
        print(
            f"[scratch] {a.records:,} records mirrored: Route 53 {done['r53']:.2f} s, "
            f"Azure {done['azure']:.2f} s after the server answered",
            flush=True,
        )

        delays: dict[str, list[float]] = {"r53": [], "azure": []}
        for i in range(a.count):
            name = f"lat-{i}.example.test."
            answered = update(port, [(name, "192.0.2.7")])
            seen = {}
            while len(seen) < 2:
                now = time.monotonic()
                if "r53" not in seen and targets.r53_has(name):
                    seen["r53"] = now
                if "azure" not in seen and targets.azure_has(name):
                    seen["azure"] = now
                if now - answered > 60:
                    raise RuntimeError(f"{name} not mirrored in 60 s: {seen}")
                time.sleep(0.002)
            for k, t in seen.items():
                delays[k].append((t - answered) * 1000)
        for k, values in delays.items():
            values.sort()
            print(
                f"[latency] {k}: {a.count} updates: p50 {statistics.median(values):.0f} ms, "
                f"max {values[-1]:.0f} ms",
                flush=True,
            )
        results["latency_ms"] = {
            k: {"p50": round(statistics.median(v), 1), "max": round(v[-1], 1)}
            for k, v in delays.items()
        }

        before = {k: len(history(config, k)) for k in ("r53", "azure")}
        update(port, [(f"bulk-{i}.example.test.", "192.0.2.8") for i in range(1000)])
        wait(lambda: targets.r53_has("bulk-999.example.test."), a.timeout, 0.05)
        wait(lambda: targets.azure_has("bulk-999.example.test."), a.timeout, 0.05)
        wait(lambda: all(len(history(config, k)) > before[k] for k in before), 30, 0.1)
        calls = {}
        for k in ("r53", "azure"):
            runs = [r for r in history(config, k)[before[k] :] if r["pushed"]]
            calls[k] = sum(r["calls"] for r in runs)
        print(
            f"[calls] 1,000 new records in one update: Route 53 {calls['r53']} call(s) "
            f"(minimum 1), Azure {calls['azure']} (minimum 1,000)",
            flush=True,
        )
        results["calls_per_1000"] = calls
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        path = out / f"mirror-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2))
        print(f"results: {path}")
    finally:
        if proc is not None:
            proc.stop()
        azure.stop()
        moto.stop()
    return 0


def history(config: Path, target: str) -> list[dict[str, object]]:
    """The target's sync runs, read from the node's store (as ``xdnsd targets history``)."""
    from xdnsd.config import load_config
    from xdnsd.daemon import open_store

    store = open_store(load_config(config))
    try:
        doc = store.status(f"target-history/{target}") or {"runs": []}
    finally:
        store.close()
    return list(doc["runs"])


if __name__ == "__main__":
    sys.exit(main())
