#!/usr/bin/env python3
"""Generate a deterministic benchmark zone ``bench.test.`` and a mixed dnsperf query file.

Zone content (fractions of the N owner names, approximately):

* apex: SOA, NS ns1/ns2 (+ A/AAAA glue), MX, TXT
* ~85 % hosts ``hNNNNNN`` with an A record; every second one also has an AAAA;
  every 16th lives one level deeper (``hNNNNNN.gK``, so ``gK`` is an empty non-terminal)
* ~5 % CNAMEs ``cNNNNNN`` -> an existing host (in zone)
* ~4 % mail names ``mNNNNNN`` with MX (-> a host) and TXT
* ~3 % delegations ``dNNNNNN`` (NS ``ns1.dNNNNNN`` + ``ns2.dNNNNNN``, A glue for both:
  three owner names each)
* a wildcard subtree: ``*.wild`` with A, AAAA and TXT, plus an explicit ``x.wild`` host

Query file (``name type`` lines, shuffled, seeded), by default 200,000 lines:

* 70 % existing A / AAAA (positive answers)
* 15 % NXDOMAIN (random labels at the apex, below hosts, below ``gK``)
* 4 % NODATA (MX / TXT at a host, AAAA at an A-only host, A at an empty non-terminal)
* 3 % CNAME (A at a CNAME owner, answered with the CNAME + target A)
* 3 % wildcard (A / AAAA / TXT below ``wild``)
* 3 % referral (names at or below a delegation)
* 2 % MX / TXT (positive)

Usage:
  python bench/genzone.py --out DIR [--names 100000 | --million] [--queries 200000] [--seed 1]

Writes DIR/bench.test.zone and DIR/queries.txt (and DIR/allnames.txt with one
``name A``-style line per owner name that exists, used by the import benchmark to
touch every name once). Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass, field

ORIGIN = "bench.test."
SOA_SERIAL = 2024010101


@dataclass
class ZoneInfo:
    """What the query generator needs to know about the generated zone."""

    hosts_a_only: list[str] = field(default_factory=list)  # relative owner names
    hosts_dual: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    mails: list[str] = field(default_factory=list)
    delegations: list[str] = field(default_factory=list)
    ents: list[str] = field(default_factory=list)
    owners: int = 0
    records: int = 0


def _ipv4(i: int) -> str:
    # 10.0.0.0/8 space, deterministic from the index, never .0 / .255
    return f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{(i & 0xFF) % 254 + 1}"


def _ipv6(i: int) -> str:
    return f"2001:db8:{(i >> 32) & 0xFFFF:x}:{(i >> 16) & 0xFFFF:x}::{i & 0xFFFF:x}"


def generate_zone(path: str, n_names: int, seed: int) -> ZoneInfo:
    rnd = random.Random(seed)
    info = ZoneInfo()
    recs = 0
    owners = 0
    with open(path, "w", encoding="ascii", buffering=1 << 20) as f:
        w = f.write
        w(f"$ORIGIN {ORIGIN}\n$TTL 3600\n")
        w(f"@ IN SOA ns1 hostmaster {SOA_SERIAL} 7200 3600 1209600 300\n")
        w("@ IN NS ns1\n@ IN NS ns2\n")
        w("@ IN MX 10 mail\n")
        w('@ IN TXT "v=spf1 mx -all"\n')
        w("ns1 IN A 192.0.2.1\nns1 IN AAAA 2001:db8::1\n")
        w("ns2 IN A 192.0.2.2\nns2 IN AAAA 2001:db8::2\n")
        w("mail IN A 192.0.2.25\n")
        # wildcard subtree
        w('wild IN TXT "wildcard parent"\n')
        w("*.wild IN A 192.0.2.80\n*.wild IN AAAA 2001:db8::80\n")
        w('*.wild IN TXT "wildcard"\n')
        w("x.wild IN A 192.0.2.81\n")
        recs += 14
        owners += 7  # apex, ns1, ns2, mail, wild, *.wild, x.wild

        # Fix the plan first so CNAME / MX targets point at hosts that exist.
        n_deleg_owner_budget = n_names * 3 // 100
        n_deleg = max(1, n_deleg_owner_budget // 3)
        n_cname = max(1, n_names * 5 // 100)
        n_mail = max(1, n_names * 4 // 100)
        n_hosts = max(2, n_names - owners - 3 * n_deleg - n_cname - n_mail)

        hosts: list[str] = []
        for i in range(n_hosts):
            if i % 16 == 15:
                g = f"g{(i // 16) % 997}"
                name = f"h{i:07d}.{g}"
            else:
                name = f"h{i:07d}"
            hosts.append(name)
            w(f"{name} IN A {_ipv4(i)}\n")
            recs += 1
            if i % 2 == 0:
                w(f"{name} IN AAAA {_ipv6(i)}\n")
                recs += 1
                info.hosts_dual.append(name)
            else:
                info.hosts_a_only.append(name)
        info.ents = sorted({h.split(".", 1)[1] for h in hosts if "." in h})
        owners += n_hosts

        for i in range(n_cname):
            name = f"c{i:07d}"
            target = hosts[rnd.randrange(n_hosts)]
            w(f"{name} IN CNAME {target}\n")
            info.cnames.append(name)
        recs += n_cname
        owners += n_cname

        for i in range(n_mail):
            name = f"m{i:07d}"
            mx = hosts[rnd.randrange(n_hosts)]
            w(f"{name} IN MX 10 {mx}\n")
            w(f'{name} IN TXT "mail domain {i}" "seed {seed}"\n')
            info.mails.append(name)
        recs += 2 * n_mail
        owners += n_mail

        for i in range(n_deleg):
            name = f"d{i:07d}"
            w(f"{name} IN NS ns1.{name}\n{name} IN NS ns2.{name}\n")
            w(f"ns1.{name} IN A {_ipv4(i + 0x200000)}\n")
            w(f"ns2.{name} IN A {_ipv4(i + 0x400000)}\n")
            info.delegations.append(name)
        recs += 4 * n_deleg
        owners += 3 * n_deleg

    info.owners = owners
    info.records = recs
    return info


def generate_queries(path: str, info: ZoneInfo, n_queries: int, seed: int) -> dict[str, int]:
    rnd = random.Random(seed * 7919 + 17)
    o = ORIGIN
    hosts_all = info.hosts_dual + info.hosts_a_only
    plan = [
        ("positive_a_aaaa", 0.70),
        ("nxdomain", 0.15),
        ("nodata", 0.04),
        ("cname", 0.03),
        ("wildcard", 0.03),
        ("referral", 0.03),
        ("mx_txt", 0.02),
    ]
    counts: dict[str, int] = {}
    lines: list[str] = []
    remaining = n_queries
    for idx, (kind, frac) in enumerate(plan):
        k = remaining if idx == len(plan) - 1 else round(n_queries * frac)
        k = min(k, remaining)
        remaining -= k
        counts[kind] = k
        for _ in range(k):
            r = rnd.random()
            if kind == "positive_a_aaaa":
                if r < 0.6:
                    lines.append(f"{rnd.choice(hosts_all)}.{o} A")
                else:
                    lines.append(f"{rnd.choice(info.hosts_dual)}.{o} AAAA")
            elif kind == "nxdomain":
                x = rnd.getrandbits(40)
                if r < 0.6:
                    lines.append(f"nx{x:x}.{o} {'A' if x & 1 else 'AAAA'}")
                elif r < 0.8:
                    lines.append(f"nx{x:x}.{rnd.choice(hosts_all)}.{o} A")
                else:
                    ent = rnd.choice(info.ents) if info.ents else "g0"
                    lines.append(f"nx{x:x}.{ent}.{o} A")
            elif kind == "nodata":
                if r < 0.35:
                    lines.append(f"{rnd.choice(hosts_all)}.{o} MX")
                elif r < 0.6:
                    lines.append(f"{rnd.choice(hosts_all)}.{o} TXT")
                elif r < 0.9:
                    lines.append(f"{rnd.choice(info.hosts_a_only)}.{o} AAAA")
                else:
                    ent = rnd.choice(info.ents) if info.ents else rnd.choice(hosts_all)
                    lines.append(f"{ent}.{o} A")
            elif kind == "cname":
                lines.append(f"{rnd.choice(info.cnames)}.{o} {'A' if r < 0.7 else 'AAAA'}")
            elif kind == "wildcard":
                x = rnd.getrandbits(32)
                t = "A" if r < 0.6 else ("AAAA" if r < 0.85 else "TXT")
                if r < 0.9:
                    lines.append(f"w{x:x}.wild.{o} {t}")
                else:
                    lines.append(f"a.w{x:x}.wild.{o} {t}")
            elif kind == "referral":
                d = rnd.choice(info.delegations)
                if r < 0.5:
                    lines.append(f"www.{d}.{o} A")
                elif r < 0.8:
                    lines.append(f"{d}.{o} A")
                else:
                    lines.append(f"{d}.{o} NS")
            elif kind == "mx_txt":
                m = rnd.choice(info.mails)
                lines.append(f"{m}.{o} {'MX' if r < 0.5 else 'TXT'}")
    rnd.shuffle(lines)
    with open(path, "w", encoding="ascii", buffering=1 << 20) as f:
        f.write("\n".join(lines))
        f.write("\n")
    return counts


def generate_allnames(path: str, info: ZoneInfo) -> int:
    """One query per existing owner name (sequential order), to touch the whole zone once."""
    o = ORIGIN
    n = 0
    with open(path, "w", encoding="ascii", buffering=1 << 20) as f:
        for h in info.hosts_dual + info.hosts_a_only:
            f.write(f"{h}.{o} A\n")
            n += 1
        for c in info.cnames:
            f.write(f"{c}.{o} A\n")
            n += 1
        for m in info.mails:
            f.write(f"{m}.{o} MX\n")
            n += 1
        for d in info.delegations:
            f.write(f"www.{d}.{o} A\n")
            n += 1
    return n


def generate(
    out_dir: str,
    n_names: int = 100_000,
    n_queries: int = 200_000,
    seed: int = 1,
    allnames: bool = False,
) -> dict:
    """Generate zone + queries into out_dir; returns a summary dict (also used by the runners)."""
    os.makedirs(out_dir, exist_ok=True)
    zone_path = os.path.join(out_dir, "bench.test.zone")
    query_path = os.path.join(out_dir, "queries.txt")
    info = generate_zone(zone_path, n_names, seed)
    counts = generate_queries(query_path, info, n_queries, seed) if n_queries > 0 else {}
    summary = {
        "zone": ORIGIN,
        "zone_file": zone_path,
        "query_file": query_path if n_queries > 0 else None,
        "seed": seed,
        "owner_names": info.owners,
        "records": info.records,
        "hosts": len(info.hosts_dual) + len(info.hosts_a_only),
        "cnames": len(info.cnames),
        "mail_names": len(info.mails),
        "delegations": len(info.delegations),
        "queries": sum(counts.values()),
        "query_mix": counts,
        "probe_name": f"{info.hosts_a_only[-1]}.{ORIGIN}",
    }
    if allnames:
        p = os.path.join(out_dir, "allnames.txt")
        summary["allnames_file"] = p
        summary["allnames"] = generate_allnames(p, info)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument(
        "--names", type=int, default=100_000, help="number of owner names (default 100000)"
    )
    ap.add_argument("--million", action="store_true", help="shorthand for --names 1000000")
    ap.add_argument(
        "--queries", type=int, default=200_000, help="query file lines (default 200000, 0 = none)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--allnames", action="store_true", help="also write allnames.txt (one query per name)"
    )
    a = ap.parse_args(argv)
    n = 1_000_000 if a.million else a.names
    s = generate(a.out, n, a.queries, a.seed, a.allnames)
    json.dump(s, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
