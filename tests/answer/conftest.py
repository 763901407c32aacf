"""Fixtures for the answer-engine tables.

``finder_from_text`` turns ``{origin: master file text}`` into a ZoneFinder.  Every table runs
twice: against the in-memory view (``memview``) and against the LMDB store's snapshot view, the
one the server uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import dns.name
import pytest

from xdnsd.server.answer import ZoneFinder
from xdnsd.store import Store
from xdnsd.zonefile import create_changeset, parse_zone_text

from .memview import MemZoneFinder
from .tables import ZONES

FinderFactory = Callable[[dict[str, str]], ZoneFinder]


_PARSED: dict[tuple[tuple[str, str], ...], MemZoneFinder] = {}
_STORES: dict[tuple[tuple[str, str], ...], Store] = {}


@pytest.fixture(scope="session")
def _store_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="xdnsd-answer-") as path:
        yield path
        for store in _STORES.values():
            store.close()
        _STORES.clear()


def _lmdb_store(key: tuple[tuple[str, str], ...], base: str) -> Store:
    if key not in _STORES:
        store = Store(f"{base}/{len(_STORES)}", "answer-tests")
        for origin_text, text in key:
            origin = dns.name.from_text(origin_text)
            store.commit(create_changeset(origin, parse_zone_text(text, origin), "test"))
        _STORES[key] = store
    return _STORES[key]


@pytest.fixture(params=["memory", "lmdb"])
def finder_from_text(request: pytest.FixtureRequest, _store_dir: str) -> Iterator[FinderFactory]:
    with ExitStack() as stack:

        def make(zones: dict[str, str]) -> ZoneFinder:
            # parsing master files dominates the run time; the views are read-only
            key = tuple(sorted(zones.items()))
            if request.param == "memory":
                if key not in _PARSED:
                    _PARSED[key] = MemZoneFinder.from_texts(zones)
                return _PARSED[key]
            return stack.enter_context(_lmdb_store(key, _store_dir).snapshot())

        yield make


@pytest.fixture
def finder(finder_from_text: FinderFactory) -> ZoneFinder:
    """The shared table zones (see ``tables.ZONES``)."""
    return finder_from_text(ZONES)
