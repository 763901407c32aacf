"""``/metrics`` exports what the DNS wing does (issue 7): queries by transport, QTYPE and RCODE,
their durations, updates, transfers and NOTIFYs, counted in each worker and the writer and
summed by the API.  A real ``xdnsd serve`` with 2 workers, real clients (dnspython, ``dig``,
``nsupdate``), the scrape parsed with prometheus-client's parser."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import XdnsdProcess, free_port, nsupdate
from xdnsd.server.answer import ServerIdentity
from xdnsd.server.fastpath import QueryAnswerer
from xdnsd.stats import (
    DURATION_BOUNDS_NS,
    ProcessStats,
    read_totals,
    response_rcode,
    stats_file,
)
from xdnsd.store import Store
from xdnsd.zonefile import create_changeset, parse_zone_file

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bWV0cmljcyB0ZXN0IHRzaWcga2V5LCAzMiBieXRlcyE="
OTHER_SECRET = "YW5vdGhlciBrZXksIG5vdCBncmFudGVkIHVwZGF0ZXM="
TOKEN = "metrics-reader-token-0123"
ZONE = (
    "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
    "www A 192.0.2.80\nwww AAAA 2001:db8::80\n"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class NotifyResponder:
    """A secondary's NOTIFY port on 127.0.0.1: answers each NOTIFY NOERROR, counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.serials: list[int] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, address = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            notify = dns.message.from_wire(data)
            self.serials.append(int(notify.answer[0][0].serial))
            self.sock.sendto(dns.message.make_response(notify).to_wire(), address)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class Node:
    def __init__(self, directory: Path, notify_port: int) -> None:
        self.directory = directory
        self.port, self.api_port = free_port(), free_port()
        zone = directory / "example.test.zone"
        zone.write_text(ZONE)
        self.config = directory / "xdnsd.toml"
        self.config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\nworkers = 2\n'
            f'data_dir = "{directory / "var"}"\n'
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f'[keys.other]\nalgorithm = "hmac-sha256"\nsecret = "{OTHER_SECRET}"\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\n'
            f'[api.tokens.reader]\nsecret = "{TOKEN}"\n'
            f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
            'update_policy = ["grant upd zonesub ANY"]\n'
            'allow_transfer = ["key upd"]\n'
            f'secondaries = ["127.0.0.1:{notify_port}"]\n'
        )
        self.proc = XdnsdProcess(self.config, self.port)
        self.proc.wait_ready("example.test")

    def scrape(self) -> Samples:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/metrics")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        for _ in range(100):  # the API process may still be starting
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    text = answer.read().decode()
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"the API did not answer\n{self.proc.log()}")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def udp(self, name: str, rdtype: str, keyed: bool = False) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        if keyed:
            keyring = dns.tsigkeyring.from_text({"upd": SECRET})
            query.use_tsig(keyring, "upd", algorithm="hmac-sha256")
        return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=5)

    def tcp(self, name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=5)

    def dig(self, *args: str) -> str:
        dig = shutil.which("dig") or "/usr/bin/dig"
        run = subprocess.run(
            [dig, "@127.0.0.1", "-p", str(self.port), "+time=5", "+tries=1", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return run.stdout + run.stderr


@pytest.fixture
def responder() -> Iterator[NotifyResponder]:
    r = NotifyResponder()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def node(tmp_path: Path, responder: NotifyResponder) -> Iterator[Node]:
    # counters a previous run left behind (another worker count): removed at start
    stale = stats_file(tmp_path / "var", "worker-5")
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"format": 1, "queries": [["udp", "A", "NOERROR", 10**6]]}))
    n = Node(tmp_path, responder.port)
    try:
        yield n
    finally:
        assert n.proc.stop() == 0, n.proc.log()


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def family(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def wait_for(node: Node, expected: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> Samples:
    """Scrape until every expected sample has its value (the workers flush every second)."""
    deadline = time.monotonic() + 15
    while True:
        samples = node.scrape()
        if all(samples.get(key, 0.0) == v for key, v in expected.items()):
            return samples
        if time.monotonic() > deadline:
            return samples  # the caller's assertions show what differs
        time.sleep(0.2)


def expect(name: str, v: float, **labels: str) -> tuple[tuple[str, frozenset[Any]], float]:
    return (name, frozenset(labels.items())), v


def test_metrics_count_the_workers_and_the_writer(node: Node, responder: NotifyResponder) -> None:
    # queries over UDP (to 2 workers: each query from a new source port)
    for _ in range(3):
        assert node.udp("www.example.test", "A").rcode() == dns.rcode.NOERROR
    assert node.udp("WwW.ExAmple.test", "A").rcode() == dns.rcode.NOERROR  # 0x20 case
    assert node.udp("www.example.test", "AAAA").rcode() == dns.rcode.NOERROR
    assert node.udp("www.example.test", "LOC").rcode() == dns.rcode.NOERROR  # an "other" type
    for _ in range(2):
        assert node.udp("nope.example.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert node.udp("www.outside.org", "A").rcode() == dns.rcode.REFUSED
    assert node.udp("www.example.test", "A", keyed=True).rcode() == dns.rcode.NOERROR  # signed
    # and over TCP
    for _ in range(2):
        assert node.tcp("www.example.test", "A").rcode() == dns.rcode.NOERROR
    assert node.tcp("nope.example.test", "A").rcode() == dns.rcode.NXDOMAIN
    # an accepted and a refused update (nsupdate)
    nsupdate(
        node.port, "update add new.example.test 300 A 192.0.2.9\n", f"hmac-sha256:upd:{SECRET}"
    )
    script = (
        f"server 127.0.0.1 {node.port}\nzone example.test\n"
        "update add x.example.test 300 A 192.0.2.1\nsend\n"
    )
    refused = subprocess.run(
        [
            shutil.which("nsupdate") or "/usr/bin/nsupdate",
            "-y",
            f"hmac-sha256:other:{OTHER_SECRET}",
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "REFUSED" in refused.stdout + refused.stderr, refused
    # transfers: a signed AXFR and IXFR, an unsigned (refused) AXFR
    key = f"hmac-sha256:upd:{SECRET}"
    assert "new.example.test." in node.dig("-y", key, "example.test", "AXFR")
    assert "Transfer failed" in node.dig("example.test", "AXFR")
    assert "new.example.test." in node.dig("-y", key, "example.test", "IXFR=1")
    # NOTIFYs received: for a zone this node is the primary of, for a zone not served here
    for zone, rcode in (("example.test", dns.rcode.REFUSED), ("other.test", dns.rcode.NOTAUTH)):
        notify = dns.message.make_query(zone, "SOA")
        notify.flags = dns.flags.AA
        notify.set_opcode(dns.opcode.NOTIFY)  # after the flags: the opcode is among them
        answer = dns.query.udp(notify, "127.0.0.1", port=node.port, timeout=5)
        assert answer.rcode() == rcode

    expected = dict(
        [
            expect("xdnsd_queries_total", 5, transport="udp", qtype="A", rcode="NOERROR"),
            expect("xdnsd_queries_total", 1, transport="udp", qtype="AAAA", rcode="NOERROR"),
            expect("xdnsd_queries_total", 1, transport="udp", qtype="other", rcode="NOERROR"),
            expect("xdnsd_queries_total", 2, transport="udp", qtype="A", rcode="NXDOMAIN"),
            expect("xdnsd_queries_total", 1, transport="udp", qtype="A", rcode="REFUSED"),
            expect("xdnsd_queries_total", 2, transport="tcp", qtype="A", rcode="NOERROR"),
            expect("xdnsd_queries_total", 1, transport="tcp", qtype="A", rcode="NXDOMAIN"),
            expect("xdnsd_updates_total", 1, result="accepted", rcode="NOERROR"),
            expect("xdnsd_updates_total", 1, result="refused", rcode="REFUSED"),
            expect("xdnsd_transfers_total", 1, kind="axfr", result="ok"),
            expect("xdnsd_transfers_total", 1, kind="axfr", result="refused"),
            expect("xdnsd_transfers_total", 1, kind="ixfr", result="ok"),
            expect("xdnsd_notifies_total", 1, direction="received", result="refused"),
            expect("xdnsd_notifies_total", 1, direction="received", result="notauth"),
            # serial 1 when the server started, serial 2 after the update
            expect("xdnsd_notifies_total", 2, direction="sent", result="ok"),
        ]
    )
    samples = wait_for(node, expected)
    for (name, labels), v in expected.items():
        assert samples.get((name, labels), 0.0) == v, (name, dict(labels), family(samples, name))
    queries = family(samples, "xdnsd_queries_total")
    # the only other queries: the harness's and nsupdate's SOA probes (UDP)
    others = {
        labels: v
        for labels, v in queries.items()
        if ("xdnsd_queries_total", labels) not in expected
    }
    assert others and {dict(labels)["qtype"] for labels in others} == {"SOA"}, others
    assert value(samples, "xdnsd_queries_total", transport="udp", qtype="A", rcode="NOERROR") < 10
    for name in ("xdnsd_updates_total", "xdnsd_transfers_total", "xdnsd_notifies_total"):
        assert len(family(samples, name)) == sum(1 for n, _ in expected if n == name), name
    # every query answered inline is timed; the signed one went through the handler
    for transport, untimed in (("udp", 1), ("tcp", 0)):
        answered = sum(v for labels, v in queries.items() if ("transport", transport) in labels)
        count = value(samples, "xdnsd_query_duration_seconds_count", transport=transport)
        assert count == answered - untimed, (transport, count, answered)
        inf = value(samples, "xdnsd_query_duration_seconds_bucket", transport=transport, le="+Inf")
        assert inf == count
        seconds = value(samples, "xdnsd_query_duration_seconds_sum", transport=transport)
        assert 0 < seconds < count
    assert responder.serials[-1] == 2
    stats = sorted(p.name for p in (node.directory / "var" / "stats").iterdir())
    assert stats == ["worker-0.json", "worker-1.json", "writer.json"]
    # the existing metrics still there
    assert value(samples, "xdnsd_zone_serial", zone="example.test.") == 2


# --------------------------------------------------------------------------- in process


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", "n1")
    zone = dns.name.from_text("example.test.")
    records = parse_zone_file(ROOT / "conf" / "zones" / "example.test.zone", zone)
    s.commit(create_changeset(zone, records, "test"))
    yield s
    s.close()


def test_the_fast_path_counts_hits_and_misses(store: Store, tmp_path: Path) -> None:
    stats = ProcessStats(tmp_path / "stats" / "worker-0.json")
    answerer = QueryAnswerer(store, ServerIdentity(), stats=stats)
    for name in ("www.example.test", "www.example.test", "WWW.example.test", "nope.example.test"):
        assert answerer.udp(dns.message.make_query(name, "A").to_wire())
    assert answerer.tcp(dns.message.make_query("www.example.test", "TXT").to_wire())
    assert answerer.misses == 3  # two hits (the second lowercase, 0x20 case)
    stats.flush()
    totals = read_totals(tmp_path)
    assert totals.queries == {
        ("udp", "A", "NOERROR"): 3,
        ("udp", "A", "NXDOMAIN"): 1,
        ("tcp", "TXT", "NOERROR"): 1,
    }


def test_files_are_summed(tmp_path: Path) -> None:
    for role in ("worker-0", "worker-1"):
        stats = ProcessStats(stats_file(tmp_path, role))
        stats.queries[0][0] = 2  # udp, A, NOERROR
        stats.durations[0].observe(DURATION_BOUNDS_NS[0] + 1)  # second bucket
        stats.count_update(0)
        stats.count_update(5)
        stats.count_transfer("axfr", "ok")
        stats.count_notify("sent", "timeout")
        stats.flush()
    (tmp_path / "stats" / "writer.json").write_text("{not json")  # skipped, logged
    totals = read_totals(tmp_path)
    assert totals.queries == {("udp", "A", "NOERROR"): 4}
    assert totals.durations["udp"].buckets[:3] == [0, 2, 0]
    assert totals.durations["udp"].sum_ns == 2 * (DURATION_BOUNDS_NS[0] + 1)
    assert totals.updates == {("accepted", "NOERROR"): 2, ("refused", "REFUSED"): 2}
    assert totals.transfers == {("axfr", "ok"): 2}
    assert totals.notifies == {("sent", "timeout"): 2}


def test_response_rcode_reads_badvers_from_the_opt_record() -> None:
    query = dns.message.make_query("example.test", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.BADVERS)
    assert response_rcode(response.to_wire()) == dns.rcode.BADVERS
    response.set_rcode(dns.rcode.NXDOMAIN)
    assert response_rcode(response.to_wire()) == dns.rcode.NXDOMAIN
