"""Shared helpers for the xdnsd benchmarks: server configs, processes, /proc readings, dnsperf.

Stdlib + dnspython only. Everything listens on 127.0.0.1, every child runs in its own
session (so the whole tree can be measured and killed), every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
ZONE = "bench.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, below the ephemeral range: a server
    restarted after thousands of client connections must not find its port taken by one."""
    low = 32768
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/sys/net/ipv4/ip_local_port_range") as f,
    ):
        low = int(f.read().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


# --------------------------------------------------------------------------- /proc


def _read_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm may contain spaces / parens: split after the last ')'
    rest = s[s.rfind(")") + 2 :].split()
    return rest  # rest[0] = state (field 3), rest[i] = field i+3


def session_pids(sid: int) -> list[int]:
    """All live processes whose session id is sid (the server and every child it forked)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _read_stat(int(d))
        if st is None:
            continue
        # field 6 = session -> rest[3]
        if int(st[3]) == sid and st[0] != "Z":
            out.append(int(d))
    return sorted(out)


def cpu_seconds(sid: int) -> float:
    """utime + stime (+ reaped children) of every process in the session, in seconds."""
    total = 0
    for pid in session_pids(sid):
        st = _read_stat(pid)
        if st is None:
            continue
        # utime=14, stime=15, cutime=16, cstime=17 -> rest[11..14]
        total += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    return total / CLK_TCK


def cpu_busy(cpu: int | None = None) -> tuple[float, float]:
    """(busy seconds, total seconds) of one CPU (or all) from /proc/stat."""
    key = "cpu" if cpu is None else f"cpu{cpu}"
    with open("/proc/stat") as f:
        for line in f:
            p = line.split()
            if p[0] == key:
                v = [int(x) for x in p[1:9]]
                idle = v[3] + v[4]
                return (sum(v) - idle) / CLK_TCK, sum(v) / CLK_TCK
    raise KeyError(key)


def machine_busy(interval: float = 1.0) -> float:
    """Fraction (0..1) of all CPUs busy over `interval` seconds."""
    b0, t0 = cpu_busy(None)
    time.sleep(interval)
    b1, t1 = cpu_busy(None)
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def wait_quiet(max_wait: float, threshold: float = 0.10) -> float:
    """Wait (up to max_wait s) until the machine is idle; returns the last busy fraction seen."""
    end = time.monotonic() + max_wait
    busy = machine_busy()
    while busy > threshold and time.monotonic() < end:
        busy = machine_busy()
    return busy


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile / RssShmem in kB."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "VmSize"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_pss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def session_memory(sid: int) -> dict[str, Any]:
    """Memory of a server's whole process tree (kB): sums of VmRSS / RssAnon / Pss, max VmHWM."""
    pids = session_pids(sid)
    per = []
    for pid in pids:
        st = proc_status(pid)
        st["pid"] = pid
        st["Pss"] = proc_pss_kb(pid) or 0
        try:
            with open(f"/proc/{pid}/comm") as f:
                st["comm"] = f.read().strip()
        except OSError:
            st["comm"] = "?"
        per.append(st)
    return {
        "processes": len(per),
        "rss_kb": sum(p.get("VmRSS", 0) for p in per),
        "hwm_kb_max": max((p.get("VmHWM", 0) for p in per), default=0),
        "hwm_kb_sum": sum(p.get("VmHWM", 0) for p in per),
        "anon_kb": sum(p.get("RssAnon", 0) for p in per),
        "file_kb": sum(p.get("RssFile", 0) for p in per),
        "pss_kb": sum(p.get("Pss", 0) for p in per),
        "per_process": per,
    }


# --------------------------------------------------------------------------- server configs


def _indent(text: str, n: int) -> str:
    """``text`` (config lines) indented by ``n`` spaces, ending with a newline; "" stays ""."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "".join(" " * n + ln + "\n" for ln in lines)


@dataclass
class ServerSpec:
    kind: str  # nsd | knot | bind | xdnsd
    cmd: list[str]
    cwd: str
    port: int
    workers: int
    log: str
    start_timeout: float = 60.0
    data_dir: str | None = None


def nsd_spec(
    work: str, zone_file: str, port: int, workers: int, zone_extra: str = ""
) -> ServerSpec:
    """``zone_extra``: more lines for the zone (e.g. ``provide-xfr: 127.0.0.1 NOKEY``)."""
    d = os.path.join(work, f"nsd-w{workers}")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nsd.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    server-count: {workers}
    reuseport: yes
    username: ""
    chroot: ""
    zonesdir: "{os.path.dirname(zone_file)}"
    database: ""
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    zonelistfile: "{d}/zone.list"
    logfile: "{d}/nsd.log"
    verbosity: 1
    hide-version: yes
    minimal-responses: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    tcp-count: 200
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: "{os.path.basename(zone_file)}"
{_indent(zone_extra, 4)}""")
    return ServerSpec(
        "nsd", ["nsd", "-d", "-c", conf], d, port, workers, os.path.join(d, "stderr.log")
    )


def knot_spec(
    work: str,
    zone_file: str,
    port: int,
    workers: int,
    sections: str = "",
    zone_extra: str = "",
) -> ServerSpec:
    """``sections``: more top-level sections written before the zone (e.g. an ``acl:`` list);
    ``zone_extra``: more keys for the zone entry (e.g. ``acl: xfr``)."""
    d = os.path.join(work, f"knot-w{workers}")
    os.makedirs(os.path.join(d, "db"), exist_ok=True)
    conf = os.path.join(d, "knot.conf")
    with open(conf, "w") as f:
        f.write(knot_server(d, port, workers, "    background-workers: 1\n"))
        f.write(sections if not sections or sections.endswith("\n") else sections + "\n")
        f.write(f"""template:
  - id: default
    storage: "{os.path.dirname(zone_file)}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: {ZONE}
    file: "{os.path.basename(zone_file)}"
{_indent(zone_extra, 4)}""")
    return ServerSpec(
        "knot", ["knotd", "-c", conf], d, port, workers, os.path.join(d, "stderr.log")
    )


def knot_server(d: str, port: int, workers: int, extra: str = "", database: str = "") -> str:
    """knot.conf ``server``, ``log`` and ``database`` sections for a benchmark Knot in ``d``."""
    return f"""server:
    rundir: "{d}"
    pidfile: "{d}/knot.pid"
    listen: 127.0.0.1@{port}
    udp-workers: {workers}
    tcp-workers: {workers}
{extra}log:
  - target: stderr
    any: warning
database:
    storage: "{d}/db"
{database}"""


def bind_spec(work: str, zone_file: str, port: int, workers: int) -> ServerSpec:
    d = os.path.join(work, f"bind-w{workers}")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "named.conf")
    with open(conf, "w") as f:
        f.write(named_options(d, port, "check-integrity no;"))
        f.write(f'zone "{ZONE}" {{ type primary; file "{zone_file}"; }};\n')
    return named_spec(conf, d, port, workers)


def named_options(d: str, port: int, extra: str = "") -> str:
    """named.conf ``options`` (and empty ``controls``) for a benchmark BIND in directory ``d``."""
    return f"""options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    minimal-responses yes;
    querylog no;
    {extra}
}};
controls {{ }};
"""


def named_spec(conf: str, d: str, port: int, workers: int) -> ServerSpec:
    return ServerSpec(
        "bind",
        ["named", "-g", "-4", "-c", conf, "-n", str(workers)],
        d,
        port,
        workers,
        os.path.join(d, "stderr.log"),
    )


def xdnsd_spec(
    work: str,
    zone_file: str,
    port: int,
    workers: int,
    data_dir: str | None = None,
    start_timeout: float = 300.0,
    zone_extra: str = "",
) -> ServerSpec:
    """``zone_extra``: more keys for the ``[[zones]]`` table (e.g. ``allow_transfer = [...]``)."""
    d = os.path.join(work, f"xdnsd-w{workers}")
    os.makedirs(d, exist_ok=True)
    data_dir = data_dir or os.path.join(work, "xdnsd-var")
    conf = os.path.join(d, "xdnsd.toml")
    with open(conf, "w") as f:
        f.write(f"""[server]
listen = ["127.0.0.1:{port}"]
data_dir = "{data_dir}"
workers = {workers}

[node]
id = "bench"

[[zones]]
name = "{ZONE}"
file = "{zone_file}"
{_indent(zone_extra, 0)}""")
    return ServerSpec(
        "xdnsd",
        [VENV_PY, "-m", "xdnsd", "serve", "--config", conf],
        d,
        port,
        workers,
        os.path.join(d, "stderr.log"),
        start_timeout=start_timeout,
        data_dir=data_dir,
    )


SPEC_BUILDERS = {"nsd": nsd_spec, "knot": knot_spec, "bind": bind_spec, "xdnsd": xdnsd_spec}


def binary_available(kind: str) -> bool:
    if kind == "xdnsd":
        return os.path.exists(VENV_PY)
    return shutil.which({"nsd": "nsd", "knot": "knotd", "bind": "named"}[kind]) is not None


# --------------------------------------------------------------------------- processes


class ServerProcess:
    """A server in its own session; `stop()` ends the whole session (TERM, then KILL)."""

    def __init__(self, spec: ServerSpec, cpus: str | None = None) -> None:
        self.spec = spec
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self.t_start = 0.0
        self._logf = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        cmd = list(self.spec.cmd)
        if self.cpus is not None:
            cmd = ["taskset", "-c", self.cpus, *cmd]  # taskset execs: same pid, children inherit
        self._logf = open(self.spec.log, "ab")  # noqa: SIM115 - closed in stop()
        self.t_start = time.monotonic()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.spec.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def wait_ready(self, probe_name: str, timeout: float | None = None) -> float:
        """Poll until the zone answers (NOERROR + AA + an answer); returns seconds since start.

        Raises RuntimeError if the process dies or the deadline passes."""
        import dns.flags
        import dns.message
        import dns.query
        import dns.rcode

        deadline = self.t_start + (timeout if timeout is not None else self.spec.start_timeout)
        q = dns.message.make_query(probe_name, "A")
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.spec.kind} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                r = dns.query.udp(q, "127.0.0.1", port=self.spec.port, timeout=0.1)
                if r.rcode() == dns.rcode.NOERROR and r.answer and (r.flags & dns.flags.AA):
                    return time.monotonic() - self.t_start
                last = f"rcode {dns.rcode.to_text(r.rcode())}, {len(r.answer)} answer rrsets"
            except Exception as e:
                last = f"{type(e).__name__}: {e}"
                time.sleep(0.01)  # a timeout already waited 0.1 s
                continue
            time.sleep(0.02)
        raise RuntimeError(
            f"{self.spec.kind} not answering after {deadline - self.t_start:.0f}s ({last}); "
            f"log: {self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        sid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            pids = session_pids(sid)
            if self.proc.poll() is None and sid not in pids:
                pids.append(sid)
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            end = time.monotonic() + wait
            while time.monotonic() < end:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=0.1)
                if self.proc.poll() is not None and not session_pids(sid):
                    break
            if self.proc.poll() is not None and not session_pids(sid):
                break
        if self._logf:
            self._logf.close()
            self._logf = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- dnsperf


@dataclass
class PerfResult:
    ok: bool
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    latency_avg_ms: float = 0.0
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    latency_stddev_ms: float = 0.0
    runtime_s: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    resp_size: int = 0
    raw: str = ""
    error: str = ""
    cpu_s: float = 0.0  # dnsperf's own utime + stime


def parse_dnsperf(out: str) -> PerfResult:
    r = PerfResult(ok=False, raw=out)

    def num(pat: str, cast=float, default=0):
        m = re.search(pat, out)
        return cast(m.group(1)) if m else default

    r.sent = num(r"Queries sent:\s+(\d+)", int)
    r.completed = num(r"Queries completed:\s+(\d+)", int)
    r.lost = num(r"Queries lost:\s+(\d+)", int)
    r.qps = num(r"Queries per second:\s+([\d.]+)")
    r.runtime_s = num(r"Run time \(s\):\s+([\d.]+)")
    m = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", out)
    if m:
        r.latency_avg_ms, r.latency_min_ms, r.latency_max_ms = (float(x) * 1000 for x in m.groups())
    r.latency_stddev_ms = num(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000
    r.resp_size = num(r"Average packet size:\s+request \d+, response (\d+)", int)
    m = re.search(r"Response codes:\s+(.*)", out)
    if m:
        for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
            r.rcodes[code] = int(n)
    r.ok = r.sent > 0
    return r


def run_dnsperf(
    port: int,
    query_file: str,
    seconds: int,
    clients: int,
    outstanding: int,
    cpus: str | None = None,
    max_qps: int | None = None,
    extra: list[str] | None = None,
    max_runs: int | None = None,
) -> PerfResult:
    cmd = [
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        query_file,
        "-l",
        str(seconds),
        "-c",
        str(clients),
        "-q",
        str(outstanding),
        "-t",
        "2",
    ]
    if max_qps:
        cmd += ["-Q", str(max_qps)]
    if max_runs:
        cmd += ["-n", str(max_runs)]
    if extra:
        cmd += extra
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 30, start_new_session=True
        )
    except subprocess.TimeoutExpired as e:
        return PerfResult(ok=False, error=f"dnsperf timed out: {e}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = parse_dnsperf(p.stdout)
    res.cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode != 0 or not res.ok:
        res.ok = False
        res.error = f"dnsperf rc={p.returncode}: {p.stderr.strip()[-500:]}"
    return res


def eprint(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)
