"""The authors' LM-ResNet, ``mresnet<depth>`` (issue 27, point 5).

Source: 2prime/LM-ResNet@ff49654 ``MResNet.py`` (``MResNet``, ``BasicBlock``, ``Downsample``)
and ``cifar10_training.ipynb`` (``MResNet20()``, SGD lr 1e-3, ``pretrain`` left True).
"""

import pytest
import torch

from debench.registry import create_model
from debench.train.measure import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mresnet20_count_by_hand_from_mresnet_py():
    """MResNet(BasicBlock, [3, 3, 3], num_classes=10) allocates: stem conv 432 + (unused) BN 32;
    9 ks; stage 1: 3 x (32 + 2,304 + 32 + 2,304) = 14,016; stage 2: 13,920 + 2 x 18,560 = 51,040;
    stage 3: 55,488 + 2 x 73,984 = 203,456; downsample1 (unused with basic blocks) 1,056,
    downsample21 544, downsample31 2,112; final BN 128; fc 650: 273,475. debench does not allocate
    the unused stem BN (32), downsample1 (1,056) and the ks of block 0 and the transitions (3)."""
    authors = 432 + 32 + 9 + 14_016 + 51_040 + 203_456 + 1_056 + 544 + 2_112 + 128 + 650
    assert authors == 273_475
    assert count_parameters(create_model("mresnet20")) == authors - 32 - 1_056 - 3 == 272_384
    assert count_parameters(create_model("lm_resnet20")) != 272_384  # our post-activation variant


def states(model, x):
    """Input of every block (u_i) and every block's residual output f_i(u_i)."""
    ins, outs = [], []
    hooks = [b.register_forward_pre_hook(lambda m, a: ins.append(a[0].detach())) for b in model.blocks]
    hooks += [b.register_forward_hook(lambda m, a, o: outs.append(o.detach())) for b in model.blocks]
    model(x)
    for h in hooks:
        h.remove()
    return ins, outs


@pytest.mark.parametrize("lm", [True, False])
def test_updates_follow_mresnet_forward(lm):
    """MResNet.forward: u_1 = f_0(u_0) + u_0; at a transition u_{i+1} = f_i(u_i) + P(u_i) and the
    next block's u_{i-1} is P(u_i); elsewhere u_{i+1} = f_i(u_i) + k u_i + (1 - k) u_{i-1}
    (``pretrain=False``) or f_i(u_i) + u_i (``pretrain=True``)."""
    torch.manual_seed(0)
    model = create_model("mresnet20", lm=lm).double().eval()
    with torch.no_grad():
        for i, k in enumerate(model.ks):
            k.fill_(0.3 + 0.4 * i)  # far from 1, so a missing LM term shows
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    ins, outs = states(model, x)
    assert len(ins) == 9 and sorted(model.projections) == ["3", "6"]
    ks = dict(zip(model.lm_blocks, [float(k) for k in model.ks]))
    u_prev = ins[0]
    assert torch.allclose(ins[1], outs[0] + ins[0])
    for i in range(1, 8):
        if str(i) in model.projections:
            p = model.projections[str(i)](ins[i])
            want, u_prev = outs[i] + p, p
        else:
            want = outs[i] + (ks[i] * ins[i] + (1 - ks[i]) * u_prev if lm else ins[i])
            u_prev = ins[i]
        assert torch.allclose(ins[i + 1], want, atol=1e-12), i
