"""Master files: directives, errors naming file/line/problem, zone rules, round trip, diff."""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest

from xdnsd.zonefile import ZoneFileError, parse_zone_file, parse_zone_text, plan_import, to_text

ORIGIN = dns.name.from_text("example.test.")
GOOD = """$ORIGIN example.test.
$TTL 300
@ SOA ns1 host 1 3600 900 604800 60
@ NS ns1
ns1 A 192.0.2.1
$GENERATE 1-4 host$ A 10.0.0.$
$INCLUDE extra.inc
"""


def write(tmp_path: Path, text: str, extra: str = "mail A 192.0.2.25\n") -> Path:
    (tmp_path / "extra.inc").write_text(extra)
    path = tmp_path / "example.test.zone"
    path.write_text(text)
    return path


def test_directives(tmp_path: Path) -> None:
    records = parse_zone_file(write(tmp_path, GOOD), ORIGIN)
    owners = {r.owner.to_text() for r in records}
    assert {"host1.example.test.", "host4.example.test.", "mail.example.test."} <= owners
    assert len(records) == 3 + 4 + 1


@pytest.mark.parametrize(
    ("replace", "with_", "message"),
    [
        ("ns1 A 192.0.2.1", "ns1 A 192.0.2", ":5: Text input is malformed"),
        ("ns1 A 192.0.2.1", "ns1 BOGUS 1", ":5: unknown rdatatype 'BOGUS'"),
        ("$TTL 300", "$TTL forever", ":2: DNS TTL value is not well-formed"),
        ("ns1 A 192.0.2.1", "ns1 A 192.0.2.1\nns1 CNAME x", ":6: a CNAME beside other data"),
    ],
)
def test_errors_name_file_line_problem(
    tmp_path: Path, replace: str, with_: str, message: str
) -> None:
    path = write(tmp_path, GOOD.replace(replace, with_))
    with pytest.raises(ZoneFileError) as err:
        parse_zone_file(path, ORIGIN)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("@ SOA ns1 host 1 3600 900 604800 60\n", "has no SOA record at its apex"),
        ("@ NS ns1\n", "has no NS records at its apex"),
    ],
)
def test_zone_rules(tmp_path: Path, drop: str, message: str) -> None:
    with pytest.raises(ZoneFileError, match=message):
        parse_zone_file(write(tmp_path, GOOD.replace(drop, "")), ORIGIN)


def test_cname_beside_other_data_in_include(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, extra="mail A 192.0.2.25\nmail CNAME www\n")
    with pytest.raises(ZoneFileError, match=r"extra\.inc:2: .*CNAME"):
        parse_zone_file(path, ORIGIN)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ZoneFileError, match="cannot read zone file"):
        parse_zone_file(tmp_path / "nope.zone", ORIGIN)


def test_round_trip(tmp_path: Path) -> None:
    records = parse_zone_file(write(tmp_path, GOOD), ORIGIN)
    again = parse_zone_text(to_text(records, ORIGIN), ORIGIN)
    assert set(again) == set(records)
    assert {(r.identity(), r.ttl) for r in again} == {(r.identity(), r.ttl) for r in records}


def test_plan_import_is_the_difference(tmp_path: Path) -> None:
    old = parse_zone_text(GOOD.replace("$INCLUDE extra.inc\n", ""), ORIGIN)
    new_text = (
        GOOD.replace("$INCLUDE extra.inc\n", "www A 192.0.2.80\n")
        .replace("$GENERATE 1-4", "$GENERATE 1-3")
        .replace("ns1 A 192.0.2.1", "ns1 600 A 192.0.2.1")
    )
    cs = plan_import(ORIGIN, old, parse_zone_text(new_text, ORIGIN), "t")
    removed = {r.to_text() for r in cs.removed}
    added = {r.to_text() for r in cs.added}
    assert removed == {
        "host4.example.test. 300 IN A 10.0.0.4",
        "ns1.example.test. 300 IN A 192.0.2.1",
    }
    assert added == {
        "www.example.test. 300 IN A 192.0.2.80",
        "ns1.example.test. 600 IN A 192.0.2.1",
    }


def test_soa_away_from_apex(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("ns1 A 192.0.2.1", "www SOA ns1 host 1 2 3 4 5"))
    with pytest.raises(ZoneFileError, match=r":5: an SOA record away from the zone apex"):
        parse_zone_file(path, ORIGIN)
