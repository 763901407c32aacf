"""TSIG (RFC 8945) on raw messages: find, verify, sign (pure: the caller passes the clock).

Verification follows RFC 8945 5.2 in order: key (BADKEY), MAC length (FORMERR with an unsigned
BADSIG, as BIND), MAC (BADSIG),
time (BADTIME), truncation policy (BADTRUNC).  Errors about the key or the MAC are answered
unsigned; BADTIME and BADTRUNC answers are signed (5.3.2).  The HMAC arithmetic is dnspython's
(``dns.tsig.get_context`` / ``dns.tsig.sign``); this module works on wire bytes so the answer
engine's own rendering is kept and only a TSIG record is appended.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig

from xdnsd.model import name_wire
from xdnsd.names import wire_name_end

TSIG_TYPE = int(dns.rdatatype.TSIG)
ANY_CLASS = int(dns.rdataclass.ANY)
DEFAULT_FUDGE = 300

BADSIG = int(dns.rcode.BADSIG)
BADKEY = int(dns.rcode.BADKEY)
BADTIME = int(dns.rcode.BADTIME)
BADTRUNC = int(dns.rcode.BADTRUNC)

# config names -> (dnspython algorithm name, digest length in bytes)
ALGORITHMS: dict[str, tuple[dns.name.Name, int]] = {
    "hmac-md5": (dns.tsig.HMAC_MD5, 16),
    "hmac-sha1": (dns.tsig.HMAC_SHA1, 20),
    "hmac-sha224": (dns.tsig.HMAC_SHA224, 28),
    "hmac-sha256": (dns.tsig.HMAC_SHA256, 32),
    "hmac-sha384": (dns.tsig.HMAC_SHA384, 48),
    "hmac-sha512": (dns.tsig.HMAC_SHA512, 64),
}
_DIGEST_SIZE = {algorithm: size for algorithm, size in ALGORITHMS.values()}

_RR_HEAD = struct.Struct("!HHIH")


class TsigFormError(Exception):
    """A TSIG record that must be answered with FORMERR (RFC 8945 5.2.2.1)."""


@dataclass(frozen=True, slots=True)
class TsigKey:
    name: dns.name.Name
    algorithm: dns.name.Name
    secret: bytes
    allow_truncated: bool = False  # accept MACs truncated to the RFC 8945 minimum
    _keyed: hmac.HMAC = field(init=False, repr=False, compare=False, hash=False)

    @property
    def digest(self) -> str:
        """The hashlib name of the key's HMAC digest."""
        return _HASHES[self.algorithm]

    def dnspython_key(self) -> dns.tsig.Key:
        """The key as dnspython's signer wants it (for messages xdnsd sends: NOTIFY)."""
        return dns.tsig.Key(self.name, self.secret, self.algorithm)

    def hmac(self) -> hmac.HMAC:
        """A fresh HMAC context for this key (a copy of a keyed one: no key schedule)."""
        return self._keyed.copy()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hmac.new(self.secret, digestmod=_HASHES[self.algorithm]))


Keyring = Mapping[dns.name.Name, TsigKey]

_HASHES = {
    dns.tsig.HMAC_MD5: "md5",
    dns.tsig.HMAC_SHA1: "sha1",
    dns.tsig.HMAC_SHA224: "sha224",
    dns.tsig.HMAC_SHA256: "sha256",
    dns.tsig.HMAC_SHA384: "sha384",
    dns.tsig.HMAC_SHA512: "sha512",
}
_FIXED = struct.Struct("!HIHH")  # time signed (48 bits), fudge, MAC size
_TAIL = struct.Struct("!HHH")  # original ID, error, other length


@dataclass(frozen=True, slots=True)
class TsigRecord:
    """The RDATA of a TSIG record (RFC 8945 4.2), read and written without dnspython's Rdata
    machinery (this is on the path of every signed message)."""

    algorithm: dns.name.Name
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int
    other: bytes

    @classmethod
    def from_wire(cls, wire: bytes, offset: int, rdlen: int) -> TsigRecord:
        algorithm, used = dns.name.from_wire(wire, offset)
        i = offset + used
        high, low, fudge, mac_size = _FIXED.unpack_from(wire, i)
        i += _FIXED.size
        mac = wire[i : i + mac_size]
        i += mac_size
        original_id, error, other_len = _TAIL.unpack_from(wire, i)
        i += _TAIL.size
        other = wire[i : i + other_len]
        if len(mac) != mac_size or len(other) != other_len or i + other_len != offset + rdlen:
            raise ValueError("TSIG RDATA length does not add up")
        return cls(algorithm, (high << 32) | low, fudge, mac, original_id, error, other)

    def to_wire(self) -> bytes:
        time = self.time_signed
        return (
            name_wire(self.algorithm)
            + _FIXED.pack((time >> 32) & 0xFFFF, time & 0xFFFFFFFF, self.fudge, len(self.mac))
            + self.mac
            + _TAIL.pack(self.original_id, self.error, len(self.other))
            + self.other
        )

    def variables(self) -> bytes:
        """The TSIG variables after the key name, class and TTL (RFC 8945 4.3.3)."""
        time = self.time_signed
        return (
            name_wire(self.algorithm).lower()
            + struct.pack("!HIH", (time >> 32) & 0xFFFF, time & 0xFFFFFFFF, self.fudge)
            + struct.pack("!HH", self.error, len(self.other))
            + self.other
        )


@dataclass(frozen=True, slots=True)
class Signature:
    """The TSIG of a request and what verifying it found."""

    owner: dns.name.Name  # the key name as the request spelled it
    rdata: TsigRecord
    start: int  # offset of the TSIG record in the request
    key: TsigKey | None  # None when the key is unknown (error BADKEY)
    error: int  # 0 or BADSIG / BADKEY / BADTIME / BADTRUNC
    formerr: bool = False  # a MAC size RFC 8945 5.2.2.1 forbids: answer FORMERR, not NOTAUTH

    @property
    def ok(self) -> bool:
        return self.error == 0

    def describe(self) -> str:
        return {
            0: "valid",
            BADSIG: "BADSIG",
            BADKEY: "BADKEY",
            BADTIME: "BADTIME",
            BADTRUNC: "BADTRUNC",
        }.get(self.error, str(self.error))


def locate(wire: bytes) -> tuple[int, int] | None:
    """(start, end) of the TSIG record when it is the last record of the message, else None.

    Malformed messages and a TSIG that is not last give None: the message parser then answers
    FORMERR for them.
    """
    if len(wire) < 12:
        return None
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    if ar == 0:
        return None
    try:
        i = 12
        for _ in range(qd):
            i = wire_name_end(wire, i) + 4
        start = i
        for _ in range(an + ns + ar):
            start = i
            i = wire_name_end(wire, i)
            _rdtype, _rdclass, _ttl, rdlen = _RR_HEAD.unpack_from(wire, i)
            i += _RR_HEAD.size + rdlen
        if i != len(wire):
            return None
        name_end = wire_name_end(wire, start)
        if struct.unpack_from("!H", wire, name_end)[0] != TSIG_TYPE:
            return None
    except (IndexError, struct.error):
        return None
    return start, i


def verify(wire: bytes, keyring: Keyring, now: int) -> Signature | None:
    """Check the TSIG of a request; None when the message carries none."""
    span = locate(wire)
    if span is None:
        return None
    start, _end = span
    try:
        owner, used = dns.name.from_wire(wire, start)
        name_end = start + used
        _t, rdclass, ttl, rdlen = _RR_HEAD.unpack_from(wire, name_end)
        rdata = TsigRecord.from_wire(wire, name_end + _RR_HEAD.size, rdlen)
    except Exception as exc:  # dnspython raises many kinds for malformed names
        raise TsigFormError(f"unreadable TSIG record: {exc}") from None
    if rdclass != ANY_CLASS or ttl != 0:
        raise TsigFormError("TSIG record must have class ANY and TTL 0")
    key = keyring.get(owner)
    if key is None or key.algorithm != rdata.algorithm:
        return Signature(owner, rdata, start, None, BADKEY)
    full = _DIGEST_SIZE.get(key.algorithm, 0)
    mac = rdata.mac
    if len(mac) > full or len(mac) < max(10, full // 2):
        # RFC 8945 5.2.2.1: FORMERR; the answer carries an unsigned TSIG with BADSIG, as BIND's
        return Signature(owner, rdata, start, key, BADSIG, formerr=True)
    arcount = struct.unpack_from("!H", wire, 10)[0] - 1
    unsigned = wire[:10] + struct.pack("!H", arcount) + wire[12:start]
    expected = _mac(unsigned, key, rdata, b"")
    if not hmac.compare_digest(expected[: len(mac)], mac):
        return Signature(owner, rdata, start, key, BADSIG)
    if abs(rdata.time_signed - now) > rdata.fudge:
        return Signature(owner, rdata, start, key, BADTIME)
    if len(mac) < full and not key.allow_truncated:
        return Signature(owner, rdata, start, key, BADTRUNC)
    return Signature(owner, rdata, start, key, 0)


def _mac(wire: bytes, key: TsigKey, rdata: TsigRecord, request_mac: bytes) -> bytes:
    """The full MAC of ``wire`` (a message without its TSIG) with these TSIG variables: the
    request MAC (for a response), the message with the original ID, then the variables."""
    ctx = key.hmac()
    if request_mac:
        ctx.update(struct.pack("!H", len(request_mac)) + request_mac)
    ctx.update(struct.pack("!H", rdata.original_id) + wire[2:])
    ctx.update(name_wire(key.name).lower() + struct.pack("!HI", ANY_CLASS, 0))
    ctx.update(rdata.variables())
    return ctx.digest()


def strip(wire: bytes, signature: Signature) -> bytes:
    """The request without its TSIG record (ARCOUNT one less)."""
    arcount = struct.unpack_from("!H", wire, 10)[0] - 1
    return wire[:10] + struct.pack("!H", arcount) + wire[12 : signature.start]


def _append(wire: bytes, owner: dns.name.Name, rdata: TsigRecord) -> bytes:
    rdata_wire = rdata.to_wire()
    record = name_wire(owner) + _RR_HEAD.pack(TSIG_TYPE, ANY_CLASS, 0, len(rdata_wire))
    arcount = struct.unpack_from("!H", wire, 10)[0] + 1
    return wire[:10] + struct.pack("!H", arcount) + wire[12:] + record + rdata_wire


def sign_response(response: bytes, signature: Signature, now: int) -> bytes:
    """``response`` with the TSIG the request's signature calls for (RFC 8945 5.3).

    Valid request: signed with the request's key, covering the request MAC.  BADKEY / BADSIG:
    an unsigned TSIG carrying the error.  BADTIME: signed, Time Signed copied from the request
    and the server's time in Other Data.  BADTRUNC: signed, carrying the error.
    """
    request = signature.rdata
    if signature.error in (BADKEY, BADSIG) or signature.key is None:
        unsigned = TsigRecord(
            request.algorithm, now, request.fudge, b"", request.original_id, signature.error, b""
        )
        return _append(response, signature.owner, unsigned)
    key = signature.key
    time = now
    other = b""
    if signature.error == BADTIME:
        time = request.time_signed
        other = struct.pack("!HI", (now >> 32) & 0xFFFF, now & 0xFFFFFFFF)
    fudge = DEFAULT_FUDGE if signature.error == 0 else request.fudge
    template = TsigRecord(
        request.algorithm, time, fudge, b"", request.original_id, signature.error, other
    )
    # RFC 8945 4.3: a response's MAC is computed with the original ID (the request's)
    mac = _mac(response, key, template, request.mac)
    signed = TsigRecord(
        request.algorithm, time, fudge, mac, request.original_id, signature.error, other
    )
    return _append(response, signature.owner, signed)


def sign_stream(messages: Iterator[bytes], signature: Signature, now: int) -> Iterator[bytes]:
    """Sign the messages of a multi-message answer (AXFR, IXFR; RFC 8945 5.3.1): the first as
    a response to the request, each later one over the prior MAC, itself and the timers."""
    key = signature.key
    assert key is not None and signature.ok
    request = signature.rdata
    prior = b""
    for message in messages:
        if not prior:
            template = TsigRecord(
                request.algorithm, now, DEFAULT_FUDGE, b"", request.original_id, 0, b""
            )
            mac = _mac(message, key, template, request.mac)
        else:
            ctx = key.hmac()
            ctx.update(struct.pack("!H", len(prior)) + prior)
            ctx.update(struct.pack("!H", request.original_id) + message[2:])
            ctx.update(struct.pack("!HIH", (now >> 32) & 0xFFFF, now & 0xFFFFFFFF, DEFAULT_FUDGE))
            mac = ctx.digest()
        signed = TsigRecord(request.algorithm, now, DEFAULT_FUDGE, mac, request.original_id, 0, b"")
        prior = mac
        yield _append(message, signature.owner, signed)


def error_response(request: bytes, question_end: int, rcode: int) -> bytes:
    """A bare response: header (ID, opcode, RD kept), the question / zone section, no records."""
    flags = 0x8000 | (((request[2] << 8) | request[3]) & 0x7900) | (rcode & 0xF)
    qdcount = struct.unpack_from("!H", request, 4)[0] if question_end > 12 else 0
    return request[:2] + struct.pack("!HHHHH", flags, qdcount, 0, 0, 0) + request[12:question_end]


def question_end(wire: bytes) -> int:
    """Offset just past a single, uncompressed question (zone) section, else 12 (echo none).

    A question that is compressed, cut short or one of several is not echoed in an error
    answer: copied into a response it could point anywhere.
    """
    if len(wire) < 12 or struct.unpack_from("!H", wire, 4)[0] != 1:
        return 12
    i = 12
    while i < len(wire):
        length = wire[i]
        if length == 0:
            end = i + 5
            return end if end <= len(wire) else 12
        if length & 0xC0:
            return 12
        i += length + 1
    return 12
