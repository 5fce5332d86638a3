"""benchmarks/gpu_check.sh, the prepared GPU check: its CPU mode runs every step with tiny sizes,
and the device command written in benchmarks/README.md fits the device tool's limit."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[2]
FIGURE_LINES = [
    r"^fp32 +test accuracy per seed [\d., ]+; mean [\d.]+%",
    r"^INFO amp accuracy vs fp32 .*points",
    r"^PASS TaskRes fp16 10 epochs on 2 shots finite: 10 steps",
    r"^PASS CoOp fp16 4 epochs on 2 shots finite: 4 steps",
    r"^loader  workers  2 decode-once on  +[\d.]+ images/s",
    r"^encoder tiny ViT alone, batch 8: images/s fp32 [\d.]+, fp16 [\d.]+, amp [\d.]+",
    r"^epoch   tiny RN TaskRes exact fp16, 2 workers: .* [\d.]+ images/s",
    r"^bound   tiny ViT: the (loader|encoder) ",
    r"^store   tiny RN encoding pass .*: 12 encoded, 0 from the store",
    r"^store   tiny RN read back .*: 0 encoded, 12 from the store",
    r"^memory  CoOp PREC fp16, batch 4: RSS after the steps \d+ MiB",
    r"^PASS set-up: imports",
    r"^CPU mode: collected only \(\d+ tests collected",
]


@pytest.mark.slow
def test_cpu_mode_runs_every_step_and_reports_every_figure(tmp_path: Path) -> None:
    no_wheels = tmp_path / "no_wheels"
    no_wheels.mkdir()
    env = {**os.environ, "GPU_CHECK_WHEELS": str(no_wheels)}
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--cpu", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    results = (out / "gpu_check.txt").read_text()
    assert run.returncode == 0, results + run.stderr[-3000:]
    for pattern in FIGURE_LINES:
        assert re.search(pattern, results, re.MULTILINE), pattern
    assert "ERROR" not in results and "FAIL" not in results
    assert "Evaluate on the *test* set" in (out / "gpu_check.log").read_text()
    assert results.rstrip().endswith("all passed")


def test_a_failed_check_and_a_crashed_section_are_reported_and_later_sections_run(
    tmp_path: Path,
) -> None:
    log = io.StringIO()
    report = gpu_check.Report(tmp_path / "results.txt", log)
    with report.section("first"):
        report.check("a gap", False, "+2.00 points")
        raise RuntimeError("CUDA error: out of memory")
    with report.section("second"):
        report.check("finite", True, "no NaN")
    text = (tmp_path / "results.txt").read_text()
    assert "FAIL a gap: +2.00 points" in text
    assert "ERROR first: RuntimeError: CUDA error: out of memory (traceback in log)" in text
    assert "PASS finite: no NaN" in text and "== second" in text
    assert report.failed == ["a gap", "first"]
    assert "Traceback" in log.getvalue()


def test_the_device_command_in_the_readme_fits_the_device_limit() -> None:
    readme = (REPO / "benchmarks" / "README.md").read_text()
    command = re.search(r"<!-- device command -->\n```bash\n(.*?)\n```", readme, re.S).group(1)
    assert "benchmarks/gpu_check.sh" in command
    assert len(command) <= 2000
