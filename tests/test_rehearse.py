"""The rehearsal's command line: bad ``--gpu-rates`` stop before any work, naming what to give."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("rates", "expected"), [
    ("bogus=3", "no stage bogus; the stages are decode, linear_probe, lora, full, extract"),
    ("full", "give stage=images/s pairs"),
    ("full=fast", "give stage=images/s pairs"),
])
def test_bad_gpu_rates_are_a_usage_error(rates, expected, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rehearse.py"), "--gpu-rates", rates,
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and expected in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was run
