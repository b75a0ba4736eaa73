"""PolyNet's poly-2 block: Lu et al.'s reading (default) and the PolyNet authors' module (variant).

The authors' module is read from their released model as ported in Cadene/pretrained-models.pytorch
(``pretrainedmodels/models/polynet.py`` @2fe1bd6: ``PolyConv2d`` shares the convolution and keeps
one BatchNorm per application; ``conv2d_blocks`` are not shared; ``forward`` feeds
``relu(F_1(x))`` to the second application).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from debench.models.discrete.rk_resnet import PolyAuthorsBlock, SchemeBlock
from debench.registry import create_model


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize_bn(module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g)
            m.running_mean = torch.randn(m.num_features, generator=g)
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def test_authors_poly2_by_hand_and_lu_reading_differs():
    torch.manual_seed(0)
    block = PolyAuthorsBlock(8).eval()
    _randomize_bn(block)
    x = torch.randn(2, 8, 6, 6)

    def app(z, k):  # the authors' forward_block with index k
        z = F.relu(F.batch_norm(F.conv2d(z, block.conv1.weight, padding=1), block.bn1[k].running_mean,
                                block.bn1[k].running_var, block.bn1[k].weight, block.bn1[k].bias))
        z = F.conv2d(z, block.conv2[k].weight, padding=1)
        return F.batch_norm(z, block.bn2[k].running_mean, block.bn2[k].running_var, block.bn2[k].weight,
                            block.bn2[k].bias)

    f1 = app(x, 0)
    expected = F.relu(x + f1 + app(F.relu(f1), 1))
    assert torch.allclose(block(x), expected, atol=1e-6)
    # the wrong readings give other outputs: no ReLU between the applications, or one shared BN/projection
    assert not torch.allclose(block(x), F.relu(x + f1 + app(f1, 1)), atol=1e-3)
    assert not torch.allclose(block(x), F.relu(x + f1 + app(F.relu(f1), 0)), atol=1e-3)


def test_the_two_applications_share_only_the_first_convolution():
    block = PolyAuthorsBlock(4)
    assert block.conv2[0].weight is not block.conv2[1].weight and block.bn1[0] is not block.bn1[1]
    # 9p^2 shared + 2 x 9p^2 per-application convolutions + 4 BatchNorms of 2p
    assert _count(block) == 3 * 9 * 16 + 4 * 2 * 4


@pytest.mark.parametrize("depth, n", [(20, 3), (56, 9)])
def test_parameter_counts_of_both_forms(depth, n):
    base = _count(create_model(f"resnet{depth}"))
    assert _count(create_model(f"polynet_resnet{depth}")) == base  # Lu's reading: one shared f
    # the authors' form adds one 3x3 convolution and two BatchNorms to each poly-2 block:
    # n blocks at 16 channels, n - 1 at 32 and at 64 (the first block of those stages changes shape)
    extra = sum(blocks * (9 * p * p + 2 * 2 * p) for blocks, p in ((n, 16), (n - 1, 32), (n - 1, 64)))
    authors = create_model(f"polynet_resnet{depth}", form="authors")
    assert _count(authors) == base + extra
    assert depth != 20 or _count(authors) == 369_754  # 269,722 + 100,032 by the count above
    assert sum(isinstance(m, PolyAuthorsBlock) for m in authors.modules()) == 3 * n - 2
    assert not any(isinstance(m, SchemeBlock) for m in authors.modules())


def test_form_is_checked():
    with pytest.raises(ValueError, match="form must be one of"):
        create_model("polynet_resnet20", form="poly3")
    with pytest.raises(ValueError, match="form must be one of"):
        create_model("rk4_resnet20", form="authors")
