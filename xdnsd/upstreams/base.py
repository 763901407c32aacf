"""What a provider target offers the sync service (``sync.py``): read a zone's RRsets, apply
changes.  Planning is shared by all (``plan.py``); a provider only translates and talks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from xdnsd.upstreams.plan import Change, Key, RRset


class ProviderError(Exception):
    """The provider refused or failed; ``retry`` says whether trying again later may help
    (throttled, unreachable) or not (bad credentials, refused data)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class ChangedMeanwhile(ProviderError):
    """A compare-and-swap failed: the target changed since it was read (read it again)."""


@dataclass(frozen=True, slots=True)
class Applied:
    changes: int  # RRsets changed
    calls: int  # API calls (or messages) it took


class Provider(Protocol):
    kind: str
    supported: frozenset[str]  # RR types it can hold

    def read(self, zone: str) -> Mapping[Key, RRset]:
        """The target's RRsets of ``zone`` (apex SOA and NS included: the planner drops
        them), normalized (``plan.canonical_value``)."""
        ...

    def apply(self, zone: str, changes: Sequence[Change]) -> Applied:
        """Make the changes; deletes and updates are conditional on ``Change.old`` where the
        provider can say so (``ChangedMeanwhile`` when the target changed)."""
        ...
