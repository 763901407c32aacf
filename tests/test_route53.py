"""The Route 53 target (xdnsd/upstreams/route53.py) against moto's server on 127.0.0.1, the
real boto3 client talking HTTP to it; batch sizing and name decoding as pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.moto import CREDENTIALS, MotoServer
from xdnsd.upstreams.plan import Action, Change, RRset, three_way
from xdnsd.upstreams.route53 import MAX_CHARS, MAX_RECORDS, Route53, batches, decode_name

ZONE = "example.test."


@pytest.fixture
def target(moto: MotoServer) -> Route53:
    moto.reset()
    zone_id = moto.create_zone(ZONE)
    return Route53(
        zone_id,
        endpoint_url=moto.url,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )


def rrset(name: str, rdtype: str, ttl: int, *values: str) -> RRset:
    return RRset(name, rdtype, ttl, tuple(sorted(values)))


def test_names_come_back_decoded() -> None:
    assert decode_name("\\052.example.test.") == "*.example.test."
    assert decode_name("WWW.Example.Test") == "www.example.test."
    assert decode_name("a\\100b.example.test.") == "a\\064b.example.test."  # @ as dnspython has it


def test_push_read_back_and_update(target: Route53) -> None:
    desired = {
        r.key: r
        for r in (
            rrset("www.example.test.", "A", 300, "192.0.2.1", "192.0.2.2"),
            rrset("*.example.test.", "A", 60, "192.0.2.9"),
            rrset("txt.example.test.", "TXT", 300, '"v=spf1 -all"', '"a" "b c"'),
            rrset("example.test.", "MX", 300, "10 mail.example.test."),
            rrset("alias.example.test.", "CNAME", 300, "www.example.test."),
        )
    }
    actual = target.read(ZONE)
    plan = three_way(desired, None, dict(actual))
    assert [c.action for c in plan.push] == [Action.CREATE] * 5
    target.apply(ZONE, plan.push)
    back = dict(target.read(ZONE))
    assert back == desired  # names, TXT quoting and the wildcard survive the round trip
    # an update is a compare-and-swap (DELETE old + CREATE new in one batch)
    new = rrset("www.example.test.", "A", 600, "192.0.2.3")
    changed = {**desired, new.key: new}
    plan = three_way(changed, desired, back)
    assert [c.action for c in plan.push] == [Action.UPDATE]
    applied = target.apply(ZONE, plan.push)
    assert applied.calls == 1  # one change batch (moto is INSYNC at once: no GetChange)
    assert target.read(ZONE)[new.key] == new


def test_many_records_are_paged_and_batched(target: Route53) -> None:
    """2,500 RRsets: several pages to read (300 each), several batches to write (1,000)."""
    desired = {
        r.key: r for r in (rrset(f"h{i}.example.test.", "A", 300, "192.0.2.1") for i in range(2500))
    }
    calls = target.calls
    applied = target.apply(ZONE, three_way(desired, None, {}).push)
    assert applied.changes == 2500
    assert applied.calls == 3  # three batches of at most 1,000 records
    back = target.read(ZONE)
    assert target.calls - calls - applied.calls == 9  # 2,502 sets in pages of 300
    assert {k: v for k, v in back.items() if k[1] == "A"} == desired


def test_batches_respect_both_limits() -> None:
    big_txt = '"' + "x" * 250 + '"'
    changes = [
        Change(Action.CREATE, None, rrset(f"t{i}.example.test.", "TXT", 300, big_txt))
        for i in range(300)
    ]
    out = batches(changes)
    for batch in out:
        records = sum(len(c["ResourceRecordSet"]["ResourceRecords"]) for c in batch)
        chars = sum(
            len(r["Value"]) for c in batch for r in c["ResourceRecordSet"]["ResourceRecords"]
        )
        assert records <= MAX_RECORDS and chars <= MAX_CHARS
    assert len(out) == 3  # 300 x 252 characters: 126 a batch
    deletes = [
        Change(Action.DELETE, rrset("d.example.test.", "A", 300, "192.0.2.1"), None),
        Change(
            Action.UPDATE,
            rrset("u.example.test.", "A", 300, "192.0.2.1"),
            rrset("u.example.test.", "A", 300, "192.0.2.2"),
        ),
    ]
    (batch,) = batches([changes[0], *deletes])
    assert [c["Action"] for c in batch] == ["DELETE", "DELETE", "CREATE", "CREATE"]
    assert batch[1]["ResourceRecordSet"]["Name"] == batch[2]["ResourceRecordSet"]["Name"]


def test_unreachable_is_an_error_to_retry(tmp_path: Path) -> None:
    from tests.harness import free_port
    from xdnsd.upstreams.base import ProviderError

    target = Route53(
        "Z1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="x",
        secret_access_key="y",
        attempts=2,
        backoff=0.01,
    )
    with pytest.raises(ProviderError) as err:
        target.read(ZONE)
    assert err.value.retry and "unreachable" in str(err.value)


# --- what moto does not reproduce, with botocore's Stubber (single calls, Route 53's answers) -----


def stubbed(**kwargs: object) -> tuple[Route53, object, list[float]]:
    from botocore.stub import Stubber

    slept: list[float] = []
    target = Route53(
        "Z1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the Stubber answers
        access_key_id="x",
        secret_access_key="y",
        sleep=slept.append,
        **kwargs,  # type: ignore[arg-type]
    )
    stub = Stubber(target.client)
    stub.activate()
    return target, stub, slept


CHANGE = Change(
    Action.UPDATE,
    rrset("www.example.test.", "A", 300, "192.0.2.1"),
    rrset("www.example.test.", "A", 300, "192.0.2.2"),
)
INFO = {"Id": "/change/C1", "Status": "PENDING", "SubmittedAt": "2026-12-02T00:00:00Z"}


def test_throttling_is_retried_with_jitter_and_insync_awaited() -> None:
    target, stub, slept = stubbed()
    for code in ("Throttling", "PriorRequestNotComplete"):
        stub.add_client_error(  # type: ignore[attr-defined]
            "change_resource_record_sets", service_error_code=code, http_status_code=400
        )
    stub.add_response("change_resource_record_sets", {"ChangeInfo": INFO})  # type: ignore[attr-defined]
    stub.add_response("get_change", {"ChangeInfo": INFO})  # type: ignore[attr-defined]
    stub.add_response(  # type: ignore[attr-defined]
        "get_change", {"ChangeInfo": {**INFO, "Status": "INSYNC"}}, {"Id": "/change/C1"}
    )
    applied = target.apply(ZONE, [CHANGE])
    assert applied.calls == 5  # two refusals, the batch, two GetChange
    assert len(slept) == 4 and all(s >= 0 for s in slept)
    assert slept[0] <= 0.2 and slept[1] <= 0.4  # full jitter under a doubling cap
    stub.assert_no_pending_responses()  # type: ignore[attr-defined]


def test_a_stale_delete_is_changed_meanwhile_not_an_error() -> None:
    from xdnsd.upstreams.base import ChangedMeanwhile, ProviderError

    target, stub, _slept = stubbed()
    stub.add_client_error(  # type: ignore[attr-defined]
        "change_resource_record_sets",
        service_error_code="InvalidChangeBatch",
        service_message="[Tried to delete resource record set [name='www.example.test.', "
        "type='A'] but the values provided do not match the current values]",
        http_status_code=400,
    )
    with pytest.raises(ChangedMeanwhile):
        target.apply(ZONE, [CHANGE])
    stub.add_client_error(  # type: ignore[attr-defined]
        "change_resource_record_sets",
        service_error_code="InvalidChangeBatch",
        service_message="RRSet of type CNAME with DNS name www.example.test. is not permitted",
        http_status_code=400,
    )
    with pytest.raises(ProviderError) as err:
        target.apply(ZONE, [CHANGE])
    assert not err.value.retry and not isinstance(err.value, ChangedMeanwhile)


def test_throttling_that_does_not_stop_is_an_error_to_retry_later() -> None:
    from xdnsd.upstreams.base import ProviderError

    target, stub, slept = stubbed(attempts=3)
    for _ in range(3):
        stub.add_client_error(  # type: ignore[attr-defined]
            "list_resource_record_sets", service_error_code="Throttling", http_status_code=400
        )
    with pytest.raises(ProviderError) as err:
        target.read(ZONE)
    assert err.value.retry and "Throttling" in str(err.value) and len(slept) == 2
