"""The container memory benchmark (`benchmarks/container_memory.py`) at CI size: its output's shape, never its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "container_memory.py"


def test_container_memory_benchmark_reports_each_point_and_a_profile() -> None:
    done = subprocess.run(  # noqa: S603 -- a fixed command: this Python on our own script
        [sys.executable, str(SCRIPT), "--requests", "200", "--concurrency", "4", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # it exits non-zero on any unexpected answer, or when stored events differ from the distinct ones sent
    assert done.returncode == 0, done.stderr
    lines = done.stdout.rstrip().splitlines()
    assert (
        lines[0] == "200 requests per run (80 whoami, 60 distinct events, 20 retried events, 40 healthz), concurrency 4"
    )
    assert re.fullmatch(
        r"run 1: RSS/peak MiB  started [\d.]+/[\d.]+  after 100 [\d.]+/[\d.]+  after 200 [\d.]+/[\d.]+  \([\d.]+ s\)",
        lines[1],
    )
    assert "| median of 1 run(s) | VmRSS MiB | VmHWM MiB |" in lines
    for point in ("started", "after 100", "after 200"):
        assert any(re.fullmatch(rf"\| {point} \| [\d.]+ \| [\d.]+ \|", line) for line in lines)
    assert re.fullmatch(
        r"after 200 requests: RSS [\d.]+ MiB, peak [\d.]+ MiB; "
        r"smallest memory setting with the peak at most 60% of it: \d+(Mi|Gi)",
        lines[-1],
    )


def test_container_memory_benchmark_refuses_sizes_it_cannot_run() -> None:
    done = subprocess.run(  # noqa: S603 -- a fixed command: this Python on our own script
        [sys.executable, str(SCRIPT), "--requests", "1"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "--requests must be at least 2" in done.stderr
