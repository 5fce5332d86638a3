"""Shared checks of heads fitted from the train features (GDA's class means, LP++'s prototypes)."""

import torch


def require_every_class(
    labels: torch.Tensor, classnames: list[str], method: str, because: str
) -> torch.Tensor:
    """The train feature count of each class [K]; a class without any is an error naming the
    classes, since the method's per-class estimate (``because``) would be undefined."""
    counts = torch.bincount(labels.cpu(), minlength=len(classnames))  # [K]
    empty = [classnames[k] for k in torch.nonzero(counts == 0).flatten().tolist()]
    if empty:
        raise ValueError(
            f"{method} {because}, and {len(empty)} of {len(classnames)} classes have no train "
            f"image: {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}. Fix: use a "
            "dataset split in which every class has train images (check DATASET.NUM_SHOTS and "
            "the split file)."
        )
    return counts
