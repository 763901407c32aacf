from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.moto import MotoServer, moto_server

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# the xdnsd console script and the real DNS tools (dig, kdig, knotd) for integration tests
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's Route 53 server on 127.0.0.1, one per test module that asks for it."""
    yield from moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
