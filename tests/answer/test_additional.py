"""Additional section: A/AAAA for NS, MX, SRV (and SVCB/HTTPS) targets in the zone, like Knot."""

from __future__ import annotations

import pytest

from xdnsd.server.answer import ZoneFinder

from .tables import Case, check

MAIL = ["mail.example. 3600 IN A 192.0.2.25", "mail.example. 3600 IN AAAA 2001:db8::25"]

CASES = [
    Case(
        "mx-in-zone-target-only",
        "example.",
        "MX",
        answer=["example. 3600 IN MX 10 mail.example.", "example. 3600 IN MX 20 mail.elsewhere."],
        additional=MAIL,
    ),
    Case(
        "srv",
        "_sip._tcp.example.",
        "SRV",
        answer=[
            "_sip._tcp.example. 3600 IN SRV 10 60 5060 sip.example.",
            "_sip._tcp.example. 3600 IN SRV 20 60 5060 sip.elsewhere.",
        ],
        additional=["sip.example. 3600 IN A 192.0.2.60"],
    ),
    Case(
        "no-additional-for-ptr",
        "ptr.example.",
        "PTR",
        answer=["ptr.example. 3600 IN PTR www.example."],
    ),
    Case(
        "duplicates-are-kept-like-knot",
        "dupmx.example.",
        "MX",
        answer=[
            "dupmx.example. 3600 IN MX 10 mail.example.",
            "dupmx.example. 3600 IN MX 20 mail.example.",
        ],
        additional=MAIL + MAIL,
    ),
    Case(
        "wildcard-target",
        "mxwild.example.",
        "MX",
        answer=["mxwild.example. 3600 IN MX 10 host.wild.example."],
        additional=["host.wild.example. 3600 IN A 192.0.2.100"],
    ),
    Case(
        "https-gets-a-and-aaaa-only",
        "svc.example.",
        "HTTPS",
        answer=['svc.example. 3600 IN HTTPS 1 svctarget.example. alpn="h2"'],
        additional=["svctarget.example. 3600 IN A 192.0.2.61"],
    ),
    Case(
        "svcb-gets-a-aaaa-and-svcb",
        "svc2.example.",
        "SVCB",
        answer=["svc2.example. 3600 IN SVCB 0 svctarget.example."],
        additional=[
            "svctarget.example. 3600 IN A 192.0.2.61",
            'svctarget.example. 3600 IN SVCB 1 . port="8443"',
        ],
    ),
    Case(
        "no-apex-ns-in-authority-of-positive-answers",
        "www.example.",
        answer=["www.example. 300 IN A 192.0.2.80"],
    ),
    Case(
        "sibling-and-in-bailiwick-glue-in-referral",
        "x.deleg2.example.",
        "A",
        flags="QR",
        authority=[
            "deleg2.example. 3600 IN NS ns2.example.",
            "deleg2.example. 3600 IN NS ns9.deleg2.example.",
        ],
        additional=[
            "ns9.deleg2.example. 3600 IN A 192.0.2.209",
            "ns2.example. 3600 IN A 192.0.2.54",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_additional(finder: ZoneFinder, case: Case) -> None:
    check(finder, case)
