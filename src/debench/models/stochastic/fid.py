"""Frechet Inception Distance as the published CIFAR-10 FIDs compute it, through torch-fidelity.

Song et al. (2021) and Ho et al. (2020) report FID from the TensorFlow Inception network of
Heusel et al. (pool_3, 2048 features) between 50,000 samples and the 50,000 CIFAR-10 training
images (yang-song/score_sde, ``evaluation.py`` and ``assets/stats/cifar10_stats.npz``; the
CIFAR-10 configs set ``eval.num_samples = 50000``). torch-fidelity's ``inception-v3-compat``
extractor is a port of that network which reproduces the TF numbers; its weights
(``weights-inception-2015-12-05-6726825d.pth``) are read from a local file the user names
(model arg ``inception_weights``), never downloaded at run time. Anything else (no weights, other
weights such as torchvision's ImageNet Inception, no training-set reference, fewer samples) gives
a reason instead of a number: :func:`unavailable_reason` and :class:`FIDUnavailable`.

Samples in [0, 1] become uint8 as the authors' ``run_lib.py`` does (``clip(x * 255, 0, 255)``,
truncated); grey images are repeated to three channels.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

PUBLISHED_SAMPLES = 50_000
REFERENCE_IMAGES = 50_000
EXTRACTOR = "inception-v3-compat"


class FIDUnavailable(RuntimeError):
    """FID cannot be computed the way the published numbers were; ``str()`` is the reason."""


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` by torch-fidelity's ``fid_statistics_to_metric``.

    Args:
        mu1, mu2: feature means (``d``), tensors or arrays.
        sigma1, sigma2: feature covariances (``d x d``).

    Returns:
        The distance (float64 arithmetic).
    """
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    s1, s2 = ({"mu": np.asarray(m, dtype=np.float64), "sigma": np.asarray(s, dtype=np.float64)}
              for m, s in ((mu1, sigma1), (mu2, sigma2)))
    return float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])


def statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of ``N x d`` features, as torch-fidelity computes them."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = fid_features_to_statistics(features.detach().cpu().double())
    return stats["mu"], stats["sigma"]


def unavailable_reason(weights: str | None, reference: str | None, num_samples: int) -> str | None:
    """Why FID would not be comparable with a published one, checked before any work; ``None`` if none.

    Args:
        weights: model arg ``inception_weights`` (torch-fidelity's TF-FID Inception state dict).
        reference: model arg ``fid_reference`` (CIFAR-10 train: shard folder or statistics ``.npz``).
        num_samples: samples drawn per sampler.
    """
    if not weights:
        return ("model arg 'inception_weights' is not set (the TF-FID Inception weights of torch-fidelity, "
                "weights-inception-2015-12-05-6726825d.pth, as a local file)")
    if not Path(weights).is_file():
        return f"model arg 'inception_weights': {weights} does not exist"
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    if not reference:
        return "model arg 'fid_reference' is not set (the 50,000 CIFAR-10 training images or their statistics)"
    if not Path(reference).exists():
        return f"model arg 'fid_reference': {reference} does not exist"
    if num_samples < PUBLISHED_SAMPLES:
        return (f"model arg 'num_samples' is {num_samples}; published FIDs use {PUBLISHED_SAMPLES} samples "
                "and FID is biased upward at fewer")
    return None


def load_extractor(weights: str | Path, device) -> torch.nn.Module:
    """torch-fidelity's TF-FID Inception with the state dict at ``weights`` (2048 pool features).

    Raises:
        FIDUnavailable: the file is not that network's state dict (e.g. torchvision's Inception).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        net = FeatureExtractorInceptionV3(EXTRACTOR, ["2048"], feature_extractor_weights_path=str(weights))
    except (RuntimeError, KeyError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise FIDUnavailable(f"model arg 'inception_weights': {weights} is not torch-fidelity's TF-FID "
                             f"Inception state dict ({' '.join(str(exc).split())[:300]})") from exc
    return net.eval().to(device)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``N x C x H x W`` floats in [0, 1] to uint8 RGB (truncation, as the authors' ``run_lib.py``)."""
    x = (images.float() * 255).clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.no_grad()
def features(net: torch.nn.Module, images_uint8: torch.Tensor, batch_size: int) -> torch.Tensor:
    """2048-d pool features (float64, CPU) of uint8 ``N x 3 x H x W`` images."""
    device = next(net.parameters()).device
    out = [net(images_uint8[i:i + batch_size].to(device))[0].double().cpu()
           for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(out)


def reference_statistics(reference: str | Path, net: torch.nn.Module, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of the reference set: an ``.npz`` with ``mu`` and ``sigma`` (and ``count``), or a
    folder of ``train_*.npz`` shards with uint8 ``images`` (``N x H x W x C``), e.g. the offline CIFAR-10.

    Raises:
        FIDUnavailable: not the 50,000-image training set, or an unreadable file.
    """
    path = Path(reference)
    if path.is_file():
        try:
            z = dict(np.load(path))
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise FIDUnavailable(f"model arg 'fid_reference': {path} is not a readable .npz ({exc})") from exc
        if "mu" not in z or "sigma" not in z:
            raise FIDUnavailable(f"model arg 'fid_reference': {path} has no 'mu'/'sigma' arrays")
        count = int(z["count"]) if "count" in z else 0
        if count != REFERENCE_IMAGES:
            raise FIDUnavailable(f"model arg 'fid_reference': {path} says count={count}, "
                                 f"not the {REFERENCE_IMAGES} training images")
        return z["mu"], z["sigma"]
    shards = sorted(path.glob("train_*.npz"))
    if not shards:
        raise FIDUnavailable(f"model arg 'fid_reference': {path} has no train_*.npz shards")
    imgs = np.concatenate([np.load(s)["images"] for s in shards])
    if len(imgs) != REFERENCE_IMAGES:
        raise FIDUnavailable(f"model arg 'fid_reference': {path} holds {len(imgs)} training images, "
                             f"not {REFERENCE_IMAGES}")
    x = torch.from_numpy(imgs)
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return statistics(features(net, x.expand(-1, 3, -1, -1), batch_size))


def fid_of_samples(samples: dict[str, torch.Tensor], weights: str, reference: str,
                   batch_size: int) -> dict[str, float]:
    """``{sampler: FID}`` of each sample set in [0, 1] against the reference (one network load).

    Raises:
        FIDUnavailable: the weights or the reference are not the published ones.
    """
    device = next(iter(samples.values())).device
    net = load_extractor(weights, device)
    mu_r, sigma_r = reference_statistics(reference, net, batch_size)
    return {name: frechet_distance(*statistics(features(net, to_uint8(s), batch_size)), mu_r, sigma_r)
            for name, s in samples.items()}
