"""Verification of the whole service: every table's metadata against its live schema, and every
unfinished operation against the job that should finish it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemasaga.domain.errors import DomainError
from schemasaga.services.drift import DriftDetector, DriftReport
from schemasaga.services.views import OperationView, ReadModels


@dataclass
class Scans:
    """Drift reports of the databases that could be read, and why the others could not."""

    reports: list[DriftReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.failed and all(r.clean for r in self.reports)


@dataclass
class Verification:
    scans: Scans
    unsettled: list[OperationView]
    stuck: list[OperationView]

    @property
    def divergences(self) -> int:
        """Databases not checked, tables that drifted and operations nothing will finish."""
        drifted = sum(len(r.drifted) for r in self.scans.reports)
        return len(self.scans.failed) + drifted + len(self.stuck)


async def scan_databases(detector: DriftDetector, names: Iterable[str]) -> Scans:
    scans = Scans()
    for name in names:
        try:
            scans.reports.append(await detector.scan(name))
        except DomainError as exc:  # unknown, unreachable, or its credentials cannot be decrypted
            scans.failed[name] = exc.message
    return scans


async def verify(
    detector: DriftDetector, reads: ReadModels, *, wait: float = 0.0, poll: float = 0.2
) -> Verification:
    """Wait up to ``wait`` seconds for the operations in flight to finish, then check everything."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        unsettled = await reads.unsettled_operations()
        stuck = await reads.stuck_operations()
        if not unsettled or loop.time() >= deadline:
            break
        await asyncio.sleep(poll)
    scans = await scan_databases(detector, detector.connections.names())
    return Verification(scans=scans, unsettled=unsettled, stuck=stuck)
