"""The fast master-file reader against dnspython's: the same records, or Unsupported."""

from __future__ import annotations

import gc
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.ipv4
import dns.ipv6
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdnsd import zonefast
from xdnsd.model import RR
from xdnsd.zonefast import Unsupported, parse_fast
from xdnsd.zonefile import parse_zone_text

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = dns.name.from_text("example.test.")

Row = tuple[str, int, int, str, str | None]


def rows(records: list[RR]) -> list[Row]:
    """Records as comparable rows: owner text (with case), TTL, type, rdata text, comment."""
    return [
        (rr.owner.to_text(), rr.ttl, rr.rdtype, rr.rdata.to_text(), rr.rdata.rdcomment)
        for rr in records
    ]


def slow(text: str, origin: dns.name.Name = ORIGIN) -> list[RR] | Exception:
    try:
        return parse_zone_text(text, origin, "t.zone")
    except Exception as exc:  # ZoneFileError, or whatever else dnspython lets out
        return exc


def agree(text: str, origin: dns.name.Name = ORIGIN) -> bool:
    """Check parse_fast against dnspython; True when the fast reader handled the text."""
    try:
        fast = parse_fast(text, origin, "t.zone")
    except Unsupported:
        return False
    reference = slow(text, origin)
    assert not isinstance(reference, Exception), f"dnspython refused it: {reference}"
    assert rows(fast) == rows(reference)  # the same order, too
    assert sorted(rows(fast)) == sorted(rows(reference))
    for a, b in zip(fast, reference, strict=True):
        assert a.owner.labels == b.owner.labels  # case included
        assert type(a.rdata) is type(b.rdata) and a.rdata == b.rdata
    return True


def handled(text: str, origin: dns.name.Name = ORIGIN) -> None:
    assert agree(text, origin), parse_fast(text, origin)  # shows the Unsupported reason


# -- hand-written zones: every feature of the subset ---------------------------------------------

BASIC = """\
$ORIGIN example.test.
$TTL 1h
; a comment line
@   IN  SOA ns1 hostmaster ( 2024010101 ; serial
            7200        ; refresh
            1h          ; retry
            2w          ; expire
            300 )       ; minimum

\t; an indented comment
@           NS      ns1
            NS      ns2.example.test.
            MX      10 mail
ns1     300 IN  A   192.0.2.1
ns1     IN  300 AAAA    2001:db8::1
ns2         A       192.0.2.2
            AAAA    2001:DB8:0:0::2
mail        A       192.0.2.25 ; the mail host
www     CNAME   @
Www.sub     A       192.0.2.80
www.Sub     A       192.0.2.81
x.example.test. 60 in a 192.0.2.9
_sip._tcp   SRV     10 60 5060 sip
sip         A       192.0.2.5
4.2.0.192   PTR     sip.example.test.
old         DNAME   new.example.test.
txt         TXT     "v=spf1 -all" plain "semi;colon" "(paren)" ""
txt2        TXT     ( "one"
                      "two" )   ; after the parens
caa         CAA     0 issue "ca.example"
sshfp       SSHFP   1 1 ( 0123456789abcdef0123456789abcdef01234567 )
hinfo       HINFO   "PC" "Linux"
ds          DS      12345 8 2 ( 0123456789ABCDEF0123456789ABCDEF
                                0123456789ABCDEF0123456789ABCDEF )
generic     TYPE65534 \\# 2 abcd
gen-a       A       \\# 4 c0000201
esc         TXT     "a\\"quote" "back\\\\slash" "\\065"
wild        TXT     "multi\\
line"
*.wild      A       192.0.2.99
$ORIGIN sub.example.test.
deep        A       192.0.2.100
@           TXT     "at sub"
$ORIGIN more
deeper      A       192.0.2.101
$TTL 2d3h4m5s
later       A       192.0.2.102
later       A       192.0.2.102
later   5   A       192.0.2.103
"""

TTL_FROM_SOA = """\
@ IN SOA ns1 host 1 3600 900 604800 60
@ NS ns1
ns1 A 192.0.2.1
ns2 7200 A 192.0.2.2
ns3 A 192.0.2.3
$TTL 99
ns4 A 192.0.2.4
ns5 5 A 192.0.2.5
ns6 A 192.0.2.6
"""

TTL_BEFORE_SOA = """\
@ 30 NS ns1
@ SOA ns1 host 1 3600 900 604800 60
ns1 A 192.0.2.1
"""

MERGING = """\
$TTL 300
@ SOA ns1 host 1 3600 900 604800 60
@ NS ns1
ns1 A 192.0.2.1
NS1 100 A 192.0.2.1
ns1 A 192.0.2.2
ns1.example.test. 50 A 192.0.2.3
alias CNAME one
alias 10 CNAME two
alias RRSIG CNAME 8 2 300 20300101000000 20200101000000 1 example.test. AAAA
alias NSEC next A NSEC
mx MX 10 MAIL
mx MX 10 mail
mx MX 20 mail
"""

OUTSIDE = """\
$TTL 300
@ SOA ns1 host 1 3600 900 604800 60
other.test. 7 A 192.0.2.1
 A 192.0.2.2
in A 192.0.2.3
$ORIGIN elsewhere.
x A 192.0.2.4
@ A 192.0.2.5
$ORIGIN example.test.
y A 192.0.2.6
"""

SMALL = [
    "",
    "\n\n  \n",
    "; only a comment",
    " 60 A 192.0.2.1\n@ SOA ns1 host 1 2 3 4 5",  # leading whitespace first: the origin
    "$TTL 60\n@ A 192.0.2.1",  # no newline at the end
    "$TTL 60\n@ A 192.0.2.1 ; comment at the end",
    "$ttl 60\n$origin Example.Test.\n@ a 192.0.2.1\n\tmx 0 .",
    "$TTL 60\nCLASS1-owner CLASS1 A 192.0.2.1\nt TYPE1 192.0.2.2",
    "$TTL 60\n@ SOA ns1 host 4294967295 0 0 0 0",
    "$TTL 60\n@ NS ns1\n@ NS ns1\n@ NS NS1",
    "$TTL 60\nv6 AAAA ::\nv6 AAAA ::1\nv6 AAAA ::ffff:192.0.2.1\nv6 AAAA 1:0:0:2::3\n"
    "v6 AAAA 1::2:0:0:3\nv6 AAAA 0:0:0:0:0:0:0:1\nv6 AAAA 2001:db8:0:1:2:3:4:5",
    "$TTL 60\na\tIN\tA\t192.0.2.1\n\tIN\tAAAA\t2001:db8::1",
    "$TTL 60\nt TXT plain words here\nt TXT (multi\n  line) ; c",
    "$TTL 60\n@ IN ( A\n 192.0.2.1 )",
    "$TTL 60\nsrv SRV 0 0 0 .\nsrv SRV 65535 65535 65535 target",
    '$TTL 60\r\n@ A 192.0.2.1 ; crlf\r\n@ TXT "x" ( y\r\n z )\r\n',
    "$TTL 60\r@ A 192.0.2.1\r\r\n@ A 192.0.2.2\n\r@ A 192.0.2.3",
]


@pytest.mark.parametrize("text", [BASIC, TTL_FROM_SOA, TTL_BEFORE_SOA, MERGING, OUTSIDE])
def test_hand_written_zones(text: str) -> None:
    handled(text)


@pytest.mark.parametrize("text", SMALL)
def test_small_texts(text: str) -> None:
    handled(text)


def test_root_origin() -> None:
    handled("$TTL 60\n@ NS a.root-servers.net.\ntest. NS ns.test.\n", dns.name.root)


def test_ttl_rules_match_rfc_2308() -> None:
    records = {rr.owner.to_text(): rr.ttl for rr in parse_fast(TTL_FROM_SOA, ORIGIN)}
    # no $TTL: the SOA minimum until an explicit TTL, then the last explicit TTL; then $TTL
    assert records["ns1.example.test."] == 60
    assert records["ns3.example.test."] == 7200
    assert records["ns4.example.test."] == 99
    assert records["ns6.example.test."] == 99


def test_rrsets_take_the_smallest_ttl_and_first_owner_case() -> None:
    records = parse_fast(MERGING, ORIGIN)
    a = [rr for rr in records if rr.rdtype == dns.rdatatype.A]
    assert {rr.ttl for rr in a} == {50}
    assert {rr.owner.to_text() for rr in a} == {"ns1.example.test."}
    assert len(a) == 3
    cname = [rr for rr in records if rr.rdtype == dns.rdatatype.CNAME]
    assert [rr.rdata.to_text() for rr in cname] == ["two.example.test."]


def bench_zone(tmp_path: Path, names: int) -> str:
    """A zone file from bench/genzone.py with about ``names`` owner names."""
    spec = importlib.util.spec_from_file_location("genzone", ROOT / "bench" / "genzone.py")
    assert spec is not None and spec.loader is not None
    genzone: Any = importlib.util.module_from_spec(spec)
    sys.modules["genzone"] = genzone  # for its dataclasses
    try:
        spec.loader.exec_module(genzone)
        path = tmp_path / "bench.test.zone"
        genzone.generate_zone(str(path), names, 1)
    finally:
        del sys.modules["genzone"]
    return path.read_text()


def test_bench_zone(tmp_path: Path) -> None:
    text = bench_zone(tmp_path, 3000)
    origin = dns.name.from_text("bench.test.")
    handled(text, origin)
    assert len(parse_fast(text, origin)) > 4000


# -- what the fast reader leaves to dnspython ----------------------------------------------------

UNSUPPORTED = {
    "include": "$INCLUDE other.zone\n",
    "generate": "$GENERATE 1-4 host$ A 10.0.0.$\n",
    "unicode": "$UNICODE 2008\n",
    "unknown directive": "$FOO bar\n",
    "directive arguments": "$TTL 60 60\n",
    "escape in owner": "a\\.b 60 A 192.0.2.1\n",
    "decimal escape in owner": "\\065 60 A 192.0.2.1\n",
    "quoted owner": '"owner" 60 A 192.0.2.1\n',
    "class CH": "@ 60 CH A 192.0.2.1\n",
    "class HS": "@ HS 60 A 192.0.2.1\n",
    "class number": "@ 60 CLASS3 A 192.0.2.1\n",
    "non-ASCII": "; zone für example\n@ 60 A 192.0.2.1\n",
    "CR in a quoted string": '@ 60 TXT "a\rb"\n',
    "escaped CR": '@ 60 TXT "a\\\r\nb"\n',
    "line starts with a parenthesis": "( @ 60 A 192.0.2.1 )\n",
    "unbalanced open": "@ 60 A ( 192.0.2.1\n",
    "unbalanced close": "@ 60 A 192.0.2.1 )\n",
    "unterminated quote": '@ 60 TXT "abc\n',
    "bad address": "@ 60 A 192.0.2\n",
    "bad AAAA": "@ 60 AAAA 1::2::3\n",
    "two addresses": "@ 60 A 192.0.2.1 192.0.2.2\n",
    "unknown type": "@ 60 BOGUS 1\n",
    "bad TTL": "$TTL forever\n@ A 192.0.2.1\n",
    "missing TTL": "@ A 192.0.2.1\n",
    "missing type": "@ 60\n",
    "owner only": "lonely\n",
    "CNAME beside data": "$TTL 60\nx A 192.0.2.1\nx CNAME y\n",
    "data beside CNAME": "$TTL 60\nx CNAME y\nx MX 10 y\n",
    "SOA not at apex": "$TTL 60\nsub SOA ns1 host 1 2 3 4 5\n",
    "bad MX preference": "$TTL 60\n@ MX 65536 mail\n",
    "bad SOA field": "$TTL 60\n@ SOA ns1 host 1 2 3 4\n",
    "empty label": "$TTL 60\na..b A 192.0.2.1\n",
    "long label": f"$TTL 60\n{'x' * 64} A 192.0.2.1\n",
    "long name": "$TTL 60\n" + ".".join(["x" * 60] * 5) + " A 192.0.2.1\n",
    "empty TXT": "$TTL 60\n@ TXT\n",
    "long TXT string": f'$TTL 60\n@ TXT "{"x" * 256}"\n',
    "quoted type": '$TTL 60\n@ "A" 192.0.2.1\n',
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported(name: str) -> None:
    text = UNSUPPORTED[name]
    with pytest.raises(Unsupported):
        parse_fast(text, ORIGIN, "t.zone")


@pytest.mark.parametrize(
    "name",
    sorted(
        set(UNSUPPORTED) - {"include", "generate", "unicode", "non-ASCII", "CR in a quoted string"}
    ),
)
def test_unsupported_errors_are_dnspythons_to_report(name: str) -> None:
    """Everything refused but the directives and non-ASCII text is an error for dnspython too."""
    text = UNSUPPORTED[name]
    if name in {"escape in owner", "decimal escape in owner", "line starts with a parenthesis"}:
        assert not isinstance(slow(text), Exception)  # valid, only not handled here
        return
    assert isinstance(slow(text), Exception)


def test_unsupported_message_names_file_and_line() -> None:
    with pytest.raises(Unsupported, match=r"^t\.zone:3: "):
        parse_fast("$TTL 60\n@ A 192.0.2.1\n@ A 192.0.2\n", ORIGIN, "t.zone")


def test_gc_state_is_restored() -> None:
    assert gc.isenabled()
    parse_fast("$TTL 60\n@ A 192.0.2.1\n", ORIGIN)
    assert gc.isenabled()
    with pytest.raises(Unsupported):
        parse_fast("@ A 192.0.2.1\n", ORIGIN)
    assert gc.isenabled()


def test_builders_match_dnspython() -> None:
    """The slot-filling builders are in use, for the classes dnspython's reader would use."""
    assert zonefast.FAST_OBJECTS
    IN = dns.rdataclass.IN
    for cls, rdtype in [
        (zonefast._A_CLS, dns.rdatatype.A),
        (zonefast._AAAA_CLS, dns.rdatatype.AAAA),
        (zonefast._MX_CLS, dns.rdatatype.MX),
        (zonefast._TXT_CLS, dns.rdatatype.TXT),
        (zonefast._SRV, dns.rdatatype.SRV),
        (zonefast._SOA, dns.rdatatype.SOA),
        *((c, t) for c, t in zonefast._NAME_TYPES.values()),
    ]:
        assert dns.rdata.get_rdata_class(IN, rdtype) is cls  # type: ignore[no-untyped-call]


# -- generated zones -----------------------------------------------------------------------------

OWNERS = ["@", "a", "B", "a.b", "*.w", "x.example.test.", "X.Example.Test.", "in", "10"]
BAD_OWNERS = ["other.test.", "a..b", "a\\.b", '"q"']
TTLS = ["0", "60", "3600", "1h", "2d3h", "1W", "4294967295"]
BAD_TTLS = ["4294967296", "1x", "h", "-1"]
CLASSES = ["IN", "in", "CLASS1"]
BAD_CLASSES = ["CH", "CLASS70000"]
RDATA = {
    "A": ["192.0.2.1", "10.0.0.255", "\\# 4 c0000201"],
    "AAAA": [
        "2001:db8::1",
        "2001:DB8::1",
        "::1",
        "::",
        "::ffff:192.0.2.1",
        "2001:db8:0:0::1",
        "fe80::1:0:0:1",
        "1:2:3:4:5:6:7:8",
        "1:0:0:4:0:0:0:8",
    ],
    "NS": ["ns1", "ns1.example.test.", "@", "Other.Test.", "."],
    "CNAME": ["a", "target.example.test.", "@"],
    "PTR": ["host", "host.other.test."],
    "DNAME": ["new", "new.other."],
    "MX": ["10 mail", "0 .", "10 ( mail )", "10 MAIL"],
    "SRV": ["0 5 5060 sip", "1 2 3 ."],
    "TXT": ['"hello world"', "plain", '"a;b" "c(d)"', '""', '"esc\\"aped"', '"x" y'],
    "SOA": ["ns1 host 1 3600 900 604800 60", "ns1 host 1 1h 15m 1w 1m"],
    "CAA": ['0 issue "ca.example"'],
    "SSHFP": ["1 1 ( 0123456789abcdef0123456789abcdef01234567 )"],
    "HINFO": ['"PC" "Linux"'],
    "NSEC": ["next A NSEC"],
    "TYPE65534": ["\\# 2 abcd"],
}
BAD_RDATA = {
    "A": ["1.2.3", "01.2.3.4", "256.1.1.1", "192.0.2.1 x", ""],
    "AAAA": ["1::2::3", "gggg::1", "1:2:3:4:5:6:7:8:9"],
    "NS": ["a..b", "x" * 64],
    "MX": ["70000 mail", "-1 x", "10"],
    "SRV": ["1 2 x y"],
    "TXT": ["", '"unterminated'],
    "SOA": ["ns1 host 1 2 3"],
    "BOGUS": ["1"],
}
COMMENTS = ["", " ; c", ' ; "quoted" (paren', ";"]
DIRECTIVES = ["$ORIGIN example.test.", "$ORIGIN sub", "$ORIGIN Sub.Example.Test."]
BAD_LINES = ["junk", " ( ", "$INCLUDE x", "$GENERATE 1-2 a$ A 10.0.0.$", ") x"]


def pick(draw: st.DrawFn, good: list[str], bad: list[str]) -> str:
    """Mostly a good value, now and then a bad one."""
    if bad and draw(st.integers(0, 39)) == 0:
        return draw(st.sampled_from(bad))
    return draw(st.sampled_from(good))


@st.composite
def record_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return f"$TTL {pick(draw, TTLS, BAD_TTLS)}"
    if kind == 1:
        return draw(st.sampled_from(DIRECTIVES))
    if kind == 2:
        return pick(draw, ["", "   ", "; comment", "\t; c", " ; (x"], BAD_LINES)
    rdtype = draw(st.sampled_from(sorted(RDATA)))
    if rdtype in BAD_RDATA and draw(st.integers(0, 39)) == 0:
        rdata = draw(st.sampled_from(BAD_RDATA[rdtype]))
    else:
        rdata = draw(st.sampled_from(RDATA[rdtype]))
    if draw(st.integers(0, 49)) == 0:
        rdtype, rdata = "BOGUS", "1"
    if rdtype == "SOA" and draw(st.integers(0, 9)):
        owner = "@"
    else:
        owner = pick(draw, ["", *OWNERS], BAD_OWNERS)
    head = [owner] if owner else [" "]
    ttl = draw(st.none() | st.just(pick(draw, TTLS, BAD_TTLS)))
    rdclass = draw(st.none() | st.just(pick(draw, CLASSES, BAD_CLASSES)))
    fields = [x for x in (ttl, rdclass) if x is not None]
    if draw(st.booleans()):
        fields.reverse()
    shown_type = draw(st.sampled_from([rdtype, rdtype.lower()]))
    sep = draw(st.sampled_from([" ", "\t", "  "]))
    if draw(st.integers(0, 5)) == 0:  # spread over lines in parentheses
        body = f"{shown_type} ( {rdata.replace(' ', chr(10) + '  ', 1)} )"
    else:
        body = f"{shown_type}{sep}{rdata}"
    comment = draw(st.sampled_from(COMMENTS))
    return sep.join([*head, *fields, body]).rstrip(" ") + comment


@st.composite
def zones(draw: st.DrawFn) -> str:
    lines = draw(st.lists(record_lines(), max_size=16))
    if draw(st.integers(0, 9)):
        lines.insert(0, "$TTL 300")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "@ SOA ns1 host 1 3600 900 604800 60")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from([newline, ""]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zones())
def test_generated_zones_agree(text: str) -> None:
    agree(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "B", "@", "x.y", "*"]), min_size=1, max_size=6))
def test_generated_simple_zones_are_handled(owners: list[str]) -> None:
    text = "$TTL 60\n@ SOA ns1 host 1 2 3 4 5\n" + "".join(
        f"{owner} A 192.0.2.{i}\n{owner} AAAA 2001:db8::{i:x}\n" for i, owner in enumerate(owners)
    )
    handled(text)


# -- the value shortcuts against dnspython -------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(0, 15))
def test_ipv6_shortcut(address: bytes, zeros: int) -> None:
    address = bytes(zeros) + address[zeros:]
    text = dns.ipv6.inet_ntoa(address)
    if not text.startswith("::"):
        assert zonefast._ipv6_is_canonical(text)
    assert zonefast._ipv6(text) == text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:.", min_size=1, max_size=41))
def test_ipv6_shortcut_on_any_text(text: str) -> None:
    if zonefast._ipv6_is_canonical(text):
        assert dns.ipv6.canonicalize(text) == text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789.", min_size=1, max_size=16))
def test_ipv4_shortcut(text: str) -> None:
    try:
        expected: str | None = dns.ipv4.canonicalize(text)
    except dns.exception.SyntaxError:
        expected = None
    try:
        got: str | None = zonefast._ipv4(text)
    except dns.exception.SyntaxError:
        got = None
    assert got == expected


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="abAB-_*.@0", min_size=1, max_size=12), st.integers(1, 70))
def test_names(text: str, repeat: int) -> None:
    text = text if repeat < 60 else text * repeat
    try:
        expected: tuple[bytes, ...] | None = dns.name.from_text(text, ORIGIN).labels
    except dns.exception.DNSException:
        expected = None
    try:
        got: tuple[bytes, ...] | None = zonefast._make_name(text, ORIGIN).labels
    except Unsupported:
        got = None
    assert got == expected


# -- speed (a report, not a timed test) ----------------------------------------------------------


def test_speed_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = bench_zone(tmp_path, 10_000)
    origin = dns.name.from_text("bench.test.")
    start = time.perf_counter()
    fast = parse_fast(text, origin)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = parse_zone_text(text, origin)
    slow_s = time.perf_counter() - start
    assert rows(fast) == rows(reference)
    with capsys.disabled():
        print(f"\n{len(fast)} records: parse_fast {fast_s:.2f}s, dnspython {slow_s:.2f}s")
