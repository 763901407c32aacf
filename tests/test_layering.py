"""The core stays sans-I/O: core modules never import twisted, lmdb or provider SDKs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "xdnsd"
CORE = [
    "model.py",
    "names.py",
    "config.py",
    "zonefile.py",
    "zonefast.py",
    "server/answer.py",
    "server/render.py",
    "server/update.py",
    "server/acl.py",
    "server/tsig.py",
]
FORBIDDEN = ("twisted", "lmdb", "boto3", "botocore", "azure", "xdnsd.store")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_core_modules_are_pure() -> None:
    for rel in CORE:
        mods = imported_modules(ROOT / rel)
        bad = sorted(m for m in mods if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN)
        assert not bad, f"{rel} imports {bad}"


def test_only_store_imports_lmdb() -> None:
    for path in ROOT.rglob("*.py"):
        if path.name == "store.py":
            continue
        mods = imported_modules(path)
        assert "lmdb" not in mods, f"{path} imports lmdb"
