"""A cluster of three real ``xdnsd serve`` processes on loopback: every node takes updates, and
every change reaches every node (multi-master replication, issue 5).

* Signed UPDATEs sent to all three nodes at once (150, from three threads) converge: the three
  zones are equal record by record by AXFR, SOA serial included.
* A node killed with SIGKILL while updates go on at the others catches up when restarted.
* A peer with the wrong key is refused, garbage on the peer port does not hurt, ``xdnsd peers``
  shows the links.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from tests.harness import LinkProxy, XdnsdProcess, free_port, run_cli
from tests.harness import nsupdate as harness_nsupdate
from xdnsd.replication.session import Failed, PeerSession

pytestmark = pytest.mark.slow

SECRET = base64.b64encode(b"cluster test tsig key, 32 bytes!").decode()
KEY = dns.tsig.Key("upd.", SECRET, dns.tsig.HMAC_SHA256)
PEER_KEY = base64.b64encode(b"the cluster's shared peer key!!!").decode()
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
NODES = ("ns1", "ns2", "ns3")
WAIT = 30.0
NSUPDATE = shutil.which("nsupdate") or "/usr/bin/nsupdate"


class Cluster:
    def __init__(
        self,
        directory: Path,
        nodes: tuple[str, ...] = NODES,
        node_settings: str = "",
        zoneless: tuple[str, ...] = (),
    ) -> None:
        """``node_settings``: more ``[node]`` lines for every node; ``zoneless``: nodes
        configured without the zone (they get it from their peers)."""
        self.directory = directory
        self.nodes = nodes
        self.node_settings = node_settings
        self.zoneless = zoneless
        zone = directory / "example.test.zone"
        zone.write_text(ZONE)
        self.dns_ports = {n: free_port() for n in nodes}
        self.peer_ports = {n: free_port() for n in nodes}
        self.configs: dict[str, Path] = {}
        self._zone = zone
        for node in nodes:
            (directory / node).mkdir()
            self.write_config(node, {})
        self.procs: dict[str, XdnsdProcess] = {}

    def route(self, node: str, peer: str, port: int) -> None:
        """``node`` reaches ``peer`` at ``port`` (a proxy) instead of its peer port."""
        self.write_config(node, {peer: port})

    def write_config(self, node: str, via: dict[str, int]) -> None:
        d = self.directory / node
        peers = "".join(
            f'[[peers]]\nid = "{other}"\n'
            f'address = "127.0.0.1:{via.get(other, self.peer_ports[other])}"\n'
            f'key = "{PEER_KEY}"\n'
            for other in self.nodes
            if other != node
        )
        config = d / "xdnsd.toml"
        config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.dns_ports[node]}"]\n'
            f'data_dir = "{d / "var"}"\n'
            'allow_transfer = ["key upd"]\n'
            f'[node]\nid = "{node}"\npeer_listen = "127.0.0.1:{self.peer_ports[node]}"\n'
            f"{self.node_settings}"
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f"{peers}"
        )
        if node not in self.zoneless:
            config.write_text(
                config.read_text() + f'[[zones]]\nname = "example.test"\nfile = "{self._zone}"\n'
                'update_policy = ["grant upd zonesub ANY"]\nallow_transfer = ["key upd"]\n'
            )
        self.configs[node] = config

    def start(self, node: str) -> None:
        # after a SIGKILL the node's children (told by PDEATHSIG) may still hold the port a moment
        deadline = time.monotonic() + 10
        while not port_free(self.dns_ports[node]):
            assert time.monotonic() < deadline, f"port {self.dns_ports[node]} stays taken"
            time.sleep(0.05)
        proc = XdnsdProcess(self.configs[node], self.dns_ports[node])
        proc.wait_ready("example.test")
        self.procs[node] = proc

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever the test left running is killed (a clean stop is the test's to check)."""
        for proc in self.procs.values():
            if proc.proc.poll() is None:
                proc.kill()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.proc.poll() is None:
                assert proc.stop() == 0, proc.log()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in self.procs.items())

    def zone(self, node: str) -> set[str]:
        query = dns.message.make_query("example.test", "AXFR")
        query.use_tsig(KEY)
        messages = dns.query.xfr(
            "127.0.0.1",
            "example.test",
            port=self.dns_ports[node],
            keyring={KEY.name: KEY},
            keyname=KEY.name,
            relativize=False,
            lifetime=10,
        )
        return {
            f"{rrset.name} {rrset.ttl} {rrset.rdtype} {rdata}".lower()
            for message in messages
            for rrset in message.answer
            for rdata in rrset
        }

    def converged(self, nodes: tuple[str, ...] | None = None) -> bool:
        try:
            zones = [self.zone(n) for n in nodes or self.nodes]
        except Exception:
            return False
        return all(z == zones[0] for z in zones)

    def wait_converged(self, nodes: tuple[str, ...] | None = None) -> float:
        started = time.monotonic()
        while not self.converged(nodes):
            if time.monotonic() - started > WAIT:
                raise AssertionError(f"no convergence within {WAIT} s\n{self.logs()}")
            time.sleep(0.1)
        return time.monotonic() - started


def port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def update(port: int, name: str, address: str) -> int:
    message = dns.update.UpdateMessage("example.test")
    message.add(name, 300, "A", address)
    message.use_tsig(KEY)
    return int(dns.query.tcp(message, "127.0.0.1", port=port, timeout=10).rcode())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        for node in NODES:
            c.start(node)
        yield c
    finally:
        for proc in c.procs.values():
            if proc.proc.poll() is None:
                proc.stop()
            else:
                proc.kill()


def test_updates_everywhere_converge(cluster: Cluster) -> None:
    """The real nsupdate, one per node at the same time, 50 updates each."""
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    def writer(node: str) -> None:
        script = f"server 127.0.0.1 {cluster.dns_ports[node]}\nzone example.test\n" + "".join(
            f"update add {node}-{i}.example.test 300 A 192.0.2.{i + 1}\nsend\n" for i in range(50)
        )
        runs[node] = subprocess.run(
            [NSUPDATE, "-y", f"hmac-sha256:upd:{SECRET}"],
            input=script,
            capture_output=True,
            text=True,
            timeout=120,
        )

    threads = [threading.Thread(target=writer, args=(n,)) for n in NODES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    for node, run in runs.items():
        assert run.returncode == 0, (node, run.stdout, run.stderr)
    assert len(runs) == 3
    took = cluster.wait_converged()
    zone = cluster.zone("ns1")
    for node in NODES:
        for i in range(50):
            assert f"{node}-{i}.example.test. 300 1 192.0.2.{i + 1}" in zone
    soa = [r for r in zone if " 6 " in r]
    # the same serial everywhere, derived from the version vector: the file's serial (1) - 1 +
    # the three creations (each node loaded the file) + the 150 changes
    assert len(soa) == 1 and " 153 " in soa[0], soa
    print(f"150 updates on 3 nodes converged {took * 1000:.0f} ms after the last answer")
    deadline = time.monotonic() + WAIT  # a dial refused at start-up is retried after 1, 2, 4 s
    while True:
        peers = json.loads(run_cli("peers", "--json", config=cluster.configs["ns1"]).stdout)
        assert {p["peer"] for p in peers} == {"ns2", "ns3"}
        if all(p["connected"] and p["lag"] == 0 for p in peers):
            break
        assert time.monotonic() < deadline, peers
        time.sleep(0.2)


def test_a_killed_node_catches_up(cluster: Cluster) -> None:
    for i in range(20):
        assert update(cluster.dns_ports["ns1"], f"before-{i}", "192.0.2.1") == 0
    cluster.wait_converged()
    # updates stream to ns1 and ns2 (and so to ns3) while ns3 is killed among them
    done: list[int] = []

    def writer() -> None:
        for i in range(100):
            node = "ns1" if i % 2 else "ns2"
            done.append(update(cluster.dns_ports[node], f"while-down-{i}", "192.0.2.2"))

    thread = threading.Thread(target=writer)
    thread.start()
    while len(done) < 30:
        time.sleep(0.005)
    cluster.procs["ns3"].kill()  # SIGKILL: no chance to finish anything
    thread.join(120)
    assert done == [0] * 100
    cluster.wait_converged(("ns1", "ns2"))
    cluster.start("ns3")
    took = cluster.wait_converged()
    assert "while-down-99.example.test. 300 1 192.0.2.2" in cluster.zone("ns3")
    print(f"ns3 caught up with 100 changes in {took * 1000:.0f} ms after restarting")


def test_wrong_key_and_garbage_are_refused(cluster: Cluster) -> None:
    port = cluster.peer_ports["ns1"]
    impostor = PeerSession("ns2", {"ns1": b"not the cluster key, 32 bytes..."}, expect="ns1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(impostor.hello())
        events: list[object] = []
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline:
            data = sock.recv(4096)
            if not data:
                break
            found, reply = impostor.receive(data)
            events += found
            if reply:
                sock.sendall(reply)
        assert events and isinstance(events[0], Failed), events  # its proof does not verify
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(os.urandom(5000))
    assert update(cluster.dns_ports["ns1"], "after-garbage", "192.0.2.9") == 0
    cluster.wait_converged()
    log = cluster.procs["ns1"].log()
    assert "peer connection with" in log and "refused" in log


# --- a cut link and a conflict ------------------------------------------------------------------


def conflicts_on(config: Path) -> list[dict[str, object]]:
    return list(json.loads(run_cli("conflicts", "list", "--json", config=config).stdout))


def test_a_conflict_across_a_cut_link_is_seen_and_resolved_everywhere(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, nodes=("ns1", "ns2"))
    proxy = LinkProxy(cluster.peer_ports["ns2"])
    cluster.route("ns1", "ns2", proxy.port)  # ns1 dials ns2 through the proxy
    proxy.start()
    try:
        for node in cluster.nodes:
            cluster.start(node)
        assert update(cluster.dns_ports["ns1"], "www", "192.0.2.80") == 0
        cluster.wait_converged()
        proxy.cut()
        # both sides change the TTL of the same RRset while they cannot talk
        for node, ttl in (("ns1", 600), ("ns2", 900)):
            message = dns.update.UpdateMessage("example.test")
            message.replace("www", ttl, "A", "192.0.2.80")
            message.use_tsig(KEY)
            answer = dns.query.tcp(message, "127.0.0.1", port=cluster.dns_ports[node], timeout=5)
            assert answer.rcode() == dns.rcode.NOERROR
        assert not conflicts_on(cluster.configs["ns1"])
        proxy.start()  # the link returns: the conflict shows on both nodes, the same
        deadline = time.monotonic() + WAIT
        while True:
            seen = [conflicts_on(cluster.configs[n]) for n in cluster.nodes]
            if all(seen) and seen[0] == seen[1]:
                break
            assert time.monotonic() < deadline, (seen, cluster.logs())
            time.sleep(0.2)
        (conflict,) = seen[0]
        assert conflict["kind"] == "record" and len(conflict["sides"]) == 2  # type: ignore[arg-type]
        cluster.wait_converged()  # both serve the same provisional winner meanwhile
        assert "conflict " + str(conflict["id"]) in cluster.procs["ns1"].log()
        listed = run_cli("conflicts", "list", config=cluster.configs["ns2"]).stdout
        assert str(conflict["id"]) in listed and "serving" in listed
        # resolved on ns2, keeping ns1's side: served everywhere, gone everywhere
        out = run_cli(
            "conflicts",
            "resolve",
            str(conflict["id"]),
            "--keep",
            "ns1",
            config=cluster.configs["ns2"],
        ).stdout
        assert "resolved" in out
        deadline = time.monotonic() + WAIT
        while any(conflicts_on(cluster.configs[n]) for n in cluster.nodes):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.2)
        cluster.wait_converged()
        assert "www.example.test. 600 1 192.0.2.80" in cluster.zone("ns1")

        # the real nsupdate: ns1 deletes the name while ns2 adds beside what it had there
        proxy.cut()
        nsupdate(cluster.dns_ports["ns1"], "update delete www.example.test\n")
        nsupdate(cluster.dns_ports["ns2"], "update add www.example.test 600 AAAA 2001:db8::80\n")
        proxy.start()
        deadline = time.monotonic() + WAIT
        while True:
            seen = [conflicts_on(cluster.configs[n]) for n in cluster.nodes]
            if all(seen) and seen[0] == seen[1]:
                break
            assert time.monotonic() < deadline, (seen, cluster.logs())
            time.sleep(0.2)
        (conflict,) = seen[0]
        assert conflict["kind"] == "delete-vs-add", conflict
        cluster.wait_converged()
        run_cli(
            "conflicts",
            "resolve",
            str(conflict["id"]),
            "--keep",
            "ns2",
            config=cluster.configs["ns1"],
        )
        deadline = time.monotonic() + WAIT
        while any(conflicts_on(cluster.configs[n]) for n in cluster.nodes):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.2)
        cluster.wait_converged()
        assert "www.example.test. 600 28 2001:db8::80" in cluster.zone("ns2")
    finally:
        proxy.cut()
        cluster.stop_all()


# --- state transfer, tombstone collection, digests --------------------------------------------


def nsupdate(port: int, commands: str) -> None:
    harness_nsupdate(port, commands, f"hmac-sha256:upd:{SECRET}")


def wait_log(proc: XdnsdProcess, text: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + WAIT
    while text not in proc.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log\n{cluster.logs()}"
        time.sleep(0.1)


def test_an_empty_node_joins_by_state_transfer(tmp_path: Path) -> None:
    """A node configured without the zone gets it whole from a peer, and changes after."""
    with Cluster(tmp_path, ("ns1", "ns2"), zoneless=("ns2",)) as cluster:
        cluster.start("ns1")
        nsupdate(
            cluster.dns_ports["ns1"],
            "".join(f"update add h{i}.example.test 300 A 192.0.2.{i}\n" for i in range(1, 200)),
        )
        cluster.start("ns2")  # ready once it serves the zone
        cluster.wait_converged()
        wait_log(cluster.procs["ns2"], "merged the state of zone example.test.", cluster)
        # the zone has no update policy on ns2 (not in its config): changes come from ns1
        nsupdate(cluster.dns_ports["ns1"], "update add later.example.test 300 A 192.0.2.250\n")
        cluster.wait_converged()
        assert "later.example.test. 300 1 192.0.2.250" in cluster.zone("ns2")
        cluster.stop_all()


def test_a_node_away_longer_than_the_retention_gets_the_state(tmp_path: Path) -> None:
    """ns1 deletes records while ns2 is down and, the retention (2 s) past, collects the
    deletes: ns2 cannot be caught up change by change, gets the state, and the records it
    still held are not resurrected anywhere."""
    with Cluster(tmp_path, ("ns1", "ns2"), node_settings="tombstone_retention = 2\n") as cluster:
        for node in ("ns1", "ns2"):
            cluster.start(node)
        nsupdate(
            cluster.dns_ports["ns1"],
            "".join(f"update add r{i}.example.test 300 A 192.0.2.{i}\n" for i in range(1, 6)),
        )
        cluster.wait_converged()
        assert cluster.procs["ns2"].stop() == 0
        nsupdate(
            cluster.dns_ports["ns1"],
            "update delete r1.example.test A\nupdate delete r2.example.test\n"
            "update delete r3.example.test A 192.0.2.3\n"
            "update add new.example.test 300 A 192.0.2.100\n",
        )
        wait_log(cluster.procs["ns1"], "zone example.test.: collected", cluster)
        cluster.start("ns2")
        cluster.wait_converged()
        wait_log(cluster.procs["ns1"], "sent the state of zone example.test. to peer ns2", cluster)
        zone = cluster.zone("ns2")
        assert not any(r.startswith(("r1.", "r2.", "r3.")) for r in zone), zone
        assert "r4.example.test. 300 1 192.0.2.4" in zone
        assert "new.example.test. 300 1 192.0.2.100" in zone
        cluster.stop_all()


def test_digests_repair_what_vectors_cannot_see(tmp_path: Path) -> None:
    """A record removed from ns2's store behind xdnsd's back: the vectors stay equal, the
    digests differ, and the record is merged back from ns1."""
    import lmdb

    with Cluster(
        tmp_path, ("ns1", "ns2"), node_settings="anti_entropy_interval = 0.5\n"
    ) as cluster:
        for node in ("ns1", "ns2"):
            cluster.start(node)
        nsupdate(
            cluster.dns_ports["ns1"],
            "".join(f"update add h{i}.example.test 300 A 192.0.2.{i}\n" for i in range(1, 30)),
        )
        cluster.wait_converged()
        assert cluster.procs["ns2"].stop() == 0
        env = lmdb.open(str(tmp_path / "ns2" / "var" / "db"), max_dbs=20)
        records = env.open_db(b"records")
        with env.begin(write=True) as txn:
            found = [bytes(k) for k, v in txn.cursor(db=records) if b"\x03h17\x07example" in v]
            assert len(found) == 1
            txn.delete(found[0], db=records)
        env.close()
        cluster.start("ns2")
        cluster.wait_converged()
        assert "h17.example.test. 300 1 192.0.2.17" in cluster.zone("ns2")
        wait_log(cluster.procs["ns2"], "serves different data at the same version vector", cluster)
        cluster.stop_all()


def _rss_anon_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def test_a_peer_that_does_not_read_does_not_grow_memory(tmp_path: Path) -> None:
    """A peer that asks for a 150,000-record zone (about 14 MB of state) and then reads
    nothing: sending pauses (``send_paused`` in ``xdnsd peers``) with the replication
    process's own memory grown by far less than the state; when the peer reads again it gets
    all of it."""
    import re

    from xdnsd.replication.session import PeerSession, StateReceived

    d = tmp_path / "ns1"
    d.mkdir()
    zone = tmp_path / "big.zone"
    zone.write_text(
        ZONE + "".join(f"h{i} A 10.{i >> 16}.{(i >> 8) & 255}.{i & 255}\n" for i in range(150_000))
    )
    dns_port, peer_port = free_port(), free_port()
    key = base64.b64decode(PEER_KEY)
    config = d / "xdnsd.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:{dns_port}"]\ndata_dir = "{d / "var"}"\n'
        f'[node]\nid = "ns1"\npeer_listen = "127.0.0.1:{peer_port}"\n'
        f'[[peers]]\nid = "ns0"\naddress = "127.0.0.1:{free_port()}"\nkey = "{PEER_KEY}"\n'
        f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
    )
    proc = XdnsdProcess(config, dns_port)
    sock = None
    try:
        proc.wait_ready("example.test")
        deadline = time.monotonic() + WAIT
        while not (found := re.search(r"replication: node ns1.*\(pid (\d+)\)", proc.log())):
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.1)
        pid = int(found.group(1))
        before = _rss_anon_kib(pid)
        session = PeerSession("ns0", {"ns1": key}, expect="ns1")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
        sock.connect(("127.0.0.1", peer_port))
        sock.settimeout(10)
        sock.sendall(session.hello())
        while not session.open:
            _events, reply = session.receive(sock.recv(4096))
            if reply:
                sock.sendall(reply)
        sock.sendall(session.vectors({}))  # it has nothing: the zone comes as a state
        deadline = time.monotonic() + WAIT
        while True:  # the peer reads nothing more: sending must pause
            peers = json.loads(run_cli("peers", "--json", config=config).stdout)
            if peers and peers[0].get("send_paused"):
                break
            assert time.monotonic() < deadline, (peers, proc.log()[-2000:])
            time.sleep(0.2)
        time.sleep(2)
        grown = _rss_anon_kib(pid) - before
        # now it reads: every part arrives, the last one says so
        total = 0
        entries = 0
        done = False
        while not done:
            data = sock.recv(1 << 20)
            assert data, "connection closed before the state was complete"
            total += len(data)
            for event in session.receive(data)[0]:
                if isinstance(event, StateReceived):
                    entries += len(event.entries)
                    done = done or event.last
        assert entries >= 150_000
        print(f"state {total / 1e6:.1f} MB; the replication process grew {grown / 1024:.1f} MiB")
        assert grown * 1024 < total / 3, (grown, total)
    finally:
        if sock is not None:
            sock.close()
        proc.stop()
