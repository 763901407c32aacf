"""Azure DNS as a mirror target (azure-mgmt-dns, ARM API version 2018-05-01).

Facts this follows (../shared/PROVIDERS.md, the Azure DNS REST reference):

* A record set is (relative name, type); ``@`` is the apex.  It is written whole with
  ``PUT`` (``create_or_update``) and removed with ``DELETE``, one record set per request: there
  are no batches.  Every write gives it a new ``etag``; ``If-Match: <etag>`` makes a write or
  delete conditional and ``If-None-Match: *`` makes a create fail if the set exists, both with
  HTTP 412 (Precondition Failed).  Updates and deletes here carry the etag read with the
  RRset, creates ``If-None-Match: *``: a 412 means someone changed the set at Azure since it
  was read (``ChangedMeanwhile``), never an overwrite of their change.
* ``list_all_by_dns_zone`` lists a zone's record sets, ``$top`` a page (100 when not given),
  continued by ``nextLink``, which the SDK follows as given.
* Throttling is HTTP 429 with ``Retry-After``; azure-core's retry policy sleeps for it (it
  retries any status of 400 or more that carries ``Retry-After``, and 408/5xx for GET, PUT and
  DELETE).  Each attempt is counted (``calls``).  A retried create can meet its own earlier
  success (412): a re-read then finds the set in sync.
* Record data is JSON per type: ``ARecords[{ipv4Address}]``, ``AAAARecords``, ``MXRecords``,
  ``NSRecords``, ``PTRRecords``, ``SRVRecords``, ``TXTRecords[{value: [str, ...]}]`` (the
  strings of one TXT record), ``caaRecords``, a single ``CNAMERecord``.  Target names are
  absolute with or without their trailing dot; a TXT string longer than 255 octets is served
  split in 255-octet strings.  Record sets may be empty (no records) and may be aliases
  (``targetResource``) of Azure resources: neither is DNS data xdnsd mirrors; aliases are not
  touched, an empty set is overwritten by a create of the same key.
* The apex SOA and NS belong to Azure and are not read.
* Credentials: ``tenant_id``/``client_id``/``client_secret`` make a ``ClientSecretCredential``
  (MSAL's client-credentials grant: ``GET {authority}/{tenant}/v2.0/.well-known/
  openid-configuration``, then ``POST`` to the ``token_endpoint`` it names).  With
  ``authority_host`` (another cloud, a private one) MSAL's instance discovery is off: it would
  ask login.microsoftonline.com about the authority.  The identity requests trust the same CA
  file as the ARM ones and use the same timeouts and retries.  A refused authentication (a
  wrong secret, an unknown client or tenant) is not retried; an unreachable or failing (5xx)
  identity endpoint is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CAA
import dns.rdtypes.ANY.TXT
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import (
    AaaaRecord,
    ARecord,
    CaaRecord,
    CnameRecord,
    MxRecord,
    NsRecord,
    PtrRecord,
    RecordSet,
    SrvRecord,
    TxtRecord,
)

from xdnsd.upstreams.base import Applied, ChangedMeanwhile, ProviderError
from xdnsd.upstreams.plan import Action, Change, Key, RRset, canonical_value, owner_text

PAGE = 100  # record sets per list request (Azure's default $top)
SUPPORTED = frozenset({"A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SRV", "TXT"})
TXT_CHUNK = 255
_NAME = re.compile(r"^[a-z0-9_*-]+(\.[a-z0-9_-]+)*$")  # what a relative name may be here
_MSAL_HTTP = re.compile(r"^HTTP Error: (\d{3})$")  # MSAL's words for a 5xx it was answered


def _absolute(name: str | None) -> str:
    name = name or ""
    return name if name.endswith(".") else name + "."


def _txt_text(strings: Sequence[str]) -> str:
    """One TXT record (Azure's list of strings) in presentation form; strings over 255 octets
    split as Azure serves them."""
    chunks: list[bytes] = []
    for string in strings:
        data = string.encode()
        chunks += [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return str(rdata.to_text())


def _caa_text(record: CaaRecord) -> str:
    caa: Any = dns.rdtypes.ANY.CAA.CAA  # its constructor is not annotated
    rdata = caa(
        dns.rdataclass.IN,
        dns.rdatatype.CAA,
        int(record.flags or 0),
        (record.tag or "").encode(),
        (record.value or "").encode(),
    )
    return str(rdata.to_text())


def record_values(rs: RecordSet, rdtype: str) -> list[str]:
    """The presentation texts of an Azure record set's records (not yet canonical)."""
    if rdtype == "A":
        return [r.ipv4_address or "" for r in rs.a_records or []]
    if rdtype == "AAAA":
        return [r.ipv6_address or "" for r in rs.aaaa_records or []]
    if rdtype == "MX":
        return [f"{r.preference} {_absolute(r.exchange)}" for r in rs.mx_records or []]
    if rdtype == "NS":
        return [_absolute(r.nsdname) for r in rs.ns_records or []]
    if rdtype == "PTR":
        return [_absolute(r.ptrdname) for r in rs.ptr_records or []]
    if rdtype == "SRV":
        return [
            f"{r.priority} {r.weight} {r.port} {_absolute(r.target)}" for r in rs.srv_records or []
        ]
    if rdtype == "TXT":
        return [_txt_text(r.value or []) for r in rs.txt_records or []]
    if rdtype == "CAA":
        return [_caa_text(r) for r in rs.caa_records or []]
    if rdtype == "CNAME":
        return [_absolute(rs.cname_record.cname)] if rs.cname_record else []
    return []


def _parse(rdtype: str, value: str) -> Any:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)


def _txt_strings(value: str) -> list[str]:
    try:
        return [s.decode() for s in _parse("TXT", value).strings]
    except UnicodeDecodeError:
        raise ProviderError(f"TXT {value} is not UTF-8 text: Azure cannot hold it", False) from None


def record_set(rrset: RRset) -> RecordSet:
    """An RRset as the Azure model written with ``create_or_update``."""
    t, values = rrset.type, rrset.values
    rs = RecordSet(ttl=rrset.ttl)
    if t == "A":
        rs.a_records = [ARecord(ipv4_address=v) for v in values]
    elif t == "AAAA":
        rs.aaaa_records = [AaaaRecord(ipv6_address=v) for v in values]
    elif t == "MX":
        mx = [_parse(t, v) for v in values]
        rs.mx_records = [MxRecord(preference=r.preference, exchange=str(r.exchange)) for r in mx]
    elif t == "NS":
        rs.ns_records = [NsRecord(nsdname=v) for v in values]
    elif t == "PTR":
        rs.ptr_records = [PtrRecord(ptrdname=v) for v in values]
    elif t == "SRV":
        srv = [_parse(t, v) for v in values]
        rs.srv_records = [
            SrvRecord(priority=r.priority, weight=r.weight, port=r.port, target=str(r.target))
            for r in srv
        ]
    elif t == "TXT":
        rs.txt_records = [TxtRecord(value=_txt_strings(v)) for v in values]
    elif t == "CAA":
        caa = [_parse(t, v) for v in values]
        rs.caa_records = [
            CaaRecord(flags=r.flags, tag=r.tag.decode(), value=r.value.decode()) for r in caa
        ]
    elif t == "CNAME" and len(values) == 1:
        rs.cname_record = CnameRecord(cname=values[0])
    else:
        raise ProviderError(f"{rrset.name} {t}: Azure DNS cannot hold this RRset", False)
    return rs


class Azure:
    kind = "azure"
    supported = SUPPORTED

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        zone_name: str,
        *,
        credential: TokenCredential | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        authority_host: str | None = None,
        base_url: str = "https://management.azure.com",
        connection_verify: str | bool = True,
        retry_total: int = 6,
        retry_backoff_factor: float = 0.8,
        polling_interval: float = 5.0,
        connection_timeout: float = 10.0,
        read_timeout: float = 60.0,
        page: int = PAGE,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.zone_name = zone_name.rstrip(".").lower()
        self.credential = credential
        self._secret = (tenant_id, client_id, client_secret)
        self.authority_host = authority_host
        self._own_credential = False
        self._client_args: dict[str, Any] = {
            "base_url": base_url,
            "connection_verify": connection_verify,
            "retry_total": retry_total,
            "retry_connect": retry_total,
            "retry_read": retry_total,
            "retry_status": retry_total,
            "retry_backoff_factor": retry_backoff_factor,
            "polling_interval": polling_interval,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        self._client: DnsManagementClient | None = None
        self.page = page
        self.calls = 0
        self.etags: dict[Key, str] = {}  # record sets as last read or written: their etags
        self._held: dict[Key, RRset] = {}  # what each etag stands for (none: an empty set)
        self._aliases: set[Key] = set()  # alias record sets: Azure's, never touched

    # --- talking -----------------------------------------------------------------------

    @property
    def client(self) -> DnsManagementClient:
        if self._client is None:
            if self.credential is None:
                self.credential = self._make_credential()
                self._own_credential = True
            self._client = DnsManagementClient(
                self.credential,
                self.subscription_id,
                raw_request_hook=self._count,
                **self._client_args,
            )
        return self._client

    def _count(self, request: PipelineRequest[Any]) -> None:
        """Counts every ARM request sent: the hook runs after the retry policy (each attempt)
        and after the authentication policy (a request that got no token is not sent)."""
        self.calls += 1

    def _make_credential(self) -> TokenCredential:
        tenant_id, client_id, client_secret = self._secret
        args = self._client_args
        if tenant_id and client_id and client_secret:
            from azure.identity import ClientSecretCredential

            # its own pipeline: the same CA file, timeouts and retries as the ARM client
            options: dict[str, Any] = {
                k: args[k]
                for k in (
                    "retry_total",
                    "retry_connect",
                    "retry_read",
                    "retry_status",
                    "retry_backoff_factor",
                    "connection_timeout",
                    "read_timeout",
                )
            }
            if isinstance(args["connection_verify"], str):  # a CA file (never "no checks")
                options["connection_verify"] = args["connection_verify"]
            if self.authority_host:
                options["authority"] = self.authority_host
                options["disable_instance_discovery"] = True  # no asking Microsoft about it
            try:
                return ClientSecretCredential(tenant_id, client_id, client_secret, **options)
            except ValueError as exc:  # a tenant id or authority it cannot use
                raise ProviderError(f"Azure credential: {exc}", False) from None
        from azure.identity import DefaultAzureCredential

        if self.authority_host:
            return DefaultAzureCredential(authority=self.authority_host)
        return DefaultAzureCredential()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        close = getattr(self.credential, "close", None)
        if self._own_credential and callable(close):
            close()

    def _error(self, what: str, exc: AzureError) -> ProviderError:
        status = exc.status_code if isinstance(exc, HttpResponseError) else None
        if status == 412:
            return ChangedMeanwhile(f"Azure {what}: changed at Azure since it was read")
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return ProviderError(f"Azure unreachable ({what}): {exc}")
        if isinstance(exc, ClientAuthenticationError):  # azure-identity wraps what failed
            cause = exc.__cause__
            if isinstance(cause, ServiceRequestError | ServiceResponseError):
                return ProviderError(f"Azure identity endpoint unreachable ({what}): {cause}")
            failed = _MSAL_HTTP.match(str(cause)) if cause is not None else None
            if failed and int(failed[1]) >= 500:  # not a refusal: the endpoint failed
                return ProviderError(f"Azure identity endpoint ({what}): HTTP {failed[1]}")
        message = str(getattr(exc, "message", None) or exc).splitlines()[0]
        if status is None:
            retry = not isinstance(exc, ClientAuthenticationError)
            return ProviderError(f"Azure {what}: {message}", retry)
        retry = status in (408, 429) or status >= 500
        return ProviderError(f"Azure {what}: HTTP {status}: {message}", retry)

    def _relative(self, name: str) -> str:
        apex = owner_text(self.zone_name)
        if name == apex:
            return "@"
        relative = name[: -len(apex) - 1] if name.endswith("." + apex) else ""
        if not _NAME.match(relative):
            raise ProviderError(f"{name}: not a name Azure DNS holds in {apex}", False)
        return relative

    def _check_zone(self, zone: str) -> str:
        apex = owner_text(zone)
        if apex != owner_text(self.zone_name):
            raise ProviderError(f"this Azure target holds {self.zone_name}, not {zone}", False)
        return apex

    # --- reading -------------------------------------------------------------------------

    def _rrset(self, rs: RecordSet, apex: str) -> RRset | None:
        """An Azure record set as an RRset; None when not xdnsd's (SOA, apex NS, unknown
        types, aliases, empty sets)."""
        rdtype = str(rs.type or "").rsplit("/", 1)[-1].upper()
        relative = str(rs.name or "@")
        name = apex if relative == "@" else owner_text(f"{relative}.{apex}")
        if rdtype not in SUPPORTED or (rdtype == "NS" and name == apex):
            return None
        try:
            values = {canonical_value(rdtype, v) for v in record_values(rs, rdtype)}
        except ValueError as exc:
            raise ProviderError(
                f"Azure holds {name} {rdtype} that xdnsd cannot read: {exc}", False
            ) from None
        if not values:
            return None
        return RRset(name, rdtype, int(rs.ttl or 0), tuple(sorted(values)))

    def read(self, zone: str) -> Mapping[Key, RRset]:
        apex = self._check_zone(zone)
        out: dict[Key, RRset] = {}
        etags: dict[Key, str] = {}
        held: dict[Key, RRset] = {}
        aliases: set[Key] = set()
        pages = self.client.record_sets.list_all_by_dns_zone(
            self.resource_group, self.zone_name, top=self.page
        )
        try:
            for rs in pages:
                rdtype = str(rs.type or "").rsplit("/", 1)[-1].upper()
                relative = str(rs.name or "@")
                key = (apex if relative == "@" else owner_text(f"{relative}.{apex}"), rdtype)
                if rs.target_resource is not None and rs.target_resource.id:
                    aliases.add(key)
                    continue
                rrset = self._rrset(rs, apex)
                if rs.etag:
                    etags[key] = rs.etag  # empty sets too: a create overwrites them
                if rrset is not None:
                    out[key] = held[key] = rrset
        except AzureError as exc:
            raise self._error(f"listing {self.zone_name}", exc) from None
        self.etags, self._held, self._aliases = etags, held, aliases
        return out

    # --- writing -------------------------------------------------------------------------

    def apply(self, zone: str, changes: Sequence[Change]) -> Applied:
        self._check_zone(zone)
        calls = self.calls
        for change in changes:
            self._apply(change)
        return Applied(len(changes), self.calls - calls)

    def _apply(self, change: Change) -> None:
        key = change.key
        name, rdtype = key
        what = f"{change.action.value} {name} {rdtype}"
        if key in self._aliases:
            raise ProviderError(f"Azure {what}: an alias record set, not xdnsd's", False)
        relative = self._relative(name)
        ops = self.client.record_sets
        try:
            if change.action is Action.DELETE:
                etag = self._etag(change, relative)
                ops.delete(self.resource_group, self.zone_name, relative, rdtype, if_match=etag)
                self.etags.pop(key, None)
                self._held.pop(key, None)
                return
            assert change.new is not None
            body = record_set(change.new)
            if change.action is Action.CREATE:
                empty = None if key in self._held else self.etags.get(key)  # overwrite it
                conditions = {"if_match": empty} if empty else {"if_none_match": "*"}
            else:
                conditions = {"if_match": self._etag(change, relative)}
            result = ops.create_or_update(
                self.resource_group, self.zone_name, relative, rdtype, body, **conditions
            )
        except AzureError as exc:
            raise self._error(what, exc) from None
        if result.etag:
            self.etags[key], self._held[key] = result.etag, change.new

    def _etag(self, change: Change, relative: str) -> str:
        """The etag of the set ``change.old`` was read from; fetched (and compared) when this
        instance did not read or write that data."""
        assert change.old is not None
        etag = self.etags.get(change.key)
        if etag is not None and change.old.same_data(self._held.get(change.key)):
            return etag
        name, rdtype = change.key
        try:
            rs = self.client.record_sets.get(self.resource_group, self.zone_name, relative, rdtype)
        except HttpResponseError as exc:
            if exc.status_code == 404:
                raise ChangedMeanwhile(f"Azure {name} {rdtype}: gone since it was read") from None
            raise
        current = self._rrset(rs, owner_text(self.zone_name))
        if not change.old.same_data(current) or not rs.etag:
            raise ChangedMeanwhile(f"Azure {name} {rdtype}: changed since it was read")
        return rs.etag
