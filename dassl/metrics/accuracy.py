"""Top-k accuracy of a batch of logits, in percent (upstream Dassl's compute_accuracy)."""

import torch


def compute_accuracy(
    output: torch.Tensor | tuple | list, target: torch.Tensor, topk: tuple[int, ...] = (1,)
) -> list[torch.Tensor]:
    """One 1-element tensor per k: the percentage of rows whose target is among the k highest
    scores. ``output`` is (batch, num_classes) logits, or a tuple/list whose first item is."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    if maxk > output.size(1):
        raise ValueError(
            f"compute_accuracy: top-{maxk} asked for, but the output has only "
            f"{output.size(1)} classes; lower topk"
        )
    batch_size = target.size(0)
    _, pred = output.topk(maxk, dim=1, largest=True, sorted=True)  # (batch, maxk)
    pred = pred.t()  # (maxk, batch)
    correct = pred.eq(target.view(1, -1).expand_as(pred))  # (maxk, batch)
    return [
        correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk
    ]
