"""TSIG on raw messages (xdnsd.server.tsig) checked against dnspython's own signing/verifying."""

from __future__ import annotations

import struct
import unittest.mock

import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.update
import pytest

from xdnsd.server import tsig

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000


def keyring(algorithm: str = "hmac-sha256", **kw: bool) -> dict[dns.name.Name, tsig.TsigKey]:
    name = dns.name.from_text("k1.")
    return {name: tsig.TsigKey(name, tsig.ALGORITHMS[algorithm][0], SECRET, **kw)}


def signed_update(
    algorithm: str = "hmac-sha256",
    *,
    secret: bytes = SECRET,
    keyname: str = "k1.",
    fudge: int = 300,
) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage("example.test")
    update.add("www", 300, "A", "192.0.2.1")
    update.use_tsig(dns.tsig.Key(keyname, secret, tsig.ALGORITHMS[algorithm][0]), fudge=fudge)
    return update


def wire_at(message: dns.message.Message, when: int) -> bytes:
    """The message signed as if at ``when`` (dnspython signs with the current time)."""
    with unittest.mock.patch("time.time", return_value=float(when)):
        return message.to_wire()


@pytest.mark.parametrize("algorithm", sorted(tsig.ALGORITHMS))
def test_valid_signature_and_signed_response(algorithm: str) -> None:
    update = signed_update(algorithm)
    wire = wire_at(update, NOW)
    sig = tsig.verify(wire, keyring(algorithm), NOW + 10)
    assert sig is not None and sig.ok and sig.key is not None
    body = tsig.strip(wire, sig)
    assert dns.message.from_wire(body).tsig is None
    response = tsig.error_response(body, tsig.question_end(body), dns.rcode.NOERROR)
    signed = tsig.sign_response(response, sig, NOW + 10)
    # dnspython verifies our response MAC with the request MAC, as nsupdate would
    ring = {dns.name.from_text("k1."): dns.tsig.Key("k1.", SECRET, tsig.ALGORITHMS[algorithm][0])}
    with unittest.mock.patch("time.time", return_value=float(NOW + 10)):
        parsed = dns.message.from_wire(signed, keyring=ring, request_mac=update.mac)
    assert parsed.rcode() == dns.rcode.NOERROR
    assert parsed.had_tsig


def test_unsigned_message_has_no_signature() -> None:
    update = dns.update.UpdateMessage("example.test")
    update.add("www", 300, "A", "192.0.2.1")
    assert tsig.verify(update.to_wire(), keyring(), NOW) is None


def test_unknown_key_is_badkey_and_answered_unsigned() -> None:
    wire = wire_at(signed_update(keyname="other."), NOW)
    sig = tsig.verify(wire, keyring(), NOW)
    assert sig is not None and sig.error == tsig.BADKEY
    out = tsig.sign_response(tsig.error_response(wire, tsig.question_end(wire), 9), sig, NOW)
    parsed = dns.message.from_wire(out, keyring=False)
    assert parsed.rcode() == dns.rcode.NOTAUTH
    assert parsed.tsig is not None
    assert parsed.tsig[0].error == dns.rcode.BADKEY and parsed.tsig[0].mac == b""


def test_wrong_algorithm_is_badkey() -> None:
    wire = wire_at(signed_update("hmac-sha512"), NOW)
    sig = tsig.verify(wire, keyring("hmac-sha256"), NOW)
    assert sig is not None and sig.error == tsig.BADKEY


def test_wrong_secret_is_badsig() -> None:
    wire = wire_at(signed_update(secret=b"another secret of some length!!"), NOW)
    sig = tsig.verify(wire, keyring(), NOW)
    assert sig is not None and sig.error == tsig.BADSIG


def test_altered_message_is_badsig() -> None:
    wire = bytearray(wire_at(signed_update(), NOW))
    wire[-120] ^= 0x01  # somewhere in the update section
    sig = tsig.verify(bytes(wire), keyring(), NOW)
    assert sig is None or sig.error == tsig.BADSIG


def test_time_outside_fudge_is_badtime_and_signed() -> None:
    wire = wire_at(signed_update(fudge=300), NOW)
    assert tsig.verify(wire, keyring(), NOW + 300) is not None
    assert tsig.verify(wire, keyring(), NOW + 300).ok  # type: ignore[union-attr]
    sig = tsig.verify(wire, keyring(), NOW + 301)
    assert sig is not None and sig.error == tsig.BADTIME
    out = tsig.sign_response(tsig.error_response(wire, tsig.question_end(wire), 9), sig, NOW + 301)
    parsed = dns.message.from_wire(out, keyring=False)
    rdata = parsed.tsig[0]  # type: ignore[index]
    assert rdata.error == dns.rcode.BADTIME
    assert rdata.mac != b""  # BADTIME answers are signed (RFC 8945 5.3.2)
    assert rdata.time_signed == NOW  # the request's time, ours in Other Data
    assert struct.unpack("!HI", rdata.other) == (0, NOW + 301)


def _truncate_mac(wire: bytes, size: int) -> bytes:
    sig = tsig.verify(wire, keyring(), NOW)
    assert sig is not None
    r = sig.rdata
    short = tsig.TsigRecord(
        r.algorithm, r.time_signed, r.fudge, r.mac[:size], r.original_id, r.error, r.other
    ).to_wire()
    owner = sig.owner.to_wire()
    assert owner is not None
    head = wire[: sig.start]
    return head + owner + struct.pack("!HHIH", 250, 255, 0, len(short)) + short


def test_truncated_mac_refused_unless_allowed() -> None:
    wire = _truncate_mac(wire_at(signed_update(), NOW), 16)  # half of SHA-256
    sig = tsig.verify(wire, keyring(), NOW)
    assert sig is not None and sig.error == tsig.BADTRUNC
    sig = tsig.verify(wire, keyring(allow_truncated=True), NOW)
    assert sig is not None and sig.ok


def test_mac_below_the_rfc_minimum_is_formerr() -> None:
    wire = _truncate_mac(wire_at(signed_update(), NOW), 15)  # under half of SHA-256
    sig = tsig.verify(wire, keyring(allow_truncated=True), NOW)
    assert sig is not None and sig.formerr and sig.error == tsig.BADSIG


def test_locate_ignores_malformed_and_misplaced() -> None:
    assert tsig.locate(b"\x00" * 5) is None
    wire = wire_at(signed_update(), NOW)
    assert tsig.locate(wire[:-3]) is None  # cut short
    assert tsig.locate(wire + b"\x00") is None  # trailing garbage
