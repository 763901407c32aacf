"""The named.conf pieces every test that starts a real BIND ``named`` shares."""

from __future__ import annotations

import shutil
from pathlib import Path

NAMED = shutil.which("named") or "/usr/sbin/named"


def named_options(directory: Path, port: int, *extra: str) -> str:
    """named.conf ``options`` for a test BIND keeping its files in ``directory`` and listening on
    127.0.0.1 ``port`` only (no recursion, no validation, no NOTIFY unless ``extra`` says so),
    with ``extra`` statements (each ending with ';') appended, and no control channel."""
    lines = [
        f'directory "{directory}";',
        f'pid-file "{directory}/named.pid";',
        f'session-keyfile "{directory}/session.key";',
        f'managed-keys-directory "{directory}";',
        f"listen-on port {port} {{ 127.0.0.1; }};",
        "listen-on-v6 { none; };",
        "recursion no;",
        "dnssec-validation no;",
        *extra,
    ]
    if not any(line.startswith("notify ") for line in extra):
        lines.append("notify no;")
    return "options {\n" + "".join(f"    {line}\n" for line in lines) + "};\n"


CONTROLS_NONE = "controls { };\n"
