"""Shared zones and the table runner for the answer-engine tests.

A table row (:class:`Case`) is one query and the complete expected response: rcode, header flags
and every RR of every section, written as master-file lines.  Sections are compared as sorted
lists (duplicates count), so a row states exactly what the answer holds, TTLs included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from xdnsd.server.answer import Answer, ServerIdentity, ZoneFinder, answer_wire

PARENT = """
$ORIGIN example.
$TTL 3600
@          IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300
@          NS    ns1
@          NS    ns2
@          NS    ns.elsewhere.
@          MX    10 mail
@          MX    20 mail.elsewhere.
@          A     192.0.2.1
@          TXT   "apex"
ns1        A     192.0.2.53
ns1        AAAA  2001:db8::53
ns2        A     192.0.2.54
mail       A     192.0.2.25
mail       AAAA  2001:db8::25
www   300  A     192.0.2.80
www   300  AAAA  2001:db8::80
www        TXT   "hello" "world"
MixedCase  A     192.0.2.99
_sip._tcp  SRV   10 60 5060 sip
_sip._tcp  SRV   20 60 5060 sip.elsewhere.
sip        A     192.0.2.60
svc        HTTPS 1 svctarget alpn=h2
svc2       SVCB  0 svctarget
svctarget  A     192.0.2.61
svctarget  SVCB  1 . port=8443
ptr        PTR   www
dupmx      MX    10 mail
dupmx      MX    20 mail
host.deep.ent A  192.0.2.70
; wildcards
*.wild     A     192.0.2.100
*.wild     MX    10 mail
exists.wild A    192.0.2.101
x.y.wild   A     192.0.2.102
*.blocked  A     192.0.2.110
x.ent.blocked A  192.0.2.111
*.wcname   CNAME www
*.wloop    CNAME loop.wloop
*.wout     CNAME www.elsewhere.
mxwild     MX    10 host.wild
; CNAMEs
alias      CNAME alias2
alias2     CNAME www
loop1      CNAME loop2
loop2      CNAME loop1
self       CNAME self
out        CNAME www.other.
dangling   CNAME nothere
to-ent     CNAME ent
to-deleg   CNAME host.sub
to-dname   CNAME a.dn
c1         CNAME c2
c2         CNAME c3
c3         CNAME c4
c4         CNAME c5
c5         CNAME c6
c6         CNAME c7
c7         A     192.0.2.7
; DNAMEs
dn         DNAME other.
dnin       DNAME target
x.target   A     192.0.2.150
dnloop     DNAME dnloop.example.
dnlong     DNAME {l63}.{l63}.{l63}.elsewhere.
; delegations
sub        NS    ns1.sub
sub        NS    ns.elsewhere.
sub        DS    12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns1.sub    A     192.0.2.200
ns1.sub    AAAA  2001:db8::200
*.sub      A     192.0.2.202
child      NS    ns1.child
child      NS    ns2
child      DS    54321 8 2 FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210
ns1.child  A     192.0.2.210
deleg2     NS    ns2
deleg2     NS    ns9.deleg2
ns9.deleg2 A     192.0.2.209
{big}
{bigdeleg}
{sibdeleg}
""".format(
    l63="l" * 63,
    big="\n".join(f"big        A     198.51.100.{i}" for i in range(1, 101)),
    bigdeleg="\n".join(
        f"bigdeleg   NS    ns{i}.bigdeleg\nns{i}.bigdeleg A 192.0.2.{i}" for i in range(1, 21)
    ),
    sibdeleg="\n".join(
        f"sibdeleg   NS    ns{i}.sibs\nns{i}.sibs A 192.0.2.{i}" for i in range(1, 21)
    ),
)

CHILD = """
$ORIGIN child.example.
$TTL 600
@          IN SOA ns1 hostmaster 7 3600 900 604800 900
@          NS    ns1
@          NS    ns2.example.
@          A     192.0.2.220
ns1        A     192.0.2.210
www        A     192.0.2.221
"""

OTHER = """
$ORIGIN other.
$TTL 1800
@          IN SOA ns1 hostmaster 99 3600 900 604800 60
@          NS    ns1
ns1        A     192.0.2.30
www        A     192.0.2.31
a          A     192.0.2.32
"""

HIDDEN = ServerIdentity()

ZONES = {"example.": PARENT, "child.example.": CHILD, "other.": OTHER}


@dataclasses.dataclass(frozen=True)
class Case:
    """One query and its full expected response."""

    id: str
    qname: str
    qtype: str = "A"
    rcode: str = "NOERROR"
    flags: str = "QR AA"
    answer: Sequence[str] = ()
    authority: Sequence[str] = ()
    additional: Sequence[str] = ()
    qclass: str = "IN"
    tcp: bool = False
    edns: int | None = None  # None: no EDNS in the query
    payload: int = 1232
    do: bool = False
    rd: bool = False
    options: Sequence[dns.edns.Option] = ()
    # expected EDNS in the response: None = no OPT; otherwise (version, payload, DO)
    response_edns: tuple[int, int, bool] | None = None

    def __str__(self) -> str:
        return self.id


def make_query(case: Case) -> bytes:
    query = dns.message.make_query(
        case.qname,
        case.qtype,
        case.qclass,
        use_edns=case.edns if case.edns is not None else False,
        payload=case.payload,
        want_dnssec=case.do,
        options=list(case.options) or None,
    )
    query.flags = dns.flags.RD if case.rd else dns.flags.Flag(0)
    query.id = 0x1234
    return query.to_wire()


def ask(
    finder: ZoneFinder,
    wire: bytes,
    *,
    tcp: bool = False,
    identity: ServerIdentity = HIDDEN,
) -> tuple[Answer, dns.message.Message | None]:
    answer = answer_wire(wire, finder, tcp=tcp, identity=identity)
    if answer.wire is None:
        return answer, None
    return answer, dns.message.from_wire(answer.wire, one_rr_per_rrset=True)


def rr_lines(section: list[dns.rrset.RRset]) -> list[str]:
    lines = []
    for rrset in section:
        for rdata in rrset:
            lines.append(
                f"{rrset.name} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
                f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
            )
    return lines


def normalise(lines: Sequence[str]) -> list[str]:
    """Re-render expected lines through dnspython so spacing and case of types do not matter."""
    out = []
    for line in lines:
        rrset = dns.rrset.from_text(*_split(line))
        out.extend(rr_lines([rrset]))
    return sorted(out)


def _split(line: str) -> tuple[str, int, str, str, str]:
    owner, ttl, rdclass, rdtype, rdata = line.split(None, 4)
    return owner, int(ttl), rdclass, rdtype, rdata


def check(finder: ZoneFinder, case: Case, identity: ServerIdentity = HIDDEN) -> None:
    _, response = ask(finder, make_query(case), tcp=case.tcp, identity=identity)
    assert response is not None, "no response"
    assert response.id == 0x1234
    assert dns.rcode.to_text(response.rcode()) == case.rcode
    assert set(dns.flags.to_text(response.flags).split()) == set(case.flags.split())
    assert sorted(rr_lines(response.answer)) == normalise(case.answer), "answer"
    assert sorted(rr_lines(response.authority)) == normalise(case.authority), "authority"
    assert sorted(rr_lines(response.additional)) == normalise(case.additional), "additional"
    question = response.question[0]
    assert question.name.to_text() == dns.name.from_text(case.qname).to_text(), "0x20 case"
    if case.response_edns is not None:
        version, payload, do = case.response_edns
        assert response.edns == version
        assert response.payload == payload
        assert bool(response.ednsflags & dns.flags.DO) == do
        assert response.options == ()
    elif case.edns is None:
        assert response.edns == -1


SOA_NEG = "example. 300 IN SOA ns1.example. hostmaster.example. 2024010101 7200 3600 1209600 300"
