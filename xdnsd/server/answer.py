"""Pure authoritative answer engine: one query packet in, one response packet (or nothing) out.

Core layer: stdlib and dnspython only, no I/O, no clock, no global state.

The behaviour follows Knot DNS 3.2 (``knot/nameserver/internet.c``, ``process_query.c``), which the
differential test in ``tests/test_diff_knot.py`` checks against a running ``knotd``:

* staged engine (RFC 1034 4.3.2): answer, then authority, then additional, with a small result
  enum; CNAME chains are followed inside the zone only (at most five hops, loops stop silently),
  DNAME (RFC 6672) adds the DNAME and a synthesized CNAME (TTL of the DNAME), wildcards follow
  RFC 4592 (closest encloser, empty non-terminals block, ``*`` queried directly is an exact
  match), referrals carry the NS RRset in authority and A/AAAA glue in additional with AA clear,
  DS is answered from the parent side of a cut;
* negative answers carry the SOA with TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308 section 3);
* additional A/AAAA for NS, MX, SRV, SVCB and HTTPS targets inside the zone (exact name or
  wildcard; for SVCB/HTTPS also the target's RRset of the same type); no apex NS in authority;
* ANY (RFC 8482): one RRset of the node (the one with the lowest type), over UDP and TCP alike;
* CH class: version.bind / version.server / id.server / hostname.bind TXT, REFUSED when hidden;
* EDNS(0) (RFC 6891): OPT with our payload 1232 and the DO bit echoed, no options except
  EDE 20 (Not Authoritative) on REFUSED for a name outside every zone; BADVERS for version > 0;
* malformed packets: dropped when the header or question cannot be read, FORMERR otherwise;
* opcodes other than QUERY/NOTIFY/UPDATE: NOTIMP.  NOTIFY, UPDATE and AXFR/IXFR (AXFR over UDP:
  NOTIMP) get NOTAUTH and a TSIG-signed query NOTAUTH/BADKEY, as from Knot with no ACL or key
  for them: the server is expected to route these to their own handlers before calling us;
* header: ID, opcode and RD copied; AD and CD cleared (Knot clears CD too).

Deliberate differences from Knot (see ``tests/test_diff_knot.py``): names keep the zone file's
case (Knot lowercases zone data); a DNAME substitution that would exceed 255 octets ends with
YXDOMAIN (Knot then goes on resolving the DNAME target); dnspython compresses names better than
Knot, so a truncated additional section may hold a few more RRs.

Reading packets, rendering and truncation live in ``render.py``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TSIG
import dns.rdtypes.ANY.TXT
import dns.rrset

from xdnsd.server.render import (
    formerr_wire,
    max_response_size,
    parse_query,
    read_question_end,
    render,
)

log = logging.getLogger(__name__)

EDNS_PAYLOAD = 1232
"""Our EDNS UDP payload size (DNS flag day 2020), also the largest UDP answer we send."""

CNAME_CHAIN_MAX = 5
"""CNAME/DNAME hops followed inside a zone (Knot's CNAME_CHAIN_MAX)."""

_TSIG_BADKEY = 17
# dnspython's rdata constructors are untyped; keep the untyped boundary in one place.
_CNAME: Callable[..., dns.rdata.Rdata] = dns.rdtypes.ANY.CNAME.CNAME
_TSIG: Callable[..., dns.rdata.Rdata] = dns.rdtypes.ANY.TSIG.TSIG
_ADDITIONAL_TYPES = frozenset(
    {
        dns.rdatatype.NS,
        dns.rdatatype.MX,
        dns.rdatatype.SRV,
        dns.rdatatype.SVCB,
        dns.rdatatype.HTTPS,
    }
)
_NO_CNAME_FOLLOW = frozenset(
    {dns.rdatatype.CNAME, dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.ANY}
)
_VERSION_NAMES = frozenset(dns.name.from_text(n) for n in ("version.bind.", "version.server."))
_IDENTITY_NAMES = frozenset(dns.name.from_text(n) for n in ("id.server.", "hostname.bind."))
_KNOWN_OPCODES = frozenset({dns.opcode.QUERY, dns.opcode.NOTIFY, dns.opcode.UPDATE})


class ZoneView(Protocol):
    """One zone, one consistent read snapshot; the store implements this structurally."""

    @property
    def origin(self) -> dns.name.Name: ...

    @property
    def expired(self) -> bool:
        """A secondary zone past its expire time, or not transferred yet: answered SERVFAIL."""
        ...

    def rrsets_at(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset]:
        """All RRsets owned by absolute `name`, keyed by rdtype; {} if the name owns no data.
        RRset owner names keep the case from the zone file."""
        ...

    def has_subdomains(self, name: dns.name.Name) -> bool:
        """True if some name strictly below `name` owns data (so `name` exists, at least as an
        empty non-terminal)."""
        ...


class ZoneFinder(Protocol):
    def find_zone(self, qname: dns.name.Name) -> ZoneView | None:
        """The served zone whose origin is the longest suffix of qname, or None."""
        ...


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """CH-class answers; hidden (None) names are REFUSED, like Knot with an empty setting."""

    version: str | None = None  # version.bind / version.server
    identity: str | None = None  # id.server / hostname.bind


@dataclass(frozen=True, slots=True)
class Answer:
    wire: bytes | None  # None = drop (no response at all)
    zone: dns.name.Name | None  # zone that produced the answer (cache invalidation)
    cacheable: bool  # pure function of (lowercased question, RD/CD, EDNS shape) and the zone


class Result(enum.Enum):
    """Outcome of resolving one name (Knot's KNOTD_IN_STATE_*)."""

    HIT = "hit"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    DELEGATION = "delegation"
    FOLLOW = "follow"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the engine made of a parsed query."""

    response: dns.message.Message
    zone: dns.name.Name | None
    result: Result | None  # None when the query never reached a zone (errors, CH, ...)
    cacheable: bool


# --------------------------------------------------------------------------- wire entry point


def answer_wire(
    wire: bytes,
    finder: ZoneFinder,
    *,
    tcp: bool,
    identity: ServerIdentity = ServerIdentity(),
) -> Answer:
    """Answer one query packet; ``Answer.wire`` is None when the packet must be dropped."""
    if len(wire) < 12 or wire[2] & 0x80:  # shorter than a header, or a response (QR=1)
        return Answer(None, None, False)
    qdcount = (wire[4] << 8) | wire[5]
    question_end = read_question_end(wire, qdcount)
    if question_end is None:  # unreadable question: Knot ignores the packet
        return Answer(None, None, False)
    query = parse_query(wire)
    if query is None:  # any parse error after the question is FORMERR
        if qdcount == 0:
            return Answer(None, None, False)
        return Answer(formerr_wire(wire, question_end), None, False)
    try:
        resolution = resolve_query(query, finder, tcp=tcp, identity=identity)
    except Exception:
        log.exception("answering %s failed; sent SERVFAIL", query.question)
        resolution = Resolution(_error(query, dns.rcode.SERVFAIL), None, None, False)
    response = resolution.response
    wire_out = render(response, max_response_size(query, tcp, EDNS_PAYLOAD))
    return Answer(wire_out, resolution.zone, resolution.cacheable)


# --------------------------------------------------------------------------- query dispatch


def answer_query(
    query: dns.message.Message,
    finder: ZoneFinder,
    *,
    tcp: bool = False,
    identity: ServerIdentity = ServerIdentity(),
) -> dns.message.Message:
    """The response message to a parsed query (not yet rendered or truncated)."""
    return resolve_query(query, finder, tcp=tcp, identity=identity).response


def resolve_query(
    query: dns.message.Message,
    finder: ZoneFinder,
    *,
    tcp: bool,
    identity: ServerIdentity = ServerIdentity(),
) -> Resolution:
    """Dispatch on opcode, class and type the way Knot's process_query does, then answer."""
    opcode = query.opcode()
    if query.edns > 0:
        return _fail(query, dns.rcode.BADVERS)
    if opcode not in _KNOWN_OPCODES:
        return _fail(query, dns.rcode.NOTIMP)
    if not query.question:
        return _fail(query, dns.rcode.FORMERR)
    if opcode != dns.opcode.QUERY:
        # NOTIFY and UPDATE are served elsewhere; here we answer like Knot with no ACL for them.
        return _fail(query, dns.rcode.NOTAUTH)
    question = query.question[0]
    qclass, qtype = question.rdclass, question.rdtype
    if qclass not in (dns.rdataclass.IN, dns.rdataclass.ANY, dns.rdataclass.CH):
        return _fail(query, dns.rcode.REFUSED, cacheable=_plain(query))
    if qtype == 0:
        return _fail(query, dns.rcode.NOTIMP)
    if qtype == dns.rdatatype.AXFR and not tcp:
        return _fail(query, dns.rcode.NOTIMP)
    if qclass == dns.rdataclass.CH and qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        return _fail(query, dns.rcode.NOTIMP)
    if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        # Zone transfers are the transfer module's job; without an ACL Knot says NOTAUTH.
        return _fail(query, dns.rcode.NOTAUTH)
    if qclass == dns.rdataclass.CH:
        return _answer_chaos(query, identity)
    return _answer_internet(query, finder)


def _plain(query: dns.message.Message) -> bool:
    """A QUERY whose answer depends only on the question, RD/CD, EDNS shape and zone data."""
    return query.tsig is None and not query.options


def _response(query: dns.message.Message) -> dns.message.Message:
    """An empty response: ID, opcode and RD copied, question echoed, OPT if the query had one."""
    response = dns.message.Message(id=query.id)
    response.flags = dns.flags.QR | (query.flags & dns.flags.RD)
    response.set_opcode(query.opcode())
    response.question = list(query.question)
    if query.edns >= 0:
        response.use_edns(0, query.ednsflags & dns.flags.DO, EDNS_PAYLOAD)
    return response


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = _response(query)
    response.set_rcode(rcode)
    return response


def _fail(
    query: dns.message.Message, rcode: dns.rcode.Rcode, *, cacheable: bool = False
) -> Resolution:
    return Resolution(_error(query, rcode), None, None, cacheable)


def _answer_chaos(query: dns.message.Message, identity: ServerIdentity) -> Resolution:
    question = query.question[0]
    text: str | None = None
    if question.rdtype == dns.rdatatype.TXT:
        if question.name in _VERSION_NAMES:
            text = identity.version
        elif question.name in _IDENTITY_NAMES:
            text = identity.identity
    if not text:
        return _fail(query, dns.rcode.REFUSED, cacheable=_plain(query))
    response = _response(query)
    rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.CH, dns.rdatatype.TXT, [text.encode()[:255]])
    response.answer.append(dns.rrset.from_rdata(question.name, 0, rdata))
    return Resolution(response, None, None, _plain(query))


def _answer_internet(query: dns.message.Message, finder: ZoneFinder) -> Resolution:
    question = query.question[0]
    qname = question.name.canonicalize()  # work lowercased; compression restores the case
    zone = None
    if question.rdtype == dns.rdatatype.DS and len(qname) > 1:
        # DS lives on the parent side of a cut: pick the zone for the parent name first.
        zone = finder.find_zone(qname.parent())
    if zone is None:
        zone = finder.find_zone(qname)
    if zone is None:
        response = _error(query, dns.rcode.REFUSED)
        if response.opt is not None:
            response.use_edns(
                0,
                query.ednsflags & dns.flags.DO,
                EDNS_PAYLOAD,
                options=[dns.edns.EDEOption(dns.edns.EDECode.NOT_AUTHORITATIVE)],
            )
        return Resolution(response, None, Result.REFUSED, _plain(query))
    if query.tsig is not None:
        return Resolution(_badkey(query), zone.origin, None, False)
    if zone.expired:  # as BIND and Knot: no data rather than stale data
        return Resolution(_error(query, dns.rcode.SERVFAIL), zone.origin, None, False)
    response = _response(query)
    result = _Engine(zone, question.rdtype, response).run(qname)
    return Resolution(response, zone.origin, result, _plain(query))


def _badkey(query: dns.message.Message) -> dns.message.Message:
    """NOTAUTH with an unsigned TSIG carrying BADKEY: we know no keys (RFC 8945 5.3.2)."""
    assert query.tsig is not None
    response = _error(query, dns.rcode.NOTAUTH)
    signed = query.tsig[0]
    rdata = _TSIG(
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        signed.algorithm,
        signed.time_signed,
        signed.fudge,
        b"",
        query.id,
        _TSIG_BADKEY,
        b"",
    )
    response.tsig = dns.rrset.from_rdata(query.tsig.name, 0, rdata)
    return response


# --------------------------------------------------------------------------- zone lookup


class _Found(enum.Enum):
    NODE = "node"  # the name exists (rrsets may be empty: empty non-terminal)
    CUT = "cut"  # the name is at or below a delegation point: referral
    DNAME = "dname"  # the name is below a DNAME
    MISSING = "missing"  # the name does not exist; `name` is the closest encloser


@dataclass(slots=True)
class _Lookup:
    kind: _Found
    name: dns.name.Name  # NODE: the name; CUT/DNAME: owner of that RRset; MISSING: closest encloser
    rrsets: dict[int, dns.rrset.RRset] | None  # None: not fetched (closest encloser = apex)


def _walk(view: ZoneView, name: dns.name.Name, *, cuts: bool, ds_at_cut: bool = False) -> _Lookup:
    """Walk from the apex down to ``name`` one label at a time (RFC 1034 4.3.2 step 3).

    With ``cuts``, stop at the first delegation point or DNAME on the way; a DS query exactly
    at a delegation point (``ds_at_cut``) is answered from the node itself.
    """
    origin = view.origin
    depth = len(name) - len(origin)
    if depth == 0:
        return _Lookup(_Found.NODE, name, view.rrsets_at(name))
    labels = name.labels
    encloser: dns.name.Name = origin
    encloser_rrsets: dict[int, dns.rrset.RRset] | None = None
    for i in range(depth - 1, -1, -1):
        current = dns.name.Name(labels[i:])
        rrsets = view.rrsets_at(current)
        if rrsets:
            if cuts and dns.rdatatype.NS in rrsets and not (i == 0 and ds_at_cut):
                return _Lookup(_Found.CUT, current, rrsets)
            if i == 0:
                return _Lookup(_Found.NODE, current, rrsets)
            if cuts and dns.rdatatype.DNAME in rrsets:
                return _Lookup(_Found.DNAME, current, rrsets)
        elif not view.has_subdomains(current):
            return _Lookup(_Found.MISSING, encloser, encloser_rrsets)
        elif i == 0:
            return _Lookup(_Found.NODE, current, rrsets)
        encloser, encloser_rrsets = current, rrsets
    raise AssertionError("unreachable")  # pragma: no cover


def _wildcard(
    view: ZoneView, encloser: dns.name.Name
) -> tuple[dns.name.Name, dict[int, dns.rrset.RRset]] | None:
    """The wildcard child ``*.<encloser>`` (possibly an empty non-terminal), if it exists."""
    wildcard = dns.name.Name((b"*", *encloser.labels))
    rrsets = view.rrsets_at(wildcard)
    if rrsets or view.has_subdomains(wildcard):
        return wildcard, rrsets
    return None


def _sorted(rrset: dns.rrset.RRset) -> list[dns.rdata.Rdata]:
    """Rdatas in canonical (wire) order, as Knot stores and sends them."""
    if len(rrset) < 2:
        return list(rrset)
    return sorted(rrset, key=lambda rdata: rdata.to_wire())


def _copy(rrset: dns.rrset.RRset, owner: dns.name.Name, ttl: int | None = None) -> dns.rrset.RRset:
    """``rrset`` under another owner name (wildcard expansion, question case) in Knot's order."""
    out = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype)
    out.ttl = rrset.ttl if ttl is None else ttl
    for rdata in _sorted(rrset):
        out.items[rdata] = None
    return out


def _target(rdata: dns.rdata.Rdata) -> dns.name.Name | None:
    """The name an NS/MX/SRV/SVCB/HTTPS record points at."""
    target = getattr(rdata, "target", None)
    if target is None:
        target = getattr(rdata, "exchange", None)
    return target if isinstance(target, dns.name.Name) else None


# --------------------------------------------------------------------------- the staged engine


@dataclass(slots=True)
class _Engine:
    """State of one query against one zone (Knot's knotd_qdata_t extra)."""

    view: ZoneView
    qtype: int
    response: dns.message.Message
    chain: int = 0
    next_name: dns.name.Name | None = None
    cut: dns.rrset.RRset | None = None
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    apex: dict[int, dns.rrset.RRset] | None = None
    seen: set[tuple[dns.name.Name, int]] = field(default_factory=set)
    visited_wildcards: set[dns.name.Name] = field(default_factory=set)

    def run(self, qname: dns.name.Name) -> Result:
        state = self.solve_name(qname)
        if state is not Result.DELEGATION:
            self.response.flags |= dns.flags.AA
        while state is Result.FOLLOW:
            assert self.next_name is not None
            state = self.solve_name(self.next_name)
        self.authority(state)
        self.additional()
        self.response.set_rcode(self.rcode)
        return state

    # -- answer

    def solve_name(self, name: dns.name.Name) -> Result:
        origin = self.view.origin
        if not name.is_subdomain(origin):  # a chain leaving the zone ends here
            return Result.HIT
        ds = self.qtype == dns.rdatatype.DS
        found = _walk(self.view, name, cuts=True, ds_at_cut=ds)
        if found.kind is _Found.NODE:
            assert found.rrsets is not None
            return self.name_found(name, found.rrsets, None)
        if found.kind is _Found.CUT:
            assert found.rrsets is not None
            self.cut = _copy(found.rrsets[dns.rdatatype.NS], found.name)
            return Result.DELEGATION
        if found.kind is _Found.DNAME:
            assert found.rrsets is not None
            return self.follow(name, found.rrsets[dns.rdatatype.DNAME], found.name, None)
        return self.name_not_found(name, found.name, found.rrsets)

    def name_found(
        self,
        name: dns.name.Name,
        rrsets: dict[int, dns.rrset.RRset],
        wildcard: dns.name.Name | None,
    ) -> Result:
        cname = rrsets.get(dns.rdatatype.CNAME)
        if cname is not None and self.qtype not in _NO_CNAME_FOLLOW:
            return self.follow(name, cname, name, wildcard)
        if self.qtype == dns.rdatatype.ANY:  # RFC 8482: one RRset, Knot takes the lowest type
            rrset = rrsets[min(rrsets)] if rrsets else None
        else:
            rrset = rrsets.get(self.qtype)
        if rrset is None:
            return Result.NODATA
        self.response.answer.append(_copy(rrset, name))
        return Result.HIT

    def name_not_found(
        self,
        name: dns.name.Name,
        encloser: dns.name.Name,
        encloser_rrsets: dict[int, dns.rrset.RRset] | None,
    ) -> Result:
        wildcard = _wildcard(self.view, encloser)
        if wildcard is not None:  # RFC 4592: the closest encloser has a wildcard child
            wildcard_name, rrsets = wildcard
            state = self.name_found(name, rrsets, wildcard_name)
            self.visited_wildcards.add(wildcard_name)
            return state
        if encloser_rrsets is None:  # the closest encloser is the apex
            encloser_rrsets = self.apex_rrsets()
        dname = encloser_rrsets.get(dns.rdatatype.DNAME)
        if dname is not None:
            return self.follow(name, dname, encloser, None)
        return Result.NXDOMAIN

    def follow(
        self,
        name: dns.name.Name,
        rrset: dns.rrset.RRset,
        owner: dns.name.Name,
        wildcard: dns.name.Name | None,
    ) -> Result:
        """Put a CNAME (or a DNAME and its synthesized CNAME) and move to its target."""
        self.chain += 1
        if self.chain > CNAME_CHAIN_MAX:
            return Result.HIT
        # The same zone RRset twice means a loop.  A wildcard expansion is a new RRset every
        # time (as in Knot); wildcard loops end through visited_wildcards instead.
        key = (owner, rrset.rdtype)
        inserted = wildcard is not None or key not in self.seen
        if inserted:
            self.seen.add(key)
            self.response.answer.append(_copy(rrset, owner))
        target: dns.name.Name = rrset[0].target
        if rrset.rdtype == dns.rdatatype.DNAME:
            try:
                target = name.relativize(owner).concatenate(target)
            except dns.name.NameTooLong:
                self.rcode = dns.rcode.YXDOMAIN  # RFC 6672 2.2
                return Result.HIT
            rdata = _CNAME(rrset.rdclass, dns.rdatatype.CNAME, target)
            self.response.answer.append(dns.rrset.from_rdata(name, rrset.ttl, rdata))
            inserted = True
            if self.qtype == dns.rdatatype.CNAME:
                return Result.HIT
        if not inserted:
            return Result.HIT
        if wildcard is not None:
            if wildcard in self.visited_wildcards:
                return Result.HIT
            self.visited_wildcards.add(wildcard)
        self.next_name = target
        return Result.FOLLOW

    # -- authority

    def apex_rrsets(self) -> dict[int, dns.rrset.RRset]:
        if self.apex is None:
            self.apex = self.view.rrsets_at(self.view.origin)
        return self.apex

    def authority(self, state: Result) -> None:
        if state is Result.NXDOMAIN:
            self.rcode = dns.rcode.NXDOMAIN
        if state in (Result.NXDOMAIN, Result.NODATA):
            soa = self.apex_rrsets().get(dns.rdatatype.SOA)
            if soa is not None:  # RFC 2308 3: negative TTL = min(SOA TTL, SOA MINIMUM)
                ttl = min(soa.ttl, soa[0].minimum)
                self.response.authority.append(_copy(soa, soa.name, ttl))
        elif state is Result.DELEGATION:
            assert self.cut is not None
            self.response.authority.append(self.cut)

    # -- additional

    def additional(self) -> None:
        """A/AAAA (and SVCB/HTTPS) for targets in the zone, in packet order, duplicates kept."""
        origin = self.view.origin
        nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        for rrset in (*self.response.answer, *self.response.authority):
            if rrset.rdtype not in _ADDITIONAL_TYPES:
                continue
            types: tuple[int, ...] = (dns.rdatatype.A, dns.rdatatype.AAAA)
            if rrset.rdtype in (dns.rdatatype.SVCB, dns.rdatatype.HTTPS):
                types = (*types, rrset.rdtype)
            for rdata in rrset:
                target = _target(rdata)
                if target is None or not target.is_subdomain(origin):
                    continue
                node = nodes.get(target)
                if node is None:
                    node = nodes[target] = self.glue_node(target)
                for rdtype in types:
                    found = node.get(rdtype)
                    if found is not None:
                        self.response.additional.append(_copy(found, target))

    def glue_node(self, target: dns.name.Name) -> dict[int, dns.rrset.RRset]:
        """RRsets at ``target`` (ignoring cuts, so glue is found), or at its wildcard."""
        found = _walk(self.view, target, cuts=False)
        if found.kind is _Found.NODE:
            assert found.rrsets is not None
            return found.rrsets
        wildcard = _wildcard(self.view, found.name)
        return wildcard[1] if wildcard is not None else {}
