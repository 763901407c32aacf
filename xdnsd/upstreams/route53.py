"""Amazon Route 53 as a mirror target (boto3).

Facts this follows (../shared/PROVIDERS.md, Route 53's API reference):

* ``ChangeResourceRecordSets`` takes at most 1,000 ResourceRecord elements and 32,000
  characters of values per batch (an UPSERT counts twice; this module does not use UPSERT);
  a batch is applied whole or not at all.  DELETE must match the current RRset exactly, so an
  update is sent as DELETE(old) + CREATE(new) in one batch: a compare-and-swap that fails
  (``InvalidChangeBatch``) when someone changed the RRset meanwhile, instead of overwriting
  their change.  Deletes go first.
* ``ListResourceRecordSets`` pages by 300 with NextRecordName / NextRecordType /
  NextRecordIdentifier; names come back lowercased with special characters as ``\\ooo`` octal
  escapes (``*`` is ``\\052``).
* ``Throttling`` and ``PriorRequestNotComplete`` are retried with exponential backoff and full
  jitter; a batch is done when ``GetChange`` says INSYNC.
* Alias records (no TTL, no values) are not xdnsd's to manage: they are neither read nor
  touched.  The apex SOA and NS belong to Route 53 (the planner leaves them alone).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from xdnsd.upstreams.base import Applied, ChangedMeanwhile, ProviderError
from xdnsd.upstreams.plan import Action, Change, Key, RRset, canonical_value, owner_text

MAX_RECORDS = 1000  # ResourceRecord elements per ChangeResourceRecordSets
MAX_CHARS = 32_000  # characters of values per ChangeResourceRecordSets
PAGE = 300
RETRIED = frozenset({"Throttling", "ThrottlingException", "PriorRequestNotComplete"})
SUPPORTED = frozenset(
    {"A", "AAAA", "CAA", "CNAME", "DS", "HTTPS", "MX", "NAPTR", "NS", "PTR", "SPF", "SRV"}
    | {"SSHFP", "SVCB", "TLSA", "TXT"}
)
_OCTAL = re.compile(r"\\([0-7]{3})")


def decode_name(name: str) -> str:
    """A name as Route 53 lists it (``\\052`` octal escapes) in presentation form."""

    def char(match: re.Match[str]) -> str:
        value = int(match.group(1), 8)
        c = chr(value)
        if c.isalnum() or c in "-_*":
            return c
        return f"\\{value:03d}"  # dnspython's escapes are decimal

    return owner_text(_OCTAL.sub(char, name))


class Route53:
    kind = "route53"
    supported = SUPPORTED

    def __init__(
        self,
        hosted_zone_id: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        profile: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        attempts: int = 8,
        backoff: float = 0.2,
        wait_insync: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        session = boto3.session.Session(
            profile_name=profile,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self.client: Any = session.client(
            "route53",
            endpoint_url=endpoint_url,
            # retries are ours (backoff with jitter, counted); connect quickly to fail fast
            config=botocore.config.Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        self.zone_id = hosted_zone_id
        self.attempts = attempts
        self.backoff = backoff
        self.wait_insync = wait_insync
        self.sleep = sleep
        self.calls = 0

    # --- talking -----------------------------------------------------------------------

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One API call, retried on throttling and on connection trouble."""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            self.calls += 1
            try:
                return getattr(self.client, method)(**kwargs)
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                message = str(exc.response.get("Error", {}).get("Message", exc))
                if code in RETRIED and attempt < self.attempts:
                    self.sleep(random.uniform(0, delay))  # full jitter
                    delay = min(delay * 2, 20.0)
                    continue
                if code in ("InvalidChangeBatch", "InvalidInput") and any(
                    phrase in message
                    for phrase in ("not found", "already exists", "do not match the current")
                ):
                    raise ChangedMeanwhile(f"Route 53: {message}") from None
                retry = code in RETRIED or code.startswith("5")
                raise ProviderError(f"Route 53 {method}: {code}: {message}", retry) from None
            except (
                botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ConnectTimeoutError,
            ) as exc:
                # once more, then let the sync service's backoff take over (and say so)
                if attempt < min(2, self.attempts):
                    self.sleep(random.uniform(0, delay))
                    delay = min(delay * 2, 20.0)
                    continue
                raise ProviderError(f"Route 53 unreachable: {exc}") from None
            except botocore.exceptions.NoCredentialsError as exc:
                raise ProviderError(f"Route 53: {exc}", retry=False) from None
        raise AssertionError("unreachable")

    # --- reading -------------------------------------------------------------------------

    def _pages(self) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"HostedZoneId": self.zone_id, "MaxItems": str(PAGE)}
        while True:
            page = self._call("list_resource_record_sets", **kwargs)
            yield from page.get("ResourceRecordSets", [])
            if not page.get("IsTruncated"):
                return
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
            else:
                kwargs.pop("StartRecordIdentifier", None)

    def read(self, zone: str) -> Mapping[Key, RRset]:
        out: dict[Key, RRset] = {}
        for item in self._pages():
            if "AliasTarget" in item or "SetIdentifier" in item:
                continue  # alias and routing-policy records are not xdnsd's
            name, rdtype = decode_name(item["Name"]), str(item["Type"])
            if rdtype == "SOA" or (rdtype == "NS" and name == owner_text(zone)):
                continue  # Route 53's own (and moto lists them oddly)
            try:
                values = tuple(
                    sorted(canonical_value(rdtype, r["Value"]) for r in item["ResourceRecords"])
                )
            except ValueError as exc:
                raise ProviderError(
                    f"Route 53 holds {name} {rdtype} that xdnsd cannot read: {exc}", False
                ) from None
            out[(name, rdtype)] = RRset(name, rdtype, int(item["TTL"]), values)
        return out

    # --- writing -------------------------------------------------------------------------

    def apply(self, zone: str, changes: Sequence[Change]) -> Applied:
        calls = self.calls
        for batch in batches(changes):
            answer = self._call(
                "change_resource_record_sets",
                HostedZoneId=self.zone_id,
                ChangeBatch={"Comment": "xdnsd", "Changes": batch},
            )
            self._wait(answer["ChangeInfo"])
        return Applied(len(changes), self.calls - calls)

    def _wait(self, info: Mapping[str, Any]) -> None:
        deadline = time.monotonic() + self.wait_insync
        delay = 0.5
        while info.get("Status") != "INSYNC":
            if time.monotonic() > deadline:
                raise ProviderError(f"Route 53 change {info.get('Id')} not INSYNC in time")
            self.sleep(delay)
            delay = min(delay * 2, 10.0)
            info = self._call("get_change", Id=info["Id"])["ChangeInfo"]


def _record_set(rrset: RRset) -> dict[str, Any]:
    return {
        "Name": rrset.name,
        "Type": rrset.type,
        "TTL": rrset.ttl,
        "ResourceRecords": [{"Value": v} for v in rrset.values],
    }


def _size(rrset: RRset) -> tuple[int, int]:
    return len(rrset.values), sum(len(v) for v in rrset.values)


def batches(changes: Sequence[Change]) -> list[list[dict[str, Any]]]:
    """Route 53 change batches: deletes first, then updates (DELETE + CREATE of one RRset,
    never split), then creates; each within ``MAX_RECORDS`` records and ``MAX_CHARS``
    characters of values."""
    order = {Action.DELETE: 0, Action.UPDATE: 1, Action.CREATE: 2}
    groups: list[tuple[list[dict[str, Any]], int, int]] = []
    for change in sorted(changes, key=lambda c: (order[c.action], c.key)):
        group: list[dict[str, Any]] = []
        records = chars = 0
        if change.old is not None:
            group.append({"Action": "DELETE", "ResourceRecordSet": _record_set(change.old)})
            n, c = _size(change.old)
            records, chars = records + n, chars + c
        if change.new is not None:
            group.append({"Action": "CREATE", "ResourceRecordSet": _record_set(change.new)})
            n, c = _size(change.new)
            records, chars = records + n, chars + c
        if records > MAX_RECORDS or chars > MAX_CHARS:
            key = change.key
            raise ProviderError(f"{key[0]} {key[1]} is too large for one Route 53 batch", False)
        groups.append((group, records, chars))
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    records = chars = 0
    for group, n, c in groups:
        if current and (records + n > MAX_RECORDS or chars + c > MAX_CHARS):
            out.append(current)
            current, records, chars = [], 0, 0
        current += group
        records, chars = records + n, chars + c
    if current:
        out.append(current)
    return out
