"""The in-process benchmark (`benchmarks/floor.py`) at CI size: it runs and every variant answers 200; never speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FLOOR = Path(__file__).resolve().parent.parent / "benchmarks" / "floor.py"


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_floor_benchmark_reports_every_variant_and_the_reachable_ratio(clock: str) -> None:
    done = subprocess.run(  # noqa: S603 -- a fixed command: this Python on our own script
        [sys.executable, str(FLOOR), "--rounds", "1", "--number", "20", "--clock", clock],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # a variant that answered anything but 200 raises
    assert done.stdout.startswith(f"clock: {clock}\n")
    for variant in ("open", "floor", "function", "library", "body", "forge", "forge_body", "container"):
        assert f"open / {variant}" in done.stdout
    assert "over the no-op dependency: ConnectRequest(body=Webhook) " in done.stdout
    assert "ForgeRequest() " in done.stdout
    assert "ForgeContainerRequest() (cached context) " in done.stdout
    assert "the RSA check alone " in done.stdout
    assert "the most any dependency can reach:" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].endswith(" us")  # the closing line other checks read
