"""debench.nfe: one NFE counter with one set of metric names, checked on a closed-form count."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from debench.nfe import METRICS, NFECounter, merge


class Decay(nn.Module):
    """y' = -y, counting its own calls (a plain attribute, independent of debench.nfe)."""

    def __init__(self):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(1.0))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return -self.rate * y


# fixed-grid methods on [0, 1] with h = 0.25: 4 steps of s stages each, and the closed-form value
# of one step of each method on y' = -y (the Taylor polynomial of exp(-h) to the method's order)
H = 0.25
STEP = {"euler": (1, 1 - H), "midpoint": (2, 1 - H + H**2 / 2), "rk4": (4, 1 - H + H**2 / 2 - H**3 / 6 + H**4 / 24)}


@pytest.mark.parametrize("method", sorted(STEP))
def test_a_fixed_grid_solve_counts_steps_times_stages(method):
    from debench.models.continuous.solver import CountedDynamics, SolverConfig, solve

    stages, growth = STEP[method]
    f = Decay()
    dyn = CountedDynamics(f, SolverConfig(method=method, step_size=H))
    y = solve(dyn, torch.ones(2))
    assert y[0].item() == pytest.approx(growth**4, rel=1e-6)  # it took exactly the 4 steps
    y.sum().backward()  # backprop through the solver: no further evaluation
    assert dyn.pop_counts() == {"nfe_forward": 4 * stages, "nfe_backward": 0} and f.calls == 4 * stages
    assert dyn.pop_counts() == {"nfe_forward": 0, "nfe_backward": 0}  # popped: zeroed


def test_an_adjoint_solve_counts_its_backward_evaluations_apart():
    from debench.models.continuous.solver import CountedDynamics, SolverConfig, solve

    f = Decay()
    dyn = CountedDynamics(f, SolverConfig(method="rk4", step_size=H, adjoint=True))
    y = solve(dyn, torch.ones(2))
    assert f.calls == 16
    y.sum().backward()  # the adjoint solve runs the same 4 rk4 steps backwards: 16 more evaluations
    assert f.calls == 32 and dyn.pop_counts(reset=False) == {"nfe_forward": 16, "nfe_backward": 16}
    # d/d(rate) of sum(y(1)) = -2 * 1 * y(1) for y(1) = exp(-rate): the adjoint's gradient is the true one
    assert f.rate.grad.item() == pytest.approx(-2 * STEP["rk4"][1] ** 4, rel=1e-3)


def test_counters_of_several_solvers_merge_under_the_same_names():
    from debench.models.continuous.solver import CountedDynamics, SolverConfig, solve

    euler = CountedDynamics(Decay(), SolverConfig(method="euler", step_size=H))
    rk4 = CountedDynamics(Decay(), SolverConfig(method="rk4", step_size=H, adjoint=True))
    solve(euler, torch.ones(1))
    solve(rk4, torch.ones(1)).sum().backward()
    assert merge([euler.pop_counts(), rk4.pop_counts(), {}]) == {"nfe_forward": 4 + 16, "nfe_backward": 16}
    assert set(METRICS) == {"nfe_forward", "nfe_backward"}


def test_unknown_phase_is_an_error():
    with pytest.raises(ValueError, match="NFE phase must be one of"):
        NFECounter().begin("adjoint")


def _latent_sde_counts(adjoint: bool) -> dict[str, int]:
    import torch

    from debench.data import DATASETS
    from debench.registry import create_model

    pytest.importorskip("torchsde")
    torch.manual_seed(0)
    model = create_model("latent_sde", data_shape=DATASETS["ou_paths"].shape, num_classes=0, adjoint=adjoint)
    assert isinstance(model.sde.nfe, NFECounter)
    model.training_loss(torch.randn(2, *DATASETS["ou_paths"].shape), None).backward()
    return model.debench_stats()


def test_continuous_solver_counts_with_the_shared_counter():
    from debench.models.continuous.solver import CountedDynamics
    from debench.registry import create_model

    node = create_model("odenet_mnist")
    dyns = [m for m in node.modules() if isinstance(m, CountedDynamics)]
    assert dyns and all(isinstance(m.nfe, NFECounter) for m in dyns)


@pytest.mark.slow
def test_latent_sde_counts_with_the_shared_counter_and_adjoint_evaluations_are_backward():
    adjoint, plain = _latent_sde_counts(adjoint=True), _latent_sde_counts(adjoint=False)
    assert plain["nfe_forward"] > 0 and plain["nfe_backward"] == 0  # backprop through the solver evaluates nothing
    assert adjoint["nfe_forward"] == plain["nfe_forward"] and adjoint["nfe_backward"] > 0
