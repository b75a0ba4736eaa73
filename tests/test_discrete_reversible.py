"""Reversible and momentum models: exact reconstruction and memory-saving gradients (float64)."""

import copy

import pytest
import torch
import torch.nn as nn

from debench.models.discrete import units
from debench.models.discrete.reversible import ReversibleSequence
from debench.registry import create_model
from debench.train.measure import training_step_activation_bytes


pytestmark = pytest.mark.usefixtures("one_thread")


def phi(c=4):
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))


BUILDERS = {
    "revnet": lambda: units.revnet_unit(phi(), phi()),
    "verlet": lambda: units.verlet_unit(phi(), phi(), 0.5),
    "leapfrog": lambda: units.leapfrog_unit(phi(), 0.5) + units.leapfrog_unit(phi(), 0.5),
    "midpoint": lambda: units.midpoint_unit(phi(), 0.5) + units.midpoint_unit(phi(), 0.5),
    "momentum": lambda: units.momentum_unit(phi(), 0.9) + units.momentum_unit(phi(), 0.9),
}


def pair():
    return (torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_inverse_reconstructs_inputs(name):
    torch.manual_seed(0)
    seq = ReversibleSequence(BUILDERS[name]() * 3).double()
    a, b = pair()
    with torch.no_grad():
        ya, yb = seq(a, b)
        ra, rb = seq.inverse(ya, yb)
    assert (ra - a).abs().max() < 1e-10 and (rb - b).abs().max() < 1e-10


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_memory_saving_gradients_equal_autograd(name):
    torch.manual_seed(0)
    fast = ReversibleSequence(BUILDERS[name]() * 2, invertible=True).double()
    plain = copy.deepcopy(fast)
    plain.invertible = False
    a, b = pair()
    grads = []
    for seq in (fast, plain):
        ya, yb = seq(a, b)
        loss = (ya.sin() * yb).sum() + ya.pow(2).mean()
        grads.append(torch.autograd.grad(loss, [a, b, *seq.parameters()]))
    for g1, g2 in zip(*grads):
        assert (g1 - g2).abs().max() < 1e-8
    # BN statistics are updated once per forward, not again by the reconstruction
    for m1, m2 in zip(fast.modules(), plain.modules()):
        if isinstance(m1, nn.BatchNorm2d):
            assert torch.allclose(m1.running_mean, m2.running_mean) and m1.num_batches_tracked == m2.num_batches_tracked


@pytest.mark.parametrize("name", ["revnet38", "hamiltonian38", "midpoint38", "leapfrog38", "momentum_resnet20"])
def test_whole_model_gradients_equal_autograd(name):
    torch.manual_seed(0)
    fast = create_model(name, invertible=True).double()
    plain = create_model(name, invertible=False).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    grads = []
    for model in (fast, plain):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 3]))
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    worst = max((g1 - g2).abs().max().item() for g1, g2 in zip(*grads))
    assert worst < 1e-8


@pytest.mark.parametrize("name", ["revnet38", "momentum_resnet20"])
def test_memory_saving_backward_stores_less(name):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    sizes = [training_step_activation_bytes(create_model(name, invertible=inv), x, lambda out: out.sum())
             for inv in (True, False)]
    assert sizes[0] < 0.6 * sizes[1], sizes
