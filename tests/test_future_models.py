"""The future families as registered models: forward/backward, counters, alpha = 1, training."""

from __future__ import annotations

import json

import pytest
import torch

from debench.models.continuous.blocks import ConvODEFunc, ODEBlock
from debench.models.continuous.solver import SolverConfig
from debench.models.future.common import ConvField
from debench.models.future.fractional import FractionalBlock
from debench.models.future.levy import LevyNoise
from debench.models.future.levy_sde import LevySDEClassifier
from debench.registry import create_model, list_models, model_info
from tests.conftest import make_spec, train_concurrently  # not tests.conftest: torch_fidelity ships a top-level "tests" package

FUTURE = ["ndde_cifar", "frac_ode_cifar_a05_n4", "frac_ode_cifar_a05_n8", "frac_ode_cifar_a05_n16",
          "frac_ode_cifar_a1_n8", "third_order_node_cifar", "levy_sde_cifar_a15", "levy_sde_cifar_a2", "jump_sde_cifar"]
SMALL = {"widths": (8, 16)}
SMALL_SDE = {"width": 16, "eval_samples": 2}


def _small(name: str) -> dict:
    return SMALL_SDE if "sde" in name else SMALL


def test_all_future_models_are_registered_with_a_paper():
    assert set(FUTURE) <= set(list_models())
    for name in FUTURE:
        assert model_info(name).paper and model_info(name).reference == ()


@pytest.mark.parametrize("name", FUTURE)
def test_forward_backward_and_counters(name, one_thread):
    torch.manual_seed(0)
    model = create_model(name, **_small(name))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    stats = model.debench_stats()
    assert stats["nfe_forward"] > 0 and model.debench_stats()["nfe_forward"] == 0


def test_fractional_alpha_one_is_the_neural_ode_euler_step(one_thread):
    torch.manual_seed(0)
    f_ode = ConvODEFunc(8)
    f_frac = ConvField(8)
    f_frac.load_state_dict(f_ode.state_dict())  # same layers, same names
    ode = ODEBlock(f_ode, SolverConfig(method="euler", step_size=0.25))
    frac = FractionalBlock(f_frac, alpha=1.0, steps=4)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(frac(x), ode(x), rtol=0, atol=1e-6)
    assert frac.extra_metrics()["history_terms"] == 0
    assert not torch.allclose(FractionalBlock(f_frac, alpha=0.9, steps=4)(x), ode(x), atol=1e-3)


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return total[0]


def test_fractional_memory_grows_linearly_and_history_quadratically(one_thread):
    x = torch.randn(2, 3, 32, 32)
    sizes, terms = [], []
    for n in (4, 8, 16):
        model = create_model(f"frac_ode_cifar_a05_n{n}", widths=(8,))
        sizes.append(_saved_bytes(model, x))
        terms.append(model.extra_eval_metrics(x, None, 2)["history_terms"])
    assert terms == [6, 28, 120]  # n (n - 1) / 2
    growth = [(b - a) / a for a, b in zip(sizes, sizes[1:])]
    assert 0.6 < growth[0] and 0.6 < growth[1] and sizes[2] - sizes[1] == pytest.approx(2 * (sizes[1] - sizes[0]), rel=0.05)


def test_levy_classifier_takes_its_modules_and_averages_paths_in_eval():
    stem, head = torch.nn.Conv2d(3, 4, 3), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(5))
    drift, diffusion = (lambda t, h: -h), (lambda t, h: 0.5 * torch.ones_like(h))

    class Fn(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, t, h):
            return self.fn(t, h)

    model = LevySDEClassifier(stem, Fn(drift), Fn(diffusion), head, LevyNoise(alpha=1.2), steps=5, eval_samples=3)
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    model(x)
    assert model.debench_stats() == {"nfe_forward": 15, "nfe_backward": 0, "nfe_diffusion": 15}


def test_bad_model_args_are_named():
    with pytest.raises(ValueError, match="'tau'"):
        create_model("ndde_cifar", tau=0.3, widths=(8,))
    with pytest.raises(ValueError, match="'alpha'"):
        create_model("frac_ode_cifar_a05_n4", alpha=0.0, widths=(8,))
    with pytest.raises(ValueError, match="'alpha'"):
        create_model("levy_sde_cifar_a15", alpha=3.0)
    with pytest.raises(TypeError, match="unknown continuous-model option"):
        create_model("third_order_node_cifar", stepsize=0.1)


@pytest.mark.slow
def test_the_four_families_train_and_record_cost(tmp_path, synthetic_cache):
    tiny = {"widths": (8,)}
    runs = {"ndde_cifar": tiny, "frac_ode_cifar_a05_n4": tiny, "third_order_node_cifar": {**tiny, "step_size": 0.5},
            "levy_sde_cifar_a15": {"width": 8, "eval_samples": 1, "steps": 4, "perturb_sigmas": (0.0, 0.5)}}
    specs = [make_spec(tmp_path / name, synthetic_cache, model=name, table="future", model_args=args,
                       protocol={"epochs": None, "iterations": 2, "batch_size": 16, "eval_batch_size": 128})
             for name, args in runs.items()]
    train_concurrently(specs, timeout=300)
    for name in runs:
        rec = json.loads((tmp_path / name / "run" / "metrics.json").read_text())
        assert rec["status"] == "ok", rec.get("status_detail")
        assert rec["params"] > 0 and rec["activation_memory_mb"] > 0 and rec["nfe_forward"] > 0
    assert json.loads((tmp_path / "frac_ode_cifar_a05_n4" / "run" / "metrics.json").read_text())["history_terms"] == 6
    assert "acc_perturb_0.5" in json.loads((tmp_path / "levy_sde_cifar_a15" / "run" / "metrics.json").read_text())


def test_fractional_cost_figure_reads_steps_and_order_from_the_records_and_says_when_empty():
    import pandas as pd

    from debench.report.figures import fractional_cost
    from debench.report.layout import layout_problems

    rows = pd.DataFrame([{"model": f"frac_ode_cifar_a05_n{n}", "dataset": "cifar10", "table": "future",
                          "model_args.steps": n, "model_args.alpha": 0.5, "activation_memory_mb": 2.0 * n,
                          "batch_size": 16, "epoch_time_s": 0.1 * n, "stored_states": n + 1.0} for n in (4, 8)]
                        + [{"model": "levy_sde_cifar_a15", "dataset": "cifar10", "table": "neural_sde",
                            "model_args.steps": 10, "model_args.alpha": 1.5, "activation_memory_mb": 9.0,
                            "batch_size": 16, "epoch_time_s": 1.0, "stored_states": None}]
                        + [{"model": "ndde_cifar", "dataset": "cifar10", "table": "future", "model_args.steps": None,
                            "model_args.alpha": None, "activation_memory_mb": 5.0, "batch_size": 16,
                            "epoch_time_s": 1.0}])
    fig = fractional_cost(rows, None)
    memory = fig.axes[0]
    assert list(memory.lines[0].get_ydata()) == [0.5, 1.0] and len(memory.lines) == 1
    assert layout_problems(fig) == []
    empty = fractional_cost(rows[~rows["model"].str.startswith("frac")], None)
    assert "no fractional-model runs" in empty.axes[0].texts[0].get_text()
