"""Utilities under upstream Dassl's names (``from dassl.utils import setup_logger, ...``)."""

from .logger import setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry
from .safe_pickle import UnsafePickleError, load_pickle, save_pickle
from .tools import (
    ImageReadError,
    atomic_write,
    check_availability,
    check_isfile,
    close_matches,
    collect_env_info,
    did_you_mean,
    get_most_similar_str_to_a_from_b,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    tolist_if_not,
    write_json,
)

# Every name of torchtools.__all__, under upstream's import path (``from dassl.utils import
# save_checkpoint``); the list lives once, in torchtools.
from .torchtools import *  # noqa: F403
