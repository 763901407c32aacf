"""The Azure DNS target (xdnsd/upstreams/azure.py): the real azure-mgmt-dns client over HTTPS
against the ARM DNS emulator of tests/fakes/azure.py on 127.0.0.1; with a client secret, the
real azure-identity/MSAL client-credentials flow against the emulator's Entra ID endpoints."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.azure import FAKE_TOKEN, AzureDns, FakeCredential
from tests.harness import free_port
from xdnsd.upstreams.azure import Azure, record_set
from xdnsd.upstreams.base import ChangedMeanwhile, ProviderError
from xdnsd.upstreams.plan import Action, Change, RRset, canonical_value, three_way

ZONE = "example.test."
LONG = "x" * 255 + "y" * 45  # 300 characters: two TXT strings


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureDns]:
    server = AzureDns(tmp_path_factory.mktemp("azure"))
    yield server
    server.stop()


def make_target(emulator: AzureDns, **kwargs: object) -> Azure:
    args: dict[str, object] = {
        "credential": FakeCredential(),
        "base_url": emulator.url,
        "connection_verify": str(emulator.ca_path),
        "retry_total": 3,
        "retry_backoff_factor": 0.01,
        "polling_interval": 0.01,
    }
    args.update(kwargs)
    return Azure(emulator.subscription, emulator.group, ZONE.rstrip("."), **args)  # type: ignore[arg-type]


@pytest.fixture
def fresh(emulator: AzureDns) -> AzureDns:
    """The emulator with an empty zone, no log and no grants."""
    with emulator.lock:
        emulator.zones.clear()
        emulator.log.clear()
        emulator.grants.clear()
    emulator.create_zone(ZONE.rstrip("."))
    return emulator


@pytest.fixture
def target(fresh: AzureDns) -> Iterator[Azure]:
    azure = make_target(fresh)
    yield azure
    azure.close()


def rrset(name: str, rdtype: str, ttl: int, *values: str) -> RRset:
    return RRset(name, rdtype, ttl, tuple(sorted(canonical_value(rdtype, v) for v in values)))


DESIRED = {
    r.key: r
    for r in (
        rrset("www.example.test.", "A", 300, "192.0.2.1", "192.0.2.2"),
        rrset("*.example.test.", "A", 60, "192.0.2.9"),
        rrset("www.example.test.", "AAAA", 300, "2001:db8::1"),
        rrset("txt.example.test.", "TXT", 300, '"say \\"hi\\""', f'"{LONG[:255]}" "{LONG[255:]}"'),
        rrset("example.test.", "MX", 300, "10 mail.example.test.", "20 mx.other.test."),
        rrset("alias.example.test.", "CNAME", 300, "www.example.test."),
        rrset("_sip._tcp.example.test.", "SRV", 300, "10 60 5060 sip.example.test."),
        rrset("example.test.", "CAA", 3600, '0 issue "letsencrypt.org"', '128 iodef "a;b"'),
        rrset("sub.example.test.", "NS", 3600, "ns1.other.test.", "ns2.other.test."),
        rrset("1.example.test.", "PTR", 300, "host.example.test."),
    )
}


def test_round_trip_of_every_type(target: Azure, emulator: AzureDns) -> None:
    assert dict(target.read(ZONE)) == {}  # the apex SOA and NS are Azure's: not read
    plan = three_way(DESIRED, None, {})
    assert [c.action for c in plan.push] == [Action.CREATE] * len(DESIRED)
    applied = target.apply(ZONE, plan.push)
    assert applied.changes == applied.calls == len(DESIRED)  # one PUT per record set
    puts = emulator.requests("PUT")
    assert all(h.get("if-none-match") == "*" for _, _, h in puts)
    assert {p for _, p, _ in puts} >= {
        f"/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/dnsZones/"
        f"example.test/{t}/{n}"
        for n, t in (("*", "A"), ("@", "MX"), ("_sip._tcp", "SRV"))
    }
    stored = emulator.sets(ZONE.rstrip("."))
    txt = stored[("txt", "TXT")]["properties"]["TXTRecords"]
    assert sorted(r["value"] for r in txt) == [['say "hi"'], [LONG[:255], LONG[255:]]]
    assert stored[("@", "CAA")]["properties"]["caaRecords"][0].keys() == {"flags", "tag", "value"}
    assert dict(target.read(ZONE)) == DESIRED


def test_update_and_delete_are_conditional(target: Azure, emulator: AzureDns) -> None:
    target.apply(ZONE, three_way(DESIRED, None, {}).push)
    actual = dict(target.read(ZONE))
    www = ("www.example.test.", "A")
    etag, ptr_etag = target.etags[www], target.etags[("1.example.test.", "PTR")]
    new = rrset("www.example.test.", "A", 600, "192.0.2.3")
    changed = {k: v for k, v in DESIRED.items() if k[1] != "PTR"} | {www: new}
    plan = three_way(changed, DESIRED, actual)
    assert sorted(c.action.value for c in plan.push) == ["delete", "update"]
    emulator.log.clear()
    applied = target.apply(ZONE, plan.push)
    assert applied.calls == 2
    headers = {m: h for m, _, h in emulator.requests()}
    assert headers["PUT"]["if-match"] == etag and "if-none-match" not in headers["PUT"]
    assert headers["DELETE"]["if-match"] == ptr_etag
    assert dict(target.read(ZONE)) == changed
    assert target.etags[www] != etag  # the write gave a new etag


def test_an_edit_at_azure_meanwhile_is_not_overwritten(target: Azure, emulator: AzureDns) -> None:
    target.apply(ZONE, three_way(DESIRED, None, {}).push)
    actual = dict(target.read(ZONE))
    www = ("www.example.test.", "A")
    # someone edits www at Azure after our read
    emulator.put(ZONE.rstrip("."), "www", "A", 300, [{"ipv4Address": "198.51.100.7"}])
    update = Change(Action.UPDATE, actual[www], rrset(*www, 600, "192.0.2.3"))
    with pytest.raises(ChangedMeanwhile):
        target.apply(ZONE, [update])
    with pytest.raises(ChangedMeanwhile):
        target.apply(ZONE, [Change(Action.DELETE, actual[www], None)])
    stored = emulator.sets(ZONE.rstrip("."))[("www", "A")]
    assert stored["properties"]["ARecords"] == [{"ipv4Address": "198.51.100.7"}]  # theirs kept
    # someone creates a set we are about to create
    new = rrset("new.example.test.", "A", 300, "192.0.2.5")
    emulator.put(ZONE.rstrip("."), "new", "A", 300, [{"ipv4Address": "192.0.2.6"}])
    with pytest.raises(ChangedMeanwhile):
        target.apply(ZONE, [Change(Action.CREATE, None, new)])
    # a fresh read and plan go through
    again = three_way(DESIRED, None, dict(target.read(ZONE)))
    target.apply(ZONE, again.push)
    assert {k: v for k, v in target.read(ZONE).items() if k[0] != "new.example.test."} == DESIRED


def test_an_instance_that_did_not_read_checks_before_it_writes(emulator: AzureDns) -> None:
    with emulator.lock:
        emulator.zones.clear()
    emulator.create_zone(ZONE.rstrip("."))
    first, second = make_target(emulator), make_target(emulator)
    try:
        first.apply(ZONE, three_way(DESIRED, None, {}).push)
        www = DESIRED[("www.example.test.", "A")]
        new = rrset("www.example.test.", "A", 600, "192.0.2.3")
        applied = second.apply(ZONE, [Change(Action.UPDATE, www, new)])
        assert applied.calls == 2  # GET (compared with old, its etag) + PUT
        with pytest.raises(ChangedMeanwhile):  # old is no longer what Azure holds
            second.apply(ZONE, [Change(Action.DELETE, www, None)])
    finally:
        first.close()
        second.close()


def test_throttling_waits_for_retry_after(target: Azure, emulator: AzureDns) -> None:
    emulator.inject(2, 429, retry_after="1")
    change = Change(Action.CREATE, None, rrset("t.example.test.", "A", 300, "192.0.2.1"))
    start = time.monotonic()
    applied = target.apply(ZONE, [change])
    assert time.monotonic() - start >= 1.9  # the backoff factor is 0.01: Retry-After it was
    assert applied.calls == 3
    assert target.read(ZONE)[change.key] == change.new


def test_250_record_sets_are_read_in_pages(target: Azure, emulator: AzureDns) -> None:
    desired = {
        r.key: r for r in (rrset(f"h{i}.example.test.", "A", 300, "192.0.2.1") for i in range(250))
    }
    target.apply(ZONE, three_way(desired, None, {}).push)
    calls = target.calls
    emulator.log.clear()
    assert dict(target.read(ZONE)) == desired
    assert target.calls - calls == 3  # 252 sets with the apex SOA and NS, 100 a page
    paths = [p for _, p, _ in emulator.requests("GET")]
    assert len(paths) == 3 and all(p.lower().endswith("/dnszones/example.test/all") for p in paths)


def test_an_empty_record_set_is_overwritten_by_a_create(target: Azure, emulator: AzureDns) -> None:
    emulator.put(ZONE.rstrip("."), "empty", "A", 300, [])
    assert dict(target.read(ZONE)) == {}
    new = rrset("empty.example.test.", "A", 300, "192.0.2.1")
    target.apply(ZONE, [Change(Action.CREATE, None, new)])
    assert dict(target.read(ZONE)) == {new.key: new}


def test_alias_record_sets_are_left_alone(target: Azure, emulator: AzureDns) -> None:
    emulator.put(ZONE.rstrip("."), "lb", "A", 300, [])
    ip = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/publicIPAddresses/ip"
    with emulator.lock:
        stored = emulator.zones[ZONE.rstrip(".")][("lb", "A")]
        stored["properties"]["targetResource"] = {"id": ip}
    assert dict(target.read(ZONE)) == {}
    mine = rrset("lb.example.test.", "A", 300, "192.0.2.1")
    with pytest.raises(ProviderError) as err:
        target.apply(ZONE, [Change(Action.CREATE, None, mine)])
    assert not err.value.retry and "alias" in str(err.value)
    assert emulator.sets(ZONE.rstrip("."))[("lb", "A")]["properties"]["targetResource"]["id"] == ip


def test_errors_say_whether_to_retry(target: Azure, emulator: AzureDns) -> None:
    change = Change(Action.CREATE, None, rrset("e.example.test.", "A", 300, "192.0.2.1"))
    emulator.inject(1, 403, retry_after=None)
    with pytest.raises(ProviderError) as err:
        target.apply(ZONE, [change])
    assert not err.value.retry and "403" in str(err.value)
    emulator.inject(4, 503, retry_after=None)  # retried three times, then given up
    calls = target.calls
    with pytest.raises(ProviderError) as err:
        target.apply(ZONE, [change])
    assert err.value.retry and "503" in str(err.value) and target.calls - calls == 4
    missing = make_target(emulator)
    missing.zone_name = "missing.test"
    try:
        with pytest.raises(ProviderError) as err:
            missing.read("missing.test.")
        assert not err.value.retry and "404" in str(err.value)
    finally:
        missing.close()
    with pytest.raises(ProviderError) as err:  # Azure cannot hold it: refused before sending
        record_set(RRset("x.example.test.", "HINFO", 300, ('"a" "b"',)))
    assert not err.value.retry


def test_unreachable_is_an_error_to_retry(target: Azure, emulator: AzureDns) -> None:
    target.read(ZONE)  # a pooled keep-alive connection the outage must cut too
    emulator.stop()
    try:
        start = time.monotonic()
        with pytest.raises(ProviderError) as err:
            target.read(ZONE)
        assert err.value.retry and "unreachable" in str(err.value)
        assert time.monotonic() - start < 5
    finally:
        emulator.start()
    assert dict(target.read(ZONE)) == {}  # the same port serves again


# --- a client secret: the token from the emulator's Entra ID ------------------------------

LOCAL = {"127.0.0.1", "localhost", "::1"}
IDENTITY_ENV = (  # what would send azure-identity or MSAL elsewhere
    "AZURE_AUTHORITY_HOST",
    "AZURE_REGIONAL_AUTHORITY_NAME",
    "MSAL_FORCE_REGION",
    "REGION_NAME",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """No network but loopback: name lookups and connections elsewhere fail (as with no
    network), and are listed here for the test to assert there were none."""
    tried: list[object] = []
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def local_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOCAL:
            tried.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no network in tests")
        return getaddrinfo(host, *args, **kwargs)

    def local_connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in LOCAL:
            tried.append(address)
            raise OSError(errno.ENETUNREACH, f"{address}: no network in tests")
        connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", local_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", local_connect)
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    return tried


def secret_target(emulator: AzureDns, **kwargs: object) -> Azure:
    args: dict[str, object] = {
        "credential": None,
        "tenant_id": emulator.tenant,
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "authority_host": emulator.url,
    }
    args.update(kwargs)
    return make_target(emulator, **args)


def identity_requests(emulator: AzureDns) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in emulator.requests() if not p.startswith("/subscriptions/")]


def arm_requests(emulator: AzureDns) -> list[tuple[str, str, dict[str, str]]]:
    return [r for r in emulator.requests() if r[1].startswith("/subscriptions/")]


def test_a_client_secret_gets_its_token_from_entra_id(
    fresh: AzureDns, offline: list[object]
) -> None:
    azure = secret_target(fresh)
    try:
        assert dict(azure.read(ZONE)) == {}
        applied = azure.apply(ZONE, three_way(DESIRED, None, {}).push)
        assert applied.calls == len(DESIRED)  # the identity requests are not ARM calls
        assert dict(azure.read(ZONE)) == DESIRED
    finally:
        azure.close()
    assert offline == []  # nothing but the emulator was asked
    tenant = f"/{fresh.tenant}"
    assert identity_requests(fresh) == [  # no instance discovery; one token for all calls
        ("GET", f"{tenant}/v2.0/.well-known/openid-configuration"),
        ("POST", f"{tenant}/oauth2/v2.0/token"),
    ]
    [grant] = fresh.grants
    assert grant["grant_type"] == "client_credentials" and grant["client_id"] == fresh.client_id
    assert grant["scope"] == "https://management.azure.com/.default"
    tokens = {h["authorization"] for _, _, h in arm_requests(fresh)}
    assert len(tokens) == 1
    token = tokens.pop().removeprefix("Bearer ")
    assert token in fresh.tokens and token != FAKE_TOKEN


def test_a_wrong_client_secret_is_refused_and_not_retried(
    fresh: AzureDns, offline: list[object]
) -> None:
    azure = secret_target(fresh, client_secret="not-the-secret")
    change = Change(Action.CREATE, None, rrset("s.example.test.", "A", 300, "192.0.2.1"))
    try:
        with pytest.raises(ProviderError) as err:
            azure.read(ZONE)
        assert not err.value.retry
        assert "Authentication failed" in str(err.value) and "AADSTS7000215" in str(err.value)
        assert "Invalid client secret provided" in str(err.value)
        with pytest.raises(ProviderError) as err:
            azure.apply(ZONE, [change])
        assert not err.value.retry and "AADSTS7000215" in str(err.value)
        assert azure.calls == 0
    finally:
        azure.close()
    assert offline == [] and arm_requests(fresh) == []  # no token: nothing sent to ARM
    tenant = f"/{fresh.tenant}"
    assert identity_requests(fresh) == [  # one token request an attempt: none retried
        ("GET", f"{tenant}/v2.0/.well-known/openid-configuration"),
        ("POST", f"{tenant}/oauth2/v2.0/token"),
        ("POST", f"{tenant}/oauth2/v2.0/token"),
    ]
    assert fresh.tokens.keys().isdisjoint(
        h.get("authorization", "") for _, _, h in fresh.requests()
    )


def test_other_refusals_are_not_retried(fresh: AzureDns, offline: list[object]) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"client_id": "00000000-0000-0000-0000-0000000000cc"}, "AADSTS700016"),
        ({"tenant_id": "00000000-0000-0000-0000-0000000000dd"}, "Unable to get authority"),
        ({"authority_host": "http://127.0.0.1:1"}, "https"),
    ]
    for args, words in cases:
        azure = secret_target(fresh, **args)
        try:
            with pytest.raises(ProviderError) as err:
                azure.read(ZONE)
            assert not err.value.retry and words in str(err.value), args
        finally:
            azure.close()
    assert offline == [] and arm_requests(fresh) == []
    forged = make_target(fresh, credential=FakeCredential("forged"))  # not a token it issued
    try:
        with pytest.raises(ProviderError) as err:
            forged.read(ZONE)
        assert not err.value.retry and "401" in str(err.value)
    finally:
        forged.close()


def test_an_unreachable_identity_endpoint_is_an_error_to_retry(
    fresh: AzureDns, offline: list[object]
) -> None:
    closed = secret_target(fresh, authority_host=f"https://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ProviderError) as err:
            closed.read(ZONE)
        assert err.value.retry and "identity endpoint unreachable" in str(err.value)
    finally:
        closed.close()
    assert offline == []
    # without authority_host, login.microsoftonline.com: this test's guard keeps it offline
    public = secret_target(fresh, authority_host=None)
    try:
        with pytest.raises(ProviderError) as err:
            public.read(ZONE)
        assert err.value.retry and "identity endpoint unreachable" in str(err.value)
    finally:
        public.close()
    assert set(offline) == {"login.microsoftonline.com"}
    assert arm_requests(fresh) == []


def test_a_failing_identity_endpoint_is_an_error_to_retry(
    fresh: AzureDns, offline: list[object]
) -> None:
    azure = secret_target(fresh)
    try:
        fresh.inject(4, 503, retry_after=None)  # the discovery GET: retried three times
        with pytest.raises(ProviderError) as err:
            azure.read(ZONE)
        assert err.value.retry and "identity endpoint" in str(err.value) and "503" in str(err.value)
        assert azure.calls == 0 and arm_requests(fresh) == []
        assert dict(azure.read(ZONE)) == {}  # the next run goes through
    finally:
        azure.close()
    assert offline == []
