"""Any server that takes RFC 2136 dynamic updates (BIND, Knot, Windows DNS) as a mirror target.

Facts this follows:

* Reading is one AXFR over TCP (RFC 5936), TSIG-signed when a key is set; there is no
  fallback to queries (a zone cannot be listed by queries), so the server must allow
  transfers to the key (BIND ``allow-transfer { key NAME; };``, Knot an ``acl`` with
  ``action: transfer``) or, unsigned, to this node's address.  A refused transfer is an
  error not worth retrying until an operator changes that.  Only the types in ``supported``
  are read: the DNSSEC records a signing server makes itself (RRSIG, NSEC, DNSKEY, CDS,
  BIND's private TYPE65534) are the server's, like the apex SOA and NS.
* Writing is UPDATE messages over TCP (RFC 2136), TSIG-signed (RFC 8945).  An UPDATE is
  all-or-nothing: its prerequisites are checked first (3.2) and, if one fails, nothing in the
  message is applied.  Each change is a compare-and-swap on the state read: an update or
  delete requires the old RRset exactly as read ("RRset exists (value dependent)", 2.4.2:
  the same set of RDATA, no more, no less; the TTL is *not* compared, so a TTL-only edit
  made meanwhile is overwritten), a create requires "RRset does not exist" (2.4.3).  Then
  the old RRset is deleted (class ANY) and the new records added.  A failed prerequisite
  comes back as NXRRSET or YXRRSET: ``ChangedMeanwhile``, read again.
* The update section is applied in order (3.4.2), so a message carries all its deletes
  before its adds, and messages go deletes first, then updates, then creates: a CNAME that
  replaces other data at a name (or the reverse) is never added while the other data is
  still there, which a server silently ignores (3.4.2.2: BIND answers NOERROR and logs
  "attempt to add CNAME alongside non-CNAME ignored").  BIND likewise answers NOERROR for a
  CNAME at the apex or a DS away from a delegation and keeps neither: ``apply`` cannot see
  that; the next ``read`` shows the RRset missing and the planner pushes it again.
* Changes are grouped into messages of at most ``MAX_WIRE`` octets (a TCP DNS message
  carries 65,535, the TSIG needs a little) and ``MAX_RECORDS`` prerequisite and update
  records, so that one transaction (and its journal entry) stays short.  One RRset never
  spans two messages; several messages are not atomic together (a later one may find the
  zone changed: the earlier ones stay applied, and the next read shows them in sync).
* The rcode says what to do: NOERROR done; NXRRSET / YXRRSET changed meanwhile; SERVFAIL
  and no answer (timeout, connection refused or reset) retry later; REFUSED (the key may
  not update that, or the server's own checks refused the data, e.g. BIND's check-names),
  NOTAUTH (unknown zone, or a TSIG the server rejected: BADKEY / BADSIG / BADTIME), NOTZONE
  and FORMERR need an operator.
* Windows DNS signs updates only with GSS-TSIG (Kerberos, for Active Directory-integrated
  zones), which this module does not speak: a Windows target is driven unsigned (no key),
  which needs the zone's dynamic updates set to "Nonsecure and secure" (Windows has no
  per-address update list: restrict who reaches port 53 instead) and zone transfers allowed
  to this node's address ("Only to the following servers").
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator, Mapping, Sequence

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from xdnsd.upstreams.base import Applied, ChangedMeanwhile, ProviderError
from xdnsd.upstreams.plan import Action, Change, Key, RRset, owner_text

MAX_WIRE = 60_000  # octets of one UPDATE message before its TSIG
MAX_RECORDS = 1000  # prerequisite + update records of one UPDATE message
SUPPORTED = frozenset(
    {"A", "AAAA", "AFSDB", "APL", "CAA", "CERT", "CNAME", "DHCID", "DNAME", "DS", "EUI48"}
    | {"EUI64", "HINFO", "HTTPS", "IPSECKEY", "KX", "LOC", "MX", "NAPTR", "NS", "OPENPGPKEY"}
    | {"PTR", "RP", "SMIMEA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI"}
)
_CAS_FAILED = {dns.rcode.NXRRSET, dns.rcode.YXRRSET}
_ORDER = {Action.DELETE: 0, Action.UPDATE: 1, Action.CREATE: 2}


class Rfc2136:
    kind = "rfc2136"
    supported = SUPPORTED

    def __init__(
        self,
        server: str,
        port: int = 53,
        zone: str | None = None,
        *,
        key: dns.tsig.Key | None = None,
        key_name: str | None = None,
        secret: str | None = None,
        algorithm: str = "hmac-sha256",
        timeout: float = 10.0,
        transfer_lifetime: float = 300.0,
        max_wire: int = MAX_WIRE,
        max_records: int = MAX_RECORDS,
    ) -> None:
        """``server`` an address or host name; ``zone`` the one zone this target takes (any
        when None); the TSIG key as a ``dns.tsig.Key`` or as ``key_name`` + ``secret``
        (base64) + ``algorithm``, or none (unsigned); ``timeout`` per message."""
        if key is not None and (key_name or secret):
            raise ValueError("give a dns.tsig.Key or key_name and secret, not both")
        if (key_name is None) != (secret is None):
            raise ValueError("key_name and secret go together")
        if key_name is not None and secret is not None:
            key = dns.tsig.Key(key_name, secret, algorithm)
        self.server = server
        self.port = port
        self.zone = dns.name.from_text(zone) if zone is not None else None
        self.key = key
        self.timeout = timeout
        self.transfer_lifetime = transfer_lifetime
        self.max_wire = max_wire
        self.max_records = max_records
        self.calls = 0  # messages sent (AXFR requests and UPDATEs)

    @property
    def where(self) -> str:  # for messages (never the key: its repr shows the secret)
        return f"{self.server} port {self.port}"

    def _origin(self, zone: str) -> dns.name.Name:
        origin = dns.name.from_text(zone)
        if self.zone is not None and origin != self.zone:
            raise ProviderError(f"{self.where} is a target for {self.zone}, not {zone}", False)
        return origin

    def _address(self) -> str:
        try:
            ipaddress.ip_address(self.server)
            return self.server
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.server, self.port, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise ProviderError(f"cannot resolve {self.server}: {exc}") from None
        return str(infos[0][4][0])

    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Network and TSIG failures as ``ProviderError`` (retry for the network only)."""
        try:
            yield
        except dns.exception.Timeout:
            raise ProviderError(f"{what}: no answer from {self.where} in {self.timeout}s") from None
        except (OSError, EOFError) as exc:
            raise ProviderError(f"{what}: {self.where} unreachable: {exc}") from None
        except dns.tsig.PeerBadTime:
            raise ProviderError(
                f"{what}: {self.where} rejected the TSIG time (BADTIME): check both clocks", False
            ) from None
        except dns.tsig.PeerError as exc:
            raise ProviderError(
                f"{what}: {self.where} rejected the TSIG key ({exc}): check its name, "
                "algorithm and secret",
                False,
            ) from None
        except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadTime) as exc:
            raise ProviderError(
                f"{what}: the answer of {self.where} fails TSIG: {exc}", False
            ) from None
        except dns.message.UnknownTSIGKey as exc:
            raise ProviderError(f"{what}: the answer of {self.where}: {exc}", False) from None

    # --- reading -------------------------------------------------------------------------

    def read(self, zone: str) -> Mapping[Key, RRset]:
        origin = self._origin(zone)
        copy = dns.zone.Zone(origin, relativize=False)
        query, _ = dns.xfr.make_query(copy, serial=None, keyring=self.key)
        what = f"AXFR of {origin}"
        self.calls += 1
        with self._talking(what):
            try:
                dns.query.inbound_xfr(
                    self._address(),
                    copy,
                    query,
                    port=self.port,
                    timeout=self.timeout,
                    lifetime=self.transfer_lifetime,
                )
            except dns.xfr.TransferError as exc:
                rcode = dns.rcode.Rcode.make(exc.rcode)
                text = dns.rcode.to_text(rcode)
                if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
                    raise ProviderError(
                        f"{what}: {self.where} says {text}: it must serve the zone and allow "
                        "transfers to "
                        + (f"the key {self.key.name}" if self.key else "this node's address"),
                        False,
                    ) from None
                raise ProviderError(
                    f"{what}: {self.where} says {text}", rcode == dns.rcode.SERVFAIL
                ) from None
            except dns.exception.FormError as exc:
                raise ProviderError(f"{what}: bad answer from {self.where}: {exc}", False) from None
        return rrsets_from_zone(copy)

    # --- writing -------------------------------------------------------------------------

    def apply(self, zone: str, changes: Sequence[Change]) -> Applied:
        origin = self._origin(zone)
        calls = self.calls
        for batch in batches(origin, changes, self.max_wire, self.max_records):
            self._send(origin, update_message(origin, batch), len(batch))
        return Applied(len(changes), self.calls - calls)

    def _send(self, origin: dns.name.Name, message: dns.update.UpdateMessage, n: int) -> None:
        if self.key is not None:
            message.use_tsig(self.key)
        what = f"UPDATE of {origin} ({n} RRsets)"
        self.calls += 1
        with self._talking(what):
            response = dns.query.tcp(message, self._address(), self.timeout, self.port)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        if rcode in _CAS_FAILED:
            raise ChangedMeanwhile(
                f"{what}: {self.where} says {text}: the zone changed since it was read"
            )
        hint = {
            dns.rcode.REFUSED: ": the key may not make these changes, or the server refused "
            "the data (see its log)",
            dns.rcode.NOTAUTH: ": the server is not authoritative for the zone, or rejected "
            "the key",
        }.get(rcode, "")
        raise ProviderError(f"{what}: {self.where} says {text}{hint}", rcode == dns.rcode.SERVFAIL)


def rrsets_from_zone(zone: dns.zone.Zone) -> dict[Key, RRset]:
    """A transferred zone (``relativize=False``) as RRsets: the supported types, apex SOA and
    NS left out, values in canonical form."""
    assert zone.origin is not None
    out: dict[Key, RRset] = {}
    for name, node in zone.nodes.items():
        owner = owner_text(name.derelativize(zone.origin))
        for rdataset in node:
            rdtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rdtype not in SUPPORTED or (name == zone.origin and rdtype == "NS"):
                continue
            values = sorted(str(rd.to_text(origin=None, relativize=False)) for rd in rdataset)
            out[(owner, rdtype)] = RRset(owner, rdtype, rdataset.ttl, tuple(values))
    return out


def _rdataset(rrset: RRset, ttl: int) -> dns.rdataset.Rdataset:
    rdtype = dns.rdatatype.from_text(rrset.type)
    rdatas = [dns.rdata.from_text(dns.rdataclass.IN, rdtype, v) for v in rrset.values]
    return dns.rdataset.from_rdata_list(ttl, rdatas)


def update_message(origin: dns.name.Name, changes: Sequence[Change]) -> dns.update.UpdateMessage:
    """One UPDATE: every change conditional on its old state, all deletes before all adds."""
    message = dns.update.UpdateMessage(origin)
    for change in changes:
        name = dns.name.from_text(change.key[0])
        if change.old is None:
            message.absent(name, change.key[1])
        else:  # prerequisite RRs carry TTL 0 (RFC 2136 3.2.1)
            message.present(name, _rdataset(change.old, 0))
    for change in changes:
        if change.old is not None:
            message.delete(dns.name.from_text(change.key[0]), change.key[1])
    for change in changes:
        if change.new is not None:
            message.add(dns.name.from_text(change.key[0]), _rdataset(change.new, change.new.ttl))
    return message


def _cost(origin: dns.name.Name, change: Change) -> tuple[int, int]:
    """(octets, records) a change adds to a message: rendered alone, without the header and
    zone section (an overestimate: names compress better in company)."""
    wire = update_message(origin, [change]).to_wire(max_size=65_535)
    records = (len(change.old.values) + 1 if change.old else 1) + (
        len(change.new.values) if change.new else 0
    )
    return len(wire) - _header(origin), records


def _header(origin: dns.name.Name) -> int:
    """Octets of an UPDATE's header and zone section."""
    return 12 + sum(len(label) + 1 for label in origin.labels) + 4


def batches(
    origin: dns.name.Name,
    changes: Sequence[Change],
    max_wire: int = MAX_WIRE,
    max_records: int = MAX_RECORDS,
) -> list[list[Change]]:
    """The changes as UPDATE messages: deletes, then updates, then creates, each message
    within ``max_wire`` octets and ``max_records`` records."""
    out: list[list[Change]] = []
    current: list[Change] = []
    octets = records = 0
    base = _header(origin)
    for change in sorted(changes, key=lambda c: (_ORDER[c.action], c.key)):
        try:
            size, n = _cost(origin, change)
        except dns.exception.TooBig:
            size, n = max_wire, max_records + 1
        if base + size > max_wire or n > max_records:
            name, rdtype = change.key
            raise ProviderError(f"{name} {rdtype} is too large for one UPDATE message", False)
        if current and (base + octets + size > max_wire or records + n > max_records):
            out.append(current)
            current, octets, records = [], 0, 0
        current.append(change)
        octets, records = octets + size, records + n
    if current:
        out.append(current)
    return out
