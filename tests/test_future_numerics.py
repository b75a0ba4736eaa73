"""Closed-form checks of the future families' numerics: delay, fractional, Lévy, higher order."""

from __future__ import annotations

import math

import pytest
import torch

from debench.models.continuous.solver import CountedDynamics, SolverConfig, solve
from debench.models.future.dde import solve_dde
from debench.models.future.fractional import gl_derivative, gl_weights, solve_caputo_gl
from debench.models.future.higher_order import OrderReduction
from debench.models.future.levy import LevyNoise, levy_euler, stable_cms

D = torch.float64


def _order(errors: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


# ---- delay: dh/dt = -h(t - 1), h = 1 on [-1, 0] ------------------------------------------------
def _dde_exact(t: float) -> float:
    """Method-of-steps closed form on [0, 3]."""
    out = 1.0 - t
    if t > 1:
        out += (t - 1) ** 2 / 2
    if t > 2:
        out -= (t - 2) ** 3 / 6
    return out


def _dde(t1: float, steps: int, method: str) -> float:
    one = torch.ones((), dtype=D)
    return float(solve_dde(lambda t, s: -s[1], one, tau=1.0, t1=t1, steps=steps, method=method))


def test_dde_euler_is_first_order():
    errors = [abs(_dde(3.0, n, "euler") - _dde_exact(3.0)) for n in (30, 60, 120, 240)]
    assert all(0.9 < p < 1.1 for p in _order(errors)), errors


def test_dde_rk4_exact_while_delayed_values_are_linear_then_second_order():
    # On [0, 2] the delayed values are constant, then linear: the interpolation is exact.
    assert abs(_dde(2.0, 20, "rk4") - _dde_exact(2.0)) < 1e-13
    errors = [abs(_dde(3.0, n, "rk4") - _dde_exact(3.0)) for n in (30, 60, 120)]
    assert all(p > 1.8 for p in _order(errors)), errors


def test_dde_counts_evaluations_and_rejects_off_grid_delay():
    dyn = CountedDynamics(lambda t, s: -s[1], SolverConfig(method="rk4", step_size=0.1))
    solve_dde(dyn, torch.ones(()), tau=0.5, t1=1.0, steps=10, method="rk4")
    assert dyn.pop_counts() == {"nfe_forward": 40, "nfe_backward": 0}
    with pytest.raises(ValueError, match="'tau'"):
        solve_dde(dyn, torch.ones(()), tau=0.55, t1=1.0, steps=10)


# ---- fractional: Caputo derivative of t^k is Gamma(k+1)/Gamma(k+1-alpha) t^(k-alpha) ----------
@pytest.mark.parametrize("alpha,k", [(0.5, 2), (0.3, 1), (0.8, 3)])
def test_gl_derivative_of_power_converges_to_gamma_formula(alpha, k):
    exact = math.gamma(k + 1) / math.gamma(k + 1 - alpha)  # at t = 1
    errors = []
    for n in (100, 200, 400):
        t = torch.linspace(0, 1, n + 1, dtype=D)
        errors.append(abs(float(gl_derivative(t ** k, alpha, 1.0 / n)) - exact))
    assert errors[-1] < 0.02 * exact
    assert all(0.8 < p < 1.2 for p in _order(errors)), errors


def test_caputo_gl_solves_the_power_law_equation():
    alpha, k = 0.5, 2
    c = math.gamma(k + 1) / math.gamma(k + 1 - alpha)
    errors = [abs(float(solve_caputo_gl(lambda t, h: c * torch.tensor(t, dtype=D) ** (k - alpha),
                                        torch.zeros((), dtype=D), alpha, 1.0, n)) - 1.0) for n in (50, 100, 200)]
    assert errors[-1] < 0.02
    assert all(0.8 < p < 1.2 for p in _order(errors)), errors


def test_gl_weights_are_signed_binomials_and_vanish_at_alpha_one():
    alpha = 0.7
    binom = [math.gamma(alpha + 1) / (math.gamma(j + 1) * math.gamma(alpha - j + 1)) for j in range(5)]
    assert gl_weights(alpha, 4) == pytest.approx([(-1) ** j * b for j, b in enumerate(binom)])
    assert gl_weights(1.0, 5) == [1.0, -1.0, 0.0, 0.0, 0.0, 0.0]


def test_caputo_rejects_alpha_out_of_range():
    with pytest.raises(ValueError, match="'alpha'"):
        solve_caputo_gl(lambda t, h: h, torch.zeros(()), 1.5)


# ---- Lévy: characteristic function and quantiles of the CMS sampler ----------------------------
def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("alpha,beta", [(1.5, 0.0), (1.5, 0.5), (0.8, -0.3), (2.0, 0.0)])
def test_cms_matches_the_stable_characteristic_function(alpha, beta):
    x = stable_cms((200_000,), alpha, beta, generator=_gen(), dtype=D)
    for u in (0.3, 1.0, 2.0):
        phi = math.exp(-abs(u) ** alpha)
        shift = beta * math.tan(math.pi * alpha / 2) * abs(u) ** alpha if alpha != 2 else 0.0
        assert float(torch.cos(u * x).mean()) == pytest.approx(phi * math.cos(shift), abs=0.012)
        assert float(torch.sin(u * x).mean()) == pytest.approx(phi * math.sin(shift), abs=0.012)


def test_cms_cauchy_quartiles_and_totally_skewed_support():
    x = stable_cms((200_000,), 1.0, 0.0, generator=_gen(1), dtype=D)
    q = torch.quantile(x[:100_000], torch.tensor([0.25, 0.5, 0.75], dtype=D))
    assert q.tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=0.03)
    assert bool((stable_cms((50_000,), 0.5, 1.0, generator=_gen(2), dtype=D) > 0).all())


def test_stable_increments_scale_as_dt_to_one_over_alpha():
    noise, dt = LevyNoise(alpha=1.5), 0.1
    inc = noise.increment(torch.zeros(200_000, dtype=D), dt, _gen(3))
    for u in (1.0, 3.0):  # E exp(i u L_dt) = exp(-dt |u|^alpha / 2)
        assert float(torch.cos(u * inc).mean()) == pytest.approx(math.exp(-dt * u ** 1.5 / 2), abs=0.01)


def test_compound_poisson_adds_variance_and_kurtosis():
    rate, scale, dt = 4.0, 1.0, 0.25
    inc = LevyNoise(alpha=2.0, jump_rate=rate, jump_scale=scale).increment(torch.zeros(400_000, dtype=D), dt, _gen(4))
    var = dt * (1 + rate * scale ** 2)
    assert float(inc.var()) == pytest.approx(var, rel=0.02)
    kurtosis = float((inc ** 4).mean() / inc.var() ** 2) - 3  # fourth cumulant 3 rate dt scale^4
    assert kurtosis == pytest.approx(3 * rate * dt * scale ** 4 / var ** 2, abs=0.15)


def test_alpha_two_levy_euler_is_euler_maruyama_draw_for_draw():
    h0, dt, steps = torch.randn(64, dtype=D), 0.1, 10
    f, g = (lambda t, h: -h + t), (lambda t, h: 0.3 * h)
    got = levy_euler(f, g, h0, LevyNoise(alpha=2.0), 1.0, steps, _gen(5))
    gen, h = _gen(5), h0
    for k in range(steps):
        h = h + dt * f(k * dt, h) + g(k * dt, h) * math.sqrt(dt) * torch.randn(h.shape, generator=gen, dtype=D)
    torch.testing.assert_close(got, h, rtol=1e-12, atol=1e-12)


def test_levy_noise_names_bad_arguments():
    with pytest.raises(ValueError, match="'alpha'"):
        LevyNoise(alpha=2.5)
    with pytest.raises(ValueError, match="'beta'"):
        LevyNoise(alpha=1.5, beta=2.0)
    with pytest.raises(ValueError, match="'jump_rate'"):
        LevyNoise(jump_rate=-1.0)


# ---- higher order: x''' = x, x(0) = x'(0) = x''(0) = 1, so x = e^t ------------------------------
@pytest.mark.parametrize("method,order", [("euler", 1), ("rk4", 4)])
def test_third_order_reduction_converges_at_the_method_order(method, order):
    field = OrderReduction(lambda t, z: z[:, :1], order=3)
    errors = []
    for n in (8, 16, 32):
        dyn = CountedDynamics(field, SolverConfig(method=method, step_size=1.0 / n))
        x1 = solve(dyn, torch.ones(1, 3, dtype=D))[0, 0]
        errors.append(abs(float(x1) - math.e))
        assert dyn.pop_counts()["nfe_forward"] == n * {"euler": 1, "rk4": 4}[method]
    assert all(abs(p - order) < 0.3 for p in _order(errors)), errors
