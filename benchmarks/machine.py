"""What a benchmark ran on, for its JSON: the figures of a noisy 2-core machine mean little without it."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata as md
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def package_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def meminfo_gb(key: str) -> float | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        text = Path("/proc/meminfo").read_text()
        return round(int(text.split(key + ":")[1].split()[0]) / 1024**2, 1)
    return None


def describe(packages: Iterable[str]) -> dict[str, Any]:
    """Date, CPUs (count, this process's affinity, model), platform, Python, the packages' versions, the load
    average at the start and the memory."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in packages},
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "mem_total_gb": meminfo_gb("MemTotal"),
    }
