"""The instance's memory limit (the size's taskMemoryMb) made real.

Three layers, measured on this machine (see docs/instance.md):

1. Per snapshot: the loader checks the SQLite database size (page_count x
   page_size, which tracked VmRSS growth within a few percent) after every
   batch, against what the budget leaves next to the snapshots still held, and
   stops with a clear "choose a larger instanceSize" error.
2. SQLite's `hard_heap_limit` (process wide) above the snapshot budget: SQLite
   allocations past it fail with MemoryError instead of growing the process.
3. `RLIMIT_DATA` on the serving process at the full limit, so nothing else
   (Python objects, result building) can take the process past its size either.
   RLIMIT_DATA counts private writable mappings, thread stacks included, so the
   thread stack size is cut to 2 MiB (the 8 MiB default would count 8 MiB per
   thread without using it) and glibc malloc arenas are capped at 2.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import resource
import sqlite3
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# What the instance process needs besides snapshots: the interpreter and its
# modules (~35 MiB of data), thread stacks, source batches in flight, query
# results being built. Measured peak outside SQLite was ~60 MiB; the rest is margin.
RUNTIME_RESERVE_MB = 96
# Room above the snapshot budget for SQLite's own working memory (sorts,
# temp b-trees, statement caches) while queries run.
SQLITE_WORK_MB = 32
THREAD_STACK_BYTES = 2 * MIB
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8


@dataclass(frozen=True)
class MemoryBudget:
    """How much memory the instance may use, and how much of it snapshots may take."""

    limit_mb: int | None

    @property
    def snapshot_bytes(self) -> int | None:
        """Bytes all live snapshots together may hold (None = unlimited)."""
        if self.limit_mb is None:
            return None
        return max(self.limit_mb - RUNTIME_RESERVE_MB, 0) * MIB

    def available_for_new_snapshot(self, retained_bytes: int) -> int | None:
        """Bytes a new snapshot may take while `retained_bytes` are still held."""
        total = self.snapshot_bytes
        return None if total is None else max(total - retained_bytes, 0)


def limit_process(budget: MemoryBudget) -> None:
    """Apply the budget to this process; call before any thread starts."""
    cap_malloc_arenas()
    threading.stack_size(THREAD_STACK_BYTES)
    if budget.limit_mb is None:
        return
    heap_limit = budget.snapshot_bytes + SQLITE_WORK_MB * MIB
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(f"PRAGMA hard_heap_limit = {int(heap_limit)}")
    finally:
        probe.close()
    limit = budget.limit_mb * MIB
    in_use = current_usage().get("VmData", 0) * 1024
    if in_use >= limit:
        # Setting it would fail every allocation at once; the snapshot budget
        # (zero here) already reports cap_exceeded.
        log.warning("memory limit %d MiB is below what the process already uses (%d MiB); "
                    "RLIMIT_DATA not set", budget.limit_mb, in_use // MIB)
        return
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    log.info("memory limit %d MiB (snapshots %d MiB)", budget.limit_mb,
             budget.snapshot_bytes // MIB)


def reader_data_limit_mb(budget: MemoryBudget) -> int | None:
    """RLIMIT_DATA of one reader process: its private memory, never the snapshot.

    Readers map the snapshot file shared and read-only (tmpfs pages counted
    once, in the snapshot budget, and not by RLIMIT_DATA), so each needs the
    runtime reserve and SQLite's working memory only.
    """
    if budget.limit_mb is None:
        return None
    return min(budget.limit_mb, RUNTIME_RESERVE_MB + SQLITE_WORK_MB)


def limit_reader(budget: MemoryBudget) -> None:
    """Apply a reader process's share of the budget; call before any thread starts."""
    cap_malloc_arenas()
    threading.stack_size(THREAD_STACK_BYTES)
    limit_mb = reader_data_limit_mb(budget)
    if limit_mb is None:
        return
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(f"PRAGMA hard_heap_limit = {SQLITE_WORK_MB * MIB}")
    finally:
        probe.close()
    limit = limit_mb * MIB
    in_use = current_usage().get("VmData", 0) * 1024
    if in_use >= limit:
        log.warning("reader memory limit %d MiB is below what the process already uses "
                    "(%d MiB); RLIMIT_DATA not set", limit_mb, in_use // MIB)
        return
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def cap_malloc_arenas() -> None:
    """Limit glibc malloc to a few arenas so threads do not each reserve their own."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def release_free_memory() -> None:
    """Give freed heap pages back to the system (after a snapshot is closed).

    Without it glibc keeps the old snapshot's pages and the process stays at
    two snapshots' worth of RSS between reloads (measured: 178 vs 121 MiB).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.cache
def _libc():
    # The process's own symbols: glibc's malloc functions on Linux, without
    # ctypes.util.find_library (which runs ldconfig in a subprocess).
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def current_usage() -> dict[str, int]:
    """VmRSS, VmData, VmSize and VmHWM of this process, in KiB (Linux)."""
    usage = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmData", "VmSize", "VmHWM"):
                    usage[key] = int(value.split()[0])
    except OSError:
        pass
    return usage


__all__ = ["MemoryBudget", "RUNTIME_RESERVE_MB", "SQLITE_WORK_MB", "current_usage",
           "limit_process", "limit_reader", "reader_data_limit_mb", "release_free_memory"]
