"""Who may update what: BIND-style ``update-policy`` grants and ``allow-update`` lists (pure).

A zone's ``update_policy`` is a list of grant strings in BIND's grammar::

    (grant | deny) IDENTITY RULETYPE [NAME] [TYPE ...] [from NETWORK ...]

* IDENTITY is a TSIG key name; a wildcard (``*.example.``, or ``*`` for any key) matches key
  names the way BIND's ``dns_name_matcheswildcard`` does.  Update policies apply to signed
  requests only, as in BIND: an unsigned update is refused.
* RULETYPE says which owner names the rule covers: ``name`` (exactly NAME), ``subdomain`` (NAME
  and below), ``wildcard`` (names matched by the wildcard NAME), ``zonesub`` (the zone and below;
  no NAME field), ``self`` (the key's own name), ``selfsub`` (the key's name and below),
  ``selfwild`` (strictly below the key's name).  For the ``self`` forms NAME is required and
  ignored, as in BIND.
* TYPEs restrict the rule to record types; ``ANY`` matches every type; with no types listed the
  rule matches every type except RRSIG, NS, SOA, NSEC and NSEC3 (BIND's default).
* ``from NETWORK ...`` (an xdnsd extension) limits the rule to requests from those source
  networks.

Rules are tried in order for each record of the update section; the first one that matches the
requester, the name and the type decides (grant or deny); no match denies.

``allow_update`` is BIND's ``allow-update`` address match list: entries ``any``, ``none``, an
address or network, ``key NAME``, each optionally negated with ``!``; the first match decides.  It
permits any change to the zone.  A zone has one or the other (as in BIND), or neither: then no
update is accepted at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RULE_TYPES = frozenset({"name", "subdomain", "wildcard", "zonesub", "self", "selfsub", "selfwild"})
# types a rule without a type list does not cover (BIND's "user types" exclude these)
_NON_USER_TYPES = frozenset(
    int(t)
    for t in (
        dns.rdatatype.RRSIG,
        dns.rdatatype.NS,
        dns.rdatatype.SOA,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
    )
)
_ANY = int(dns.rdatatype.ANY)


class PolicyError(ValueError):
    """A grant or allow entry that does not parse; the message says why."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who sent an update: the verified TSIG key (None when unsigned) and the source address."""

    key: dns.name.Name | None
    address: IPAddress

    def describe(self) -> str:
        return f"key {self.key}" if self.key is not None else "unsigned"

    @property
    def provenance(self) -> str:
        """The changeset origin recorded in the zone history."""
        if self.key is not None:
            return f"key:{self.key.to_text(omit_final_dot=True)}"
        return f"addr:{self.address}"


def _networks(words: Sequence[str], where: str) -> tuple[IPNetwork, ...]:
    out = []
    for word in words:
        try:
            out.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise PolicyError(f"{where}: {word!r} is not an address or network") from None
    return tuple(out)


def _name(word: str, where: str) -> dns.name.Name:
    try:
        return dns.name.from_text(word)
    except dns.exception.DNSException as exc:
        raise PolicyError(f"{where}: {word!r} is not a domain name: {exc}") from None


def _matches_wildcard(name: dns.name.Name, pattern: dns.name.Name) -> bool:
    """``pattern`` is ``*.SUFFIX``: true for names strictly below SUFFIX (BIND semantics)."""
    if not pattern.is_wild():
        return bool(name == pattern)
    suffix = pattern.parent()
    return name != suffix and bool(name.is_subdomain(suffix))


@dataclass(frozen=True, slots=True)
class Grant:
    grant: bool
    identity: dns.name.Name
    ruletype: str
    name: dns.name.Name | None
    types: frozenset[int]  # empty: BIND's default set
    sources: tuple[IPNetwork, ...]  # empty: any source
    text: str

    def _covers_identity(self, key: dns.name.Name) -> bool:
        return _matches_wildcard(key, self.identity)

    def _covers_name(self, key: dns.name.Name, zone: dns.name.Name, name: dns.name.Name) -> bool:
        rule = self.ruletype
        if rule == "name":
            return bool(name == self.name)
        if rule == "subdomain":
            assert self.name is not None
            return bool(name.is_subdomain(self.name))
        if rule == "wildcard":
            assert self.name is not None
            return _matches_wildcard(name, self.name)
        if rule == "zonesub":
            return bool(name.is_subdomain(zone))
        if rule == "self":
            return bool(name == key)
        if rule == "selfsub":
            return bool(name.is_subdomain(key))
        return name != key and bool(name.is_subdomain(key))  # selfwild

    def _covers_type(self, rdtype: int) -> bool:
        if not self.types:
            return rdtype not in _NON_USER_TYPES
        return _ANY in self.types or rdtype in self.types

    def decides(
        self, requester: Requester, zone: dns.name.Name, name: dns.name.Name, rdtype: int
    ) -> bool | None:
        """True (grant) or False (deny) when this rule matches, None when it does not."""
        key = requester.key
        if key is None or not self._covers_identity(key):
            return None
        if self.sources and not any(requester.address in net for net in self.sources):
            return None
        if not self._covers_name(key, zone, name) or not self._covers_type(rdtype):
            return None
        return self.grant


def parse_grant(text: str, where: str = "grant") -> Grant:
    words = text.split()
    if len(words) < 3:
        raise PolicyError(f"{where}: {text!r}: expected 'grant|deny IDENTITY RULETYPE ...'")
    verb, identity_text, ruletype, *rest = words
    if verb not in ("grant", "deny"):
        raise PolicyError(f"{where}: {text!r}: must start with 'grant' or 'deny', not {verb!r}")
    if ruletype not in RULE_TYPES:
        raise PolicyError(
            f"{where}: {text!r}: unknown rule type {ruletype!r} "
            f"(known: {', '.join(sorted(RULE_TYPES))})"
        )
    sources: tuple[IPNetwork, ...] = ()
    if "from" in rest:
        i = rest.index("from")
        if i == len(rest) - 1:
            raise PolicyError(f"{where}: {text!r}: 'from' needs at least one network")
        sources = _networks(rest[i + 1 :], f"{where}: {text!r}")
        rest = rest[:i]
    name: dns.name.Name | None = None
    if ruletype != "zonesub":
        if not rest:
            raise PolicyError(f"{where}: {text!r}: rule type {ruletype!r} needs a NAME field")
        name = _name(rest[0], f"{where}: {text!r}")
        rest = rest[1:]
        if ruletype == "wildcard" and not name.is_wild():
            raise PolicyError(f"{where}: {text!r}: a 'wildcard' rule needs a name like *.example.")
    types = set()
    for word in rest:
        try:
            types.add(int(dns.rdatatype.from_text(word)))
        except dns.exception.DNSException:
            raise PolicyError(f"{where}: {text!r}: {word!r} is not a record type") from None
    if identity_text == "*":
        identity = dns.name.from_text("*.")  # any key
    else:
        identity = _name(identity_text, f"{where}: {text!r}")
    return Grant(verb == "grant", identity, ruletype, name, frozenset(types), sources, text)


@dataclass(frozen=True, slots=True)
class AllowEntry:
    negated: bool
    network: IPNetwork | None = None
    key: dns.name.Name | None = None
    everything: bool | None = None  # any (True) / none (False)

    def matches(self, requester: Requester) -> bool:
        if self.everything is not None:
            return self.everything
        if self.key is not None:
            return requester.key == self.key
        assert self.network is not None
        return requester.address in self.network


def parse_allow(text: str, where: str = "allow") -> AllowEntry:
    word = text.strip()
    negated = word.startswith("!")
    word = word.lstrip("!").strip()
    parts = word.split()
    if word in ("any", "none"):
        return AllowEntry(negated, everything=word == "any")
    if len(parts) == 2 and parts[0] == "key":
        return AllowEntry(negated, key=_name(parts[1], f"{where}: {text!r}"))
    if len(parts) != 1:
        raise PolicyError(f"{where}: {text!r}: expected an address, a network, 'key NAME' or 'any'")
    return AllowEntry(negated, network=_networks(parts, where)[0])


@dataclass(frozen=True, slots=True)
class UpdateAcl:
    """A zone's update permissions: a policy, an allow list, or neither (no updates)."""

    policy: tuple[Grant, ...] | None = None
    allow: tuple[AllowEntry, ...] | None = None

    @property
    def enabled(self) -> bool:
        return self.policy is not None or self.allow is not None

    def admits(self, requester: Requester) -> bool:
        """May this requester update the zone at all (before looking at names and types)?"""
        if self.allow is not None:
            for entry in self.allow:
                if entry.matches(requester):
                    return not entry.negated
            return False
        if self.policy is not None:
            return requester.key is not None
        return False

    def permits(
        self, requester: Requester, zone: dns.name.Name, name: dns.name.Name, rdtype: int
    ) -> bool:
        """May this requester change the ``rdtype`` records at ``name``?"""
        if self.policy is None:
            return self.admits(requester)
        for rule in self.policy:
            decision = rule.decides(requester, zone, name, rdtype)
            if decision is not None:
                return decision
        return False
