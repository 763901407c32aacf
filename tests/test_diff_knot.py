"""Differential test: the same zones and queries against a real ``knotd`` and against xdnsd.

Zones: ``tests/data/diff/*.zone`` (origin = file name).  Queries: ``tests/data/diff/queries.txt``
(format described at its top) plus a few generated here (TSIG-signed queries).  Every query goes
to knotd and to each server under test; responses are compared section by section after
normalisation (RRs sorted within each section, ID ignored, TSIG time ignored).

Servers under test (fixture ``target``):

* ``serve``: the real ``xdnsd serve --config FILE`` process (LMDB store + fast path).  Every query
  is sent twice, so the second answer normally comes from the fast-path cache.
* ``inprocess``: the answer engine behind a tiny socket server in a thread, zones in memory
  (``tests/answer/memview.py``).  It isolates the engine from the store and the fast path.

Differences we accept are listed in ``ACCEPTED`` with their reason; an accepted entry that no
longer differs fails the test, so the list stays honest.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import pytest

from tests.answer.memview import MemZoneFinder
from tests.harness import free_port, running_xdnsd
from xdnsd.server.answer import ServerIdentity, answer_wire

DATA = Path(__file__).resolve().parent / "data" / "diff"
KNOTD = shutil.which("knotd") or ("/usr/sbin/knotd" if Path("/usr/sbin/knotd").exists() else None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(KNOTD is None, reason="knotd is not installed"),
]

L63 = "l" * 63

# Accepted differences: query description -> (kind, reason).  The kind says how much may differ:
#   "case"         the responses are equal once names outside the question are lowercased;
#   "compression"  equal except that xdnsd's additional section holds more RRs (a superset);
#   "behaviour"    anything (a deliberate divergence, explained).
CASE = (
    "case",
    "Knot lowercases owner names and names inside RDATA when it loads a zone; xdnsd keeps the "
    "zone file's case (the store keeps it on purpose)",
)
COMPRESSION_CASE = (
    "case",
    "Knot compresses each name only against the previously written name, dnspython against all "
    "earlier names (RFC 1035 4.1.4): with a 0x20 question a name can take its case from a "
    "different earlier occurrence",
)
COMPRESSION_SIZE = (
    "compression",
    "Knot compresses each name only against the previously written name, so its responses are "
    "a few octets longer and a truncated additional section holds fewer RRs than xdnsd's",
)
ACCEPTED: dict[str, tuple[str, str]] = {
    "to-mixed.example.test A": CASE,
    "to-mixed.example.test A noedns": CASE,
    "to-mixed.example.test A tcp": CASE,
    "sub.example.test A 0x20": COMPRESSION_CASE,
    "sub.example.test A 0x20 noedns": COMPRESSION_CASE,
    "bigdeleg.example.test A": COMPRESSION_SIZE,
    "x.bigdeleg.example.test A": COMPRESSION_SIZE,
    "sibdeleg.example.test A": COMPRESSION_SIZE,
    **dict.fromkeys(
        [f"{L63}.{L63}.dnlong.example.test A{variant}" for variant in ("", " noedns", " tcp")],
        (
            "behaviour",
            "when a DNAME substitution would exceed 255 octets Knot sets YXDOMAIN but then keeps "
            "resolving the DNAME *target* as if it were a CNAME target (here an in-zone name that "
            "does not exist, so it ends NXDOMAIN with the SOA); RFC 6672 2.2 says YXDOMAIN, and "
            "xdnsd stops there",
        ),
    ),
}


# Differences of the ``serve`` target only, where the server routes a message past the answer
# engine: query description -> (xdnsd's rcode, xdnsd's TSIG error or None, reason).
_NO_UPDATES = (
    "REFUSED",
    None,
    "an UPDATE for a zone without an update policy: Knot with no ACL says NOTAUTH; xdnsd, like "
    "BIND, says REFUSED (issue 3: 'no updates at all (REFUSED) until the config allows them')",
)
_TSIG_FIRST = (
    "NOTAUTH",
    "BADKEY",
    "a TSIG with an unknown key: xdnsd checks the signature before anything else, as BIND does "
    "and RFC 8945 5.2 describes (BADKEY), while Knot first finds no zone / a hidden CH name and "
    "answers REFUSED unsigned",
)
_NO_TRANSFERS = (
    "REFUSED",
    None,
    "a zone transfer a zone's allow_transfer does not admit: Knot answers NOTAUTH when its ACL "
    "denies, xdnsd REFUSED, as BIND does and issue 4 asks",
)
SERVE_ACCEPTED: dict[str, tuple[str, str | None, str]] = {
    "example.test AXFR tcp plain": _NO_TRANSFERS,
    "example.test IXFR plain": _NO_TRANSFERS,
    "example.test IXFR tcp plain": _NO_TRANSFERS,
    "example.test SOA opcode=5 plain": _NO_UPDATES,
    "example.test SOA opcode=5 noedns plain": _NO_UPDATES,
    "example.test SOA opcode=4 plain": (
        "REFUSED",
        None,
        "a NOTIFY for a zone this node is the primary of: REFUSED, as BIND answers "
        "('not a secondary'); Knot answers NOTAUTH",
    ),
    "tsig www.nowhere.test IN": _TSIG_FIRST,
    "tsig id.server CH": _TSIG_FIRST,
}


def is_serve_accepted(description: str, got: Any) -> bool:
    if description not in SERVE_ACCEPTED or not isinstance(got, dict):
        return False
    rcode, tsig_error, _reason = SERVE_ACCEPTED[description]
    got_error = None if got["tsig"] is None else dns.rcode.to_text(got["tsig"][4])
    return bool(got["rcode"] == rcode and got_error == tsig_error)


def is_accepted(
    description: str, expected: Any, got: Any, folded: Callable[[], tuple[Any, Any]]
) -> bool:
    """Is the difference between ``expected`` (knot) and ``got`` (xdnsd) an accepted one?"""
    if description not in ACCEPTED:
        return False
    kind = ACCEPTED[description][0]
    if kind == "behaviour":
        return True
    if kind == "case":
        knot_folded, ours_folded = folded()
        return bool(knot_folded == ours_folded)
    if not (isinstance(expected, dict) and isinstance(got, dict)):
        return False
    same = all(expected[k] == got[k] for k in expected if k not in ("counts", "additional"))
    return same and set(expected["additional"]) <= set(got["additional"])


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Query:
    description: str
    wire: bytes
    tcp: bool
    may_drop: bool = False  # raw packets: a drop is a valid answer, wait less for it


def _build(name: str, rdtype: str, options: list[str], qid: int) -> tuple[bytes, bool]:
    tcp = "tcp" in options
    edns: int | None = 0
    payload = 1232
    ednsflags = 0
    rdclass = "IN"
    opcode = 0
    flags = 0
    edns_options: list[dns.edns.Option] = []
    for option in options:
        key, _, value = option.partition("=")
        if key == "noedns":
            edns = None
        elif key == "edns":
            edns = int(value)
        elif key == "payload":
            payload = int(value)
        elif key == "do":
            ednsflags |= dns.flags.DO
        elif key == "z":
            ednsflags |= 0x4000
        elif key in ("rd", "cd", "ad"):
            flags |= int(dns.flags.from_text(key.upper()))
        elif key == "class":
            rdclass = value
        elif key == "opcode":
            opcode = int(value)
        elif key == "opt":
            code, _, data = value.partition(":")
            edns_options.append(dns.edns.GenericOption(int(code), bytes.fromhex(data)))
    query = dns.message.make_query(
        name,
        rdtype,
        rdclass,
        use_edns=edns if edns is not None else False,
        payload=payload,
        ednsflags=ednsflags,
        options=edns_options or None,
    )
    query.id = qid
    query.flags = dns.flags.Flag(flags)
    query.set_opcode(dns.opcode.Opcode(opcode))
    return query.to_wire(), tcp


def _mix_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def load_corpus() -> list[Query]:
    rng = random.Random(20241122)
    queries: list[Query] = []

    def add(description: str, name: str, rdtype: str, options: list[str]) -> None:
        wire, tcp = _build(name, rdtype, options, 0x1000 + len(queries))
        queries.append(Query(description, wire, tcp))

    for raw_line in (DATA / "queries.txt").read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "raw":
            wire = bytes.fromhex("".join(parts[2:]))
            queries.append(Query(line, wire, parts[1] == "tcp", may_drop=True))
            continue
        name, rdtype, *options = parts
        mixed = name.startswith("~")
        name = name.lstrip("~")
        description = " ".join([name, rdtype, *options])
        add(description, name, rdtype, options)
        if "plain" in options or any(o.split("=")[0] in _TRANSPORT_OPTIONS for o in options):
            continue
        add(description + " noedns", name, rdtype, [*options, "noedns"])
        add(description + " tcp", name, rdtype, [*options, "tcp"])
        if mixed:
            add(f"{description} 0x20", _mix_case(name, rng), rdtype, options)
            add(f"{description} 0x20 noedns", _mix_case(name, rng), rdtype, [*options, "noedns"])
    queries.extend(_tsig_queries())
    return queries


_TRANSPORT_OPTIONS = {"tcp", "noedns", "edns", "payload", "class", "opcode"}


def _tsig_queries() -> list[Query]:
    keyring = dns.tsigkeyring.from_text({"unknown-key.": ("hmac-sha256", "c2VjcmV0c2VjcmV0")})
    out = []
    for name, rdclass in (
        ("www.example.test", "IN"),
        ("www.nowhere.test", "IN"),
        ("id.server", "CH"),
    ):
        query = dns.message.make_query(name, "TXT" if rdclass == "CH" else "A", rdclass)
        query.id = 0x2000 + len(out)
        query.flags = dns.flags.Flag(0)
        query.use_tsig(keyring, keyname="unknown-key.")
        out.append(Query(f"tsig {name} {rdclass}", query.to_wire(), False))
    return out


CORPUS = load_corpus()


# --------------------------------------------------------------------------- sending


def exchange(host: str, port: int, query: Query) -> bytes | None:
    timeout = 0.4 if query.may_drop else 3.0
    if query.tcp:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(query.wire)) + query.wire)
            try:
                header = _recv_exactly(sock, 2)
                if header is None:
                    return None
                return _recv_exactly(sock, struct.unpack("!H", header)[0])
            except (TimeoutError, ConnectionResetError):
                return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query.wire, (host, port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --------------------------------------------------------------------------- normalisation


def _rr_text(name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata, fold: bool) -> str:
    if fold:  # lowercase owner and the names inside RDATA (RFC 4034 6.2 canonical form)
        name = name.canonicalize()
        digest = rdata.to_digestable()
        rdata = dns.rdata.from_wire(rdata.rdclass, rdata.rdtype, digest, 0, len(digest))
    return (
        f"{name} {ttl} {dns.rdataclass.to_text(rdata.rdclass)} "
        f"{dns.rdatatype.to_text(rdata.rdtype)} {rdata.to_text()}"
    )


def _section(rrsets: list[dns.rrset.RRset], fold: bool) -> list[str]:
    return sorted(
        _rr_text(rrset.name, rrset.ttl, rdata, fold) for rrset in rrsets for rdata in rrset
    )


def normalise(wire: bytes | None, fold: bool = False) -> Any:
    """A comparable view of a response (``fold``: names lowercased outside the question)."""
    if wire is None:
        return "no response"
    try:
        message = dns.message.from_wire(wire, one_rr_per_rrset=True, keyring=False)
    except Exception as exc:
        return f"unparsable ({exc}): {wire.hex()}"
    tsig = None
    if message.tsig is not None:
        rdata = message.tsig[0]
        tsig = (str(message.tsig.name), str(rdata.algorithm), rdata.fudge, rdata.mac, rdata.error)
    edns = None
    if message.edns >= 0:
        options = sorted(f"{o.code}:{o.to_wire().hex()}" for o in message.options)
        edns = (message.edns, message.payload, message.ednsflags & 0xFFFF, options)
    return {
        "id": message.id,
        "opcode": dns.opcode.to_text(message.opcode()),
        "rcode": dns.rcode.to_text(message.rcode()),
        "flags": dns.flags.to_text(message.flags),
        "counts": struct.unpack("!HHHH", wire[4:12]),
        "question": [q.to_text() for q in message.question],
        "answer": _section(message.answer, fold),
        "authority": _section(message.authority, fold),
        "additional": _section(message.additional, fold),
        "edns": edns,
        "tsig": tsig,
    }


# --------------------------------------------------------------------------- servers


def _zone_files() -> dict[str, Path]:
    return {path.name.removesuffix(".zone") + ".": path for path in sorted(DATA.glob("*.zone"))}


@contextlib.contextmanager
def running_knotd(directory: Path, identity: ServerIdentity) -> Iterator[tuple[str, int]]:
    assert KNOTD is not None
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    zones = "".join(
        f"  - domain: {origin}\n    file: {path}\n" for origin, path in _zone_files().items()
    )
    (directory / "knot.conf").write_text(
        "server:\n"
        f"    listen: 127.0.0.1@{port}\n"
        f"    rundir: {directory}\n"
        f'    identity: "{identity.identity or ""}"\n'
        f'    version: "{identity.version or ""}"\n'
        '    nsid: ""\n'
        "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
        "database:\n"
        f"    storage: {directory}\n"
        "template:\n  - id: default\n"
        "    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n"
        "log:\n  - target: stderr\n    any: warning\n"
        f"zone:\n{zones}"
    )
    log = (directory / "knotd.log").open("w")
    proc = subprocess.Popen(
        [KNOTD, "-c", str(directory / "knot.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready("127.0.0.1", port, proc, directory / "knotd.log")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    probes = [
        Query("probe", dns.message.make_query(origin, "SOA").to_wire(), False)
        for origin in _zone_files()
    ]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"knotd exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            answers = [exchange(host, port, probe) for probe in probes]
            if all(a is not None and dns.message.from_wire(a).rcode() == 0 for a in answers):
                return
        time.sleep(0.05)
    raise RuntimeError(f"knotd did not load its zones:\n{log.read_text()}")


class InProcessServer:
    """answer_wire behind loopback UDP and TCP sockets, one thread each (test helper)."""

    def __init__(self, answer: Callable[[bytes, bool], bytes | None]) -> None:
        self.answer = answer
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.1)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.tcp.settimeout(0.1)
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _serve_udp(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            response = self.answer(data, False)
            if response is not None:
                self.udp.sendto(response, peer)

    def _serve_tcp(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    header = _recv_exactly(conn, 2)
                    if header is None:
                        continue
                    data = _recv_exactly(conn, struct.unpack("!H", header)[0])
                    if data is None:
                        continue
                    response = self.answer(data, True)
                    if response is not None:
                        conn.sendall(struct.pack("!H", len(response)) + response)

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(5)
        self.udp.close()
        self.tcp.close()


@contextlib.contextmanager
def running_inprocess(identity: ServerIdentity) -> Iterator[tuple[str, int]]:
    finder = MemZoneFinder.from_texts(
        {origin: path.read_text() for origin, path in _zone_files().items()}
    )

    def answer(data: bytes, tcp: bool) -> bytes | None:
        return answer_wire(data, finder, tcp=tcp, identity=identity).wire

    server = InProcessServer(answer)
    try:
        yield "127.0.0.1", server.port
    finally:
        server.close()


@contextlib.contextmanager
def running_serve(directory: Path, identity: ServerIdentity) -> Iterator[tuple[str, int]]:
    extra = ""
    if identity.version is not None:
        extra += f'version = "{identity.version}"\n'
    if identity.identity is not None:
        extra += f'identity = "{identity.identity}"\n'
    directory.mkdir(parents=True, exist_ok=True)
    zones = {origin.rstrip("."): path for origin, path in _zone_files().items()}
    with running_xdnsd(directory, zones, probe="example.test", extra_server=extra) as server:
        yield server.host, server.port


HIDDEN = ServerIdentity()


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with running_knotd(tmp_path_factory.mktemp("knot"), HIDDEN) as address:
        yield address


@pytest.fixture(scope="module", params=["serve", "inprocess"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, int]]:
    if request.param == "serve":
        context = running_serve(tmp_path_factory.mktemp("xdnsd"), HIDDEN)
    else:
        context = running_inprocess(HIDDEN)
    with context as (host, port):
        yield request.param, host, port


# --------------------------------------------------------------------------- the tests


def compare(
    knot: tuple[str, int], target: tuple[str, str, int], queries: list[Query]
) -> tuple[list[str], list[str]]:
    """(unexpected differences, accepted differences seen) for ``queries``."""
    kind, host, port = target
    repeats = 2 if kind == "serve" else 1  # the second answer comes from the fast path
    unexpected: list[str] = []
    accepted: list[str] = []
    for query in queries:
        expected = normalise(exchange(*knot, query))
        for attempt in range(repeats):
            got = normalise(exchange(host, port, query))
            if got == expected:
                continue
            if kind == "serve" and is_serve_accepted(query.description, got):
                if attempt == 0:
                    accepted.append(query.description)
                continue
            if is_accepted(
                query.description,
                expected,
                got,
                lambda query=query: (  # type: ignore[misc]
                    normalise(exchange(*knot, query), fold=True),
                    normalise(exchange(host, port, query), fold=True),
                ),
            ):
                if attempt == 0:
                    accepted.append(query.description)
                continue
            unexpected.append(
                f"{query.description} ({'tcp' if query.tcp else 'udp'}, attempt {attempt + 1}):\n"
                f"  knot:  {expected}\n  xdnsd: {got}"
            )
    return unexpected, accepted


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 200
    assert len({q.description for q in CORPUS}) == len(CORPUS), "duplicate descriptions"


def test_same_answers_as_knot(knot: tuple[str, int], target: tuple[str, str, int]) -> None:
    unexpected, accepted = compare(knot, target, CORPUS)
    listed = set(ACCEPTED) | (set(SERVE_ACCEPTED) if target[0] == "serve" else set())
    stale = sorted(listed - set(accepted))
    report = "\n".join(unexpected)
    assert not unexpected, f"{len(unexpected)} of {len(CORPUS)} queries differ:\n{report}"
    assert not stale, f"accepted differences that no longer differ (remove them): {stale}"


IDENTITY = ServerIdentity(version="diff-test 1.0", identity="ns.diff.test")
CHAOS = [
    (name, rdtype, tcp)
    for name in ("version.bind", "VERSION.server", "id.server", "hostname.BIND", "authors.bind")
    for rdtype in ("TXT", "A")
    for tcp in (False, True)
]


def test_chaos_identity_configured(tmp_path: Path) -> None:
    """With version and identity configured on both sides, the CH answers are the same."""
    queries = [
        Query(f"{name} {rdtype} CH {tcp}", _build(name, rdtype, ["class=CH"], 0x3000 + i)[0], tcp)
        for i, (name, rdtype, tcp) in enumerate(CHAOS)
    ]
    with running_knotd(tmp_path / "knot", IDENTITY) as knot:
        with running_inprocess(IDENTITY) as ours:
            unexpected, _ = compare(knot, ("inprocess", *ours), queries)
        with running_serve(tmp_path / "xdnsd", IDENTITY) as ours:
            unexpected += compare(knot, ("serve", *ours), queries)[0]
    assert not unexpected, "\n".join(unexpected)
