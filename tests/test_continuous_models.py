"""Registry-wide checks of the continuous family: forward/backward, density losses, parameter counts, toy data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debench.data.cache import DATASETS
from debench.errors import SolverFailed
from debench.registry import create_model, list_models, model_info
from debench.train.measure import count_parameters
from tests.conftest import ROOT

# The smoke preset's model_args (a training step well under a second on 2 CPU cores).
FAST_CLASSIFY = {"method": "rk4", "step_size": 0.5}
SMOKE_ARGS = {
    "odenet_mnist": {**FAST_CLASSIFY, "adjoint": False}, "rknet_mnist": FAST_CLASSIFY, "resnet6_mnist": {},
    "odenet_cifar": {**FAST_CLASSIFY, "widths": [8, 16], "adjoint": False},
    "node_mnist": {**FAST_CLASSIFY, "filters": 16}, "anode_mnist": {**FAST_CLASSIFY, "filters": 16},
    "node_cifar": {**FAST_CLASSIFY, "filters": 16}, "anode_cifar": {**FAST_CLASSIFY, "filters": 16},
    "sonode_mnist": {**FAST_CLASSIFY, "filters": 16}, "sonode_cifar": {**FAST_CLASSIFY, "filters": 16},
    "ffjord_toy": {"hidden": [16, 16], "method": "rk4", "step_size": 0.25},
    "rnode_toy": {"hidden": [16, 16], "step_size": 0.5, "eval_method": "rk4"},
    "ffjord_mnist": {"hidden": [8], "n_scales": 1, "n_blocks": 1, "method": "rk4", "step_size": 0.5,
                     "adjoint": False},
    "rnode_mnist": {"hidden": [8], "n_scales": 1, "n_blocks": 1, "step_size": 0.5, "adjoint": False,
                    "eval_method": "rk4"},
}


def _ours(**filters) -> list[str]:
    """This family's models (the future family, models/future/, also files models as continuous)."""
    return [n for n in list_models(family="continuous", **filters)
            if model_info(n).factory.__module__.startswith("debench.models.continuous")]


def image_kwargs(name: str) -> dict:
    return {"in_channels": 1, "image_size": 28} if "mnist" in name else {"in_channels": 3, "image_size": 32}


def test_every_continuous_model_has_smoke_args():
    assert sorted(SMOKE_ARGS) == _ours()


@pytest.mark.parametrize("name", _ours(task="classify"))
def test_classifier_forward_backward_finite(name):
    torch.manual_seed(0)
    kw = image_kwargs(name)
    model = create_model(name, num_classes=10, **kw, **SMOKE_ARGS[name])
    x = torch.randn(2, kw["in_channels"], kw["image_size"], kw["image_size"]).to(memory_format=torch.channels_last)
    logits = model(x)
    assert logits.shape == (2, 10)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2]))
    if hasattr(model, "regularization_loss"):
        loss = loss + model.regularization_loss()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if model_info(name).evals_per_forward is None:
        stats = model.debench_stats()
        assert stats["nfe_forward"] == 2 * 4 * len([m for m in model.modules() if type(m).__name__ == "ODEBlock"])
        assert stats["nfe_backward"] == 0  # smoke args backprop through the solver: no adjoint solve


@pytest.mark.parametrize("name", _ours(task="density"))
def test_density_training_loss_backward_and_metrics(name, tmp_path):
    torch.manual_seed(0)
    info = model_info(name)
    if "toy" in name:
        model = create_model(name, data_shape=(2,), num_classes=0, **SMOKE_ARGS[name])
        x = torch.from_numpy(DATASETS["moons"].builder(seed=0, train_size=16, test_size=8)["x_train"])
    else:
        model = create_model(name, num_classes=10, **image_kwargs(name), **SMOKE_ARGS[name])
        x = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
    loss = model.training_loss(x, None) + model.regularization_loss()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if name.startswith("rnode"):
        assert float(model.regularization_loss().detach()) > 0
    assert model.debench_stats()["nfe_forward"] > 0
    model.eval()
    with torch.no_grad():
        metrics = model.evaluate_metrics(x, None, batch_size=8)
    assert set(metrics) == {info.metric, "nfe"} and np.isfinite(metrics[info.metric])
    if "toy" in name:  # evaluation with the eval solver reproduces the training NLL of the same points
        assert metrics["nll"] == pytest.approx(float(loss.detach() - model.regularization_loss().detach()), rel=0.05)
        files = model.write_artifacts(tmp_path)
        assert [f.name for f in files] == ["density.png"] and files[0].stat().st_size > 0


def test_mnist_flow_sample_grid_and_bits_per_dim_of_uniform_density():
    model = create_model("ffjord_mnist", **SMOKE_ARGS["ffjord_mnist"]).eval()
    for p in model.parameters():  # zero field: z(T) = logit(x), so p(x) is the logit-normal density
        torch.nn.init.zeros_(p)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logp = model.log_prob(x)
    s = 1e-6 + (1 - 2e-6) * x
    y = torch.log(s) - torch.log1p(-s)
    expected = (-0.5 * y.pow(2) - 0.5 * np.log(2 * np.pi) + np.log(1 - 2e-6) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    torch.testing.assert_close(logp, expected, rtol=1e-5, atol=1e-2)


@pytest.mark.slow
def test_mnist_flow_writes_sample_grid(tmp_path):
    model = create_model("ffjord_mnist", **SMOKE_ARGS["ffjord_mnist"])
    files = model.write_artifacts(tmp_path)
    assert [f.name for f in files] == ["samples.png"] and files[0].stat().st_size > 0


def chen_mnist_parameters(feature: str) -> int:
    """Chen et al.'s MNIST network counted layer by layer from their code (rtqichen/torchdiffeq,
    examples/odenet_mnist.py): conv downsampling, then one ODEBlock or six ResBlocks, then the head."""
    gn, conv = 2 * 64, lambda cin, k, bias=True: cin * 64 * k * k + (64 if bias else 0)  # noqa: E731
    down = conv(1, 3) + gn + conv(64, 4) + gn + conv(64, 4)
    ode = gn + conv(65, 3) + gn + conv(65, 3) + gn          # ConcatConv2d: time is one more channel
    res = 6 * (gn + conv(64, 3, bias=False) + gn + conv(64, 3, bias=False))
    head = gn + 64 * 10 + 10
    return down + (ode if feature == "ode" else res) + head


def test_chen_parameter_counts():
    """Our builds have exactly the parameters of the authors' architecture, and are within 6% of the
    counts their Table 1 prints (0.22M, 0.60M: rounded, read from the vendored published CSV)."""
    import pandas as pd

    published = pd.read_csv(ROOT / "config" / "reference" / "published_results.csv")
    published = published[published.table_id == "CHEN18_T1"].set_index("model")["params_m"] * 1e6
    for name, feature, row in [("odenet_mnist", "ode", "ODE-Net"), ("rknet_mnist", "ode", "RK-Net"),
                               ("resnet6_mnist", "res", "ResNet")]:
        ours = count_parameters(create_model(name))
        assert ours == chen_mnist_parameters(feature), name
        assert abs(ours / published[row] - 1) < 0.06, (name, ours, published[row])


@pytest.mark.parametrize("dataset", ["mnist", "cifar"])
def test_node_and_anode_are_parameter_matched(dataset):
    node = count_parameters(create_model(f"node_{dataset}"))
    anode = count_parameters(create_model(f"anode_{dataset}"))
    assert abs(node / anode - 1) < 0.01, (node, anode)  # within 1%


def test_unknown_option_is_a_configuration_error():
    with pytest.raises(TypeError, match="unknown continuous-model option"):
        create_model("odenet_mnist", rtoll=1e-3)


def test_step_cap_on_a_model_raises_solver_failed():
    model = create_model("odenet_mnist", rtol=1e-12, atol=1e-12, max_num_steps=2)
    with pytest.raises(SolverFailed):
        model(torch.randn(1, 1, 28, 28))


@pytest.mark.parametrize("adjoint", [False, True])
def test_rnode_regularizer_on_classifier(adjoint):
    model = create_model("odenet_cifar", **FAST_CLASSIFY, widths=[4], kinetic_energy=0.1, jacobian_norm=0.1,
                         adjoint=adjoint)
    x = torch.randn(2, 3, 8, 8)
    (model(x).sum() + model.regularization_loss()).backward()
    reg = model.regularization_loss()
    assert reg.requires_grad and float(reg.detach()) > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    stats = model.debench_stats()
    assert stats == {"nfe_forward": 8, "nfe_backward": 8 if adjoint else 0}
    model.eval()
    model(x)
    assert float(model.regularization_loss()) == 0.0


@pytest.mark.parametrize("name", ["eight_gaussians", "checkerboard", "two_spirals", "pinwheel", "circles", "moons"])
def test_toy_datasets_deterministic_and_well_formed(name):
    spec = DATASETS[name]
    assert spec.kind == "array" and spec.shape == (2,) and spec.sizes == (20000, 2000)
    a = spec.builder(seed=3, train_size=500, test_size=50)
    b = spec.builder(seed=3, train_size=500, test_size=50)
    c = spec.builder(seed=4, train_size=500, test_size=50)
    assert a["x_train"].dtype == np.float32 and a["x_train"].shape == (500, 2) and a["y_test"].dtype == np.int64
    assert np.array_equal(a["x_train"], b["x_train"]) and not np.array_equal(a["x_train"], c["x_train"])
    assert not np.array_equal(a["x_train"][:50], a["x_test"])
    assert np.abs(a["x_train"]).max() < 6 and (a["y_train"] == 0).all()


def test_checkerboard_lives_on_black_squares():
    x = DATASETS["checkerboard"].builder(seed=0, train_size=2000, test_size=10)["x_train"] / 2
    assert ((np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0).all()
