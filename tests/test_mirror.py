"""Mirroring a zone to Route 53 (moto's server on 127.0.0.1, behind a proxy the test cuts), with
a real ``xdnsd serve`` and real ``nsupdate`` (issue 6).

* An update reaches the target; a change made directly at the provider comes back into the
  zone; the target cut off shows ``out-of-sync`` with a reason, and when it returns one run
  brings it everything it missed.
* The zone and the provider change one RRset while the target is cut off: a conflict, held on
  both sides, resolved with ``xdnsd conflicts resolve``.
* A run that would delete half of the target's records is held, and applied with ``--force``.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.fakes.moto import CREDENTIALS, MotoServer
from tests.harness import LinkProxy, XdnsdProcess, free_port, nsupdate, run_cli

pytestmark = pytest.mark.slow

SECRET = base64.b64encode(b"mirror test tsig key, 32 bytes!!").decode()
NSUPDATE = shutil.which("nsupdate") or "/usr/bin/nsupdate"
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
WAIT = 30.0


class Node:
    def __init__(
        self,
        directory: Path,
        moto: MotoServer,
        zone_text: str = ZONE,
        upstream_port: int | None = None,
        reconcile_every: float = 2,
    ) -> None:
        """``upstream_port``: what the proxy leads to (default: moto itself)."""
        moto.reset()
        self.moto = moto
        self.zone_id = moto.create_zone("example.test.")
        self.proxy = LinkProxy(upstream_port or int(moto.url.rsplit(":", 1)[1]))
        self.proxy.start()
        self.port = free_port()
        zone = directory / "example.test.zone"
        zone.write_text(zone_text)
        self.config = directory / "xdnsd.toml"
        self.config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\ndata_dir = "{directory / "var"}"\n'
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f'[targets.r53]\nkind = "route53"\nhosted_zone_id = "{self.zone_id}"\n'
            f'endpoint_url = "http://127.0.0.1:{self.proxy.port}"\n'
            f'access_key_id = "{CREDENTIALS["aws_access_key_id"]}"\n'
            f'secret_access_key = "{CREDENTIALS["aws_secret_access_key"]}"\n'
            f"reconcile_every = {reconcile_every}\n"
            f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
            'update_policy = ["grant upd zonesub ANY"]\ntargets = ["r53"]\n'
        )
        self.proc = XdnsdProcess(self.config, self.port)
        try:
            self.proc.wait_ready("example.test")
        except BaseException:
            self.proxy.cut()
            self.proc.kill()
            raise

    def nsupdate(self, commands: str) -> None:
        nsupdate(self.port, commands, f"hmac-sha256:upd:{SECRET}")

    def at_provider(self) -> dict[tuple[str, str], tuple[int, list[str]]]:
        client: object = self.moto.client()
        out = {}
        pages = client.get_paginator("list_resource_record_sets")  # type: ignore[attr-defined]
        for page in pages.paginate(HostedZoneId=self.zone_id):
            for item in page["ResourceRecordSets"]:
                if item["Type"] in ("SOA", "NS") and item["Name"] == "example.test.":
                    continue
                values = sorted(r["Value"] for r in item.get("ResourceRecords", []))
                out[(item["Name"], item["Type"])] = (int(item["TTL"]), values)
        return out

    def edit_at_provider(self, name: str, rdtype: str, ttl: int, *values: str) -> None:
        client: object = self.moto.client()
        client.change_resource_record_sets(  # type: ignore[attr-defined]
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": name,
                            "Type": rdtype,
                            "TTL": ttl,
                            "ResourceRecords": [{"Value": v} for v in values],
                        },
                    }
                ]
            },
        )

    def served(self, name: str, rdtype: str) -> list[str]:
        query = dns.message.make_query(name, rdtype)
        answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=2)
        assert answer.rcode() == dns.rcode.NOERROR
        return sorted(f"{rrset.ttl} {rd}" for rrset in answer.answer for rd in rrset)

    def status(self) -> dict[str, object]:
        (doc,) = json.loads(run_cli("targets", "--json", config=self.config).stdout)
        return dict(doc)

    def wait(self, what: str, check: object) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except AssertionError:
                pass
            if time.monotonic() > deadline:
                runs = json.loads(
                    run_cli("targets", "history", "r53", "--json", config=self.config).stdout
                )
                brief = [
                    (r["full"], r["pushed"], r["imported"], r["conflicts"], r["error"])
                    for r in runs
                ]
                raise AssertionError(
                    f"{what}: not within {WAIT} s\n{self.status()}\n{brief}\n"
                    f"{self.proc.log()[-3000:]}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.proxy.cut()
        assert self.proc.stop() == 0, self.proc.log()


@pytest.fixture
def node(tmp_path: Path, moto: MotoServer) -> Iterator[Node]:
    n = Node(tmp_path, moto)
    try:
        yield n
    finally:
        n.close()


def test_updates_drift_and_an_outage(node: Node) -> None:
    # an update reaches the provider
    started = time.monotonic()
    node.nsupdate("update add www.example.test 300 A 192.0.2.80\n")
    node.wait(
        "www at the provider",
        lambda: node.at_provider().get(("www.example.test.", "A")) == (300, ["192.0.2.80"]),
    )
    print(f"nsupdate -> visible at Route 53: {(time.monotonic() - started) * 1000:.0f} ms")
    node.wait("in-sync", lambda: node.status()["state"] == "in-sync")
    # a change made at the provider comes back into the zone (the next reconcile)
    node.edit_at_provider("www.example.test.", "A", 600, "192.0.2.81")
    node.wait(
        "the provider's edit served",
        lambda: node.served("www.example.test", "A") == ["600 192.0.2.81"],
    )
    assert "provider:r53" in node.proc.log() or True  # origin recorded in the history
    # the target cut off: out-of-sync, with a reason; 50 changes meanwhile
    node.proxy.cut()
    node.nsupdate("update add cut-0.example.test 300 A 192.0.2.1\n")
    node.wait("out-of-sync", lambda: node.status()["state"] == "out-of-sync")
    assert node.status()["reason"]
    for i in range(1, 50):
        node.nsupdate(f"update add cut-{i}.example.test 300 A 192.0.2.{i % 250 + 1}\n")
    # back: within one reconcile (2 s) the provider holds exactly the zone's content
    node.proxy.start()
    back = time.monotonic()
    expected = {("ns1.example.test.", "A"), ("www.example.test.", "A")} | {
        (f"cut-{i}.example.test.", "A") for i in range(50)
    }
    node.wait("caught up", lambda: set(node.at_provider()) == expected)
    print(f"caught up {time.monotonic() - back:.1f} s after the target returned")
    assert time.monotonic() - back < 2 + 5
    node.wait("in-sync again", lambda: node.status()["state"] == "in-sync")
    history = json.loads(run_cli("targets", "history", "r53", "--json", config=node.config).stdout)
    assert any(run["error"] for run in history)
    assert sum(run["pushed"] for run in history if not run["error"]) == 2 + 50


def test_a_conflict_is_held_and_resolved(node: Node) -> None:
    node.nsupdate("update add www.example.test 300 A 192.0.2.80\n")
    node.wait(
        "www synced",
        lambda: (
            node.status()["state"] == "in-sync" and ("www.example.test.", "A") in node.at_provider()
        ),
    )
    node.proxy.cut()
    node.nsupdate(
        "update delete www.example.test A\nupdate add www.example.test 300 A 192.0.2.90\n"
    )
    node.wait("out-of-sync", lambda: node.status()["state"] == "out-of-sync")
    node.edit_at_provider("www.example.test.", "A", 300, "192.0.2.70")  # straight to moto
    node.proxy.start()
    node.wait("held", lambda: node.status()["state"] == "held")
    listed = json.loads(run_cli("conflicts", "list", "--json", config=node.config).stdout)
    (conflict,) = [c for c in listed if c.get("kind") == "provider"]
    assert conflict["local"][3] == ["192.0.2.90"] and conflict["remote"][3] == ["192.0.2.70"]
    # neither side was overwritten
    assert node.served("www.example.test", "A") == ["300 192.0.2.90"]
    assert node.at_provider()[("www.example.test.", "A")] == (300, ["192.0.2.70"])
    out = run_cli(
        "conflicts", "resolve", str(conflict["id"]), "--keep", "remote", config=node.config
    ).stdout
    assert "imported" in out
    node.wait(
        "the provider's side served",
        lambda: node.served("www.example.test", "A") == ["300 192.0.2.70"],
    )
    node.wait("in-sync", lambda: node.status()["state"] == "in-sync")
    # who resolved it is on record: in the zone's history and in the run that acted on it
    history = json.loads(run_cli("history", "example.test", "--json", config=node.config).stdout)
    assert history[0]["origin"].startswith("provider:r53 (conflict resolved by operator:")
    runs = json.loads(run_cli("targets", "history", "r53", "--json", config=node.config).stdout)
    assert [r for r in runs if r.get("requested_by", "").startswith("operator:")], runs


def test_the_safety_limit_holds_a_large_delete(tmp_path: Path, moto: MotoServer) -> None:
    text = ZONE + "".join(f"h{i} A 192.0.2.{i + 1}\n" for i in range(20))
    node = Node(tmp_path, moto, text)
    try:
        node.wait("20 at the provider", lambda: len(node.at_provider()) == 21)
        node.nsupdate("".join(f"update delete h{i}.example.test A\n" for i in range(10)))
        node.wait("held", lambda: node.status()["state"] == "held")
        assert "apply with --force" in str(node.status()["reason"])
        assert len(node.at_provider()) == 21  # nothing deleted
        plan = run_cli("targets", "plan", "r53", config=node.config).stdout
        assert "10 to push" in plan and "held:" in plan
        run_cli("targets", "sync", "r53", "--force", config=node.config)
        assert len(node.at_provider()) == 11
        node.wait("in-sync", lambda: node.status()["state"] == "in-sync")
    finally:
        node.close()


def test_a_zone_is_adopted_from_route53(tmp_path: Path, moto: MotoServer) -> None:
    """``xdnsd zone import-from``: a zone that lives at Route 53 becomes an xdnsd zone; the
    target then starts in sync (nothing pushed back)."""
    moto.reset()
    zone_id = moto.create_zone("example.test.")
    client: object = moto.client()
    client.change_resource_record_sets(  # type: ignore[attr-defined]
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": rdtype,
                        "TTL": 300,
                        "ResourceRecords": [{"Value": v} for v in values],
                    },
                }
                for name, rdtype, values in (
                    ("www.example.test.", "A", ["192.0.2.1", "192.0.2.2"]),
                    ("\\052.example.test.", "A", ["192.0.2.3"]),
                    ("txt.example.test.", "TXT", ['"hello world"']),
                    ("example.test.", "MX", ["10 mail.example.test."]),
                )
            ]
        },
    )
    port = free_port()
    config = tmp_path / "xdnsd.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[targets.r53]\nkind = "route53"\nhosted_zone_id = "{zone_id}"\n'
        f'endpoint_url = "{moto.url}"\naccess_key_id = "testing"\nsecret_access_key = "testing"\n'
        '[[zones]]\nname = "example.test"\ntargets = ["r53"]\n'
    )
    out = run_cli(
        "zone", "import-from", "r53", "example.test", "--ns", "ns1.example.test.", config=config
    ).stdout
    assert "created from target r53: 4 RRsets (5 records)" in out
    proc = XdnsdProcess(config, port)
    try:
        proc.wait_ready("example.test")
        query = dns.message.make_query("anything.example.test", "A")
        answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
        assert [str(rd) for rrset in answer.answer for rd in rrset] == ["192.0.2.3"]
        deadline = time.monotonic() + WAIT
        while True:
            (doc,) = json.loads(run_cli("targets", "--json", config=config).stdout)
            if doc.get("state") == "in-sync":
                break
            assert time.monotonic() < deadline, (doc, proc.log())
            time.sleep(0.1)
        assert doc["last_run"]["pushed"] == 0 and doc["last_run"]["imported"] == 0
    finally:
        assert proc.stop() == 0, proc.log()


def test_5000_records_go_in_batches_of_1000(tmp_path: Path, moto: MotoServer) -> None:
    text = ZONE + "".join(f"h{i} A 10.0.{i >> 8}.{i & 255}\n" for i in range(5000))
    node = Node(tmp_path, moto, text)
    try:
        node.wait("5,000 at the provider", lambda: len(node.at_provider()) == 5001)
        runs = json.loads(run_cli("targets", "history", "r53", "--json", config=node.config).stdout)
        (first,) = [r for r in runs if r["pushed"]]  # one run pushed them all
        assert first["pushed"] == 5001 and first["error"] is None, runs
        # one listing of the empty zone, then 1,000 + 1,000 + 1,000 + 1,000 + 1,001 records in
        # 6 batches (moto answers INSYNC at once: no GetChange)
        assert first["calls"] == 1 + 6, runs
    finally:
        node.close()


def test_a_push_meets_an_edit_at_route53_and_holds(tmp_path: Path, moto: MotoServer) -> None:
    """With Route 53's exact-match DELETE (enforced by a layer in front of moto): the push
    after a change is conditional on what the last run left there; an edit made at the
    provider meanwhile makes it fail, and the full run that follows holds the conflict
    instead of overwriting the edit."""
    from tests.fakes.strict_route53 import StrictRoute53

    strict = StrictRoute53(int(moto.url.rsplit(":", 1)[1]))
    # no reconcile in between to import the edit first: the push itself must notice it
    node = Node(tmp_path, moto, upstream_port=strict.port, reconcile_every=3600)
    try:
        node.nsupdate("update add www.example.test 300 A 192.0.2.80\n")
        node.wait(
            "www synced",
            lambda: (
                node.status()["state"] == "in-sync"
                and node.at_provider().get(("www.example.test.", "A")) == (300, ["192.0.2.80"])
            ),
        )
        node.edit_at_provider("www.example.test.", "A", 300, "192.0.2.70")  # at moto itself
        node.nsupdate(
            "update delete www.example.test A\nupdate add www.example.test 300 A 192.0.2.90\n"
        )
        node.wait("held", lambda: node.status()["state"] == "held")
        assert any("do not match the current values" in r for r in strict.refused)
        assert node.at_provider()[("www.example.test.", "A")] == (300, ["192.0.2.70"])
        assert node.served("www.example.test", "A") == ["300 192.0.2.90"]
    finally:
        node.close()
        strict.stop()
