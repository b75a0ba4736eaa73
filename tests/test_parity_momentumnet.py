"""Parity of debench's Momentum ResNets with ``momentumnet``, Sander et al.'s own package (float64).

The package (PyPI ``momentumnet`` 0.10, github.com/michaelsdr/momentumnet) is independent code:
``momentumnet.models.mResNet18`` is the authors' CIFAR ResNet-18 whose stages are one plain
block followed by ``MomentumNet`` over branch-only blocks (``MBasicBlock``), and ``MomentumNet``
iterates ``v = gamma v + (1 - gamma) f(x)``, ``x = x + v`` from ``v = 0``. Weights are copied in
registration order (both nets register stem, stages, head in the same order; shapes are checked).

Its memory-saving backward (``use_backprop=False``) keeps ``v`` in a fixed-point
``TorchExactRep`` whose ``val`` is cast to float32 (momentumnet/exact_rep_pytorch.py), so that
path agrees with exact float64 arithmetic only to float32 precision; the comparison with it uses
a float32 tolerance for that reason, and the float64 comparison is against its plain-autograd
path.
"""

import copy

import pytest
import torch
import torch.nn as nn

from debench.models.discrete.momentum import MomentumStage
from debench.registry import create_model

momentumnet = pytest.importorskip("momentumnet")
from momentumnet import MomentumNet  # noqa: E402
from momentumnet.models import mResNet18  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def copy_state(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers of ``src`` into ``dst`` by registration order."""
    s, d = list(src.state_dict().values()), dst.state_dict()
    assert len(s) == len(d), f"{len(s)} tensors vs {len(d)}"
    for (k, t), v in zip(d.items(), s):
        assert t.shape == v.shape, f"{k}: {tuple(t.shape)} vs {tuple(v.shape)}"
        t.copy_(v)


def loss_and_grads(model: nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_()
    out = model(x)
    weight = torch.arange(out.shape[1], dtype=out.dtype).view(1, -1, *[1] * (out.dim() - 2))
    loss = (out.sin() * weight).sum()
    return out.detach(), torch.autograd.grad(loss, [x, *model.parameters()])


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest entry; entries that are analytically zero
    (rounding noise of 1e-16) are compared on the absolute scale."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))


@pytest.fixture(scope="module")
def resnet18_pair():
    torch.manual_seed(0)
    ours = create_model("momentum_resnet18", num_classes=10).double()
    theirs = mResNet18(num_classes=10, use_backprop=True).double()
    copy_state(ours, theirs)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    return ours, theirs, x


@pytest.mark.parametrize("invertible", [False, True])
def test_momentum_resnet18_matches_authors_mresnet18(resnet18_pair, invertible):
    ours, theirs, x = (copy.deepcopy(m) for m in resnet18_pair)  # train steps move BN statistics
    for stage in ours.stages:
        stage.steps.invertible = invertible
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        out1, g1 = loss_and_grads(ours, x)
        out2, g2 = loss_and_grads(theirs, x)
        assert max_rel(out1, out2) < 1e-10, mode
        assert len(g1) == len(g2)
        for a, b in zip(g1, g2):
            assert max_rel(a, b) < 1e-9, mode


def test_memory_saving_backward_matches_authors_memory_saving_backward(resnet18_pair):
    ours, theirs, x = (copy.deepcopy(m) for m in resnet18_pair)
    for stage in ours.stages:
        stage.steps.invertible = True
    saving = mResNet18(num_classes=10, use_backprop=False).double()
    copy_state(theirs, saving)
    out1, g1 = loss_and_grads(ours, x)
    out2, g2 = loss_and_grads(saving, x)
    # float32 tolerance: the package's exact representation of v is read back as float32.
    assert max_rel(out1, out2) < 1e-5
    for a, b in zip(g1, g2):
        assert max_rel(a, b) < 1e-4


@pytest.mark.parametrize("depth", [20, 32])
def test_cifar_momentum_stage_matches_momentumnet(depth):
    """Each stage of the option-A CIFAR nets is ``first block, MomentumNet(branches)``."""
    torch.manual_seed(depth)
    model = create_model(f"momentum_resnet{depth}", num_classes=10, invertible=True).double()
    x = torch.randn(3, 16, 8, 8, dtype=torch.float64)
    for stage in model.stages:
        assert isinstance(stage, MomentumStage)
        branches = [copy.deepcopy(s.phi) for s in stage.steps.shears if s.phi is not None]
        ref = nn.Sequential(copy.deepcopy(stage.first), MomentumNet(branches, gamma=0.9, use_backprop=True))
        out1, g1 = loss_and_grads(stage, x)
        out2, g2 = loss_and_grads(ref, x)
        assert max_rel(out1, out2) < 1e-10
        for a, b in zip(g1, g2):
            assert max_rel(a, b) < 1e-9
        x = out1
