"""Each scheme is what it claims: one step equals its formula (float64), on a linear f(x) = A x and,
where methods of equal order agree on linear fields (midpoint and Heun), on a nonlinear f."""

import pytest
import torch
import torch.nn as nn

from debench.models.discrete import schemes, units
from debench.models.discrete.lm_resnet import LMBlock
from debench.models.discrete.pde_cnn import PDEBlock
from debench.models.discrete.rk_resnet import SchemeBlock

torch.manual_seed(0)
D = 5
I = torch.eye(D, dtype=torch.float64)


def mat(scale=0.3):
    return scale * torch.randn(D, D, dtype=torch.float64)


class Lin(nn.Module):
    """f(x) = x A^T on row vectors, or a 1x1 convolution with matrix A on images."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x):
        if x.dim() == 4:
            return torch.einsum("ij,bjhw->bihw", self.a, x)
        return x @ self.a.T


def vec():
    return torch.randn(3, D, dtype=torch.float64)


@pytest.mark.parametrize("method,poly", [
    ("euler", lambda A: I + A),
    ("midpoint", lambda A: I + A + A @ A / 2),
    ("heun", lambda A: I + A + A @ A / 2),
    ("rk4", lambda A: I + A + A @ A / 2 + A @ A @ A / 6 + A @ A @ A @ A / 24),
])
def test_rk_step_is_taylor_polynomial_on_linear_f(method, poly):
    A, x = mat(), vec()
    got = schemes.rk_step(Lin(A), x, schemes.TABLEAUX[method])
    assert torch.allclose(got, x @ poly(A).T, atol=1e-12)


class NonLin(nn.Module):
    """f(x) = tanh(A x) + 0.3 x^2 elementwise: second-order methods differ on it (not on A x)."""

    def __init__(self, a):
        super().__init__()
        self.lin = Lin(a)

    def forward(self, x):
        return torch.tanh(self.lin(x)) + 0.3 * x * x


def rk_formula(method, f, x):
    """The textbook step of size 1, written out stage by stage."""
    if method == "euler":
        return x + f(x)
    if method == "midpoint":
        return x + f(x + f(x) / 2)
    if method == "heun":
        k1 = f(x)
        return x + (k1 + f(x + k1)) / 2
    if method == "poly2":
        return x + f(x) + f(f(x))
    k1 = f(x)
    k2 = f(x + k1 / 2)
    k3 = f(x + k2 / 2)
    k4 = f(x + k3)
    return x + (k1 + 2 * k2 + 2 * k3 + k4) / 6


RK = ["euler", "midpoint", "heun", "rk4"]


@pytest.mark.parametrize("method", RK)
def test_rk_step_is_its_formula_on_nonlinear_f(method):
    f, x = NonLin(mat(1.0)), vec()
    with torch.no_grad():
        assert torch.allclose(schemes.rk_step(f, x, schemes.TABLEAUX[method]), rk_formula(method, f, x), atol=1e-12)


@pytest.mark.parametrize("method,other", [(m, o) for m in RK for o in RK if m != o])
def test_nonlinear_check_tells_every_pair_of_tableaux_apart(method, other):
    """The check above can fail: a tableau swapped for any other one misses the formula by far more
    than its tolerance (on the linear field midpoint and Heun are identical)."""
    f, x = NonLin(mat(1.0)), vec()
    with torch.no_grad():
        gap = (schemes.rk_step(f, x, schemes.TABLEAUX[other]) - rk_formula(method, f, x)).abs().max()
    assert gap > 1e-3


def test_lm_poly2_leapfrog_midpoint_verlet_momentum_formulas():
    A, B, u, w = mat(), mat(), vec(), vec()
    f, g = Lin(A), Lin(B)
    k, h, gamma = -0.07, 0.3, 0.9
    assert torch.allclose(schemes.lm_step(f, u, w, k), (1 - k) * u + k * w + u @ A.T, atol=1e-12)
    assert torch.allclose(schemes.poly2_step(f, u), u @ (I + A + A @ A).T, atol=1e-12)
    assert torch.allclose(schemes.leapfrog_step(f, w, u, h), 2 * u - w - h * h * u @ A.T, atol=1e-12)
    assert torch.allclose(schemes.midpoint2_step(f, w, u, h), w + 2 * h * u @ A.T, atol=1e-12)
    y1, z1 = schemes.verlet_step(f, g, u, w, h)
    assert torch.allclose(y1, u + h * w @ A.T, atol=1e-12)
    assert torch.allclose(z1, w - h * (u + h * w @ A.T) @ B.T, atol=1e-12)
    x1, v1 = schemes.momentum_step(f, u, w, gamma)
    assert torch.allclose(v1, gamma * w + (1 - gamma) * u @ A.T, atol=1e-12)
    assert torch.allclose(x1, u + v1, atol=1e-12)
    x0, v0 = schemes.momentum_inverse(f, x1, v1, gamma)
    assert torch.allclose(x0, u, atol=1e-12) and torch.allclose(v0, w, atol=1e-12)


def run(shears, a, b):
    for s in shears:
        a, b = s(a, b)
    return a, b


def test_reversible_units_equal_their_schemes():
    A, B, y, z = mat(), mat(), vec(), vec()
    f, g, h = Lin(A), Lin(B), 0.4
    with torch.no_grad():
        assert all(torch.allclose(p, q) for p, q in zip(run(units.verlet_unit(f, g, h), y, z),
                                                         schemes.verlet_step(f, g, y, z, h)))
        a, b = run(units.leapfrog_unit(f, h), z, y)
        assert torch.equal(a, y) and torch.allclose(b, schemes.leapfrog_step(f, z, y, h))
        a, b = run(units.midpoint_unit(f, h), z, y)
        assert torch.equal(a, y) and torch.allclose(b, schemes.midpoint2_step(f, z, y, h))
        assert all(torch.allclose(p, q) for p, q in zip(run(units.momentum_unit(f, 0.9), y, z),
                                                         schemes.momentum_step(f, y, z, 0.9)))
        y1, y2 = run(units.revnet_unit(f, g), y, z)
        assert torch.allclose(y1, y + z @ A.T) and torch.allclose(y2, z + y1 @ B.T)


def img(c=D):
    return torch.randn(2, c, 4, 4, dtype=torch.float64)


def apply(m, x):
    return torch.einsum("ij,bjhw->bihw", m, x)


def test_lm_block_applies_lm_step_then_relu():
    A = mat()
    block = LMBlock(D, D, 1, first=False).double()
    block.branch = Lin(A)
    u, w = img(), img()
    out, carried = block(u, w)
    expected = torch.relu((1 - block.k) * u + block.k * w + apply(A, u))
    assert torch.allclose(out, expected, atol=1e-12) and torch.equal(carried, u)


@pytest.mark.parametrize("method", ["midpoint", "heun", "rk4", "poly2"])
def test_scheme_block_stage_count_and_update(method):
    A = mat()
    block = SchemeBlock(D, method).double()
    block.branch = Lin(A)
    x = img()
    poly = {"midpoint": I + A + A @ A / 2, "heun": I + A + A @ A / 2, "poly2": I + A + A @ A,
            "rk4": I + A + A @ A / 2 + A @ A @ A / 6 + A @ A @ A @ A / 24}[method]
    assert torch.allclose(block(x), torch.relu(apply(poly, x)), atol=1e-12)
    assert block.stages == {"midpoint": 2, "heun": 2, "rk4": 4, "poly2": 2}[method]


@pytest.mark.parametrize("method", ["midpoint", "heun", "rk4", "poly2"])
def test_scheme_block_is_relu_of_its_formula_on_nonlinear_branch(method):
    block = SchemeBlock(D, method).double()
    block.branch = f = NonLin(mat(1.0))
    x = img()
    swapped = {"midpoint": "heun", "heun": "midpoint", "rk4": "heun", "poly2": "euler"}[method]
    with torch.no_grad():
        expected = torch.relu(rk_formula(method, f, x))
        assert torch.allclose(block(x), expected, atol=1e-12)
        assert not torch.allclose(expected, torch.relu(rk_formula(swapped, f, x)), atol=1e-3)


@pytest.mark.parametrize("kind", ["parabolic", "second_order", "hamiltonian"])
def test_pde_block_runs_its_scheme(kind):
    channels, h = 2 * D if kind == "hamiltonian" else D, 0.5
    block = PDEBlock(kind, channels, nt=3, h=h).double()
    mats = [mat() for _ in block.layers]
    block.layers = nn.ModuleList(Lin(m) for m in mats)
    y = img(channels)
    if kind == "parabolic":
        expected = y
        for m in mats:
            expected = expected - h * apply(m, expected)
    elif kind == "second_order":
        prev, expected = y, y
        for m in mats:
            prev, expected = expected, 2 * expected - prev - h * h * apply(m, expected)
    else:
        a, b = y[:, :D], y[:, D:]
        for m1, m2 in zip(mats[0::2], mats[1::2]):
            a = a + h * apply(m1, b)
            b = b - h * apply(m2, a)
        expected = torch.cat([a, b], 1)
    assert torch.allclose(block(y), expected, atol=1e-12)
