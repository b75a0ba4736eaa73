"""Closed-form checks of the stochastic family's numerics.

Statistical tolerances are stated next to each Monte Carlo assertion; seeds are fixed, so a
failure is reproducible rather than flaky.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torchsde

from debench.models.stochastic import samplers as S
from debench.models.stochastic.depth import StochasticDepthBlock, linear_survival, stochastic_depth_resnet
from debench.models.stochastic.diffusion_sdes import bcast, make_sde
from debench.models.stochastic.shake_shake import SHAKE_HOOKS, ShakeShakeMix


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- stochastic depth

def test_linear_survival_schedule():
    model = stochastic_depth_resnet(110, p_last=0.5)
    p = torch.tensor([b.survival for b in model.blocks])
    assert len(p) == 54
    assert p[-1].item() == pytest.approx(0.5)
    assert p[0].item() == pytest.approx(1 - 0.5 / 54)
    assert torch.allclose(p[1:] - p[:-1], torch.full((53,), -0.5 / 54, dtype=p.dtype), atol=1e-12)
    assert linear_survival(0, 1, 1.0) == 1.0


def test_stochastic_depth_expectation_matches_test_mode():
    """With linear branches and no activation the net is a product of independent random
    matrices ``prod_l (I + b_l A_l)``, so its training-mode mean is exactly the test-mode output
    ``prod_l (I + p_l A_l)``. Tolerance: 5 standard errors of the Monte Carlo mean."""
    torch.manual_seed(0)
    import random

    random.seed(0)
    total, d = 4, 3
    blocks = nn.Sequential(*[
        StochasticDepthBlock(nn.Linear(d, d, bias=False), nn.Identity(), linear_survival(i, total, 0.5),
                             activation=lambda h: h)
        for i in range(total)])
    x = torch.randn(1, d)
    blocks.eval()
    with torch.no_grad():
        expected = blocks(x)
        blocks.train()
        outs = torch.cat([blocks(x) for _ in range(20000)])
    se = outs.std(0) / math.sqrt(len(outs))
    assert ((outs.mean(0) - expected[0]).abs() <= 5 * se + 1e-6).all()
    # The random output really is random (it is not the expectation itself).
    assert outs.std(0).min() > 0.01


def test_dropped_block_skips_its_branch():
    calls = []
    branch = nn.Linear(2, 2)
    branch.register_forward_hook(lambda *a: calls.append(1))
    block = StochasticDepthBlock(branch, nn.Identity(), survival=0.0 + 1e-12)
    block(torch.randn(1, 2))
    assert calls == []  # survival ~0: the branch is never computed in training mode


# ---------------------------------------------------------------- shake-shake

@pytest.mark.parametrize("forward_mode,backward_mode,level", [
    ("shake", "shake", "image"), ("shake", "keep", "batch"), ("even", "even", "batch"),
    ("shake", "even", "image"), ("even", "shake", "batch"),
])
def test_shake_shake_coefficients_follow_modes(forward_mode, backward_mode, level):
    torch.manual_seed(0)
    seen = {}
    hook = lambda phase, c: seen.__setitem__(phase, c.detach().clone())  # noqa: E731
    SHAKE_HOOKS.append(hook)
    try:
        h1 = torch.ones(64, 2, 3, 3, requires_grad=True)
        h2 = torch.zeros(64, 2, 3, 3, requires_grad=True)
        out = ShakeShakeMix.apply(h1, h2, forward_mode, backward_mode, level)
        out.backward(torch.ones_like(out))
    finally:
        SHAKE_HOOKS.remove(hook)
    alpha, beta = seen["forward"], seen["backward"]
    # The forward output is alpha h1 + (1 - alpha) h2 = alpha; gradients are beta and 1 - beta.
    assert torch.allclose(out, alpha.expand_as(out))
    assert torch.allclose(h1.grad, beta.expand_as(h1)) and torch.allclose(h2.grad, (1 - beta).expand_as(h2))
    expected_shape = (64, 1, 1, 1) if level == "image" else (1, 1, 1, 1)
    assert alpha.shape == expected_shape and beta.shape == expected_shape
    if forward_mode == "even":
        assert (alpha == 0.5).all()
    elif level == "image":
        assert alpha.std() > 0.1 and ((alpha >= 0) & (alpha <= 1)).all()  # U[0,1] std is 0.29
    if backward_mode == "keep":
        assert torch.equal(alpha, beta)
    elif backward_mode == "even":
        assert (beta == 0.5).all()
    elif level == "image":
        assert not torch.equal(alpha, beta) and beta.std() > 0.1


def test_shake_shake_is_deterministic_average_in_eval():
    from debench.registry import create_model

    model = create_model("shake_shake26_2x32d").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_shakedrop_gate_mean_and_gradient():
    from debench.models.stochastic.depth import ShakeDropGate

    torch.manual_seed(0)
    h = torch.ones(100000, 1, requires_grad=True)
    out = ShakeDropGate.apply(h, 0.5)
    out.backward(torch.ones_like(out))
    # E[b + alpha - b alpha] = p (alpha ~ U[-1, 1]); E[b + beta - b beta] = p + (1 - p) / 2.
    # Standard errors are below 0.003 here; tolerance 0.01.
    assert out.mean().item() == pytest.approx(0.5, abs=0.01)
    assert h.grad.mean().item() == pytest.approx(0.75, abs=0.01)
    assert (h.grad >= 0).all() and (h.grad <= 1).all()


# ---------------------------------------------------------------- SDE solving

class OU(nn.Module):
    sde_type, noise_type = "ito", "diagonal"

    def __init__(self, theta, mu, sigma):
        super().__init__()
        self.theta, self.mu, self.sigma = theta, mu, sigma

    def f(self, t, y):
        return self.theta * (self.mu - y)

    def g(self, t, y):
        return torch.full_like(y, self.sigma)


def test_euler_maruyama_reproduces_ou_moments():
    """OU from x0: mean mu + (x0 - mu) e^{-theta t}, variance sigma^2 (1 - e^{-2 theta t}) / (2 theta).
    Tolerance: 4 standard errors plus the O(dt) bias of Euler-Maruyama (dt theta = 0.01 moves the
    mean by < 0.002 and the variance by < 0.6% here)."""
    torch.manual_seed(0)
    theta, mu, sigma, x0, t1, n = 1.0, 0.5, 0.8, 2.0, 1.0, 20000
    y = torchsde.sdeint(OU(theta, mu, sigma), torch.full((n, 1), x0, dtype=torch.float64),
                        torch.tensor([0.0, t1], dtype=torch.float64), method="euler", dt=0.01)[-1, :, 0]
    mean = mu + (x0 - mu) * math.exp(-theta * t1)
    var = sigma**2 * (1 - math.exp(-2 * theta * t1)) / (2 * theta)
    assert abs(y.mean().item() - mean) < 4 * math.sqrt(var / n) + 0.002
    assert abs(y.var().item() - var) < 4 * var * math.sqrt(2 / n) + 0.006 * var


def test_adjoint_gradients_match_direct_backprop():
    """Latent SDE ELBO in float64 with one fixed Brownian path: the reversible-Heun adjoint
    reconstructs the forward path, so its gradients agree with backprop through the solver.
    Measured agreement is ~1e-4 relative per parameter tensor (torchsde's adjoint re-steps to
    every observation time while the forward pass interpolates); tolerance 1e-3 in norm, while a
    wrong adjoint (e.g. a context lookup that flips at grid points) is off by several percent."""
    from debench.models.stochastic.latent_sde import LatentSDE

    torch.manual_seed(0)
    model = LatentSDE((6, 2), latent_size=2, context_size=4, hidden_size=8, kl_anneal_iters=0).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(3, 3), dtype=torch.float64, entropy=123)
        torch.manual_seed(1)  # same z0 draw
        model.zero_grad()
        terms = model.elbo_terms(x, bm=bm, adjoint=adjoint)
        loss = -(terms["log_lik"] - terms["kl_z0"] - terms["kl_path"]).mean()
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).norm() <= 1e-3 * grads[0].norm()


# ---------------------------------------------------------------- score SDEs with the exact score

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
STD = 0.5


def gaussian_score(sde):
    """Exact score of p_t when p_0 = N(MEAN, STD^2 I): p_t = N(a MEAN, (a^2 STD^2 + s^2) I)."""
    def score(x, t):
        a, s = (bcast(c, x) for c in sde.marginal(t))
        return -(x - a * MEAN.to(x)) / (a * a * STD**2 + s * s)
    return score


CASES = [("ve", "em"), ("ve", "pc"), ("ve", "ode"), ("vp", "em"), ("vp", "pc"), ("vp", "ode"), ("vp", "ancestral"),
         ("subvp", "em"), ("subvp", "pc"), ("subvp", "ode")]


@pytest.mark.parametrize("sde_name,sampler", CASES)
def test_samplers_recover_gaussian(sde_name, sampler):
    """4000 samples: mean within 0.05 (SE 0.008) and per-dimension variance within 10% of 0.25
    (SE 2.2%; the rest covers the discretization at 500 steps and the VE prior's mismatch)."""
    torch.manual_seed(0)
    sde, n = make_sde(sde_name), 4000
    score = gaussian_score(sde)
    x = sde.prior_sample((n, 2), dtype=torch.float64)
    if sampler == "em":
        out = S.euler_maruyama(sde, score, x, steps=500)
    elif sampler == "pc":
        out = S.predictor_corrector(sde, score, x, steps=500, snr=0.16)
    elif sampler == "ode":
        out, nfe = S.probability_flow(sde, score, x)
        assert 10 < nfe < 1000
    else:
        out = S.ancestral(sde, score, x)
    assert torch.allclose(out.mean(0), MEAN, atol=0.05)
    assert torch.allclose(out.var(0), torch.full((2,), STD**2, dtype=torch.float64), rtol=0.10)
    cov = torch.cov(out.T)
    assert abs(cov[0, 1].item()) < 0.03


@pytest.mark.parametrize("sampler", ["em", "pc", "ode", "ancestral"])
def test_samplers_build_no_autograd_graph(sampler):
    """Sampling with a trainable score network must not record a graph (memory grows with steps)."""
    torch.manual_seed(0)
    sde, net = make_sde("vp"), nn.Linear(3, 2)
    score = lambda x, t: net(torch.cat([x, bcast(t, x)[:, :1]], 1))  # noqa: E731
    x = sde.prior_sample((8, 2))
    out = {"em": lambda: S.euler_maruyama(sde, score, x, steps=5),
           "pc": lambda: S.predictor_corrector(sde, score, x, steps=5),
           "ode": lambda: S.probability_flow(sde, score, x, rtol=1e-2, atol=1e-2)[0],
           "ancestral": lambda: S.ancestral(sde, score, x)}[sampler]()
    assert out.shape == x.shape and not out.requires_grad


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_probability_flow_likelihood_matches_closed_form(sde_name, trace):
    """log p(x) of N(MEAN, STD^2 I) through the ODE: mean error < 0.01 nats, worst < 0.1 nats (the
    VE prior N(0, 50^2) differs slightly from the true p_T = N(MEAN, 50^2 + STD^2))."""
    torch.manual_seed(0)
    sde = make_sde(sde_name)
    x = MEAN + STD * torch.randn(64, 2, dtype=torch.float64)
    logp, nfe = S.log_likelihood(sde, gaussian_score(sde), x, trace=trace)
    closed = (-0.5 * ((x - MEAN) / STD) ** 2 - math.log(STD) - 0.5 * math.log(2 * math.pi)).sum(1)
    err = logp - closed
    assert err.mean().abs() < 0.01 and err.abs().max() < 0.1
    assert nfe > 0


class ExactNoiseNet(nn.Module):
    """The noise-prediction network whose score is exactly the Gaussian one (for the model path)."""

    def __init__(self, sde):
        super().__init__()
        self.sde, self.dummy = sde, nn.Parameter(torch.zeros(()))

    def forward(self, x, label):
        t = label / 999.0  # VP/sub-VP noise label
        _, s = self.sde.marginal(t)
        return -bcast(s, x) * gaussian_score(self.sde)(x, t)


def test_model_bits_per_dim_matches_closed_form():
    from debench.models.stochastic.score_sde import ScoreSDEModel

    torch.manual_seed(0)
    model = ScoreSDEModel(nn.Identity(), (2,), sde="vp", images=False, trace="exact")
    model.net = ExactNoiseNet(model.sde).double()
    x = MEAN + STD * torch.randn(128, 2, dtype=torch.float64)
    bpd, _ = model.bits_per_dim(x)
    closed = (-0.5 * ((x - MEAN) / STD) ** 2 - math.log(STD) - 0.5 * math.log(2 * math.pi)).sum(1)
    expected = -closed / (2 * math.log(2))
    # 0.01 nats per example = 0.0072 bits per dimension in 2-D.
    assert (bpd - expected).mean().abs() < 0.0072


# ---------------------------------------------------------------- sampler end time and DDPM's noise scales

@pytest.mark.parametrize("sde_name,end", [("ve", 1e-5), ("vp", 1e-3), ("subvp", 1e-3)])
@pytest.mark.parametrize("sampler", ["em", "pc", "ode"])
def test_samplers_end_at_the_authors_time(sde_name, end, sampler):
    """yang-song/score_sde run_lib.py: sampling_eps 1e-5 for VE, 1e-3 for VP and sub-VP."""
    from debench.models.stochastic.score_sde import ScoreSDEModel

    sde, seen = make_sde(sde_name), []

    def score(x, t):
        seen.append(float(t.min()))
        return torch.zeros_like(x)

    x = sde.prior_sample((2, 2), dtype=torch.float64)
    {"em": lambda: S.euler_maruyama(sde, score, x, steps=4),
     "pc": lambda: S.predictor_corrector(sde, score, x, steps=4),
     "ode": lambda: S.probability_flow(sde, score, x, rtol=1e-2, atol=1e-2)}[sampler]()
    assert min(seen) == pytest.approx(end, rel=1e-9)
    assert ScoreSDEModel(nn.Identity(), (2,), sde=sde_name, images=False).sample_eps == end


class ConstNet(nn.Module):
    """Predicts the noise ``c`` everywhere, so the score is ``-c / std``: it shows which std is used."""

    def __init__(self, c=0.3):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c, dtype=torch.float64))

    def forward(self, x, label):
        return self.c * torch.ones_like(x)


def ddpm_std(i, n=1000, beta_min=0.1, beta_max=20.0):
    betas = torch.linspace(beta_min / n, beta_max / n, n, dtype=torch.float64)
    return float((1 - torch.cumprod(1 - betas, 0)[i]).sqrt())


def test_ddpm_score_uses_the_discrete_noise_scales_it_was_trained_on():
    """At t = 1e-5 DDPM's std is sqrt(beta_1) = 0.01, the continuous s(t) 0.001 (10x); on the grid
    t = i / 999 it is sqrt(1 - alpha-bar_i); the continuous VP model keeps s(t)."""
    from debench.models.stochastic.score_sde import ScoreSDEModel

    ddpm = ScoreSDEModel(ConstNet(), (2,), sde="vp", discrete=True, images=False)
    cont = ScoreSDEModel(ConstNet(), (2,), sde="vp", images=False)
    x = torch.zeros(4, 2, dtype=torch.float64)
    t = torch.tensor([1e-5, 1e-3, 5 / 999, 500 / 999], dtype=torch.float64)
    expected = torch.tensor([ddpm_std(0), ddpm_std(0), ddpm_std(5), ddpm_std(500)], dtype=torch.float64)
    torch.testing.assert_close(ddpm.score(x, t)[:, 0], -0.3 / expected, rtol=1e-9, atol=0)
    torch.testing.assert_close(cont.score(x, t)[:, 0], -0.3 / cont.sde.marginal(t)[1], rtol=1e-9, atol=0)
    assert ddpm_std(0) == pytest.approx(0.01) and float(cont.sde.marginal(t)[1][0]) == pytest.approx(1e-3, rel=1e-3)


def test_ddpm_bits_per_dim_and_ode_sampler_use_the_discrete_scales():
    """The model's likelihood and probability-flow samples equal the solver's with DDPM's discrete score."""
    from debench.models.stochastic.score_sde import ScoreSDEModel

    torch.manual_seed(0)
    model = ScoreSDEModel(ConstNet(), (2,), sde="vp", discrete=True, images=False, trace="exact", ode_tol=1e-4)
    sde = model.sde

    def discrete_score(x, t):
        return -0.3 * torch.ones_like(x) / bcast(sde.discrete_std(t), x)

    x = MEAN + STD * torch.randn(8, 2, dtype=torch.float64)
    bpd, _ = model.bits_per_dim(x)
    logp, _ = S.log_likelihood(sde, discrete_score, x, 1e-5, 1e-4, 1e-4, trace="exact")
    torch.testing.assert_close(bpd, -logp / (2 * math.log(2)), rtol=1e-9, atol=1e-9)
    torch.manual_seed(1)
    got, _ = model.sample(8, "ode", device="cpu")
    torch.manual_seed(1)
    want, _ = S.probability_flow(sde, discrete_score, sde.prior_sample((8, 2)), 1e-3, 1e-4, 1e-4)
    torch.testing.assert_close(got, want)


# ---------------------------------------------------------------- FID

def test_frechet_distance_of_diagonal_gaussians():
    from debench.models.stochastic.fid import frechet_distance

    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    v1, v2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    closed = float((mu1 - mu2).pow(2).sum() + (v1.sqrt() - v2.sqrt()).pow(2).sum())
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(closed, rel=1e-9)


def test_frechet_distance_of_scaled_covariances_closed_form():
    """Non-diagonal case with a closed form: S2 = k^2 S1 gives tr((S1 S2)^(1/2)) = k tr S1."""
    from debench.models.stochastic.fid import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    s1, k = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), 1.7
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    closed = float((mu1 - mu2).pow(2).sum() + (1 - k) ** 2 * s1.trace())
    assert frechet_distance(mu1, s1, mu2, k * k * s1) == pytest.approx(closed, rel=1e-9)


def test_fid_statistics_of_feature_sets_match_numpy_and_closed_form():
    """The library's statistics of small feature sets are the sample mean and unbiased covariance,
    and the distance of two shifted copies is the squared shift (equal covariances)."""
    import numpy as np

    from debench.models.stochastic.fid import frechet_distance, statistics

    g = torch.Generator().manual_seed(0)
    f = torch.randn(50, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    mu, sigma = statistics(f)
    np.testing.assert_allclose(mu, f.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.numpy(), rowvar=False), rtol=1e-12)
    assert frechet_distance(*statistics(f), *statistics(f + shift)) == pytest.approx(5.25, rel=1e-6)


@pytest.mark.parametrize("weights,reference,n,reason", [
    (None, "x", 50000, "'inception_weights' is not set"),
    ("missing.pth", "x", 50000, "missing.pth does not exist"),
    ("W", None, 50000, "'fid_reference' is not set"),
    ("W", "missing_ref", 50000, "missing_ref does not exist"),
    ("W", "R", 64, "'num_samples' is 64; published FIDs use 50000"),
])
def test_fid_unavailable_reasons(tmp_path, weights, reference, n, reason):
    from debench.models.stochastic.fid import unavailable_reason

    (tmp_path / "W").write_bytes(b"x")
    (tmp_path / "R").mkdir()
    full = lambda p: None if p is None else str(tmp_path / p)  # noqa: E731
    assert reason in unavailable_reason(full(weights), full(reference), n)
    assert unavailable_reason(full("W"), full("R"), 50000) is None


def test_fid_refuses_weights_and_reference_that_are_not_the_published_ones(tmp_path):
    """A state dict of another network, a statistics file of the wrong set size and a shard folder
    of the wrong size each give FIDUnavailable naming the model arg, never a number."""
    import numpy as np

    from debench.models.stochastic import fid

    torch.save({"fc.weight": torch.zeros(1000, 2048)}, tmp_path / "other.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a state dict")
    for name in ("other.pth", "garbage.pth"):
        with pytest.raises(fid.FIDUnavailable, match="'inception_weights'.*not torch-fidelity's TF-FID"):
            fid.load_extractor(tmp_path / name, "cpu")
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3), sigma=np.eye(3), count=10000)
    with pytest.raises(fid.FIDUnavailable, match="'fid_reference'.*count=10000"):
        fid.reference_statistics(tmp_path / "stats.npz", None, 8)
    (tmp_path / "bad.npz").write_bytes(b"no zip")
    with pytest.raises(fid.FIDUnavailable, match="'fid_reference'.*not a readable .npz"):
        fid.reference_statistics(tmp_path / "bad.npz", None, 8)
    np.savez(tmp_path / "train_00.npz", images=np.zeros((8, 32, 32, 3), np.uint8))
    with pytest.raises(fid.FIDUnavailable, match="holds 8 training images, not 50000"):
        fid.reference_statistics(tmp_path, None, 8)


def test_model_writes_the_fid_reason_and_no_fid_key(tmp_path):
    """An image model whose FID cannot match the published protocol says why in fid_not_computed.txt."""
    from debench.models.stochastic.score_sde import ScoreSDEModel
    from debench.models.stochastic.score_nets import UNet

    torch.manual_seed(0)
    (tmp_path / "w.pth").write_bytes(b"x")
    net = UNet(3, 8, ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.0)
    model = ScoreSDEModel(net, (3, 8, 8), sde="vp", samplers=("em",), sample_steps=2, num_samples=2,
                          likelihood_examples=1, ode_tol=1e-2, inception_weights=str(tmp_path / "w.pth"),
                          fid_reference=str(tmp_path))
    with torch.no_grad():
        metrics = model.evaluate_metrics(torch.rand(2, 3, 8, 8), None, batch_size=2)
    assert not any(k.startswith("fid") for k in metrics)
    model.write_artifacts(tmp_path / "art")
    note = (tmp_path / "art" / "fid_not_computed.txt").read_text()
    assert note.startswith("FID not computed: ") and "'num_samples' is 2" in note


@pytest.mark.slow
def test_fid_refuses_torchvision_inception_weights(tmp_path):
    """torchvision's ImageNet Inception-v3 has the same layer names but not the TF-FID network's
    1008-way head: its state dict must be refused, not used for a number beside a published FID."""
    from torchvision.models import inception_v3

    from debench.models.stochastic import fid

    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(fid.FIDUnavailable, match="not torch-fidelity's TF-FID"):
        fid.load_extractor(tmp_path / "tv.pth", "cpu")


@pytest.mark.slow
def test_fid_pipeline_with_a_tf_compatible_state_dict(tmp_path, monkeypatch):
    """End to end through torch-fidelity's extractor with random weights of the right shapes: uint8
    conversion, 2048-d features, reference statistics from a file, handed to the distance (whose
    arithmetic the tests above check; a 2048-d eigendecomposition takes a minute on one core)."""
    import numpy as np
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from debench.models.stochastic import fid

    torch.save({}, tmp_path / "empty.pth")
    with monkeypatch.context() as m:
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        state = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(tmp_path / "empty.pth"))
    torch.save(state.state_dict(), tmp_path / "w.pth")
    net = fid.load_extractor(tmp_path / "w.pth", "cpu")
    imgs = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    feats = fid.features(net, fid.to_uint8(imgs), 3)
    assert feats.shape == (6, 2048) and feats.dtype == torch.float64
    mu, sigma = fid.statistics(feats)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, count=fid.REFERENCE_IMAGES)
    calls = []
    monkeypatch.setattr(fid, "frechet_distance", lambda *a: calls.append(a) or 1.5)
    out = fid.fid_of_samples({"em": imgs}, str(tmp_path / "w.pth"), str(tmp_path / "ref.npz"), 3)
    assert out == {"em": 1.5} and len(calls) == 1
    for got, want in zip(calls[0], (mu, sigma, mu, sigma)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
