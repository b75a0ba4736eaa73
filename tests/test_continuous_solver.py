"""Solver wrapper of the continuous family: exact NFE counts, adjoint gradients, CNF closed form, step cap."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from debench.errors import SolverFailed
from debench.models.continuous.cnf import CNF
from debench.models.continuous.fields import AugmentedField
from debench.models.continuous.solver import CountedDynamics, SolverConfig, collect_stats, solve


class Linear(nn.Module):
    """dz/dt = A z (batch of row vectors)."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t, z):
        return z @ self.a.T


def rotation(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=dtype)


@pytest.mark.parametrize("method,stages", [("rk4", 4), ("midpoint", 2), ("euler", 1)])
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_fixed_step_nfe_is_stages_times_steps(method, stages, steps):
    dyn = CountedDynamics(Linear(rotation()), SolverConfig(method=method, step_size=1.0 / steps))
    z0 = torch.randn(4, 2, dtype=torch.float64)
    solve(dyn, z0).sum().backward()
    assert collect_stats(dyn) == {"nfe_forward": stages * steps, "nfe_backward": 0}
    assert collect_stats(dyn) == {"nfe_forward": 0, "nfe_backward": 0}  # reset by the read


def test_fixed_step_solution_is_rk4_on_linear_problem():
    a, n = rotation(), 10
    dyn = CountedDynamics(Linear(a), SolverConfig(method="rk4", step_size=0.1))
    z0 = torch.randn(3, 2, dtype=torch.float64)
    h = 0.1 * a  # one rk4 step of z' = Az multiplies by the degree-4 Taylor polynomial of exp(hA)
    step = torch.eye(2, dtype=a.dtype) + h + h @ h / 2 + h @ h @ h / 6 + h @ h @ h @ h / 24
    expected = z0 @ torch.linalg.matrix_power(step, n).T
    torch.testing.assert_close(solve(dyn, z0).detach(), expected, rtol=1e-12, atol=1e-12)


def test_adjoint_backward_nfe_counted_apart_from_forward():
    dyn = CountedDynamics(Linear(rotation()), SolverConfig(method="rk4", step_size=0.25, adjoint=True))
    z0 = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    out = solve(dyn, z0)
    assert collect_stats(dyn, reset=False) == {"nfe_forward": 16, "nfe_backward": 0}
    out.sum().backward()
    # the adjoint solve runs backwards on the same 4-step grid: one evaluation per stage
    assert collect_stats(dyn) == {"nfe_forward": 16, "nfe_backward": 16}


def test_adaptive_nfe_grows_as_tolerance_tightens():
    z0 = torch.randn(4, 2, dtype=torch.float64)
    nfe = []
    for tol in (1e-3, 1e-5, 1e-7):
        dyn = CountedDynamics(Linear(rotation()), SolverConfig(method="dopri5", rtol=tol, atol=tol, t1=3.0))
        with torch.no_grad():
            solve(dyn, z0)
        nfe.append(collect_stats(dyn)["nfe_forward"])
    assert nfe[0] < nfe[1] < nfe[2], nfe


class TanhField(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(3, 8, generator=gen, dtype=torch.float64) / 2)
        self.w2 = nn.Parameter(torch.randn(8, 3, generator=gen, dtype=torch.float64) / 3)

    def forward(self, t, z):
        return torch.tanh(z @ self.w1 + t) @ self.w2


@pytest.mark.parametrize("seminorm", [False, True])
def test_adjoint_gradients_match_direct_backprop(seminorm):
    z0 = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for adjoint in (False, True):
        f = TanhField()
        cfg = SolverConfig(method="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint, seminorm=seminorm and adjoint)
        x = z0.clone().requires_grad_(True)
        solve(CountedDynamics(f, cfg), x).pow(2).sum().backward()
        grads.append([x.grad, f.w1.grad, f.w2.grad])
    for direct, adjoint in zip(*grads):
        torch.testing.assert_close(adjoint, direct, rtol=1e-5, atol=1e-5)


class Forced(nn.Module):
    """dz/dt = -z + p sin(40 t) with p = 1e-8: the state barely feels the forcing, while the
    parameter-gradient integrand (adjoint * sin(40 t)) oscillates at full size."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(1e-8, dtype=torch.float64))

    def forward(self, t, z):
        return -z + self.p * torch.sin(40 * t)


def test_seminorm_is_the_default_of_an_adaptive_adjoint_and_skips_parameter_error_control():
    assert SolverConfig(method="dopri5", adjoint=True).seminorm is True
    assert SolverConfig(method="rk4", adjoint=True).seminorm is False
    assert SolverConfig(method="dopri5").seminorm is False
    assert SolverConfig(method="dopri5", adjoint=True, seminorm=False).seminorm is False
    z0 = torch.ones(4, 2, dtype=torch.float64)
    nfe, input_grads = {}, {}
    for seminorm in (False, None):
        dyn = CountedDynamics(Forced(), SolverConfig(method="dopri5", rtol=1e-4, atol=1e-6, adjoint=True,
                                                     seminorm=seminorm, t1=2.0))
        x = z0.clone().requires_grad_(True)
        solve(dyn, x).pow(2).sum().backward()
        nfe[seminorm], input_grads[seminorm] = dyn.pop_counts()["nfe_backward"], x.grad
    # The standard norm resolves the oscillating parameter integrand; the seminorm does not have to.
    assert nfe[None] < 0.2 * nfe[False], nfe
    torch.testing.assert_close(input_grads[None], input_grads[False], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(input_grads[None], 2 * math.exp(-4.0) * z0, rtol=1e-3, atol=1e-6)


def _cnf(a: torch.Tensor, t1: float, divergence: str) -> CNF:
    cfg = SolverConfig(method="dopri5", rtol=1e-10, atol=1e-10, t1=t1)
    return CNF(Linear(a), cfg, divergence=divergence, noise="rademacher").eval()


def test_cnf_log_density_on_linear_ode_matches_closed_form():
    a = torch.tensor([[0.3, -1.0, 0.2], [0.5, -0.4, 0.0], [0.1, 0.2, -0.7]], dtype=torch.float64)
    t1 = 0.8
    z0 = torch.randn(6, 3, dtype=torch.float64)
    logp0 = (-0.5 * z0.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1)
    z1, logp1 = _cnf(a, t1, "exact")(z0, logp0)
    torch.testing.assert_close(logp1, logp0 - t1 * torch.trace(a), rtol=0, atol=1e-6)
    torch.testing.assert_close(z1, z0 @ torch.linalg.matrix_exp(a * t1).T, rtol=0, atol=1e-6)


def test_hutchinson_with_rademacher_noise_is_exact_for_diagonal_field():
    a = torch.diag(torch.tensor([0.5, -1.5, 0.25], dtype=torch.float64))  # eps^T A eps = tr A when eps_i^2 = 1
    z0 = torch.randn(6, 3, dtype=torch.float64)
    _, logp1 = _cnf(a, 1.0, "hutchinson")(z0, torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(logp1, torch.full_like(logp1, -float(torch.trace(a))), rtol=0, atol=1e-6)


def test_hutchinson_noise_is_drawn_once_per_solve():
    field = AugmentedField(Linear(rotation()), "hutchinson", "gaussian")
    dyn = CountedDynamics(field, SolverConfig(method="rk4", step_size=0.25))
    seen = []
    original = field._eps
    field._eps = lambda z: seen.append(original(z)) or seen[-1]
    for _ in range(2):
        field.new_solve(track_logp=True)
        solve(dyn, (torch.randn(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)))
    assert len(seen) == 32
    assert all(s is seen[0] for s in seen[:16]) and all(s is seen[16] for s in seen[16:])
    assert not torch.equal(seen[0], seen[16])


class Square(nn.Module):
    def forward(self, t, z):
        return z * z  # z(0) = 1 gives z = 1 / (1 - t): blows up at t = 1


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_step_cap_turns_blow_up_into_solver_failed(method):
    dyn = CountedDynamics(Square(), SolverConfig(method=method, rtol=1e-6, atol=1e-6, max_num_steps=50, t1=2.0))
    with pytest.raises(SolverFailed):
        solve(dyn, torch.ones(2, 1, dtype=torch.float64))


def test_step_cap_on_stiff_problem_and_fixed_grid():
    stiff = CountedDynamics(Linear(torch.tensor([[-1e4]], dtype=torch.float64)),
                            SolverConfig(method="dopri5", rtol=1e-8, atol=1e-8, max_num_steps=20))
    with pytest.raises(SolverFailed):
        solve(stiff, torch.ones(1, 1, dtype=torch.float64))
    fine_grid = CountedDynamics(Square(), SolverConfig(method="euler", step_size=0.01, max_num_steps=10))
    with pytest.raises(SolverFailed):
        solve(fine_grid, torch.ones(1, 1))


def test_evaluation_guard_raises_without_torchdiffeq_assertions():
    dyn = CountedDynamics(Square(), SolverConfig(method="euler", max_num_steps=1))  # cap: 1 step x 1 + 2
    z = torch.ones(1, 1)
    for _ in range(3):
        dyn(torch.tensor(0.0), z)
    with pytest.raises(SolverFailed, match="max_num_steps=1"):
        dyn(torch.tensor(0.0), z)


def test_unknown_method_and_seminorm_without_adjoint_are_rejected():
    with pytest.raises(ValueError, match="unknown ODE method"):
        SolverConfig(method="rk5")
    with pytest.raises(ValueError, match="seminorm"):
        SolverConfig(seminorm=True)
