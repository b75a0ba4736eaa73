"""Score SDE samplers against upstream (yang-song/score_sde_pytorch@cb1f359; issue 27, point 5).

Upstream's CIFAR-10 configs pick the PC sampler's predictor per SDE: ``reverse_diffusion`` with a
Langevin corrector for VE (``configs/ve/cifar10_ncsnpp_continuous.py``), ``euler_maruyama`` for
the continuous VP and sub-VP configs. The reverse-diffusion predictor (``sampling.py``
``ReverseDiffusionPredictor`` on ``sde_lib.py`` ``VESDE.discretize``) moves ``x`` by
``(sigma_i^2 - sigma_{i-1}^2) score`` and adds noise of that variance, on ``N`` geometric noise
scales with ``i = floor(t (N - 1) / T)``.
"""

import math

import pytest
import torch

from debench.models.stochastic import samplers as S
from debench.models.stochastic.diffusion_sdes import make_sde
from debench.registry import create_model, merged_model_args
from tests.test_stochastic_numerics import MEAN, STD, gaussian_score


def test_reverse_diffusion_step_by_hand():
    """N = 4 scales of the VE SDE (sigma 0.01 -> 50): at t = 1, i = 3, the step variance is
    sigma(1)^2 - sigma(2/3)^2 = 50^2 - (0.01 * 5000^(2/3))^2; at i = 0 it is sigma_min^2."""
    sde = make_sde("ve")
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    score = gaussian_score(sde)
    var = 50.0**2 - (0.01 * 5000 ** (2 / 3)) ** 2
    t1 = torch.tensor(1.0, dtype=torch.float64)
    got = S.ve_reverse_diffusion_step(sde, score, x, t1, 4, last=True)
    assert torch.allclose(got, x + var * score(x, t1.expand(1)), rtol=1e-12)
    t0 = torch.tensor(1e-5, dtype=torch.float64)
    got0 = S.ve_reverse_diffusion_step(sde, score, x, t0, 4, last=True)
    assert torch.allclose(got0, x + 0.01**2 * score(x, t0.expand(1)), rtol=1e-12)
    # the EM predictor's step differs: g(1)^2 h = 50^2 * 2 log(5000) / 3
    em = S._reverse_em_step(sde, score, x, t1, 1 / 3, last=True)
    assert not torch.allclose(em, got, rtol=1e-3)
    assert math.isclose(float(sde.diffusion(t1)) ** 2 / 3, 2500 * 2 * math.log(5000) / 3, rel_tol=1e-9)


def test_ve_reverse_diffusion_pc_recovers_gaussian():
    """4000 samples of N(MEAN, 0.25 I) through the VE PC sampler with the reverse-diffusion predictor:
    mean within 0.05, variance within 10% (as the other samplers in test_stochastic_numerics)."""
    torch.manual_seed(0)
    sde = make_sde("ve")
    x = sde.prior_sample((4000, 2), dtype=torch.float64)
    out = S.predictor_corrector(sde, gaussian_score(sde), x, steps=500, snr=0.16, predictor="reverse_diffusion")
    assert torch.allclose(out.mean(0), MEAN, atol=0.05)
    assert torch.allclose(out.var(0), torch.full((2,), STD**2, dtype=torch.float64), rtol=0.10)


def test_pc_predictor_defaults_are_upstreams_per_sde():
    assert create_model("score_sde_toy", sde="ve").pc_predictor == "reverse_diffusion"
    assert create_model("score_sde_toy", sde="vp").pc_predictor == "euler_maruyama"
    assert create_model("score_sde_toy", sde="subvp").pc_predictor == "euler_maruyama"
    assert merged_model_args("score_sde_ve_cifar", {})["pc_predictor"] is None  # None: the SDE's default
    with pytest.raises(ValueError, match="pc_predictor"):
        create_model("score_sde_toy", sde="vp", pc_predictor="reverse_diffusion")
    with pytest.raises(ValueError, match="pc_predictor"):
        S.predictor_corrector(make_sde("vp"), lambda x, t: -x, torch.zeros(1, 2), steps=2,
                              predictor="reverse_diffusion")


def test_model_pc_sampler_runs_the_chosen_predictor(monkeypatch):
    seen = []
    real = S.predictor_corrector
    monkeypatch.setattr(S, "predictor_corrector", lambda *a, **k: seen.append(k.get("predictor")) or real(*a, **k))
    torch.manual_seed(0)
    model = create_model("score_sde_toy", sde="ve", hidden=8, layers=1, sample_steps=3)
    model.sample(4, "pc", device="cpu")
    assert seen == ["reverse_diffusion"]


def test_ddpm_ancestral_sampler_is_the_authors_p_sample_in_epsilon_form():
    """Ho et al.'s ``p_sample`` (hojonathanho/diffusion ``diffusion_utils_2.py``, CIFAR-10:
    eps prediction, ``model_var_type='fixedlarge'``): ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t)
    eps) / sqrt(alpha_t) + sqrt(beta_t) z``, no noise at t = 0. Our sampler takes the score
    ``-eps / sqrt(1 - abar_t)``; with the same noise draws both must agree step for step. A sampler
    using the posterior variance ('fixedsmall') or adding noise at t = 0 fails."""
    sde = make_sde("vp", n=25)
    betas = sde.discrete_betas().double()
    abar = torch.cumprod(1 - betas, 0)
    eps_net = lambda x, i: torch.tanh(x) * (1 + i)  # any deterministic noise predictor
    score = lambda x, t: -eps_net(x, torch.round(t[0] * (len(betas) - 1))) / (1 - abar[int(round(float(t[0]) * (len(betas) - 1)))]).sqrt()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    torch.manual_seed(7)
    got = S.ancestral(sde, score, x0.clone())
    torch.manual_seed(7)
    x = x0.clone()
    for i in reversed(range(len(betas))):
        mean = (x - betas[i] / (1 - abar[i]).sqrt() * eps_net(x, torch.tensor(float(i)))) / (1 - betas[i]).sqrt()
        x = mean + betas[i].sqrt() * torch.randn_like(x) if i > 0 else mean
    assert torch.allclose(got, x, rtol=1e-10, atol=1e-12)
