"""One zone mirrored to three targets at once: Route 53 (moto's server, behind a proxy), Azure
DNS (the ARM emulator, client-secret login) and a real BIND (RFC 2136), by the first of two
real ``xdnsd serve`` nodes that replicate to each other (issue 6).

* An nsupdate reaches all three targets.
* Azure goes down: it shows ``out-of-sync`` with a reason, the other two stay ``in-sync``;
  50 more changes; when it comes back, one reconcile brings it exactly the zone's content.
* A record edited directly at Route 53 comes into the zone, reaches the other targets and the
  replication peer.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.fakes.azure import AzureDns
from tests.fakes.moto import CREDENTIALS, MotoServer
from tests.harness import LinkProxy, XdnsdProcess, free_port, run_cli
from tests.harness import nsupdate as harness_nsupdate
from tests.test_rfc2136 import KEY as BIND_KEY
from tests.test_rfc2136 import SECRET as BIND_SECRET
from tests.test_rfc2136 import Named, named  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow

SECRET = base64.b64encode(b"targets test tsig key, 32 bytes!").decode()
PEER_KEY = base64.b64encode(b"targets test peer key, 32 bytes!").decode()
NSUPDATE = shutil.which("nsupdate") or "/usr/bin/nsupdate"
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
WAIT = 30.0


@pytest.fixture
def azure(tmp_path: Path) -> Iterator[AzureDns]:
    (tmp_path / "azure-ca").mkdir()
    server = AzureDns(tmp_path / "azure-ca")
    server.create_zone("example.test")
    yield server
    server.stop()


def wait(what: str, check: Callable[[], bool], logs: Callable[[], str]) -> float:
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except (AssertionError, OSError, dns.exception.DNSException):
            pass
        if time.monotonic() - started > WAIT:
            raise AssertionError(f"{what}: not within {WAIT} s\n{logs()}")
        time.sleep(0.1)


def served(port: int, name: str) -> list[str]:
    answer = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return sorted(str(rd) for rrset in answer.answer for rd in rrset)


def test_three_targets_and_a_peer(
    tmp_path: Path,
    moto: MotoServer,
    azure: AzureDns,
    named: Named,  # noqa: F811
) -> None:
    moto.reset()
    zone_id = moto.create_zone("example.test.")
    proxy = LinkProxy(int(moto.url.rsplit(":", 1)[1]))
    proxy.start()
    zone = tmp_path / "example.test.zone"
    zone.write_text(ZONE)
    dns_ports = {n: free_port() for n in ("ns1", "ns2")}
    peer_ports = {n: free_port() for n in ("ns1", "ns2")}
    configs = {}
    for node, other in (("ns1", "ns2"), ("ns2", "ns1")):
        d = tmp_path / node
        d.mkdir()
        configs[node] = d / "xdnsd.toml"
        configs[node].write_text(
            f'[server]\nlisten = ["127.0.0.1:{dns_ports[node]}"]\ndata_dir = "{d / "var"}"\n'
            f'[node]\nid = "{node}"\npeer_listen = "127.0.0.1:{peer_ports[node]}"\n'
            f'[[peers]]\nid = "{other}"\naddress = "127.0.0.1:{peer_ports[other]}"\n'
            f'key = "{PEER_KEY}"\n'
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f'[keys.{BIND_KEY}]\nalgorithm = "hmac-sha256"\nsecret = "{BIND_SECRET}"\n'
            f'[targets.r53]\nkind = "route53"\nowner = "ns1"\nhosted_zone_id = "{zone_id}"\n'
            f'endpoint_url = "http://127.0.0.1:{proxy.port}"\n'
            f'access_key_id = "{CREDENTIALS["aws_access_key_id"]}"\n'
            f'secret_access_key = "{CREDENTIALS["aws_secret_access_key"]}"\n'
            "reconcile_every = 2\n"
            f'[targets.azure]\nkind = "azure"\nowner = "ns1"\n'
            f'subscription_id = "{azure.subscription}"\nresource_group = "{azure.group}"\n'
            f'tenant_id = "{azure.tenant}"\nclient_id = "{azure.client_id}"\n'
            f'client_secret = "{azure.client_secret}"\nauthority_host = "{azure.url}"\n'
            f'base_url = "{azure.url}"\nca_file = "{azure.ca_path}"\nreconcile_every = 2\n'
            f'[targets.bind]\nkind = "rfc2136"\nowner = "ns1"\n'
            f'server = "127.0.0.1:{named.port}"\nkey = "{BIND_KEY}"\nreconcile_every = 2\n'
            f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
            'update_policy = ["grant upd zonesub ANY"]\ntargets = ["r53", "azure", "bind"]\n'
        )
    procs = {n: XdnsdProcess(configs[n], dns_ports[n]) for n in ("ns1", "ns2")}
    r53: object = moto.client()

    def logs() -> str:
        status = run_cli("targets", "--json", config=configs["ns1"], check=False).stdout
        return status + "\n".join(f"--- {n}\n{p.log()[-2500:]}" for n, p in procs.items())

    def at_r53() -> dict[str, list[str]]:
        pages = r53.get_paginator("list_resource_record_sets")  # type: ignore[attr-defined]
        return {
            s["Name"]: sorted(r["Value"] for r in s["ResourceRecords"])
            for page in pages.paginate(HostedZoneId=zone_id)
            for s in page["ResourceRecordSets"]
            if s["Type"] == "A"
        }

    def at_azure() -> dict[str, list[str]]:
        return {
            name: sorted(r["ipv4Address"] for r in s["properties"].get("ARecords", []))
            for (name, rdtype), s in azure.sets("example.test").items()
            if rdtype == "A"
        }

    def states() -> dict[str, str]:
        docs = json.loads(run_cli("targets", "--json", config=configs["ns1"]).stdout)
        return {d["target"]: d.get("state") for d in docs}

    def nsupdate(commands: str) -> None:
        harness_nsupdate(dns_ports["ns1"], commands, f"hmac-sha256:upd:{SECRET}")

    try:
        for proc in procs.values():
            proc.wait_ready("example.test")
        # an update reaches all three targets
        nsupdate("update add www.example.test 300 A 192.0.2.80\nsend\n")
        wait(
            "www at all three",
            lambda: (
                at_r53().get("www.example.test.") == ["192.0.2.80"]
                and at_azure().get("www") == ["192.0.2.80"]
                and served(named.port, "www.example.test") == ["192.0.2.80"]
            ),
            logs,
        )
        wait("all in sync", lambda: set(states().values()) == {"in-sync"}, logs)
        # Azure goes down: out-of-sync with a reason; the others stay in sync
        azure.stop()
        nsupdate("update add down-0.example.test 300 A 192.0.2.1\nsend\n")
        wait("azure out of sync", lambda: states()["azure"] == "out-of-sync", logs)
        docs = json.loads(run_cli("targets", "--json", config=configs["ns1"]).stdout)
        (doc,) = [d for d in docs if d["target"] == "azure"]
        assert "unreachable" in doc["reason"] or "Azure" in doc["reason"], doc
        nsupdate(
            "".join(
                f"update add down-{i}.example.test 300 A 192.0.2.1\nsend\n" for i in range(1, 50)
            )
        )
        wait(
            "the other two in sync",
            lambda: (
                states()["r53"] == states()["bind"] == "in-sync"
                and "down-49.example.test." in at_r53()
            ),
            logs,
        )
        # back: within one reconcile it holds exactly the zone's content
        azure.start()
        took = wait(
            "azure caught up",
            lambda: set(at_azure()) == {"ns1", "www"} | {f"down-{i}" for i in range(50)},
            logs,
        )
        print(f"Azure held the 50 changes it missed {took:.1f} s after it came back")
        wait("all in sync again", lambda: set(states().values()) == {"in-sync"}, logs)
        # an edit made straight at Route 53: into the zone, the other targets and the peer
        r53.change_resource_record_sets(  # type: ignore[attr-defined]
            HostedZoneId=zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": "www.example.test.",
                            "Type": "A",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": "192.0.2.99"}],
                        },
                    }
                ]
            },
        )
        wait(
            "the edit everywhere",
            lambda: (
                served(dns_ports["ns1"], "www.example.test") == ["192.0.2.99"]
                and served(dns_ports["ns2"], "www.example.test") == ["192.0.2.99"]
                and at_azure().get("www") == ["192.0.2.99"]
                and served(named.port, "www.example.test") == ["192.0.2.99"]
            ),
            logs,
        )
        history = json.loads(
            run_cli("zone", "history", "example.test", "--json", config=configs["ns2"]).stdout
        )
        assert any(h["origin"] == "provider:r53" for h in history), history[:3]
    finally:
        proxy.cut()
        statuses = {}
        for name, proc in procs.items():  # every node is stopped, whatever another did
            try:
                statuses[name] = proc.stop()
            except AssertionError:
                proc.kill()
                statuses[name] = -1
        assert all(status == 0 for status in statuses.values()), statuses
