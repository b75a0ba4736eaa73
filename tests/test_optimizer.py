"""The optimizer every run and measurement uses (debench.train.build.make_optimizer)."""

from __future__ import annotations

import pytest
import torch

from debench.registry import create_model
from debench.train.build import make_optimizer
from debench.train.protocol import Protocol


class _LateBlock(torch.nn.Module):
    """Two blocks; the second gets no gradient in the first step (a dropped residual block)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x, drop_b: bool):
        return self.a(x) if drop_b else self.b(self.a(x))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_sgd_steps_when_a_parameter_first_gets_a_gradient_later(device):
    # make_optimizer's choice of kernels depends on device.type only; the parameters stay on the
    # CPU, where torch's fused SGD behaves as on CUDA: it raised TypeError ("expected Tensor as
    # element 1 in argument 2, but got NoneType") here, as for stochastic depth on an H200
    model = _LateBlock()
    opt = make_optimizer(model, Protocol.from_dict({"epochs": 1, "momentum": 0.9, "weight_decay": 1e-4}),
                         torch.device(device))
    x = torch.ones(2, 4)
    for drop_b in (True, False, True, False):
        model(x, drop_b).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert all(opt.state[q]["momentum_buffer"] is not None for q in model.b.parameters())


def test_stochastic_depth_trains_with_the_cuda_optimizer_settings():
    torch.manual_seed(0)
    model = create_model("stochastic_depth_resnet56", num_classes=10)
    opt = make_optimizer(model, Protocol.from_dict({"epochs": 1}), torch.device("cuda"))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    for _ in range(3):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert all(torch.isfinite(q).all() for q in model.parameters())
