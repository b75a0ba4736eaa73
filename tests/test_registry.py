"""The registry, and every registered model: forward, backward, finite, shapes."""

from __future__ import annotations

import inspect

import pytest
import torch

from debench import create_model, list_models, model_info, register_model
from debench.registry import FAMILIES

CLASSIFIERS = list_models(task="classify")


def test_every_model_has_metadata():
    names = list_models()
    assert len(names) == len(set(names)) and names
    for name in names:
        info = model_info(name)
        assert info.family in FAMILIES
        assert info.paper and info.scheme, name


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).train()
    params = inspect.signature(model_info(name).factory).parameters
    channels = params["in_channels"].default if "in_channels" in params else 3
    size = 28 if "mnist" in name else 32
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 10), name
    assert torch.isfinite(out).all(), name
    out.float().logsumexp(1).sum().backward()
    # Stochastic depth and drop-path skip whole branches in one step, so only some
    # parameters may get a gradient; every gradient that exists must be finite.
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), name
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


# He et al. 2016, Table 6 (rounded to two significant figures there).
@pytest.mark.parametrize("depth,published_m", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_resnet_parameter_counts_match_table6(depth, published_m):
    n = sum(p.numel() for p in create_model(f"resnet{depth}").parameters())
    digits = 1 if depth == 110 else 2
    assert round(n / 1e6, digits) == published_m


def test_resnet_evaluations_per_forward_is_block_count():
    assert model_info("resnet56").evals_per_forward == 27


def test_unknown_model_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean resnet56"):
        create_model("resnet65")


def test_plugin_model_registers_and_lists():
    @register_model("test_plugin_net", family="discrete", paper="test", scheme="forward Euler")
    def factory(num_classes: int = 10, in_channels: int = 3):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    assert "test_plugin_net" in list_models("test_plugin_*")
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_plugin_net", family="discrete", paper="x", scheme="y")(lambda: None)


def test_register_rejects_unknown_family():
    with pytest.raises(ValueError, match="family"):
        register_model("x", family="quantum", paper="p", scheme="s")


def test_worked_plugin_example_registers_and_validates(monkeypatch):
    import yaml

    from debench.config import check_config, expand_runs
    from tests.conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    cfg = yaml.safe_load((ROOT / "config" / "example_plugin.yaml").read_text())
    check_config(cfg)
    assert {r["model"] for r in expand_runs(cfg)} == {"resnet56", "halfstep_resnet56"}
    model = create_model("halfstep_resnet56")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in create_model("resnet56").parameters())
