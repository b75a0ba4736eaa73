"""debench.nfe: one NFE counter with one set of metric names, checked on a closed-form count."""

from __future__ import annotations

import pytest

from debench.nfe import METRICS, NFECounter, merge


def test_counter_attributes_evaluations_to_their_pass_and_resets():
    c = NFECounter()
    c.begin("forward")
    for _ in range(26):  # dopri5: 6 stages x 4 accepted steps + the 2-evaluation initial-step probe
        c.tick()
    c.begin("backward")
    c.tick(14)
    assert c.solve == 14 and c.total == 40
    assert c.pop(reset=False) == {"nfe_forward": 26, "nfe_backward": 14}
    assert c.pop() == {"nfe_forward": 26, "nfe_backward": 14} and c.pop() == dict.fromkeys(METRICS, 0)


def test_counters_of_several_solvers_merge_under_the_same_names():
    a, b = NFECounter(), NFECounter()
    a.tick(3)
    b.begin("backward")
    b.tick(5)
    assert merge([a.pop(), b.pop(), {}]) == {"nfe_forward": 3, "nfe_backward": 5}
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
