"""Chang et al.'s reversible nets in the authors' layout (LiliMeng/hamiltonian-revnet @ fc7481c)."""

import pytest
import torch
import torch.nn as nn

from debench.registry import create_model, model_info
from debench.train.measure import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def authors_count(kind: str, depth: int, classes: int = 10) -> int:
    """Weights of the authors' layout: stem conv (no bias) + BN, units, final BN, linear.

    Hamiltonian force at half width c: 9 c^2 + c (bias2) + c (bias1, absent in the network's very
    first force); two forces per unit. Leapfrog force 9 c^2 + c, midpoint force 9 c^2 + c, two
    per unit, at full width. The first unit of stage s runs at filters[s], the others at filters[s+1].
    """
    filters = (32, 32, 64, 112) if depth == 38 else (32, 32, 64, 128)
    n = (depth - 2) // 12
    total = 27 * 32 + 2 * 32
    for s in range(3):
        for j in range(n):
            w = filters[s] if j == 0 else filters[s + 1]
            if kind == "hamiltonian":
                c = w // 2
                total += 2 * (9 * c * c + 2 * c)
            else:
                total += 2 * (9 * w * w + w)
    if kind == "hamiltonian":
        total -= 16  # no bias1 in the first unit's F (revnet-public no_activation)
    return total + 2 * filters[3] + filters[3] * classes + classes


def test_hamiltonian_counts_by_hand():
    """hamiltonian-38, filters [32, 32, 64, 112], 3-3-3 units (force at half width c: 9c^2 + 2c):
    stem 27*32 + 64 = 928; stage 1: 3 units at c = 16, 3 * 4,672 - 16 = 14,000; stage 2: one unit
    at c = 16 (4,672) + two at c = 32 (2 * 18,560) = 41,792; stage 3: one unit at c = 32 (18,560)
    + two at c = 56 (2 * 56,672) = 131,904; final BN 224; linear 1,130. Total 189,978.
    hamiltonian-110, filters [32, 32, 64, 128], 9-9-9: 928 + 42,032 + 153,152 + 610,432 + 256
    + 1,290 = 808,090. (The old BN layout at h = 0.5 with 112 channels had 241,994 / 721,418.)
    """
    assert count_parameters(create_model("hamiltonian38")) == 189_978
    assert count_parameters(create_model("hamiltonian110")) == 808_090


@pytest.mark.parametrize("kind", ["hamiltonian", "midpoint", "leapfrog"])
@pytest.mark.parametrize("depth", [38, 74, 110])
def test_counts_follow_the_authors_layout(kind, depth):
    assert count_parameters(create_model(f"{kind}{depth}")) == authors_count(kind, depth)


@pytest.mark.parametrize("name", ["hamiltonian110", "midpoint38", "leapfrog74"])
def test_forces_have_biases_not_batchnorm_and_step_is_the_authors(name):
    from debench.models.discrete.chang import Force

    model = create_model(name)
    assert model_info(name).defaults["h"] == 0.1
    units = [m for s in model.stages for m in s.modules() if isinstance(m, nn.BatchNorm2d)]
    assert units == []  # only the stem and final BN exist, outside the reversible stages
    forces = [m for m in model.modules() if isinstance(m, Force)]
    assert forces and all(f.bias is not None for f in forces)
    assert model.head.in_features == (112 if name.endswith("38") else 128)


def test_force_formulas():
    from debench.models.discrete.chang import Force

    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5)
    f = Force(4, symmetric=True, pre_bias=True)
    with torch.no_grad():
        f.pre_bias.normal_(), f.bias.normal_()
        z = torch.relu(nn.functional.conv2d(x + f.pre_bias.view(1, -1, 1, 1), f.weight, f.bias, padding=1))
        assert torch.allclose(f(x), nn.functional.conv_transpose2d(z, f.weight, padding=1), atol=1e-6)
        g = Force(4, symmetric=False)
        g.bias.normal_()
        assert torch.allclose(g(x), torch.relu(nn.functional.conv2d(x, g.weight, g.bias, padding=1)), atol=1e-6)
    first = create_model("hamiltonian38").stages[0].shears[0].phi
    assert first.pre_bias is None  # the network's very first force has no bias1
