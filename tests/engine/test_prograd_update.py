"""ProGrad's update (``prograd_backward_and_update``): the task gradient loses its component
along the KL gradient only where the two conflict, per tensor, against a hand computation."""

import pytest
import torch
from torch import nn

from dassl.engine.trainer import TrainerBase

LR = 0.5


class TwoTensors(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.v = nn.Parameter(torch.tensor([0.5, -1.0, 3.0]))
        self.frozen = nn.Parameter(torch.tensor([7.0]), requires_grad=False)


def trainer_with(model: nn.Module) -> TrainerBase:
    trainer = TrainerBase()
    trainer.register_model("learner", model, torch.optim.SGD(model.parameters(), lr=LR))
    return trainer


def losses(model: TwoTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """loss_a's gradients: u -> [1, 0], v -> [2, 0, 1]; loss_b's: u -> [-1, -1] (conflicts),
    v -> [0, 1, 1] (does not)."""
    a = model.u @ torch.tensor([1.0, 0.0]) + model.v @ torch.tensor([2.0, 0.0, 1.0])
    b = model.u @ torch.tensor([-1.0, -1.0]) + model.v @ torch.tensor([0.0, 1.0, 1.0])
    return a, b


@pytest.mark.parametrize("lambda_", [1.0, 0.5])
def test_conflicting_gradient_is_projected_and_the_other_kept(lambda_):
    model = TwoTensors()
    u0, v0 = model.u.detach().clone(), model.v.detach().clone()
    trainer_with(model).prograd_backward_and_update(*losses(model), lambda_=lambda_)

    # u: g_a = [1, 0], unit g_b = [-1, -1]/sqrt(2), g_a . unit = -1/sqrt(2) < 0:
    # g = g_a - lambda (g_a . unit) unit = [1, 0] - lambda * [1/2, 1/2].
    g_u = torch.tensor([1.0 - lambda_ / 2, -lambda_ / 2])
    # v: g_a . g_b = 1 > 0: unchanged.
    g_v = torch.tensor([2.0, 0.0, 1.0])
    torch.testing.assert_close(model.u.detach(), u0 - LR * g_u, rtol=0, atol=1e-7)
    torch.testing.assert_close(model.v.detach(), v0 - LR * g_v, rtol=0, atol=1e-7)
    assert model.frozen.item() == 7.0


def test_full_projection_is_orthogonal_to_the_kl_gradient():
    model = TwoTensors()
    u0 = model.u.detach().clone()
    trainer_with(model).prograd_backward_and_update(*losses(model), lambda_=1.0)
    step = (u0 - model.u.detach()) / LR  # the gradient the optimizer applied
    assert torch.dot(step, torch.tensor([-1.0, -1.0])).abs() < 1e-7


def test_tensor_outside_the_kl_loss_keeps_its_task_gradient():
    model = TwoTensors()
    v0 = model.v.detach().clone()
    a = model.v @ torch.tensor([2.0, 0.0, 1.0])
    b = model.u @ torch.tensor([-1.0, -1.0])  # does not reach v
    trainer_with(model).prograd_backward_and_update(a, b)
    torch.testing.assert_close(model.v.detach(), v0 - LR * torch.tensor([2.0, 0.0, 1.0]))


def test_non_finite_kl_loss_stops_before_any_update():
    model = TwoTensors()
    u0 = model.u.detach().clone()
    a, b = losses(model)
    with pytest.raises(FloatingPointError):
        trainer_with(model).prograd_backward_and_update(a, b * float("nan"))
    assert torch.equal(model.u.detach(), u0)
