"""The one config builder and the one train.py runner of the tests.

A test states only the keys it is about: ``full_cfg`` gives the config a run builds (upstream
defaults plus every registered extension) with those keys set, ``tiny_run_cfg`` adds the keys of a
small CPU run on the ``TinyImages`` dataset (datasets/synthetic.py), and ``tiny_run_argv`` says the
same as train.py arguments. ``run_train_in_process`` runs train.py's main on such arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode

import datasets.synthetic  # noqa: F401  (registers TinyImages)
import train
from dassl.config import extend_cfg, get_cfg_default
from dassl.utils.logger import close_logger

from .tiny_clip import TINY_INPUT_SIZE

# What every tiny run sets: the tiny dataset at the tiny CLIP's input size, on the CPU, in-process
# data loading.
TINY_RUN: dict[str, Any] = {
    "DATASET.NAME": "TinyImages",
    "INPUT.SIZE": (TINY_INPUT_SIZE, TINY_INPUT_SIZE),
    "DATALOADER.NUM_WORKERS": 0,
    "USE_CUDA": False,
}


def full_cfg(keys: Mapping[str, Any] | None = None) -> CfgNode:
    """Upstream defaults plus the registered extensions (as train.py builds them), with ``keys``
    (full key -> value) set; unfrozen."""
    cfg = extend_cfg(get_cfg_default())
    for key, value in (keys or {}).items():
        cfg.merge_from_list([key, value])
    return cfg


def tiny_run_cfg(keys: Mapping[str, Any] | None = None) -> CfgNode:
    """``full_cfg`` of a tiny CPU run (``TINY_RUN``), ``keys`` overriding."""
    return full_cfg({**TINY_RUN, **(keys or {})})


def tiny_run_argv(
    trainer: str,
    root: str | Path,
    output_dir: str | Path,
    keys: Mapping[str, Any] | None = None,
    flags: Sequence[str] = (),
    seed: int = 1,
) -> list[str]:
    """train.py arguments of a tiny CPU run (``TINY_RUN``, ``keys`` overriding, as trailing
    KEY VALUE pairs) after ``flags`` such as ``--eval-only``."""
    argv = [*flags, "--root", str(root), "--seed", str(seed), "--trainer", trainer]
    argv += ["--output-dir", str(output_dir)]
    for key, value in {**TINY_RUN, **(keys or {})}.items():
        argv += [key, str(value)]
    return argv


def run_train_in_process(argv: list[str]) -> str:
    """train.main in this process, on one thread like the subprocesses; returns its log text."""
    args = train.build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(args, argv)
    finally:
        torch.set_num_threads(threads)
        close_logger()
    output_dir = Path(args.output_dir)
    newest_log = max(output_dir.glob("log.txt*"), key=lambda p: p.stat().st_mtime_ns)
    return newest_log.read_text()
