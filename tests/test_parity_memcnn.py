"""Parity of debench's RevNet coupling with ``memcnn`` (van de Leemput et al., PyPI 1.5.2), float64.

``memcnn.AdditiveCoupling(Fm, Gm)`` computes ``y1 = x1 + Fm(x2)``, ``y2 = x2 + Gm(y1)`` on the
channel halves of ``x`` and ``memcnn.InvertibleModuleWrapper(keep_input=False)`` gives it the
memory-saving backward that rebuilds inputs from outputs (memcnn/models/additive.py, revop.py).
The stages of debench's own registered RevNets are rebuilt as chains of memcnn couplings with
the same residual functions (deep copies), and outputs, input gradients, parameter gradients and
inverses are compared.
"""

import copy

import pytest
import torch
import torch.nn as nn

from debench.models.discrete.reversible import ReversibleSequence
from debench.registry import create_model

memcnn = pytest.importorskip("memcnn")

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")]


def memcnn_chain(seq: ReversibleSequence, keep_input: bool) -> nn.Sequential:
    """memcnn couplings with copies of the (F, G) pairs of ``seq``'s shears."""
    s = list(seq.shears)
    assert len(s) % 2 == 0 and all(a.target == 0 and b.target == 1 for a, b in zip(s[::2], s[1::2]))
    return nn.Sequential(*(memcnn.InvertibleModuleWrapper(
        memcnn.AdditiveCoupling(copy.deepcopy(f.phi), copy.deepcopy(g.phi)), keep_input=keep_input,
        keep_input_inverse=keep_input) for f, g in zip(s[::2], s[1::2])))


def coupling_params(chain: nn.Sequential) -> list[nn.Parameter]:
    """F's then G's parameters per coupling (AdditiveCoupling registers Gm before Fm)."""
    return [p for block in chain for m in (block._fn.Fm, block._fn.Gm) for p in m.parameters()]


def grads(fn, params, x: torch.Tensor):
    """Output and gradients of a fixed loss; ``.backward()`` because memcnn refuses ``autograd.grad``."""
    x = x.clone().requires_grad_()
    for p in params:
        p.grad = None
    # a non-leaf input: memcnn's wrapper also writes ``.grad`` of its input by hand, which
    # doubles the gradient of a leaf fed to it directly (memcnn/models/revop.py, backward)
    y = fn(x * 1.0)
    weight = torch.linspace(-1, 1, y.shape[1], dtype=y.dtype).view(1, -1, 1, 1)
    ((y.tanh() * weight).sum() + y.pow(2).mean()).backward()
    return y.detach().clone(), [x.grad] + [torch.zeros_like(p) if p.grad is None else p.grad for p in params]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> bool:
    return float((a - b).abs().max()) <= tol * max(float(b.abs().max()), 1e-6)


def reversible_stages(depth: int):
    torch.manual_seed(depth)
    model = create_model(f"revnet{depth}", num_classes=10, invertible=True).double()
    return [stage[-1] for stage in model.stages]


@pytest.mark.parametrize("depth", [38, 164])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_revnet_stage_matches_memcnn_couplings(depth, mode):
    for seq in reversible_stages(depth):
        ref = memcnn_chain(seq, keep_input=False)
        getattr(seq, mode)(), getattr(ref, mode)()
        c = seq.shears[0].phi[-1].out_channels
        x = torch.randn(2, 2 * c, 4, 4, dtype=torch.float64)
        ours = grads(lambda t: torch.cat(seq(*torch.chunk(t, 2, dim=1)), dim=1), list(seq.parameters()), x)
        theirs = grads(ref, coupling_params(ref), x)
        assert close(ours[0], theirs[0])
        assert len(ours[1]) == len(theirs[1])
        for a, b in zip(ours[1], theirs[1]):
            assert close(a, b, 1e-9)


@pytest.mark.parametrize("depth", [38, 110])
def test_revnet_stage_inverse_matches_memcnn_inverse(depth):
    for seq in reversible_stages(depth):
        seq.eval()
        ref = memcnn_chain(seq, keep_input=True).eval()
        c = seq.shears[0].phi[-1].out_channels
        y = torch.randn(2, 2 * c, 4, 4, dtype=torch.float64)
        with torch.no_grad():
            ours = torch.cat(seq.inverse(*torch.chunk(y, 2, dim=1)), dim=1)
            theirs = y
            for block in reversed(ref):
                theirs = block.inverse(theirs)
        assert close(ours, theirs)
