"""Frechet Inception Distance from a local Inception-v3 weights file (never downloaded).

FID (Heusel et al. 2017) is ``|mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2})``
between Gaussian fits of pool features. The features come from torchvision's Inception-v3
architecture with the state dict at ``weights`` (torchvision's ImageNet weights, or a port of
the TF-FID network with the same keys). Numbers are comparable with published FIDs only with the
TF-FID weights, 50k samples and the full training set as reference; the report should say which
weights were used.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Frechet distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (float64 eigen-decompositions)."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    w, v = torch.linalg.eigh(cov1)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = root1 @ cov2 @ root1
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * tr_sqrt)


def load_inception(weights: str | Path, device) -> nn.Module:
    """Inception-v3 with the state dict at ``weights``, its classifier replaced by the identity."""
    from torchvision.models import inception_v3

    state = torch.load(Path(weights), map_location="cpu")
    aux = any(k.startswith("AuxLogits") for k in state)
    net = inception_v3(weights=None, aux_logits=aux, init_weights=False)
    net.load_state_dict(state)
    net.fc = nn.Identity()
    net.AuxLogits = None
    net.aux_logits = False
    return net.eval().to(device)


@torch.no_grad()
def inception_stats(net: nn.Module, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the 2048-d pool features of ``images`` (``N x C x H x W`` in [0, 1])."""
    feats = []
    mean = torch.tensor(_MEAN, device=images.device)[None, :, None, None]
    std = torch.tensor(_STD, device=images.device)[None, :, None, None]
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        feats.append(net((x - mean) / std).double().cpu())
    f = torch.cat(feats)
    return f.mean(0), torch.cov(f.T)


def fid(samples: torch.Tensor, reference: torch.Tensor, weights: str | Path, batch_size: int = 100) -> float:
    """FID between two image sets in [0, 1] using the Inception weights file ``weights``."""
    net = load_inception(weights, samples.device)
    return frechet_distance(*inception_stats(net, samples, batch_size), *inception_stats(net, reference, batch_size))
