"""Score-based generative models through SDEs (Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole, ICLR 2021).

A network learns the noise of ``x_t = a(t) x_0 + s(t) z`` by denoising score matching with
weight ``lambda(t) = s(t)^2`` (``|s(t) score + z|^2``), ``t ~ U[eps, 1]``; DDPM (Ho et al. 2020)
is the same with ``t`` on the VP SDE's 1000 discrete steps. Evaluation (``evaluate_metrics``):

- ``bits_per_dim``: test log-likelihood through the probability-flow ODE (torchdiffeq dopri5,
  rtol = atol = 1e-5, Hutchinson trace, or exact trace for low-dimensional data); images are
  uniformly dequantized, ``(k + u) / 256``, and the result includes the change of scale, as in
  the paper's Table 2. For 2-D data it is the continuous density's NLL in bits per dimension.
- ``nfe_likelihood``: ODE function evaluations per likelihood batch.
- for each sampler in ``samplers`` (``em``: reverse-SDE Euler-Maruyama; ``pc``: one Langevin
  corrector step at snr 0.16 plus a predictor, upstream's per SDE: reverse diffusion for VE,
  Euler-Maruyama for VP/sub-VP (model arg ``pc_predictor``); ``ode``: probability flow; ``ancestral``: DDPM):
  ``nfe_sample_<sampler>`` and, for array data, ``mmd_<sampler>`` (RBF-kernel MMD^2 to the test
  set, median bandwidth).
- ``fid_<sampler>`` and ``fid`` (the first sampler) only as the published FIDs were computed
  (:mod:`fid`: torch-fidelity's TF-FID Inception from the local file ``inception_weights``, the
  CIFAR-10 training set ``fid_reference``, ``num_samples >= 50000``); otherwise
  :meth:`write_artifacts` writes ``fid_not_computed.txt`` with the reason.

DDPM (``discrete=True``) is scored with the noise scales it was trained on, DDPM's discrete
``sqrt(1 - alpha-bar_i)`` (:meth:`VPSDE.discrete_std`), in every sampler and in bits/dim, as the
authors' ``get_score_fn`` does for non-continuous VP models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from debench.models.stochastic import samplers as S
from debench.models.stochastic.diffusion_sdes import bcast, make_sde
from debench.models.stochastic.score_nets import MLPScore, UNet
from debench.registry import register_model

SONG21 = ("Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole. Score-Based Generative Modeling through "
          "Stochastic Differential Equations. ICLR 2021")
HO20 = "Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020"
SAMPLERS = ("em", "pc", "ode", "ancestral")


def mmd_rbf(a: torch.Tensor, b: torch.Tensor) -> float:
    """Biased MMD^2 between samples ``a`` and ``b`` with an RBF kernel of median-heuristic bandwidth."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    both = torch.cat([a, b])
    d2 = torch.cdist(both, both).pow(2)
    bw = d2[d2 > 0].median().clamp_min(1e-12)
    k = torch.exp(-d2 / bw)
    n = len(a)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


class ScoreSDEModel(nn.Module):
    """Score model, SDE and samplers; images (``N x C x H x W`` in [0, 1]) or vectors (``N x d``).

    Args:
        net: noise-prediction network ``net(x, label)``.
        data_shape: shape of one example.
        sde: ``ve``, ``vp`` or ``subvp``; ``sde_args`` override its constants.
        discrete: DDPM training on the VP SDE's ``N`` discrete steps (needs ``sde="vp"``).
        images: data are quantized images in [0, 1] (dequantized for bits/dim).
        center: map images to [-1, 1] (VP/sub-VP) instead of [0, 1] (VE), as in the paper.
        train_eps, sample_eps, likelihood_eps: smallest times (1e-5, the SDE's ``sample_eps``
            (1e-5 VE, 1e-3 VP/sub-VP) when ``None``, 1e-5 in the paper).
        sample_steps: steps of the EM and PC samplers (1000 in the paper).
        snr: Langevin corrector signal-to-noise ratio (0.16 for CIFAR-10).
        samplers: which samplers evaluation runs.
        num_samples: samples per sampler at evaluation (FID wants 50000).
        likelihood_examples: test examples for bits/dim (``None``: the whole test split).
        trace: ``hutchinson`` or ``exact`` divergence for the likelihood ODE.
        inception_weights: local torch-fidelity TF-FID Inception state dict (``None``: no FID).
        fid_reference: CIFAR-10 training set for FID: a folder of ``train_*.npz`` shards or an
            ``.npz`` with ``mu``, ``sigma``, ``count`` (``None``: no FID).
        ode_tol: rtol = atol of the probability-flow ODE (1e-5 in the paper; looser for smoke runs).
        pc_predictor: predictor of the ``pc`` sampler: ``reverse_diffusion`` or ``euler_maruyama``
            (``None``: upstream's default per SDE, reverse diffusion for VE and Euler-Maruyama for
            VP/sub-VP; yang-song/score_sde_pytorch@cb1f359 ``configs/ve|vp|subvp/cifar10_*_continuous.py``).
    """

    def __init__(self, net: nn.Module, data_shape: Sequence[int], sde: str = "vp", sde_args: dict | None = None,
                 discrete: bool = False, images: bool = True, center: bool | None = None,
                 train_eps: float = 1e-5, sample_eps: float | None = None, likelihood_eps: float = 1e-5,
                 sample_steps: int = 1000, snr: float = 0.16, samplers: Sequence[str] = ("em", "pc", "ode"),
                 num_samples: int = 64, likelihood_examples: int | None = None, trace: str = "hutchinson",
                 inception_weights: str | None = None, ode_tol: float = 1e-5, fid_reference: str | None = None,
                 pc_predictor: str | None = None):
        super().__init__()
        self.pc_predictor = pc_predictor or ("reverse_diffusion" if sde == "ve" else "euler_maruyama")
        if self.pc_predictor not in S.PREDICTORS or (self.pc_predictor == "reverse_diffusion" and sde != "ve"):
            raise ValueError(f"model arg 'pc_predictor': {self.pc_predictor!r} is not available for the {sde} SDE; "
                             f"use {S.PREDICTORS} (reverse_diffusion: VE only)")
        self.ode_tol = ode_tol
        for s in samplers:
            if s not in SAMPLERS:
                raise ValueError(f"model arg 'samplers': unknown sampler {s!r}; use {SAMPLERS}")
        self.sde_name = sde
        self.sde = make_sde(sde, **(sde_args or {}))
        if (discrete or "ancestral" in samplers) and sde != "vp":
            raise ValueError("DDPM training and the ancestral sampler need sde='vp'")
        self.net, self.data_shape, self.discrete, self.images = net, tuple(data_shape), discrete, images
        self.center = (sde != "ve") if center is None else center
        self.sample_eps = self.sde.sample_eps if sample_eps is None else sample_eps
        self.train_eps, self.likelihood_eps = train_eps, likelihood_eps
        self.sample_steps, self.snr, self.samplers = sample_steps, snr, tuple(samplers)
        self.num_samples, self.likelihood_examples, self.trace = num_samples, likelihood_examples, trace
        self.inception_weights, self.fid_reference = inception_weights, fid_reference
        self._samples: dict[str, torch.Tensor] = {}
        self._fid_reason: str | None = None

    # ---------------------------------------------------------------- data space and score
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1 if self.images and self.center else x

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2 if self.center else x).clamp(0, 1) if self.images else x

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``-net(x, label(t)) / s``: ``s`` the std the network was trained on (DDPM: the discrete one)."""
        std = self.sde.discrete_std(t) if self.discrete else self.sde.marginal(t)[1]
        return -self.net(x, self.sde.noise_label(t)) / bcast(std, x)

    # ---------------------------------------------------------------- training
    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Denoising score matching, ``mean |net(x_t, t) - z|^2`` (= ``s^2 |score + z / s|^2``)."""
        x0 = self.to_model_space(x)
        b = x0.shape[0]
        if self.discrete:
            betas = self.sde.discrete_betas().to(x0.device)
            n = len(betas)
            i = torch.randint(0, n, (b,), device=x0.device)
            abar = torch.cumprod(1 - betas, 0)[i].to(x0.dtype)
            a, std, t = abar.sqrt(), (1 - abar).sqrt(), i.to(x0.dtype) / (n - 1)
        else:
            t = torch.rand(b, device=x0.device, dtype=x0.dtype) * (self.sde.T - self.train_eps) + self.train_eps
            a, std = self.sde.marginal(t)
        z = torch.randn_like(x0)
        xt = bcast(a, x0) * x0 + bcast(std, x0) * z
        return (self.net(xt, self.sde.noise_label(t)) - z).pow(2).mean()

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, sampler: str, device=None) -> tuple[torch.Tensor, int]:
        """``n`` samples in data space and the score evaluations they took (per batch)."""
        device = device or next(self.parameters()).device
        x = self.sde.prior_sample((n, *self.data_shape), device=device)
        if sampler == "em":
            out, nfe = S.euler_maruyama(self.sde, self.score, x, self.sample_steps, self.sample_eps), self.sample_steps
        elif sampler == "pc":
            out = S.predictor_corrector(self.sde, self.score, x, self.sample_steps, self.sample_eps, self.snr,
                                        predictor=self.pc_predictor)
            nfe = 2 * self.sample_steps
        elif sampler == "ode":
            out, nfe = S.probability_flow(self.sde, self.score, x, self.sample_eps, self.ode_tol, self.ode_tol)
        else:
            out, nfe = S.ancestral(self.sde, self.score, x), self.sde.n
        return self.to_data_space(out), nfe

    # ---------------------------------------------------------------- evaluation
    def bits_per_dim(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Per-example bits/dim of data ``x`` (images: uniformly dequantized) and the ODE's NFE."""
        d = x[0].numel()
        if self.images:
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            xd = ((x * 255).round() + u) / 256
            scale = 2.0 if self.center else 1.0
            logp, nfe = S.log_likelihood(self.sde, self.score, self.to_model_space(xd), self.likelihood_eps,
                                         self.ode_tol, self.ode_tol, trace=self.trace)
            return -logp / (d * math.log(2)) + 8 - math.log2(scale), nfe
        logp, nfe = S.log_likelihood(self.sde, self.score, x, self.likelihood_eps, self.ode_tol, self.ode_tol,
                                     trace=self.trace)
        return -logp / (d * math.log(2)), nfe

    def evaluate_metrics(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Bits/dim, likelihood NFE, sampler NFE, MMD (array data) and FID (with Inception weights)."""
        was_training = self.training
        self.eval()
        n_ll = len(x) if self.likelihood_examples is None else min(len(x), int(self.likelihood_examples))
        bpd, nfes = [], []
        for i in range(0, n_ll, batch_size):
            b, nfe = self.bits_per_dim(x[i:min(i + batch_size, n_ll)])
            bpd.append(b.detach())
            nfes.append(nfe)
        metrics = {"bits_per_dim": float(torch.cat(bpd).mean()), "nfe_likelihood": sum(nfes) / len(nfes)}
        if not self.images:
            metrics["nll"] = metrics["bits_per_dim"] * x[0].numel() * math.log(2)
        self._samples = {}
        for sampler in self.samplers:
            parts, nfes = [], []
            for i in range(0, self.num_samples, batch_size):
                s, nfe = self.sample(min(batch_size, self.num_samples - i), sampler, device=x.device)
                parts.append(s)
                nfes.append(nfe)
            self._samples[sampler] = torch.cat(parts)
            metrics[f"nfe_sample_{sampler}"] = sum(nfes) / len(nfes)
            if not self.images:
                metrics[f"mmd_{sampler}"] = mmd_rbf(self._samples[sampler][:1000], x[:1000])
        metrics.update(self._fid(x, batch_size))
        self.train(was_training)
        return metrics

    def _fid(self, x: torch.Tensor, batch_size: int) -> dict[str, float]:
        from debench.models.stochastic import fid

        self._fid_reason = None
        if not self.images:
            return {}
        self._fid_reason = fid.unavailable_reason(self.inception_weights, self.fid_reference, self.num_samples)
        if self._fid_reason:
            return {}
        try:
            scores = fid.fid_of_samples(self._samples, self.inception_weights, self.fid_reference, batch_size)
        except fid.FIDUnavailable as exc:
            self._fid_reason = str(exc)
            return {}
        out = {f"fid_{s}": v for s, v in scores.items()}
        out["fid"] = out[f"fid_{self.samplers[0]}"]
        return out

    def write_artifacts(self, folder: Path) -> list[Path]:
        """Sample grids (images) or scatter plots (2-D), and ``fid_not_computed.txt`` when FID was skipped."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        if self._fid_reason:
            p = folder / "fid_not_computed.txt"
            p.write_text(f"FID not computed: {self._fid_reason}.\n")
            written.append(p)
        for sampler, s in self._samples.items():
            s = s.detach().cpu().float()
            p = folder / f"samples_{sampler}.png"
            if self.images:
                from torchvision.utils import save_image

                save_image(s[:64], p, nrow=8)
            else:
                fig, ax = plt.subplots(figsize=(4, 4))
                ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.5)
                ax.set_title(f"{self.sde_name} SDE, {sampler} sampler")
                ax.set_aspect("equal")
                fig.tight_layout()
                fig.savefig(p, dpi=110)
                plt.close(fig)
            written.append(p)
        return written


# ---------------------------------------------------------------- registry entries

# Issue 27, point 3: neither authors' code trains in mixed precision, so amp: auto keeps fp32.
SCORE_SDE_FP32 = ("yang-song/score_sde_pytorch@cb1f359 run_lib.py, losses.py: fp32, no autocast or GradScaler "
                  "anywhere in the repository")
DDPM_FP32 = ("hojonathanho/diffusion@1e0dceb scripts/run_cifar.py: the denoiser asserts float32 inputs; no "
             "bfloat16 or float16 anywhere in the repository")

_UNET_DEFAULTS = dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1)


def _image_factory(name: str, sde: str, discrete: bool, samplers: tuple[str, ...], paper: str, reference: list,
                   scheme: str) -> None:
    @register_model(name, family="stochastic", paper=paper, task="generate", metric="bits_per_dim",
                    scheme=scheme, evals_per_forward=None, reference=reference, precision="fp32",
                    precision_source=DDPM_FP32 if discrete else SCORE_SDE_FP32, sde=sde, **_UNET_DEFAULTS)
    def factory(in_channels: int = 3, image_size: int = 32, num_classes: int = 0, sde: str = sde,
                ch: int = 128, ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2,
                attn_resolutions: Sequence[int] = (16,), dropout: float = 0.1, sde_args: dict | None = None,
                sample_steps: int = 1000, snr: float = 0.16, samplers: Sequence[str] = samplers,
                num_samples: int = 64, likelihood_examples: int | None = None, trace: str = "hutchinson",
                inception_weights: str | None = None, fid_reference: str | None = None,
                ode_tol: float = 1e-5, pc_predictor: str | None = None) -> nn.Module:
        net = UNet(in_channels, image_size, ch, tuple(ch_mult), num_res_blocks, tuple(attn_resolutions), dropout)
        return ScoreSDEModel(net, (in_channels, image_size, image_size), sde, sde_args, discrete, True, None,
                             sample_steps=sample_steps, snr=snr, samplers=samplers, num_samples=num_samples,
                             likelihood_examples=likelihood_examples, trace=trace,
                             inception_weights=inception_weights, fid_reference=fid_reference, ode_tol=ode_tol,
                             pc_predictor=pc_predictor)

    factory.__doc__ = f"{name}: U-Net score model on images with the {sde} SDE."


_image_factory("score_sde_ve_cifar", "ve", False, ("pc", "em", "ode"), SONG21, [],
               "reverse-time SDE (PC / Euler-Maruyama) and probability-flow ODE (dopri5)")
_image_factory("score_sde_vp_cifar", "vp", False, ("pc", "em", "ode"), SONG21,
               [{"table_id": "SONG21_REPO", "model": "DDPM cont.", "variant": "VP SDE"}],
               "reverse-time SDE (PC / Euler-Maruyama) and probability-flow ODE (dopri5)")
_image_factory("score_sde_subvp_cifar", "subvp", False, ("pc", "em", "ode"), SONG21,
               [{"table_id": "SONG21_REPO", "model": "DDPM cont.", "variant": "sub-VP SDE"}],
               "reverse-time SDE (PC / Euler-Maruyama) and probability-flow ODE (dopri5)")
_image_factory("ddpm_cifar", "vp", True, ("ancestral", "ode"), HO20,
               [{"table_id": "SONG21_REPO", "model": "DDPM", "variant": "VP SDE"},
                {"table_id": "HO20_ABS", "model": "DDPM (unconditional)"}],
               "ancestral sampling (discretized VP SDE) and probability-flow ODE (dopri5)")


@register_model("score_sde_toy", family="stochastic", paper=SONG21, task="generate", metric="bits_per_dim",
                scheme="reverse-time SDE (PC / Euler-Maruyama) and probability-flow ODE (dopri5)",
                evals_per_forward=None, reference=[], precision="fp32", precision_source=SCORE_SDE_FP32, sde="vp",
                hidden=128, layers=3)
def score_sde_toy(data_shape: Sequence[int] = (2,), num_classes: int = 0, sde: str = "vp", hidden: int = 128,
                  layers: int = 3, sde_args: dict | None = None, sample_steps: int = 500, snr: float = 0.16,
                  samplers: Sequence[str] = ("em", "pc", "ode"), num_samples: int = 1000,
                  likelihood_examples: int | None = None, trace: str = "exact", ode_tol: float = 1e-5,
                  pc_predictor: str | None = None) -> nn.Module:
    """MLP score model on 2-D points (``toy_gmm2d``); VE uses ``sigma_max = 5`` unless ``sde_args`` says otherwise."""
    dim = int(math.prod(data_shape))
    if sde == "ve" and not sde_args:
        sde_args = {"sigma_min": 0.01, "sigma_max": 5.0}
    return ScoreSDEModel(MLPScore(dim, hidden, layers), (dim,), sde, sde_args, False, False, None,
                         sample_steps=sample_steps, snr=snr, samplers=samplers, num_samples=num_samples,
                         likelihood_examples=likelihood_examples, trace=trace, ode_tol=ode_tol,
                         pc_predictor=pc_predictor)
