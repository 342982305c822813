"""Host memory: can the splits an epoch reads stay in the page cache?

A training epoch reads the whole training and validation splits through memory maps. Where they fit in the
memory the job may use, every epoch after the first reads from the page cache; where they do not (the real
archive's 59 GiB on a smaller node or under a smaller cgroup limit), every epoch reads them from disk again. That
is slow, not wrong, so it is a warning at the start of training. Linux only; elsewhere nothing is checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: cgroup v1 and v2 write "no limit" as a huge number or "max".
NO_LIMIT = 2**60


def _kib_field(path: Path, key: str) -> int | None:
    """The ``key:  <n> kB`` line of a /proc file, in bytes."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in bytes: free memory plus the page cache the kernel could reclaim."""
    return _kib_field(meminfo, "MemAvailable")


def cgroup_limit(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``), if any.

    The page cache a job's reads fill is charged to its cgroup, so a SLURM job's ``--mem`` bounds it too.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidate = root / path.lstrip("/") / "memory.max"
        elif "memory" in controllers.split(","):
            candidate = root / "memory" / path.lstrip("/") / "memory.limit_in_bytes"
        else:
            continue
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text != "max" and int(text) < NO_LIMIT:
            limits.append(int(text))
    return min(limits) if limits else None


def anonymous_bytes(status: Path = Path("/proc/self/status")) -> int:
    """This process's own resident memory (``RssAnon``): what a cgroup limit leaves less of for the cache."""
    return _kib_field(status, "RssAnon") or 0


def page_cache_budget() -> int | None:
    """Bytes of file data this job can keep cached: MemAvailable, or less where a cgroup limit (minus the
    process's own memory) is smaller."""
    limit = cgroup_limit()
    known = [value for value in (meminfo_available(), limit and limit - anonymous_bytes()) if value is not None]
    return min(known) if known else None


def warn_if_uncached(split_bytes: dict[str, int], budget: int | None = None) -> bool:
    """Log a warning (and return True) when the splits an epoch reads exceed ``budget`` (default: measured)."""
    budget = page_cache_budget() if budget is None else budget
    total = sum(split_bytes.values())
    if budget is None or total <= budget:
        return False
    sizes = ", ".join(f"{split} {nbytes / 2**30:.1f} GiB" for split, nbytes in split_bytes.items())
    log.warning("the encoded splits (%s) exceed the memory this job can keep in the page cache (%.1f GiB: "
                "MemAvailable, or the cgroup limit less the job's own memory): every epoch reads %.1f GiB from "
                "disk again. Give the job more memory (training.mem_mb) or expect disk-bound epochs", sizes,
                budget / 2**30, total / 2**30)  # fmt: skip
    return True
