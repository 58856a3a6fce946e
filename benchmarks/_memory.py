"""Process memory readings shared by the benchmarks (each configuration runs in a fresh process)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_gb() -> float:
    """High-water mark of this process's resident memory (GB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2  # bytes on macOS, KiB on Linux


def rss_gb() -> float:
    """Current resident memory (GB) from /proc; the high-water mark where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return peak_rss_gb()
