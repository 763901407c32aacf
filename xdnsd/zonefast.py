"""A fast reader for the common subset of master files (pure: stdlib + dnspython).

dnspython's zone-file reader tokenizes every character in Python and builds each record through
its tokenizer; that costs about 4 microseconds per token.  This reader splits lines instead
(a character scanner that follows dnspython's tokenizer takes the lines with quotes, escapes or
parentheses), builds the rdata of the common types (A, AAAA, NS, CNAME, PTR, DNAME, MX, SRV,
SOA, and TXT without escapes) itself, caches names by their text, and hands the rdata of any
other type, or with escapes, to ``dns.rdata.from_text`` one record at a time.

It produces exactly the records ``xdnsd.zonefile.parse_zone_text`` produces (same owners with
the same case, TTLs by the same RFC 2308 rules, one RRset per owner and type with the smallest
TTL, duplicates dropped, a singleton type's last rdata kept, records outside the zone skipped,
the same order, the same ``rdcomment``).  Anything outside its subset -- ``$INCLUDE``,
``$GENERATE``, ``$UNICODE``, escapes in owner names, classes other than IN, non-ASCII text,
a line starting with a parenthesis -- and every error (bad address, unknown type, bad TTL, a
missing TTL, a CNAME beside other data, an SOA away from the apex) raises :class:`Unsupported`,
and the caller reads the file with dnspython, which loads it or reports the error with its file
and line.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.ipv4
import dns.ipv6
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.DNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.ttl

from xdnsd.model import RR

__all__ = ["Unsupported", "parse_fast"]


class Unsupported(Exception):
    """The text uses something the fast parser does not handle; use dnspython."""


_IN = dns.rdataclass.IN
_T = dns.rdatatype
# the classes dns.rdata.get_rdata_class(IN, type) returns (the tests check they are the same)
_MX_CLS: type[dns.rdata.Rdata] = dns.rdtypes.ANY.MX.MX
_TXT_CLS: type[dns.rdata.Rdata] = dns.rdtypes.ANY.TXT.TXT
_SRV: Callable[..., dns.rdata.Rdata] = dns.rdtypes.IN.SRV.SRV
_SOA: Callable[..., dns.rdata.Rdata] = dns.rdtypes.ANY.SOA.SOA
_A_CLS: type[dns.rdata.Rdata] = dns.rdtypes.IN.A.A
_AAAA_CLS: type[dns.rdata.Rdata] = dns.rdtypes.IN.AAAA.AAAA
# types whose rdata is one domain name
_NAME_TYPES: dict[int, tuple[type[dns.rdata.Rdata], dns.rdatatype.RdataType]] = {
    int(_T.NS): (dns.rdtypes.ANY.NS.NS, _T.NS),
    int(_T.CNAME): (dns.rdtypes.ANY.CNAME.CNAME, _T.CNAME),
    int(_T.PTR): (dns.rdtypes.ANY.PTR.PTR, _T.PTR),
    int(_T.DNAME): (dns.rdtypes.ANY.DNAME.DNAME, _T.DNAME),
}
_I_A = int(_T.A)
_I_AAAA = int(_T.AAAA)
_I_MX = int(_T.MX)
_I_SRV = int(_T.SRV)
_I_SOA = int(_T.SOA)
_I_TXT = int(_T.TXT)
# types built here; every other type goes through dns.rdata.from_text
_FAST_TYPES = frozenset({_I_A, _I_AAAA, _I_MX, _I_SRV, _I_SOA, _I_TXT, *_NAME_TYPES})

# ASCII characters Python's str.split() treats as whitespace but dnspython's tokenizer does not
_ODD_SPACE = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")

_MAX_U32 = 2**32 - 1
_CACHE_LIMIT = 200_000  # entries per name cache before it is emptied (bounds memory)

_WS = re.compile(r"[ \t]*")  # these four always match (they accept the empty string)
_WS_NL = re.compile(r"[ \t\n]*")
_IDENT = re.compile(r'[^ \t\n;()"\\]*')
_QUOTED = re.compile(r'[^"\n\\]*')

_NOT_TTL = -1
_NOT_CLASS = 0
_IS_IN = 1


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    m = pattern.match(text, pos)
    assert m is not None
    return m.end()


def _scan(text: str, pos: int) -> tuple[list[str], bool, str | None, int]:
    """Tokenize one record starting at ``pos`` (a line start) as dnspython's tokenizer would.

    Returns the tokens (quoted strings keep their quotes; escapes are kept as written), whether
    the line starts with whitespace, the comment that ends the record outside parentheses (what
    dnspython stores as the rdata's ``rdcomment``) and the position after the record.
    """
    n = len(text)
    leading = pos < n and text[pos] in " \t"
    if pos < n and text[pos] in "()":
        raise Unsupported("a line starting with a parenthesis")
    depth = 0
    parts: list[str] = []
    comment: str | None = None
    i = pos
    while True:
        i = _match_end(_WS_NL if depth else _WS, text, i)
        if i >= n:
            if depth:
                raise Unsupported("unbalanced parentheses")
            return parts, leading, comment, n
        c = text[i]
        if c == "\n":
            return parts, leading, comment, i + 1
        if c == ";":
            j = text.find("\n", i)
            if j < 0:
                j = n
            if depth == 0:
                comment = text[i + 1 : j]
            i = j
            continue
        if c == "(":
            depth += 1
            i += 1
            continue
        if c == ")":
            if depth == 0:
                raise Unsupported("unbalanced parentheses")
            depth -= 1
            i += 1
            continue
        if c == '"':
            buf = ['"']
            i += 1
            while True:
                j = _match_end(_QUOTED, text, i)
                buf.append(text[i:j])
                i = j
                if i >= n:
                    raise Unsupported("unterminated quoted string")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\n":
                    raise Unsupported("newline in a quoted string")
                if i + 1 >= n:  # a backslash at the end of the input
                    raise Unsupported("escape at the end of the input")
                buf.append(text[i : i + 2])
                i += 2
            buf.append('"')
            parts.append("".join(buf))
            continue
        start = i
        while True:
            i = _match_end(_IDENT, text, i)
            if i < n and text[i] == "\\":
                if i + 1 >= n or text[i + 1] == "\n":
                    raise Unsupported("escape at the end of a line")
                i += 2
                continue
            break
        parts.append(text[start:i])


# -- building names and rdata without the constructors' overhead -------------------------------
#
# dnspython's constructors validate through an immutability context and enum round trips that
# cost ~8 us per A record.  The values built here are validated by this module exactly as the
# constructors would (addresses by dnspython's own functions, names by the label rules), and the
# objects are filled through their slots.  _self_check() below compares the result with the
# -- names and rdata without the constructors' overhead ------------------------------------------
#
# dnspython's constructors validate through an immutability context and enum round trips that
# cost ~8 us for an A record.  The values given to the builders below are validated here exactly
# as the constructors would validate them (addresses with dnspython's own rules, names with the
# label rules, TXT strings by length), and the objects are filled in through their slots.
# _self_check() compares the results with the constructors' at import; should a dnspython
# release change these classes, the constructors are used instead.

_new = object.__new__
_set = object.__setattr__
_Name = dns.name.Name
_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
_IPV6_CHARS = re.compile(r"[0-9a-f:]{2,39}")


def _name_fast(labels: list[bytes]) -> dns.name.Name:
    name = _new(_Name)
    _set(name, "labels", tuple(labels))
    return name


def _rdata_fast(
    cls: type[dns.rdata.Rdata], rdtype: dns.rdatatype.RdataType, slot: str, value: object
) -> dns.rdata.Rdata:
    rd = _new(cls)
    _set(rd, "rdclass", _IN)
    _set(rd, "rdtype", rdtype)
    _set(rd, "rdcomment", None)
    _set(rd, slot, value)
    return rd


def _mx_fast(preference: int, exchange: dns.name.Name) -> dns.rdata.Rdata:
    rd = _new(_MX_CLS)
    _set(rd, "rdclass", _IN)
    _set(rd, "rdtype", _T.MX)
    _set(rd, "rdcomment", None)
    _set(rd, "preference", preference)
    _set(rd, "exchange", exchange)
    return rd


def _name_ctor(labels: list[bytes]) -> dns.name.Name:
    return dns.name.Name(labels)


def _rdata_ctor(
    cls: type[dns.rdata.Rdata], rdtype: dns.rdatatype.RdataType, slot: str, value: object
) -> dns.rdata.Rdata:
    ctor: Callable[..., dns.rdata.Rdata] = cls
    return ctor(_IN, rdtype, value)


def _mx_ctor(preference: int, exchange: dns.name.Name) -> dns.rdata.Rdata:
    ctor: Callable[..., dns.rdata.Rdata] = _MX_CLS
    return ctor(_IN, _T.MX, preference, exchange)


def _slots(obj: object) -> set[str]:
    return {s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ())}


def _same(a: object, b: object) -> bool:
    slots = _slots(a)
    if type(a) is not type(b) or slots != _slots(b):
        return False
    return all(
        type(getattr(a, s)) is type(getattr(b, s)) and getattr(a, s) == getattr(b, s) for s in slots
    )


def _self_check() -> bool:
    """Do the slot-filling builders make the objects the constructors make?"""
    try:
        labels = [b"Www", b"example", b"test", b""]
        name = dns.name.Name(labels)
        if _slots(name) != {"labels"} or not _same(name, _name_fast(list(labels))):
            return False
        samples: list[tuple[type[dns.rdata.Rdata], dns.rdatatype.RdataType, str, object]] = [
            (_A_CLS, _T.A, "address", "192.0.2.1"),
            (_AAAA_CLS, _T.AAAA, "address", "2001:db8::1"),
            (_TXT_CLS, _T.TXT, "strings", (b"v=spf1 -all", b"")),
            *((cls, rdtype, "target", name) for cls, rdtype in _NAME_TYPES.values()),
        ]
        for cls, rdtype, slot, value in samples:
            made = _rdata_ctor(cls, rdtype, slot, value)
            if _slots(made) != {"rdclass", "rdtype", "rdcomment", slot}:
                return False
            if not _same(made, _rdata_fast(cls, rdtype, slot, value)):
                return False
        made = _mx_ctor(10, name)
        if _slots(made) != {"rdclass", "rdtype", "rdcomment", "preference", "exchange"}:
            return False
        return _same(made, _mx_fast(10, name))
    except Exception:
        return False


FAST_OBJECTS = _self_check()
_make_labels_name = _name_fast if FAST_OBJECTS else _name_ctor
_make_rdata = _rdata_fast if FAST_OBJECTS else _rdata_ctor
_make_mx = _mx_fast if FAST_OBJECTS else _mx_ctor


def _name_labels(s: str, origin: dns.name.Name) -> list[bytes]:
    """The labels of ``dns.name.from_text(s, origin)`` for text without escapes; its errors
    (empty labels, labels over 63 octets, names over 255) raise Unsupported."""
    if "\\" in s or '"' in s:
        raise Unsupported(f"escapes or quotes in the name {s!r}")
    if s == "@":
        return list(origin.labels)
    if s == ".":
        return [b""]
    labels = s.encode("ascii").split(b".")
    if labels[-1] == b"":  # absolute
        labels.pop()
        if b"" in labels:
            raise Unsupported(f"an empty label in {s!r}")
        labels.append(b"")
    else:
        if b"" in labels:
            raise Unsupported(f"an empty label in {s!r}")
        labels.extend(origin.labels)
    total = 0
    for label in labels:
        size = len(label)
        if size > 63:
            raise Unsupported(f"a label longer than 63 octets in {s!r}")
        total += size + 1
    if total > 255:
        raise Unsupported(f"a name longer than 255 octets: {s!r}")
    return labels


def _make_name(s: str, origin: dns.name.Name) -> dns.name.Name:
    """``dns.name.from_text(s, origin)`` for text without escapes, minus its per-byte loop."""
    return _make_labels_name(_name_labels(s, origin))


def _ipv4(s: str) -> str:
    """``dns.ipv4.canonicalize(s)``: its inet_aton accepts only the canonical dotted quad."""
    if _IPV4.fullmatch(s):
        return s
    return dns.ipv4.canonicalize(s)  # raises for anything invalid


def _ipv6_is_canonical(s: str) -> bool:
    """Is ``s`` exactly what dnspython's ``inet_ntoa`` prints for some address?

    Then ``dns.ipv6.canonicalize(s) == s`` (its inet_aton reads back what inet_ntoa prints).
    Checked for the forms without an embedded IPv4 address and not starting with ``::``:
    lowercase groups without leading zeros, and ``::`` standing for the first longest run of
    two or more zero groups (every other run of zeros is shorter, or as long but later).
    """
    if not _IPV6_CHARS.fullmatch(s) or s[0] == ":" or (s[-1] == ":" and s[-2] != ":"):
        return False
    head, sep, tail = s.partition("::")
    if sep:
        if ":::" in s or "::" in tail:
            return False
        left = head.split(":")
        right = tail.split(":") if tail else []
        gap = 8 - len(left) - len(right)
        if gap < 2 or left[-1] == "0" or (right and right[0] == "0"):
            return False
        groups = [*left, *right]
    else:
        groups = head.split(":")
        if len(groups) != 8:
            return False
        left, gap = groups, 2  # without "::", no run of two or more zero groups
    run = 0
    for index, group in enumerate(groups):
        if not group or len(group) > 4 or (group[0] == "0" and len(group) > 1):
            return False
        if group == "0":
            run += 1
            # a run before the gap must be shorter than it; one after it no longer
            if run > gap or (run == gap and index < len(left)):
                return False
        else:
            run = 0
    return True


def _ipv6(s: str) -> str:
    if _ipv6_is_canonical(s):
        return s
    return dns.ipv6.canonicalize(s)  # raises for anything invalid


def _u16(s: str) -> int:
    if not s.isdigit():  # the text is ASCII, so isdigit() means ASCII digits
        raise Unsupported(f"not a 16-bit integer: {s!r}")
    v = int(s)
    if v > 65535:
        raise Unsupported(f"not a 16-bit integer: {s!r}")
    return v


def _ttl_field(s: str) -> int:
    try:
        return dns.ttl.from_text(s)
    except dns.exception.DNSException:
        raise Unsupported(f"bad TTL {s!r}") from None


def _txt_strings(rest: list[str]) -> tuple[bytes, ...]:
    """The strings of a TXT record whose tokens have no escapes, as txtbase.from_text reads them."""
    if not rest:
        raise Unsupported("TXT without strings")
    strings = []
    for p in rest:
        b = (p[1:-1] if p[0] == '"' else p).encode("ascii")
        if len(b) > 255:
            raise Unsupported("a TXT string longer than 255 octets")
        strings.append(b)
    return tuple(strings)


def _ttl_token(tok: str, cache: dict[str, int]) -> int:
    """The TTL ``tok`` stands for, or ``_NOT_TTL``; cached."""
    try:
        v = dns.ttl.from_text(tok)
    except dns.ttl.BadTTL:
        v = _NOT_TTL
    if len(cache) < 10_000:
        cache[tok] = v
    return v


def _class_token(tok: str, cache: dict[str, int]) -> int:
    """``_IS_IN`` or ``_NOT_CLASS`` for ``tok`` in the class position (as dnspython decides)."""
    try:
        rdclass = dns.rdataclass.from_text(tok)
    except dns.exception.SyntaxError:
        raise Unsupported(f"bad class {tok!r}") from None
    except Exception:
        v = _NOT_CLASS
    else:
        if rdclass != _IN:
            raise Unsupported(f"class {tok!r} is not IN")
        v = _IS_IN
    if len(cache) < 10_000:
        cache[tok] = v
    return v


def _type_token(tok: str, cache: dict[str, int]) -> int:
    try:
        v = int(dns.rdatatype.from_text(tok))
    except Exception:
        raise Unsupported(f"unknown type {tok!r}") from None
    if len(cache) < 10_000:
        cache[tok] = v
    return v


def parse_fast(text: str, origin: dns.name.Name, filename: str = "<input>") -> list[RR]:
    """Parse master-file text for ``origin`` into records, as ``parse_zone_text`` would.

    Raises :class:`Unsupported` when the text is outside the supported subset or has an error;
    the caller should then use dnspython's reader, which also reports the error.
    """
    if not isinstance(text, str):
        raise Unsupported("not a string")
    if not origin.is_absolute() or any(b"." in label for label in origin.labels):
        raise Unsupported(f"origin {origin}")
    if not text.isascii():
        raise Unsupported(f"{filename}: non-ASCII text")
    if "\r" in text:
        # dnspython's tokenizer ends a line at a CR outside quoted strings, and at CRLF once.
        # Inside a quoted string a CR is text, after an escape too; as a newline would end it
        # here, the only one read differently would be an escaped CR before an LF.
        if "\\\r" in text:
            raise Unsupported(f"{filename}: an escaped CR")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for c in _ODD_SPACE:
        if c in text:
            raise Unsupported(f"{filename}: control character {c!r}")
    where = [0]
    # A large zone makes millions of objects and no reference cycles; the cyclic collector's
    # passes over the growing heap would take a third of the time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, origin, where)
    except Exception as exc:  # any error is dnspython's to report
        line = text.count("\n", 0, where[0]) + 1
        what = str(exc) if isinstance(exc, Unsupported) else f"{type(exc).__name__}: {exc}"
        raise Unsupported(f"{filename}:{line}: {what}") from None
    finally:
        if gc_was_enabled:
            gc.enable()


# an owner: its name, its key (the lowercased name text: names are equal when their keys are,
# as no label here holds a dot) and whether it is in the zone
_OwnerEntry = tuple[dns.name.Name, bytes, bool]
_GroupKey = tuple[bytes, int, int]


def _parse(text: str, zone_origin: dns.name.Name, where: list[int]) -> list[RR]:
    """The reader; ``where[0]`` is kept at the start of the record being read."""
    # reader state, as in dns.zonefile.Reader (rfc2308_ttl=True, no default TTL)
    last_ttl = 0
    last_ttl_known = False
    default_ttl = 0
    default_ttl_known = False
    default_ttl_from_soa = False
    cur_origin = zone_origin

    zone_key = b".".join(zone_origin.labels).lower()
    below_zone = b"." + zone_key
    # caches per $ORIGIN: owner text -> owner entry, target text -> name
    owner_caches: dict[tuple[bytes, ...], dict[str, _OwnerEntry]] = {}
    target_caches: dict[tuple[bytes, ...], dict[str, dns.name.Name]] = {}
    owners = owner_caches.setdefault(cur_origin.labels, {})
    targets = target_caches.setdefault(cur_origin.labels, {})
    ttl_cache: dict[str, int] = {}
    class_cache: dict[str, int] = {}
    type_cache: dict[str, int] = {}
    singleton_cache: dict[int, bool] = {}
    name_types = _NAME_TYPES
    fast_types = _FAST_TYPES
    make_rdata = _make_rdata
    make_name = _make_name
    make_labels_name = _make_labels_name
    name_labels = _name_labels
    rr_type = RR

    last_owner: _OwnerEntry = (zone_origin, zone_key, True)
    # records in dnspython's order: an RR, or [owner, ttl, {rdata: None}] for an RRset that got
    # a second record; groups maps (owner key, type, covers) to the index in records
    records: list[Any] = []
    groups: dict[_GroupKey, int] = {}
    merged = False

    n = len(text)
    pos = 0
    find = text.find
    while pos < n:
        where[0] = pos
        end = find("\n", pos)
        if end < 0:
            end = n
        line = text[pos:end]
        careful = '"' in line or "\\" in line or "(" in line or ")" in line
        comment: str | None
        if careful:
            parts, leading, comment, nxt = _scan(text, pos)
        else:
            k = line.find(";")
            if k >= 0:
                comment = line[k + 1 :]
                line = line[:k]
            else:
                comment = None
            nxt = end + 1
            parts = line.split()
            leading = line[:1] in (" ", "\t")
        if not parts:
            pos = nxt
            continue

        # directives (only at the start of a line)
        if not leading and parts[0][0] == "$":
            directive = parts[0].upper()
            if len(parts) != 2 or "\\" in parts[1] or '"' in parts[1]:
                raise Unsupported(f"directive {parts[0]!r} with {len(parts) - 1} arguments")
            if directive == "$TTL":
                default_ttl = _ttl_field(parts[1])
                default_ttl_known = True
                default_ttl_from_soa = False
            elif directive == "$ORIGIN":
                cur_origin = make_name(parts[1], cur_origin)
                owners = owner_caches.setdefault(cur_origin.labels, {})
                targets = target_caches.setdefault(cur_origin.labels, {})
            else:
                raise Unsupported(f"directive {parts[0]!r}")
            pos = nxt
            continue

        # owner
        if leading:
            i = 0
        else:
            tok = parts[0]
            entry = owners.get(tok)
            if entry is None:
                labels = name_labels(tok, cur_origin)
                key = b".".join(labels).lower()
                in_zone = key == zone_key or key.endswith(below_zone)  # is_subdomain()
                entry = (make_labels_name(labels), key, in_zone)
                if len(owners) >= _CACHE_LIMIT:
                    owners.clear()
                owners[tok] = entry
            last_owner = entry
            i = 1
        owner, okey, in_zone = last_owner
        if not in_zone:  # dnspython skips records outside the zone, TTL and all
            pos = nxt
            continue

        # [ttl] [class] [ttl] type, decided as dnspython does
        try:
            ttl: int | None = None
            tok = parts[i]
            v = ttl_cache.get(tok)
            if v is None:
                v = _ttl_token(tok, ttl_cache)
            if v != _NOT_TTL:
                ttl = last_ttl = v
                last_ttl_known = True
                i += 1
                tok = parts[i]
            v = class_cache.get(tok)
            if v is None:
                v = _class_token(tok, class_cache)
            if v == _IS_IN:
                i += 1
                tok = parts[i]
            if ttl is None:
                v = ttl_cache.get(tok)
                if v is None:
                    v = _ttl_token(tok, ttl_cache)
                if v != _NOT_TTL:
                    ttl = last_ttl = v
                    last_ttl_known = True
                    i += 1
                    tok = parts[i]
                elif last_ttl_known and (not default_ttl_known or default_ttl_from_soa):
                    ttl = last_ttl
                elif default_ttl_known:
                    ttl = default_ttl
            rdtype = type_cache.get(tok)
            if rdtype is None:
                rdtype = _type_token(tok, type_cache)
        except IndexError:
            raise Unsupported("a record without a type") from None
        rest = parts[i + 1 :]
        if careful:
            for p in parts[: i + 1]:
                if '"' in p or "\\" in p:
                    raise Unsupported(f"quotes or escapes in {p!r}")
            special = any("\\" in p for p in rest) or (
                rdtype != _I_TXT and any('"' in p for p in rest)
            )
        else:
            special = False

        # rdata
        rd: dns.rdata.Rdata
        if special or rdtype not in fast_types:
            rd = dns.rdata.from_text(
                _IN,
                dns.rdatatype.RdataType.make(rdtype),
                " ".join(rest),
                origin=cur_origin,
                relativize=False,
            )
        elif rdtype == _I_A:
            if len(rest) != 1:
                raise Unsupported("A takes one address")
            rd = make_rdata(_A_CLS, _T.A, "address", _ipv4(rest[0]))
        elif rdtype == _I_AAAA:
            if len(rest) != 1:
                raise Unsupported("AAAA takes one address")
            rd = make_rdata(_AAAA_CLS, _T.AAAA, "address", _ipv6(rest[0]))
        elif rdtype in name_types:
            if len(rest) != 1:
                raise Unsupported("the type takes one name")
            s = rest[0]
            target = targets.get(s)
            if target is None:
                target = make_name(s, cur_origin)
                if len(targets) >= _CACHE_LIMIT:
                    targets.clear()
                targets[s] = target
            cls, enum_type = name_types[rdtype]
            rd = make_rdata(cls, enum_type, "target", target)
        elif rdtype == _I_TXT:
            rd = make_rdata(_TXT_CLS, _T.TXT, "strings", _txt_strings(rest))
        elif rdtype == _I_MX:
            if len(rest) != 2:
                raise Unsupported("MX takes a preference and a name")
            rd = _make_mx(_u16(rest[0]), make_name(rest[1], cur_origin))
        elif rdtype == _I_SRV:
            if len(rest) != 4:
                raise Unsupported("SRV takes priority, weight, port and a name")
            rd = _SRV(
                _IN,
                _T.SRV,
                _u16(rest[0]),
                _u16(rest[1]),
                _u16(rest[2]),
                make_name(rest[3], cur_origin),
            )
        else:  # SOA
            if len(rest) != 7:
                raise Unsupported("SOA takes seven fields")
            serial = rest[2]
            if not serial.isdigit() or int(serial) > _MAX_U32:
                raise Unsupported(f"bad SOA serial {serial!r}")
            rd = _SOA(
                _IN,
                _T.SOA,
                make_name(rest[0], cur_origin),
                make_name(rest[1], cur_origin),
                int(serial),
                _ttl_field(rest[3]),
                _ttl_field(rest[4]),
                _ttl_field(rest[5]),
                _ttl_field(rest[6]),
            )
        if comment is not None:  # dnspython keeps the line's comment with the rdata
            _set(rd, "rdcomment", comment)

        if rdtype == _I_SOA:
            if not default_ttl_known:  # the SOA minimum is the default until a $TTL
                default_ttl = rd.minimum  # type: ignore[attr-defined]
                default_ttl_known = True
                default_ttl_from_soa = True
                if ttl is None:
                    ttl = last_ttl if last_ttl_known else default_ttl
            if okey != zone_key:
                raise Unsupported("an SOA record not at the zone apex")
        if ttl is None:
            raise Unsupported("no TTL for the record")

        # dnspython's transaction: one rdataset per (owner, type, covers) with the smallest TTL
        # and no duplicate rdata; a singleton type (CNAME, SOA, ...) keeps its last rdata
        gkey = (okey, rdtype, 0 if rdtype in fast_types else int(rd.covers()))
        index = groups.get(gkey)
        if index is None:
            groups[gkey] = len(records)
            records.append(rr_type(owner, ttl, rd))
        else:
            group = records[index]
            if not isinstance(group, list):
                group = records[index] = [group.owner, group.ttl, {group.rdata: None}]
                merged = True
            if ttl < group[1]:
                group[1] = ttl
            single = singleton_cache.get(rdtype)
            if single is None:
                single = singleton_cache[rdtype] = dns.rdatatype.is_singleton(
                    dns.rdatatype.RdataType.make(rdtype)
                )
            if single:
                group[2] = {rd: None}
            elif rd not in group[2]:
                group[2][rd] = None
        pos = nxt

    _check_cname(groups)
    if not merged:
        return records
    out: list[RR] = []
    for record in records:
        if isinstance(record, list):
            owner, ttl, rdatas = record
            out.extend(RR(owner, ttl, r) for r in rdatas)
        else:
            out.append(record)
    return out


def _check_cname(groups: dict[_GroupKey, int]) -> None:
    """dnspython refuses a CNAME (or an RRSIG covering one) beside other data at an owner."""
    kinds: dict[tuple[int, int], dns.node.NodeKind] = {}
    cname_owners: set[bytes] = set()
    for okey, rdtype, covers in groups:
        kind = kinds.get((rdtype, covers))
        if kind is None:
            kind = kinds[(rdtype, covers)] = dns.node.NodeKind.classify(
                dns.rdatatype.RdataType.make(rdtype), dns.rdatatype.RdataType.make(covers)
            )
        if kind == dns.node.NodeKind.CNAME:
            cname_owners.add(okey)
    if not cname_owners:
        return
    for okey, rdtype, covers in groups:
        if okey in cname_owners and kinds[(rdtype, covers)] == dns.node.NodeKind.REGULAR:
            raise Unsupported("a CNAME beside other data")
