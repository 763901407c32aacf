"""The RFC 2136 target (xdnsd/upstreams/rfc2136.py) against a real BIND ``named`` on 127.0.0.1:
a primary zone example.test that takes TSIG-signed updates and transfers (hmac-sha256), with
BIND's default checks; changes made meanwhile are made with ``nsupdate``, answers checked with
``dig``."""

from __future__ import annotations

import base64
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest

from tests.harness import free_port
from tests.named import CONTROLS_NONE, NAMED, named_options
from xdnsd.upstreams.base import ChangedMeanwhile, ProviderError
from xdnsd.upstreams.plan import Action, Change, RRset, canonical_value, three_way
from xdnsd.upstreams.rfc2136 import Rfc2136, batches, update_message

pytestmark = pytest.mark.slow

ZONE = "example.test."
KEY = "xdnsd-mirror"
SECRET = base64.b64encode(b"rfc2136 target test secret 32 o.").decode()
ZONE_FILE = """$TTL 300
@  SOA ns.example.net. hostmaster.example.net. 1 3600 600 86400 300
@  NS  ns.example.net.
"""


@dataclass
class Named:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.directory / "named.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Named]:
    directory = tmp_path / "named"
    directory.mkdir()
    (directory / "example.test.zone").write_text(ZONE_FILE)
    port = free_port()
    conf = directory / "named.conf"
    conf.write_text(
        f'key "{KEY}" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'
        + named_options(directory, port)
        + CONTROLS_NONE
        + f"""zone "example.test" {{
    type primary;
    file "example.test.zone";
    allow-update {{ key {KEY}; }};
    allow-transfer {{ key {KEY}; }};
}};
"""
    )
    with (directory / "named.log").open("wb") as log:
        proc = subprocess.Popen(
            [NAMED, "-g", "-n", "1", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
    server = Named(port, directory, proc)
    try:
        deadline = time.monotonic() + 20
        query = dns.message.make_query(ZONE, "SOA")
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"named exited with {proc.returncode}:\n{server.log()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"named did not answer within 20 s:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def target(named: Named, **kwargs: object) -> Rfc2136:
    options: dict[str, object] = {"zone": ZONE, "key_name": KEY, "secret": SECRET, "timeout": 5}
    options.update(kwargs)
    return Rfc2136("127.0.0.1", port=named.port, **options)  # type: ignore[arg-type]


def rrset(name: str, rdtype: str, ttl: int, *values: str) -> RRset:
    return RRset(name, rdtype, ttl, tuple(sorted(canonical_value(rdtype, v) for v in values)))


def nsupdate(named: Named, *commands: str) -> None:
    script = f"server 127.0.0.1 {named.port}\nzone {ZONE}\n" + "\n".join(commands) + "\nsend\n"
    subprocess.run(
        ["nsupdate", "-y", f"hmac-sha256:{KEY}:{SECRET}"],
        input=script,
        text=True,
        check=True,
        capture_output=True,
        timeout=10,
    )


def dig(named: Named, name: str, rdtype: str) -> list[str]:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(named.port), "+short", "+norec", name, rdtype],
        text=True,
        check=True,
        capture_output=True,
        timeout=10,
    ).stdout
    return sorted(out.split("\n")[:-1])


LONG_TXT = '"' + "a" * 255 + '" "' + "b" * 100 + '"'  # 355 characters: two strings
DESIRED = {
    r.key: r
    for r in (
        rrset("www.example.test.", "A", 300, "192.0.2.1", "192.0.2.2"),
        rrset("*.example.test.", "A", 60, "192.0.2.9"),
        rrset("txt.example.test.", "TXT", 300, '"say \\"hi\\"; ok"', LONG_TXT, '"a" "b c"'),
        rrset("example.test.", "MX", 300, "10 mail.example.test."),
        rrset("mail.example.test.", "A", 300, "192.0.2.25"),
        rrset("alias.example.test.", "CNAME", 300, "www.example.test."),
        rrset("_sip._tcp.example.test.", "SRV", 300, "10 5 5060 www.example.test."),
        rrset("example.test.", "CAA", 300, '0 issue "letsencrypt.org"'),
        rrset("sub.example.test.", "NS", 300, "ns1.sub.example.test."),
        rrset("ns1.sub.example.test.", "A", 300, "192.0.2.53"),  # glue
    )
}


def push(t: Rfc2136, desired: dict[tuple[str, str], RRset]) -> None:
    t.apply(ZONE, three_way(desired, None, dict(t.read(ZONE))).push)


def test_round_trip(named: Named) -> None:
    t = target(named)
    assert t.read(ZONE) == {}  # the apex SOA and NS are the server's
    plan = three_way(DESIRED, None, dict(t.read(ZONE)))
    assert [c.action for c in plan.push] == [Action.CREATE] * len(DESIRED)
    applied = t.apply(ZONE, plan.push)
    assert (applied.changes, applied.calls) == (len(DESIRED), 1)
    assert t.read(ZONE) == DESIRED  # quoting, the long TXT, the wildcard and glue survive
    assert t.calls == 4  # three AXFRs and one UPDATE
    assert dig(named, "www.example.test", "A") == ["192.0.2.1", "192.0.2.2"]
    assert dig(named, "anything.example.test", "A") == ["192.0.2.9"]
    assert len(dig(named, "txt.example.test", "TXT")) == 3


def test_update_and_delete(named: Named) -> None:
    t = target(named)
    push(t, DESIRED)
    back = dict(t.read(ZONE))
    changed = dict(DESIRED)
    changed[("www.example.test.", "A")] = rrset("www.example.test.", "A", 600, "192.0.2.3")
    changed[("*.example.test.", "A")] = rrset("*.example.test.", "A", 60, "192.0.2.8", "192.0.2.9")
    del changed[("txt.example.test.", "TXT")]
    # a CNAME replaced by an address at the same name: the delete must go first
    del changed[("alias.example.test.", "CNAME")]
    changed[("alias.example.test.", "A")] = rrset("alias.example.test.", "A", 300, "192.0.2.4")
    plan = three_way(changed, back, back)
    assert sorted(c.action.value for c in plan.push) == [
        "create",
        "delete",
        "delete",
        "update",
        "update",
    ]
    applied = t.apply(ZONE, plan.push)
    assert (applied.changes, applied.calls) == (5, 1)
    assert t.read(ZONE) == changed
    assert dig(named, "alias.example.test", "A") == ["192.0.2.4"]
    assert dig(named, "txt.example.test", "TXT") == []


def test_changed_meanwhile_changes_nothing(named: Named) -> None:
    t = target(named)
    push(t, DESIRED)
    read = dict(t.read(ZONE))
    changed = dict(DESIRED)
    www = rrset("www.example.test.", "A", 300, "192.0.2.3")
    new = rrset("new.example.test.", "A", 300, "192.0.2.5")
    changed[www.key] = www
    changed[new.key] = new
    plan = three_way(changed, read, read)
    assert {c.action for c in plan.push} == {Action.UPDATE, Action.CREATE}
    nsupdate(named, "update add www.example.test. 300 A 192.0.2.99")  # someone else's edit
    with pytest.raises(ChangedMeanwhile) as err:
        t.apply(ZONE, plan.push)
    assert "NXRRSET" in str(err.value)
    after = dict(t.read(ZONE))
    assert after[www.key].values == ("192.0.2.1", "192.0.2.2", "192.0.2.99")
    assert new.key not in after  # all-or-nothing: the create in the same message is not made

    # a create whose name someone took meanwhile; a delete of what someone deleted meanwhile
    nsupdate(named, "update add new.example.test. 300 A 192.0.2.77")
    with pytest.raises(ChangedMeanwhile) as err:
        t.apply(ZONE, [Change(Action.CREATE, None, new)])
    assert "YXRRSET" in str(err.value)
    mail = read[("mail.example.test.", "A")]
    nsupdate(named, "update delete mail.example.test. A")
    with pytest.raises(ChangedMeanwhile):
        t.apply(ZONE, [Change(Action.DELETE, mail, None)])

    # read again, plan again: it goes through
    now = dict(t.read(ZONE))
    t.apply(ZONE, three_way(changed, None, now).push)
    assert t.read(ZONE) == changed

    # the TTL is not part of the compare-and-swap (RFC 2136 2.4.2): a TTL-only edit made
    # meanwhile is overwritten
    read = dict(t.read(ZONE))
    nsupdate(named, "update add www.example.test. 900 A 192.0.2.3")
    final = {**changed, www.key: rrset("www.example.test.", "A", 300, "192.0.2.6")}
    t.apply(ZONE, three_way(final, None, read).push)
    assert t.read(ZONE) == final


def test_wrong_key_is_not_retried(named: Named) -> None:
    t = target(named)
    push(t, DESIRED)
    change = Change(Action.CREATE, None, rrset("x.example.test.", "A", 300, "192.0.2.1"))
    other_secret = base64.b64encode(b"not the secret that named has!!").decode()
    for bad in (
        target(named, secret=other_secret),  # BADSIG
        target(named, key_name="unknown-key"),  # BADKEY
        target(named, key_name=None, secret=None),  # unsigned: REFUSED
    ):
        with pytest.raises(ProviderError) as err:
            bad.read(ZONE)
        assert not err.value.retry, err.value
        with pytest.raises(ProviderError) as err:
            bad.apply(ZONE, [change])
        assert not err.value.retry, err.value
        assert not isinstance(err.value, ChangedMeanwhile)
    assert ("x.example.test.", "A") not in t.read(ZONE)
    with pytest.raises(ProviderError) as err:
        target(named, key_name=None, secret=None).read(ZONE)
    assert "allow transfers" in str(err.value)


def test_data_the_server_refuses_is_not_retried(named: Named) -> None:
    """BIND's check-names (on by default for a primary) refuses an A record whose owner is not
    a host name."""
    t = target(named)
    bad = rrset("bad_host.example.test.", "A", 300, "192.0.2.1")
    with pytest.raises(ProviderError) as err:
        t.apply(ZONE, [Change(Action.CREATE, None, bad)])
    assert not err.value.retry and "REFUSED" in str(err.value)
    assert t.read(ZONE) == {}


def test_bind_ignores_a_cname_beside_other_data(named: Named) -> None:
    """RFC 2136 3.4.2.2: the add is dropped with NOERROR; only a read shows it (see the
    module's text)."""
    t = target(named)
    a = rrset("c.example.test.", "A", 300, "192.0.2.1")
    cname = rrset("c.example.test.", "CNAME", 300, "www.example.test.")
    t.apply(ZONE, [Change(Action.CREATE, None, a)])
    assert t.apply(ZONE, [Change(Action.CREATE, None, cname)]).calls == 1
    assert t.read(ZONE) == {a.key: a}
    assert "attempt to add CNAME alongside non-CNAME ignored" in named.log()


def test_unreachable_is_retried_quickly(named: Named) -> None:
    named.stop()
    t = target(named, timeout=1.0)
    change = Change(Action.CREATE, None, rrset("x.example.test.", "A", 300, "192.0.2.1"))
    start = time.monotonic()
    for call in (lambda: t.read(ZONE), lambda: t.apply(ZONE, [change])):
        with pytest.raises(ProviderError) as err:
            call()
        assert err.value.retry and "unreachable" in str(err.value)
    assert time.monotonic() - start < 2
    # a server that takes the connection and never answers: the timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        t = Rfc2136("127.0.0.1", port=silent.getsockname()[1], timeout=0.3)
        start = time.monotonic()
        with pytest.raises(ProviderError) as err:
            t.apply(ZONE, [change])
        assert err.value.retry and "no answer" in str(err.value)
        assert time.monotonic() - start < 2


def test_other_zone_is_refused(named: Named) -> None:
    with pytest.raises(ProviderError) as err:
        target(named).read("other.test.")
    assert not err.value.retry


def test_many_rrsets_in_few_messages(named: Named) -> None:
    desired = {
        r.key: r
        for r in (
            rrset(f"h{i}.example.test.", "TXT", 300, f'"host {i}"', '"' + "x" * 200 + '"')
            for i in range(300)
        )
    }
    t = target(named, max_records=250)  # a create is 1 + 2 records: 83 a message
    applied = t.apply(ZONE, three_way(desired, None, {}).push)
    assert (applied.changes, applied.calls) == (300, 4)
    assert t.read(ZONE) == desired
    # default limits: 300 updates, about 480 octets each (the old values in the prerequisite,
    # the new ones added): bound by the 60,000 octets of a message
    changed = {k: RRset(r.name, r.type, 600, r.values) for k, r in desired.items()}
    applied = target(named).apply(ZONE, three_way(changed, desired, desired).push)
    assert (applied.changes, applied.calls) == (300, 3)
    assert t.read(ZONE) == changed


def test_batches_stay_within_the_wire_limit() -> None:
    origin = dns.name.from_text(ZONE)
    long = '"' + "y" * 255 + '"'
    changes = [
        Change(Action.CREATE, None, rrset(f"t{i}.example.test.", "TXT", 300, long))
        for i in range(300)
    ]
    out = batches(origin, changes, max_wire=16_000)
    assert sum(len(b) for b in out) == 300
    assert len(out) == 6  # about 290 octets a change: 55 in 16,000
    assert all(len(update_message(origin, b).to_wire()) <= 16_000 for b in out)
    huge = rrset("big.example.test.", "TXT", 300, *(f'"{i:03d}{long[4:]}' for i in range(100)))
    with pytest.raises(ProviderError) as err:
        batches(origin, [Change(Action.CREATE, None, huge)], max_wire=16_000)
    assert not err.value.retry
