"""build_sampler: the DATALOADER.*.SAMPLER names this engine implements."""

from collections.abc import Sized

from torch.utils.data import RandomSampler, Sampler, SequentialSampler
from yacs.config import CfgNode

AVAI_SAMPLERS = ["RandomSampler", "SequentialSampler"]
# Upstream samplers for multi-domain / class-balanced batches, which few-shot CLIP methods
# do not use and this lean engine leaves out.
UNSUPPORTED_SAMPLERS = ["RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler"]


def build_sampler(
    sampler_type: str,
    cfg: CfgNode | None = None,
    data_source: Sized | None = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler:
    """Upstream's signature; ``batch_size``, ``n_domain`` and ``n_ins`` only matter to the
    domain/class samplers, which are not supported here."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type in UNSUPPORTED_SAMPLERS:
        raise ValueError(
            f'Sampler "{sampler_type}" is not supported by this engine; set '
            f"DATALOADER.TRAIN_X.SAMPLER / TRAIN_U.SAMPLER / TEST.SAMPLER to one of "
            f"{AVAI_SAMPLERS}"
        )
    raise ValueError(f'Unknown sampler "{sampler_type}"; choose one of {AVAI_SAMPLERS}')
