"""compute_accuracy: top-k percentages against counts done by hand."""

import pytest
import torch

from dassl.metrics import compute_accuracy


def test_topk_percentages():
    # Rows' class ranking (best first): [2,1,0,3], [0,3,1,2], [3,2,1,0], [1,0,2,3]
    output = torch.tensor(
        [
            [0.1, 0.5, 0.9, 0.0],
            [0.9, 0.2, 0.1, 0.3],
            [0.0, 0.1, 0.2, 0.3],
            [0.3, 0.8, 0.2, 0.1],
        ]
    )
    target = torch.tensor([1, 0, 0, 3])
    # target rank per row: 2nd, 1st, 4th, 4th -> top1 1/4, top2 2/4, top3 2/4, top4 4/4
    top1, top2, top3, top4 = compute_accuracy(output, target, topk=(1, 2, 3, 4))
    assert [top1.item(), top2.item(), top3.item(), top4.item()] == [25.0, 50.0, 50.0, 100.0]
    assert top1.shape == (1,)


def test_default_top1_and_tuple_output():
    output = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    target = torch.tensor([0, 1, 1])
    (acc,) = compute_accuracy(output, target)
    assert acc.item() == pytest.approx(200.0 / 3)
    (acc_tuple,) = compute_accuracy((output, torch.zeros(3)), target)
    assert acc_tuple.item() == acc.item()


def test_topk_larger_than_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="top-5.*only 2 classes"):
        compute_accuracy(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), topk=(1, 5))
