"""setup_logger tees output to a log that is never overwritten; meters average correctly."""

import sys
from pathlib import Path

import pytest
import torch

from dassl.utils import AverageMeter, MetricMeter, setup_logger
from dassl.utils.logger import close_logger


def test_log_is_written_and_never_overwritten(tmp_path: Path) -> None:
    console = sys.stdout
    first = setup_logger(str(tmp_path))
    print("first run")
    second = setup_logger(str(tmp_path))
    print("second run")
    third = setup_logger(str(tmp_path))
    print("third run")
    close_logger()
    assert sys.stdout is console

    assert first == str(tmp_path / "log.txt")
    assert second.startswith(str(tmp_path / "log.txt-")) and third not in (first, second)
    # Each run's lines land in its own file only (earlier tees are unhooked, not stacked).
    assert Path(first).read_text() == "first run\n"
    assert Path(second).read_text() == "second run\n"
    assert Path(third).read_text() == "third run\n"


def test_stderr_progress_bars_keep_only_their_final_state(tmp_path: Path) -> None:
    log = setup_logger(str(tmp_path / "run.log"))
    sys.stderr.write("  0%|   | 0/2\r 50%|#  | 1/2\r100%|## | 2/2")
    sys.stderr.write("\n")
    sys.stderr.write("Traceback line\n")
    close_logger()
    assert Path(log).read_text() == "100%|## | 2/2\nTraceback line\n"


def test_average_and_metric_meters() -> None:
    meter = AverageMeter()
    meter.update(torch.tensor(2.0), n=3)
    meter.update(6.0)
    assert (meter.val, meter.avg, meter.count) == (6.0, 3.0, 4)

    metrics = MetricMeter()
    metrics.update({"loss": 1.0, "acc": torch.tensor(50.0)})
    metrics.update({"loss": 3.0, "acc": 100.0})
    assert str(metrics) == "loss 3.0000 (2.0000)\tacc 100.0000 (75.0000)"
    with pytest.raises(TypeError, match="dict"):
        metrics.update(1.0)
