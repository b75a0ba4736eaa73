"""Registry-wide checks of the stochastic family: every model builds, trains one step, no NaN."""

from __future__ import annotations

import math

import pytest
import torch

from debench.registry import create_model, list_models, model_info


pytestmark = pytest.mark.usefixtures("one_thread")

# Small sizes so the whole family runs in seconds on a CPU (the smoke preset uses the same args).
SMALL = {
    "neural_sde_cifar": dict(width=16, eval_samples=2),
    "neural_sde_cifar_ode": dict(width=16),
    "neural_sde_mnist": dict(width=16, eval_samples=2),
    "neural_sde_cifar_dropout": dict(width=16, eval_samples=2),
    "latent_sde": dict(latent_size=2, context_size=8, hidden_size=16),
    "score_sde_toy": dict(hidden=32, layers=2, sample_steps=5, num_samples=16),
}
UNET_SMALL = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16], dropout=0.0, sample_steps=3,
                  num_samples=2, likelihood_examples=2, sde_args=None)
SKIP_BIG = {"stochastic_depth_resnet1202"}


def _ours(**filters):
    """Names this family's modules register (other families may also file models under 'stochastic')."""
    return [n for n in list_models(family="stochastic", **filters)
            if model_info(n).factory.__module__.startswith("debench.models.stochastic")]


def _classify_input(name):
    return torch.randn(2, 1, 28, 28) if "mnist" in name else torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("name", _ours(task="classify"))
def test_classifier_forward_backward(name):
    if name in SKIP_BIG:
        pytest.skip("large; covered by the slow test below")
    torch.manual_seed(0)
    kwargs = dict(SMALL.get(name, {}))
    if "mnist" in name:
        kwargs.update(in_channels=1)
    model = create_model(name, num_classes=10, **kwargs)
    out = model(_classify_input(name))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
    assert sum(g is not None for g in grads) > 0
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(_classify_input(name))).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SKIP_BIG))
def test_big_classifiers(name):
    model = create_model(name)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,params", [
    ("stochastic_depth_resnet110", 1_727_962),  # = ResNet-110 (1.7M, He et al. Table 6)
    ("shake_shake26_2x32d", 2_923_162),  # Gastaldi Table: 2.9M
    ("shake_shake26_2x64d", 11_653_978),  # 11.7M
    ("shake_shake26_2x96d", 26_192_922),  # 26.2M
])
def test_parameter_counts(name, params):
    assert sum(p.numel() for p in create_model(name).parameters()) == params


def test_ddpm_unet_matches_ho_et_al_size():
    from debench.models.stochastic.score_nets import UNet

    assert sum(p.numel() for p in UNet().parameters()) == 35_746_307  # DDPM CIFAR-10: 35.7M


def test_neural_sde_counts_and_robustness():
    torch.manual_seed(0)
    model = create_model("neural_sde_cifar", width=16, dt=0.25, eval_samples=3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    stats = model.debench_stats()
    # The authors' scheme takes int(1 / dt) + 1 = 5 Euler-Maruyama steps of 1/5.
    assert stats["nfe_forward"] == 5 and stats["nfe_diffusion"] == 5
    assert model.debench_stats()["nfe_forward"] == 0
    metrics = model.extra_eval_metrics(torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,)), batch_size=4)
    assert set(metrics) == {"acc_perturb_0", "acc_perturb_0.1", "acc_perturb_0.2", "acc_perturb_0.5"}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())
    assert model.training  # robustness_curve restores the mode


@pytest.mark.parametrize("noise,method", [("multiplicative", "milstein"), ("dropout", "euler")])
def test_neural_sde_noise_types(noise, method):
    model = create_model("neural_sde_cifar", width=16, noise=noise, method=method, sigma=0.2)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert torch.isfinite(out).all()


def test_neural_sde_eval_averages_noise_paths():
    torch.manual_seed(0)
    model = create_model("neural_sde_cifar", width=16, sigma=0.5, eval_samples=1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x)
        model.eval_samples = 50
        c, d = model(x), model(x)
    # Single paths differ; 50-path averages differ far less.
    assert (a - b).abs().max() > 3 * (c - d).abs().max()


@pytest.mark.parametrize("dataset", ["ou_paths", "lorenz"])
def test_latent_sde_training_loss_and_metrics(dataset, tmp_path):
    from debench.data.cache import DATASETS

    torch.manual_seed(0)
    spec = DATASETS[dataset]
    arrays = spec.builder(seed=0, train_size=4, test_size=3)
    x = torch.from_numpy(arrays["x_train"])
    model = create_model("latent_sde", data_shape=spec.shape, **SMALL["latent_sde"], kl_anneal_iters=10)
    loss = model.training_loss(x, None)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.kl_weight() == pytest.approx(0.1)
    stats = model.debench_stats()
    assert stats["nfe_forward"] > 0 and stats["nfe_backward"] > 0
    with torch.no_grad():
        metrics = model.evaluate_metrics(torch.from_numpy(arrays["x_test"]), None, batch_size=2)
    assert math.isfinite(metrics["neg_elbo"]) and metrics["kl_path"] >= 0
    assert (tmp_path / "latent_sde_paths.png") in model.write_artifacts(tmp_path)


@pytest.mark.parametrize("name", _ours(task="generate"))
def test_generative_training_loss_and_metrics(name, tmp_path):
    torch.manual_seed(0)
    info = model_info(name)
    if name == "score_sde_toy":
        model, x = create_model(name, **SMALL[name]), torch.randn(8, 2)
    else:
        args = dict(UNET_SMALL)
        if name == "ddpm_cifar":
            args["sde_args"] = {"n": 25}  # 25 ancestral steps (beta_max / n must stay < 1)
        model, x = create_model(name, **args), torch.rand(2, 3, 32, 32)
    loss = model.training_loss(x, None)
    loss.backward()
    assert torch.isfinite(loss)
    with torch.no_grad():
        metrics = model.evaluate_metrics(x, None, batch_size=2)
    assert math.isfinite(metrics[info.metric])
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    files = model.write_artifacts(tmp_path)
    assert files and all(f.exists() for f in files)
    if name != "score_sde_toy":
        assert "fid" not in metrics and (tmp_path / "fid_not_computed.txt").exists()


def test_registry_metadata():
    for name in _ours():
        info = model_info(name)
        assert info.paper and info.scheme
    assert model_info("latent_sde").metric == "neg_elbo"
    assert model_info("stochastic_depth_resnet110").reference[0]["table_id"] == "HUANG16_T1"
