"""Master files in and out (pure: stdlib + dnspython).

Parsing is dnspython's zone-file reader ($ORIGIN, $TTL, $INCLUDE, $GENERATE); its errors already say
``file:line: problem``.  On top of it, the zone rules a server must refuse to load: an SOA and NS
records at the apex, no CNAME beside other data, nothing outside the zone.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.node
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zonefile

from xdnsd.model import RR, ChangeOp, Changeset, rrs_from_rrset
from xdnsd.zonefast import Unsupported, parse_fast

# types that may sit beside a CNAME (RFC 2181 10.1, RFC 4035 2.5)
_CNAME_NEIGHBOURS = {
    int(dns.rdatatype.CNAME),
    int(dns.rdatatype.RRSIG),
    int(dns.rdatatype.NSEC),
    int(dns.rdatatype.KEY),
}


log = logging.getLogger("xdnsd.zonefile")
_CHDIR_LOCK = threading.Lock()


class ZoneFileError(Exception):
    """A master file that cannot be loaded; the message names the file, line and problem."""


class _IndexedTransaction(dns.zonefile.RRsetsReaderTransaction):
    """dnspython's RRsets reader transaction with the RRsets indexed by owner name.

    The stock one scans every RRset read so far to find a name's node (for the CNAME check on
    each record), which makes reading a zone quadratic in its size.
    """

    def __init__(self, manager: Any, replacement: bool, read_only: bool) -> None:
        super().__init__(manager, replacement, read_only)  # type: ignore[no-untyped-call]
        self.by_name: dict[dns.name.Name, dict[tuple[Any, Any], Any]] = {}

    def _get_node(self, name: dns.name.Name) -> dns.node.Node | None:
        rdatasets = self.by_name.get(name)
        if not rdatasets:
            return None
        node = dns.node.Node()  # type: ignore[no-untyped-call]
        node.rdatasets = list(rdatasets.values())
        return node

    def _put_rdataset(self, name: dns.name.Name, rdataset: Any) -> None:
        super()._put_rdataset(name, rdataset)  # type: ignore[no-untyped-call]
        self.by_name.setdefault(name, {})[(rdataset.rdtype, rdataset.covers)] = rdataset

    def _delete_name(self, name: dns.name.Name) -> None:
        for rdtype, covers in self.by_name.pop(name, {}):
            self.rdatasets.pop((name, rdtype, covers), None)

    def _delete_rdataset(self, name: dns.name.Name, rdtype: Any, covers: Any) -> None:
        super()._delete_rdataset(name, rdtype, covers)  # type: ignore[no-untyped-call]
        self.by_name.get(name, {}).pop((rdtype, covers), None)

    def _name_exists(self, name: dns.name.Name) -> bool:
        return bool(self.by_name.get(name))


class _IndexedManager(dns.zonefile.RRSetsReaderManager):
    def writer(self, replacement: bool = False) -> _IndexedTransaction:
        return _IndexedTransaction(self, True, False)


class _Tokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer whose line number does not run ahead when a newline is read and put back."""

    def _get_char(self) -> str:
        c = super()._get_char()
        if c == "\n" and self._pending_newline:
            self._pending_newline = False
            self.line_number += 1
        return c

    def _unget_char(self, c: str) -> None:
        super()._unget_char(c)
        if c == "\n":
            self._pending_newline = True
            self.line_number -= 1

    _pending_newline = False


class _Reader(dns.zonefile.Reader):
    """dnspython's reader, remembering where the record being read starts.

    dnspython reports the tokenizer's position, which is one line late when the problem is the
    last token of a line or is found after the line was read (CNAME beside other data).
    """

    error_at: tuple[str, int] | None = None

    def _rr_line(self) -> None:
        start = self.tok.where()
        try:
            super()._rr_line()
        except (dns.exception.DNSException, ValueError):
            self.error_at = start
            raise


def parse_zone_text(
    text: str | io.TextIOBase,
    origin: dns.name.Name,
    filename: str = "<input>",
    *,
    allow_include: bool = True,
) -> list[RR]:
    """Parse master-file text for ``origin`` into records (absolute names, class IN).

    ``allow_include=False`` refuses ``$INCLUDE`` (text from the network must not make the
    server read its own files)."""
    if isinstance(text, str):
        try:
            return parse_fast(text, origin, filename)
        except Unsupported as exc:
            # dnspython's reader loads it, or reports the error with file and line
            log.debug("%s: read by dnspython's reader (%s)", filename, exc)
    manager = _IndexedManager(origin, False, dns.rdataclass.IN)
    reader: _Reader | None = None
    try:
        with manager.writer(True) as txn:
            tok = _Tokenizer(text, filename)
            reader = _Reader(
                tok, dns.rdataclass.IN, txn, allow_include=allow_include, allow_directives=True
            )
            reader.read()
    except dns.exception.DNSException as exc:
        message = str(exc)
        if isinstance(exc, dns.exception.SyntaxError):
            # dnspython's message is "file:line: problem"; keep only the problem
            parts = message.split(":", 2)
            if len(parts) == 3 and parts[1].isdigit():
                message = parts[2].strip()
        if "CNAME" in message and "compatible" in message:
            message = "a CNAME beside other data at this name (RFC 1034 3.6.2)"
        where = (filename, 0)
        if reader is not None:
            where = reader.error_at or reader.tok.where()
        raise ZoneFileError(
            _with_line(f"{where[0]}:{where[1]}: {message}", text, filename)
        ) from None
    except OSError as exc:  # a missing $INCLUDE file
        raise ZoneFileError(f"{filename}: {exc}") from None
    except ValueError as exc:  # dnspython: "add() has non-origin SOA"
        where = (filename, 0) if reader is None else (reader.error_at or reader.tok.where())
        message = "an SOA record away from the zone apex" if "SOA" in str(exc) else str(exc)
        raise ZoneFileError(
            _with_line(f"{where[0]}:{where[1]}: {message}", text, filename)
        ) from None
    finally:
        if reader is not None:  # dnspython leaves $INCLUDE files open on errors
            files: list[Any] = [state[3] for state in reader.saved_state]
            for f in [*files, reader.current_file]:
                if f is not None:
                    f.close()
    records: list[RR] = []
    for rrset in manager.rrsets:
        records.extend(rrs_from_rrset(rrset))
    return records


def _with_line(message: str, text: str | io.TextIOBase, filename: str) -> str:
    """Append the offending line of the main file to a ``file:line: problem`` message."""
    prefix = f"{filename}:"
    if not isinstance(text, str) or not message.startswith(prefix):
        return message
    number = message[len(prefix) :].split(":", 1)[0]
    if not number.isdigit():
        return message
    lines = text.splitlines()
    index = int(number) - 1
    if 0 <= index < len(lines):
        return f"{message.rstrip('.')} (line: {lines[index].strip()!r})"
    return message


def parse_zone_file(path: str | Path, origin: dns.name.Name) -> list[RR]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ZoneFileError(f"{path}: cannot read zone file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ZoneFileError(f"{path}: not a text file ({exc.reason})") from None
    # $INCLUDE paths are relative to the zone file's directory (as Knot does); dnspython opens
    # them relative to the working directory, so parse from there, one file at a time.
    with _CHDIR_LOCK:
        cwd = Path.cwd()
        try:
            os.chdir(path.resolve().parent)
            records = parse_zone_text(text, origin, str(path))
        finally:
            os.chdir(cwd)
    check_zone(records, origin, str(path))
    return records


def _owner_key(name: dns.name.Name) -> tuple[bytes, tuple[int, ...]]:
    # cheap exact identity for grouping (dnspython's Name hash is a Python loop per character)
    return b"".join(name.labels).lower(), tuple(map(len, name.labels))


def check_zone(records: list[RR], origin: dns.name.Name, source: str) -> None:
    """Refuse a zone a server must not serve, with a message that says what to fix.

    Both readers already drop names outside the zone (as dnspython does) and refuse a CNAME
    beside other data within one file; this checks what a whole zone needs, cheaply enough for
    millions of records.
    """
    soas = [rr for rr in records if rr.rdtype == dns.rdatatype.SOA]
    if not any(rr.owner == origin for rr in soas):
        raise ZoneFileError(f"{source}: zone {origin} has no SOA record at its apex")
    if len(soas) != 1:
        raise ZoneFileError(f"{source}: zone {origin} has {len(soas)} SOA records; it needs one")
    if not any(rr.rdtype == dns.rdatatype.NS and rr.owner == origin for rr in records):
        raise ZoneFileError(f"{source}: zone {origin} has no NS records at its apex")
    cnames = {_owner_key(rr.owner): rr.owner for rr in records if rr.rdtype == dns.rdatatype.CNAME}
    if not cnames:
        return
    if _owner_key(origin) in cnames:
        raise ZoneFileError(f"{source}: the apex {origin} cannot be a CNAME")
    for rr in records:
        if rr.rdtype not in _CNAME_NEIGHBOURS and _owner_key(rr.owner) in cnames:
            rdtype = dns.rdatatype.to_text(rr.rdata.rdtype)
            raise ZoneFileError(f"{source}: {rr.owner} has a CNAME beside other data ({rdtype})")


def plan_import(
    zone: dns.name.Name, current: Iterable[RR], desired: Iterable[RR], origin: str
) -> Changeset:
    """The changeset that turns ``current`` into ``desired``.

    A record whose TTL or owner case changes is removed and added again.  The SOA is compared
    without its serial (the store derives the serial) and, when changed, only added: the store
    keeps exactly one SOA per zone.
    """

    def differs(a: RR, b: RR) -> bool:
        return a.ttl != b.ttl or a.owner.to_text() != b.owner.to_text()

    cur = {rr.identity(): rr for rr in current if rr.rdtype != dns.rdatatype.SOA}
    new = {rr.identity(): rr for rr in desired if rr.rdtype != dns.rdatatype.SOA}
    removed = [rr for k, rr in cur.items() if k not in new or differs(new[k], rr)]
    added = [rr for k, rr in new.items() if k not in cur or differs(cur[k], rr)]
    soa_cur = [rr for rr in current if rr.rdtype == dns.rdatatype.SOA]
    soa_new = [rr for rr in desired if rr.rdtype == dns.rdatatype.SOA]
    if soa_new and soa_cur:
        a, b = soa_new[0], soa_cur[0]
        if a.ttl != b.ttl or _without_serial(a) != _without_serial(b):
            added.append(a)
    return Changeset(zone=zone, removed=tuple(removed), added=tuple(added), origin=origin)


def _without_serial(rr: RR) -> object:
    return rr.rdata.replace(serial=0)


def create_changeset(zone: dns.name.Name, records: Iterable[RR], origin: str) -> Changeset:
    return Changeset(zone=zone, added=tuple(records), origin=origin, op=ChangeOp.CREATE)


def to_text(records: Iterable[RR], origin: dns.name.Name) -> str:
    """A master file for the records (absolute names), apex SOA first; parses back the same."""
    lines = [f"$ORIGIN {origin}"]
    recs = list(records)
    recs.sort(key=lambda rr: (rr.rdtype != dns.rdatatype.SOA, rr.owner, rr.rdtype))
    for rr in recs:
        lines.append(
            f"{rr.owner} {rr.ttl} IN {dns.rdatatype.to_text(rr.rdata.rdtype)} {rr.rdata.to_text()}"
        )
    return "\n".join(lines) + "\n"
