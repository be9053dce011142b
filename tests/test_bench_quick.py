"""Each benchmark in bench/ still runs: `--quick` exits 0 and prints its table (no timing checks)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ["streaming", "concurrency", "images", "startup_memory", "server", "cog", "hostile", "audience",
              pytest.param("local_model", marks=pytest.mark.skipif(
                  not all(map(importlib.util.find_spec, ("torch", "transformers"))),
                  reason="the local model needs requirements-local.txt"))]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_quick_mode_runs(name):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("== "), result.stdout
    assert "| Target" in result.stdout and ("PASS" in result.stdout or "MISS" in result.stdout
                                            or "n/a" in result.stdout), result.stdout
