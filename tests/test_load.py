"""The load benchmark in quick mode: concurrent sessions all get complete, correct answers.

Timings are the benchmark's to report (`python bench/load.py` for the full 50 × 5 run); this
test only requires that it runs and that no answer is wrong or missing.
"""

import re
import subprocess
import sys

from .apprunner import ROOT


def test_load_quick_has_no_errors():
    run = subprocess.run([sys.executable, "bench/load.py", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert re.search(r"^errors: 0$", run.stdout, re.MULTILINE), output[-4000:]
    assert "| every answer complete and correct" in run.stdout and "20/20" in run.stdout
