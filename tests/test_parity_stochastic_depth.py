"""Stochastic-depth semantics against ``torchvision.ops.StochasticDepth`` (float64).

torchvision drops the branch with probability ``p`` (one coin per batch with ``mode="batch"``,
Huang et al.'s rule) and scales a kept branch by ``1 / (1 - p)`` during training, identity at test
time ("inverted" scaling, torchvision/ops/stochastic_depth.py). Huang et al. keep the branch
unscaled during training and multiply it by the survival probability ``p_l`` at test time
(Sec. 3, "Test-time"). The two are the same model under the reparametrization
``f_torchvision = p_l f_debench``: scaling the last BatchNorm's affine parameters of every branch by
``p_l`` maps one onto the other. These tests check that, so debench's test-time network is exactly
the network torchvision's convention would evaluate, and that training draws take the same values
with the survival frequency ``p_l``.
"""

import copy
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.stochastic.depth import StochasticDepthBlock, linear_survival
from debench.registry import create_model

StochasticDepth = pytest.importorskip("torchvision.ops").StochasticDepth

pytestmark = pytest.mark.usefixtures("one_thread")


class TorchvisionBlock(nn.Module):
    """``relu(shortcut(x) + StochasticDepth(1 - p)(p f(x)))``: the block in torchvision's convention."""

    def __init__(self, block: StochasticDepthBlock):
        super().__init__()
        self.shortcut, self.branch = block.shortcut, copy.deepcopy(block.branch)
        last_bn = [m for m in self.branch.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        with torch.no_grad():
            last_bn.weight.mul_(block.survival), last_bn.bias.mul_(block.survival)
        self.drop = StochasticDepth(1.0 - block.survival, mode="batch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.drop(self.branch(x)))


def torchvision_twin(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    twin.blocks = nn.Sequential(*(TorchvisionBlock(b) for b in model.blocks))
    return twin


def briefly_trained(depth: int) -> nn.Module:
    """A registered stochastic-depth net whose BN statistics are not the initial ones."""
    torch.manual_seed(depth)
    model = create_model(f"stochastic_depth_resnet{depth}", num_classes=10).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("depth", [20, 56])
def test_test_time_network_equals_torchvision_convention(depth):
    model = briefly_trained(depth).eval()
    twin = torchvision_twin(model).eval()
    survivals = [b.survival for b in model.blocks]
    assert survivals == pytest.approx([linear_survival(i, len(survivals), 0.5) for i in range(len(survivals))])
    assert survivals[-1] == pytest.approx(0.5) and survivals[0] < 1.0
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        out, ref = model(x), twin(x)
    assert (out - ref).abs().max() <= 1e-12 * ref.abs().max()
    # without the test-time scaling the two differ: the comparison can fail
    unscaled = copy.deepcopy(model)
    for b in unscaled.blocks:
        b.survival = 1.0
    with torch.no_grad():
        assert (unscaled(x) - ref).abs().max() > 1e-3 * ref.abs().max()


def test_training_draws_take_the_same_values_with_the_survival_frequency():
    torch.manual_seed(0), random.seed(0)  # debench draws its coin with Python's RNG
    block = briefly_trained(20).blocks[8].train()  # last block: survival p_L = 0.5
    twin = TorchvisionBlock(block).train()
    x = torch.randn(4, 64, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        dropped, kept = F.relu(block.shortcut(x)), F.relu(block.shortcut(x) + block.branch(x))
        n, counts = 400, []
        for module in (block, twin):
            keeps = 0
            for _ in range(n):
                y = module(x)
                is_kept = (y - kept).abs().max() < 1e-12
                assert is_kept or (y - dropped).abs().max() < 1e-12
                keeps += int(is_kept)
            counts.append(keeps)
    # Binomial(400, 0.5): 5 standard deviations is 50
    for keeps in counts:
        assert abs(keeps - n * block.survival) < 50
