#!/usr/bin/env python3
"""UDP query throughput of xdnsd against NSD, Knot and BIND, same zone, same query mix, one run.

For every server, in two modes:

* ``pinned``: 1 worker, the whole server process tree pinned to CPU 0 (``taskset -c 0``),
  dnsperf pinned to CPU 1. Measures QPS, latency, lost queries, and the server's own CPU time
  (utime+stime of every process in its session, from /proc/PID/stat) -> queries per CPU-second.
* ``multi``: 2 workers / threads (xdnsd ``workers = 2``, NSD ``server-count: 2``, Knot
  ``udp-workers: 2``, BIND ``-n 2``), nothing pinned, dnsperf competing for the same 2 cores.

Each measurement is preceded by a warm-up dnsperf pass (default 3 s) with the same settings, and
(once per server) a small answer check against the reference server (NSD) so a fast but wrong
server is noticed. Results: a table on stdout and JSON in bench/results/.

Usage:
  .venv/bin/python bench/run_query_bench.py [--names 100000] [--duration 15] [--clients 8]
        [--outstanding 500] [--servers nsd,knot,bind,xdnsd] [--modes pinned,multi]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c
import genzone

ALL_SERVERS = ["nsd", "knot", "bind", "xdnsd"]


# --------------------------------------------------------------------------- answer check


def _normalize(resp: Any) -> dict[str, Any]:
    import dns.flags
    import dns.rcode

    def section(rrsets: list, with_rdata: bool) -> list:
        out = []
        for rr in rrsets:
            item = [rr.name.to_text().lower(), dns.rdatatype.to_text(rr.rdtype)]
            if with_rdata:
                item.append(rr.ttl)
                item.append(sorted(r.to_text().lower() for r in rr))
            out.append(item)
        return sorted(out)

    import dns.rdatatype

    return {
        "rcode": dns.rcode.to_text(resp.rcode()),
        "aa": bool(resp.flags & dns.flags.AA),
        "tc": bool(resp.flags & dns.flags.TC),
        "answer": section(resp.answer, True),
        # authority: owner + type only (SOA for negative answers, NS for referrals)
        "authority": section(resp.authority, False),
    }


def rotated_copies(path: str, k: int) -> list[str]:
    """k copies of the query file, copy i starting at line i*n/k (copy 0 is the file itself)."""
    with open(path) as f:
        lines = f.readlines()
    out = [path]
    n = len(lines)
    for i in range(1, k):
        off = i * n // k
        p = f"{path}.rot{i}"
        with open(p, "w") as f:
            f.writelines(lines[off:])
            f.writelines(lines[:off])
        out.append(p)
    return out


def answer_sample(query_file: str, n: int, seed: int) -> list[tuple[str, str]]:
    with open(query_file) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    rnd = random.Random(seed + 99)
    pick = rnd.sample(lines, min(n, len(lines)))
    # always include a few fixed shapes
    fixed = [
        ["bench.test.", "SOA"],
        ["bench.test.", "NS"],
        ["bench.test.", "MX"],
        ["nonexistent.bench.test.", "A"],
        ["foo.wild.bench.test.", "TXT"],
        ["wild.bench.test.", "A"],
    ]
    return [(a, b) for a, b in fixed + pick]


def collect_answers(port: int, sample: list[tuple[str, str]]) -> list[dict[str, Any]]:
    import dns.flags
    import dns.message
    import dns.query

    out = []
    for name, qtype in sample:
        q = dns.message.make_query(name, qtype)
        q.flags |= dns.flags.RD  # like dnsperf
        try:
            r = dns.query.udp(q, "127.0.0.1", port=port, timeout=2.0)
            out.append(_normalize(r))
        except Exception as e:
            out.append({"error": f"{type(e).__name__}: {e}"})
    return out


def compare_answers(
    sample: list[tuple[str, str]], ref: list[dict], other: list[dict], max_examples: int = 8
) -> dict[str, Any]:
    mismatches = []
    for (name, qtype), a, b in zip(sample, ref, other, strict=False):
        if a != b:
            diff = {
                k: {"ref": a.get(k), "got": b.get(k)}
                for k in set(a) | set(b)
                if a.get(k) != b.get(k)
            }
            mismatches.append({"query": f"{name} {qtype}", "diff": diff})
    return {
        "checked": len(sample),
        "mismatches": len(mismatches),
        "examples": mismatches[:max_examples],
    }


# --------------------------------------------------------------------------- one measurement


def one_run(
    sp: c.ServerProcess,
    port: int,
    perf_cpus: str | None,
    query_file: str,
    a: argparse.Namespace,
    label: str,
) -> dict[str, Any]:
    """One timed dnsperf run against a started, warmed-up server."""
    out: dict[str, Any] = {"background_busy_before": None}
    if a.wait_quiet > 0:
        # the server is idle now: anything busy is someone else's load (noise)
        busy = c.wait_quiet(a.wait_quiet)
        out["background_busy_before"] = round(busy, 3)
        if busy > 0.10:
            c.eprint(f"[warn] machine {busy:.0%} busy before measuring {label}: numbers are noisy")
    cpu0_busy0, _ = c.cpu_busy(0)
    all_busy0, _ = c.cpu_busy(None)
    srv0 = c.cpu_seconds(sp.pid)
    t0 = time.monotonic()
    p = c.run_dnsperf(port, query_file, a.duration, a.clients, a.outstanding, cpus=perf_cpus)
    wall = time.monotonic() - t0
    srv1 = c.cpu_seconds(sp.pid)
    cpu0_busy1, _ = c.cpu_busy(0)
    all_busy1, _ = c.cpu_busy(None)
    srv_cpu = srv1 - srv0
    out.update(
        {
            "dnsperf_ok": p.ok,
            "dnsperf_error": p.error,
            "qps": round(p.qps, 1),
            "sent": p.sent,
            "completed": p.completed,
            "lost": p.lost,
            "lost_pct": round(100.0 * p.lost / p.sent, 3) if p.sent else None,
            "latency_avg_ms": round(p.latency_avg_ms, 3),
            "latency_min_ms": round(p.latency_min_ms, 3),
            "latency_max_ms": round(p.latency_max_ms, 3),
            "latency_stddev_ms": round(p.latency_stddev_ms, 3),
            "rcodes": p.rcodes,
            "avg_response_bytes": p.resp_size,
            "dnsperf_runtime_s": p.runtime_s,
            "wall_s": round(wall, 3),
            "server_cpu_s": round(srv_cpu, 2),
            "server_cpu_util": round(srv_cpu / p.runtime_s, 3) if p.runtime_s else None,
            "dnsperf_cpu_s": round(p.cpu_s, 2),
            # busy CPU time that is neither the server's nor dnsperf's: kernel softirq work not
            # charged to a process, and other processes on the machine (noise)
            "other_cpu_s": round((all_busy1 - all_busy0) - srv_cpu - p.cpu_s, 2),
            "qps_per_cpu_s": round(p.completed / srv_cpu, 1) if srv_cpu > 0 else None,
            "cpu0_busy_s": round(cpu0_busy1 - cpu0_busy0, 2),
            "all_cpus_busy_s": round(all_busy1 - all_busy0, 2),
        }
    )
    # someone else used more than 10 % of the machine during the run: the numbers are suspect
    out["noisy"] = out["other_cpu_s"] > 0.10 * wall * (os.cpu_count() or 1)
    return out


def measure(
    kind: str,
    mode: str,
    work: str,
    zone: dict,
    a: argparse.Namespace,
    sample: list[tuple[str, str]] | None,
) -> dict[str, Any]:
    workers = 1 if mode == "pinned" else 2
    srv_cpus, perf_cpus = ("0", "1") if mode == "pinned" else (None, None)
    port = c.free_port()
    builder = c.SPEC_BUILDERS[kind]
    if kind == "xdnsd":
        spec = builder(work, zone["zone_file"], port, workers, start_timeout=a.xdnsd_start_timeout)
    else:
        spec = builder(work, zone["zone_file"], port, workers)
    row: dict[str, Any] = {
        "server": kind,
        "mode": mode,
        "workers": workers,
        "port": port,
        "server_cpus": srv_cpus or "any",
        "dnsperf_cpus": perf_cpus or "any",
        "available": False,
    }
    if not c.binary_available(kind):
        row["reason"] = "binary not installed"
        return row
    sp = c.ServerProcess(spec, cpus=srv_cpus)
    try:
        sp.start()
        try:
            row["startup_s"] = round(sp.wait_ready(zone["probe_name"]), 3)
        except RuntimeError as e:
            row["reason"] = str(e)[-1500:]
            return row
        row["available"] = True
        row["pids"] = c.session_pids(sp.pid)
        if sample is not None:
            row["answers"] = collect_answers(port, sample)
        if a.full_pass:
            # every distinct question asked once (twice in multi mode: each worker sees a share
            # of the clients) before timing, so a response cache is as warm as in steady state;
            # the pass's own rate is the cold-cache rate
            passes = 1 if mode == "pinned" else 2
            w = c.run_dnsperf(
                port,
                zone["query_files"][0],
                900,
                a.clients,
                a.outstanding,
                cpus=perf_cpus,
                max_runs=passes,
            )
            row["full_pass_qps"] = round(w.qps, 1)
            row["full_pass_runs"] = passes
        if a.warmup > 0:
            w = c.run_dnsperf(
                port, zone["query_files"][0], a.warmup, a.clients, a.outstanding, cpus=perf_cpus
            )
            row["warmup_qps"] = round(w.qps, 1)
        runs = []
        retries = 0
        rep = 0
        while rep < a.repeat:
            # run k replays the query file from its own offset (warm-up starts at 0), so a response
            # cache is not handed the exact queries of the warm-up / the previous run
            r = one_run(sp, port, perf_cpus, zone["query_files"][rep + 1], a, f"{kind} {mode}")
            runs.append(r)
            if not sp.alive():
                break
            if r["noisy"] and retries < a.max_retries:
                retries += 1
                c.eprint(
                    f"[warn] {kind} {mode}: other load {r['other_cpu_s']} CPU-s "
                    "during the run; retrying"
                )
                continue
            rep += 1
        clean = [r for r in runs if not r["noisy"]] or runs
        best = max(clean, key=lambda r: r["qps"])
        row.update(best)
        row["repeats"] = len(runs)
        if len(runs) > 1:
            row["runs"] = [
                {
                    k: r[k]
                    for k in (
                        "qps",
                        "latency_avg_ms",
                        "lost",
                        "server_cpu_s",
                        "qps_per_cpu_s",
                        "other_cpu_s",
                        "noisy",
                        "background_busy_before",
                    )
                }
                for r in runs
            ]
            row["qps_min"] = min(r["qps"] for r in clean)
        row["server_alive_after"] = sp.alive()
        mem = c.session_memory(sp.pid)
        row["rss_kb"] = mem["rss_kb"]
        row["pss_kb"] = mem["pss_kb"]
        if not row["server_alive_after"]:
            row["reason"] = f"server died during the run: {sp.log_tail()}"
        elif not best["dnsperf_ok"]:
            row["reason"] = best["dnsperf_error"]
        return row
    finally:
        sp.stop()


# --------------------------------------------------------------------------- report


def fmt_table(rows: list[dict[str, Any]]) -> str:
    hdr = [
        "server",
        "mode",
        "QPS",
        "lat ms",
        "lost",
        "lost %",
        "srv CPU-s",
        "CPU util",
        "QPS/CPU-s",
        "resp B",
        "start s",
        "other CPU-s",
        "QPS min",
    ]
    lines = []
    body = []
    for r in rows:
        if not r.get("available"):
            reason = (r.get("reason") or "").splitlines()[0][:70] if r.get("reason") else ""
            body.append(
                [
                    r["server"],
                    r["mode"],
                    "not available",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    reason,
                    "",
                    "",
                ]
            )
            continue
        body.append(
            [
                r["server"],
                r["mode"] + ("*" if r.get("noisy") else ""),
                f"{r['qps']:,.0f}",
                f"{r['latency_avg_ms']:.3f}",
                f"{r['lost']:,}",
                f"{r['lost_pct']:.2f}" if r.get("lost_pct") is not None else "",
                f"{r['server_cpu_s']:.2f}",
                f"{r['server_cpu_util']:.2f}",
                f"{r['qps_per_cpu_s']:,.0f}" if r.get("qps_per_cpu_s") else "-",
                str(r.get("avg_response_bytes", "")),
                f"{r.get('startup_s', 0):.2f}",
                f"{r.get('other_cpu_s', 0):.2f}",
                f"{r['qps_min']:,.0f}" if r.get("qps_min") else "-",
            ]
        )
    widths = [
        max(len(str(x[i])) for x in [hdr] + [b for b in body if b[2] != "not available" or i < 3])
        for i in range(len(hdr))
    ]
    lines.append(
        "  ".join(h.ljust(widths[i]) if i < 2 else h.rjust(widths[i]) for i, h in enumerate(hdr))
    )
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        if b[2] == "not available":
            lines.append(
                f"{b[0].ljust(widths[0])}  {b[1].ljust(widths[1])}  not available: {b[10]}"
            )
        else:
            lines.append(
                "  ".join(
                    str(x).ljust(widths[i]) if i < 2 else str(x).rjust(widths[i])
                    for i, x in enumerate(b)
                )
            )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["server"], r["mode"]): r for r in rows if r.get("available") and r.get("qps")}
    out: dict[str, Any] = {}
    for mode in sorted({r["mode"] for r in rows}):
        x = by.get(("xdnsd", mode))
        for ref in ("nsd", "knot", "bind"):
            y = by.get((ref, mode))
            key = f"xdnsd/{ref} {mode}"
            if x is None or y is None:
                out[key] = None
                continue
            out[key] = {
                "qps": round(x["qps"] / y["qps"], 3),
                "qps_per_cpu_s": (
                    round(x["qps_per_cpu_s"] / y["qps_per_cpu_s"], 3)
                    if x.get("qps_per_cpu_s") and y.get("qps_per_cpu_s")
                    else None
                ),
                "latency": round(x["latency_avg_ms"] / y["latency_avg_ms"], 3)
                if y["latency_avg_ms"]
                else None,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=int, default=15, help="dnsperf -l for the measurement (s)")
    ap.add_argument(
        "--warmup", type=int, default=3, help="dnsperf -l for the warm-up pass (s), 0 = none"
    )
    ap.add_argument(
        "--full-pass",
        action="store_true",
        help="before timing, send the whole query file once (twice in multi mode)",
    )
    ap.add_argument("--clients", type=int, default=8, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    ap.add_argument(
        "--servers", default=",".join(ALL_SERVERS), help="comma list of nsd,knot,bind,xdnsd"
    )
    ap.add_argument("--modes", default="pinned,multi", help="comma list of pinned,multi")
    ap.add_argument(
        "--check", type=int, default=300, help="queries compared against NSD per server (0 = off)"
    )
    ap.add_argument(
        "--xdnsd-start-timeout",
        type=float,
        default=300.0,
        help="deadline for xdnsd's first answer (includes the first import)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs per server and mode; the table shows the best (all runs in the JSON)",
    )
    ap.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="extra runs allowed when a run was disturbed by other load on the machine",
    )
    ap.add_argument(
        "--hot",
        type=int,
        default=0,
        help="use only the first N distinct queries (a hot set: measures the response cache)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="before each measurement wait up to this long for an idle machine (0 = don't)",
    )
    ap.add_argument(
        "--tmp", default=None, help="work dir (default: a new temp dir, removed afterwards)"
    )
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument(
        "--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    )
    a = ap.parse_args(argv)

    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for s in servers:
        if s not in ALL_SERVERS:
            ap.error(f"unknown server {s}")
    for m in modes:
        if m not in ("pinned", "multi"):
            ap.error(f"unknown mode {m}")
    if shutil.which("dnsperf") is None:
        ap.error("dnsperf not installed")

    work = a.tmp or tempfile.mkdtemp(prefix="xdnsd-qbench-")
    os.makedirs(work, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        t = time.monotonic()
        zone = genzone.generate(os.path.join(work, "zone"), a.names, a.queries, a.seed)
        c.eprint(
            f"[gen] {zone['owner_names']:,} names, {zone['records']:,} records, "
            f"{zone['queries']:,} queries in {time.monotonic() - t:.1f}s -> {work}"
        )
        if a.hot > 0:
            hot_path = os.path.join(work, "zone", f"queries-hot{a.hot}.txt")
            seen: dict[str, None] = {}
            with open(zone["query_file"]) as f:
                for ln in f:
                    seen.setdefault(ln, None)
                    if len(seen) >= a.hot:
                        break
            with open(hot_path, "w") as f:
                f.writelines(seen)
            zone["query_file"] = hot_path
            zone["hot_distinct"] = len(seen)
        zone["query_files"] = rotated_copies(zone["query_file"], a.repeat + a.max_retries + 1)
        sample = answer_sample(zone["query_file"], a.check, a.seed) if a.check > 0 else None
        for kind in servers:
            for i, mode in enumerate(modes):
                if (
                    kind == "xdnsd"
                    and i > 0
                    and rows
                    and rows[-1]["server"] == "xdnsd"
                    and not rows[-1]["available"]
                ):
                    rows.append(
                        {
                            "server": kind,
                            "mode": mode,
                            "available": False,
                            "reason": "not available (see first mode)",
                        }
                    )
                    continue
                c.eprint(f"[run] {kind} {mode} ...")
                row = measure(kind, mode, work, zone, a, sample if i == 0 else None)
                rows.append(row)
                if row.get("available"):
                    c.eprint(
                        f"[run] {kind} {mode}: {row.get('qps', 0):,.0f} qps, "
                        f"lat {row.get('latency_avg_ms', 0):.3f} ms, lost {row.get('lost')}, "
                        f"cpu {row.get('server_cpu_s')} s, rcodes {row.get('rcodes')}"
                    )
                else:
                    c.eprint(
                        f"[run] {kind} {mode}: not available: {(row.get('reason') or '')[:300]}"
                    )
    finally:
        if not a.keep_tmp and not a.tmp:
            shutil.rmtree(work, ignore_errors=True)

    # answer check vs reference
    checks: dict[str, Any] = {}
    if sample is not None:
        answers = {r["server"]: r.pop("answers") for r in rows if "answers" in r}
        ref_kind = next((k for k in ("nsd", "knot", "bind") if k in answers), None)
        if ref_kind:
            for k, ans in answers.items():
                if k != ref_kind:
                    checks[k] = compare_answers(sample, answers[ref_kind], ans)
            checks["reference"] = ref_kind

    table = fmt_table(rows)
    rat = ratios(rows)
    print()
    print(
        f"zone {zone['owner_names']:,} names / {zone['records']:,} records, "
        f"{zone['queries']:,} queries, "
        f"dnsperf -l {a.duration} -c {a.clients} -q {a.outstanding} (warm-up {a.warmup}s)"
    )
    print(table)
    if any(r.get("noisy") for r in rows):
        print(
            "* = every run of this row had other load on the machine (>10 % of the CPUs): suspect"
        )
    print()
    for k, v in rat.items():
        if v is None:
            print(f"{k}: n/a")
        else:
            print(
                f"{k}: QPS x{v['qps']:.2f}, QPS/CPU-s x{v['qps_per_cpu_s'] or 0:.2f}, "
                f"latency x{v['latency'] or 0:.2f}"
            )
    for k, v in checks.items():
        if k == "reference":
            continue
        print(f"answer check {k} vs {checks['reference']}: {v['mismatches']}/{v['checked']} differ")
        for ex in v["examples"][:3]:
            print(f"    {ex['query']}: {json.dumps(ex['diff'])[:300]}")
    rc = {r["server"] + "/" + r["mode"]: r.get("rcodes") for r in rows if r.get("available")}
    print("rcodes:", json.dumps(rc))

    os.makedirs(a.results, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(a.results, f"query-{stamp}.json")
    versions = {}
    for k, cmd in (
        ("nsd", ["nsd", "-v"]),
        ("knot", ["knotd", "-V"]),
        ("bind", ["named", "-v"]),
        ("dnsperf", ["dnsperf", "-h"]),
    ):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            txt = (p.stdout + p.stderr).strip().splitlines()
            versions[k] = next(
                (ln for ln in txt if "ersion" in ln or "BIND" in ln), txt[0] if txt else ""
            )
        except Exception as e:
            versions[k] = str(e)
    with open(path, "w") as f:
        json.dump(
            {
                "benchmark": "query",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": {
                    "cpus": os.cpu_count(),
                    "kernel": platform.release(),
                    "python": platform.python_version(),
                },
                "versions": versions,
                "settings": {k: v for k, v in vars(a).items() if k not in ("tmp",)},
                "zone": {k: v for k, v in zone.items() if k not in ("zone_file", "query_file")},
                "rows": rows,
                "ratios": rat,
                "answer_check": checks,
            },
            f,
            indent=2,
        )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
