"""ShakeDrop gate levels (issue 27, point 5).

``level="image"`` (debench's default) draws the Bernoulli gate ``b`` per image;
``level="batch"`` draws one ``b`` per mini-batch with ``alpha`` and ``beta`` per image, as the
reimplementation owruby/shake-drop_pytorch@4ef1884 ``models/shakedrop.py`` does
(``torch.cuda.FloatTensor([0]).bernoulli_(1 - p_drop)``; ``alpha`` of size ``x.size(0)``).
"""

import pytest
import torch

from debench.models.stochastic.depth import ShakeDropGate
from debench.registry import create_model


def coefficients(batch_level: bool, survival: float, n: int = 64, draws: int = 200) -> torch.Tensor:
    """The forward multipliers ``b + alpha - b alpha`` of ``draws`` mini-batches of ``n`` images."""
    torch.manual_seed(0)
    return torch.stack([ShakeDropGate.apply(torch.ones(n, 1, 1, 1), survival, batch_level).flatten()
                        for _ in range(draws)])


def test_batch_level_gate_is_one_coin_per_mini_batch():
    c = coefficients(True, 0.5)
    kept = (c == 1).all(dim=1)  # b = 1: every image passes unchanged
    shaken = (c != 1).all(dim=1)  # b = 0: every image gets its own alpha
    assert bool((kept | shaken).all()) and 60 < int(kept.sum()) < 140
    assert float(c[shaken].std(dim=1).mean()) > 0.3  # alpha differs between images


def test_image_level_gate_mixes_within_a_mini_batch():
    c = coefficients(False, 0.5)
    mixed = ~((c == 1).all(dim=1) | (c != 1).all(dim=1))
    assert bool(mixed.all())  # with 64 images a uniform batch has probability 2^-63


def test_batch_level_gradient_uses_beta_per_image_and_level_is_a_model_arg():
    torch.manual_seed(1)
    h = torch.ones(256, 1, 1, 1, requires_grad=True)
    ShakeDropGate.apply(h, 0.0, True).sum().backward()  # survival 0: b = 0, so grad = beta ~ U[0, 1]
    g = h.grad.flatten()
    assert 0.0 <= float(g.min()) and float(g.max()) <= 1.0 and abs(float(g.mean()) - 0.5) < 0.06
    assert float(g.std()) > 0.2
    model = create_model("shakedrop_resnet110", level="batch")
    assert {b.level for b in model.modules() if hasattr(b, "level")} == {"batch"}
    with pytest.raises(ValueError, match="'level'"):
        create_model("shakedrop_resnet110", level="pixel")
