"""PDE-CNNs of Ruthotto & Haber (JMIV 2020): parabolic, Hamiltonian and second-order networks.

Layout of the paper's Meganet driver (``cnnDriver``): opening 3x3 conv + BN + ReLU to ``nf[0]``
channels, then per stage ``k`` a PDE block of ``nt = 3`` steps (step ``h = 1``) at ``nf[k]``
channels and a connector (1x1 conv to ``nf[k+1]`` + BN + ReLU, 2x average pooling, global
pooling after the last), then a linear classifier. Every step has its own symmetric layer
``K^T relu(N(K Y))`` with Meganet's total-variation normalization ``N``
(``Y / sqrt(sum_c Y^2 + 1e-4)``, then per-channel scale and shift; :class:`TVNorm`):

- parabolic: forward Euler on ``Y' = -K^T relu(N(K Y))``;
- second-order: leapfrog ``Y_{j+1} = 2Y_j - Y_{j-1} - h^2 K^T relu(N(K Y_j))``, ``Y_{-1} = Y_0``;
- Hamiltonian: channels split into ``(Y, Z)`` halves, ``nt`` Verlet steps with two layers each.

Widths: ``nf = [32, 64, 112, 112]`` for 10 classes and ``[32, 64, 128, 256]`` for more
(CIFAR-100); both reproduce the parameter counts of the paper's Table 1 exactly.

Training protocol of the authors (XtractOpen/Meganet.m, ``examples/2018-jmiv/cnnDriver.m`` and
``runCIFAR10.m``: ``alpha = [2e-4; 2e-4; 2e-4]``, ``opt.P = @(x) min(max(x,-1),1)``), carried by
the model because the generic weight decay of the trainer would also decay the norm layers:

- :meth:`PDECNN.regularization_loss`: ``weight_decay / 2 * |K|^2`` over every conv kernel and
  the classifier (weight and bias; ``tikhonovReg``, norm parameters masked out by ``regD``),
  plus ``smoothness * sum sqrt((theta_{j+1} - theta_j)^2 / h^2 + 1e-3)`` over consecutive steps
  of each PDE block (``l1Reg(opTimeDer(...))``: a smoothed L1 of the time derivative of all the
  block's parameters, kernels and norm parameters alike);
- box constraint: every parameter is projected onto ``[-box, box]`` (``sgd.m``:
  ``xc = P(xc - dJ)``); done in place at the start of each forward, which equals projecting
  after every optimizer step and also projects the evaluated model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.layers import SymmetricLayer
from debench.models.discrete.schemes import leapfrog_step, verlet_step
from debench.registry import register_model

RUTHOTTO20 = "Ruthotto, Haber. Deep Neural Networks Motivated by Partial Differential Equations. JMIV 2020"
KINDS = {"parabolic": ("forward Euler (parabolic PDE)", "Parabolic CNN"),
         "hamiltonian": ("Verlet (symplectic, Hamiltonian PDE)", "Hamiltonian CNN"),
         "second_order": ("leapfrog (second-order hyperbolic PDE)", "Second-order CNN")}


def paper_widths(num_classes: int) -> tuple[int, int, int, int]:
    """Channels of the paper: CIFAR-10 ``[32, 64, 112, 112]``, CIFAR-100 ``[32, 64, 128, 256]``."""
    return (32, 64, 112, 112) if num_classes <= 10 else (32, 64, 128, 256)


class PDEBlock(nn.Module):
    """``nt`` steps of one scheme, one symmetric layer (two for Hamiltonian) per step."""

    def __init__(self, kind: str, channels: int, nt: int = 3, h: float = 1.0):
        super().__init__()
        self.kind, self.h = kind, h
        width, per_step = (channels // 2, 2) if kind == "hamiltonian" else (channels, 1)
        self.layers = nn.ModuleList(SymmetricLayer(width, norm="tv") for _ in range(per_step * nt))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = self.h
        if self.kind == "parabolic":
            for layer in self.layers:
                y = y - h * layer(y)
        elif self.kind == "second_order":
            y_prev = y
            for layer in self.layers:
                y_prev, y = y, leapfrog_step(layer, y_prev, y, h)
        else:
            a, b = torch.chunk(y, 2, dim=1)
            for f1, f2 in zip(self.layers[0::2], self.layers[1::2]):
                a, b = verlet_step(f1, f2, a, b, h)
            y = torch.cat([a, b], dim=1)
        return y


    def step_parameters(self) -> list[torch.Tensor]:
        """One flat vector per time step: all parameters of that step's layer(s)."""
        per_step = 2 if self.kind == "hamiltonian" else 1
        layers = list(self.layers)
        return [torch.cat([p.flatten() for layer in layers[j:j + per_step] for p in layer.parameters()])
                for j in range(0, len(layers), per_step)]


class PDECNN(nn.Module):
    """Opening layer, three (PDE block, connector) units, linear classifier.

    Args:
        kind: ``parabolic``, ``hamiltonian`` or ``second_order``.
        num_classes, in_channels: head and input sizes.
        widths: channels ``nf`` (default by ``num_classes``, see :func:`paper_widths`).
        nt, h: steps per PDE block and step size.
        weight_decay: Tikhonov weight of conv kernels and classifier (authors' alpha(1), alpha(2)).
        smoothness: weight of the smoothed-L1 time derivative of the PDE blocks (alpha(3)).
        box: parameters are kept in ``[-box, box]``; ``None`` disables the projection.

    Raises:
        ValueError: on a negative ``weight_decay``/``smoothness`` or a non-positive ``box``.
    """

    def __init__(self, kind: str, num_classes: int = 10, in_channels: int = 3, widths=None, nt: int = 3, h: float = 1.0,
                 weight_decay: float = 2e-4, smoothness: float = 2e-4, box: float | None = 1.0):
        super().__init__()
        for key, value in (("weight_decay", weight_decay), ("smoothness", smoothness)):
            if not value >= 0:
                raise ValueError(f"model arg {key!r} must be >= 0, got {value!r}")
        if box is not None and not box > 0:
            raise ValueError(f"model arg 'box' must be > 0 or null, got {box!r}")
        self.weight_decay, self.smoothness, self.box, self.h = float(weight_decay), float(smoothness), box, h
        nf = tuple(widths) if widths else paper_widths(num_classes)
        self.opening = nn.Sequential(nn.Conv2d(in_channels, nf[0], 3, 1, 1, bias=False),
                                     nn.BatchNorm2d(nf[0]), nn.ReLU(inplace=True))
        units = []
        for k in range(len(nf) - 1):
            units += [PDEBlock(kind, nf[k], nt, h), nn.Conv2d(nf[k], nf[k + 1], 1, bias=False),
                      nn.BatchNorm2d(nf[k + 1]), nn.ReLU(inplace=True)]
            if k < len(nf) - 2:
                units.append(nn.AvgPool2d(2))
        self.units = nn.Sequential(*units)
        self.head = nn.Linear(nf[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.box is not None:
            self.project()
        x = self.units(self.opening(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    @torch.no_grad()
    def project(self) -> None:
        """Clamp every parameter in place onto ``[-box, box]`` (Meganet's ``opt.P``)."""
        for p in self.parameters():
            p.clamp_(-self.box, self.box)

    def kernels(self) -> list[torch.Tensor]:
        """The tensors the authors' Tikhonov term decays: conv kernels, classifier weight and bias."""
        convs = [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, SymmetricLayer))]
        return convs + [self.head.weight, self.head.bias]

    def regularization_loss(self) -> torch.Tensor:
        """Authors' penalty: ``wd/2 * sum |K|^2 + smoothness * sum sqrt(|d theta / dt|^2 + 1e-3)``."""
        total = self.head.weight.new_zeros(())
        if self.weight_decay:
            total = total + 0.5 * self.weight_decay * sum(k.pow(2).sum() for k in self.kernels())
        if self.smoothness:
            for block in (m for m in self.units if isinstance(m, PDEBlock)):
                steps = block.step_parameters()
                for a, b in zip(steps[:-1], steps[1:]):
                    total = total + self.smoothness * torch.sqrt(((b - a) / self.h).pow(2) + 1e-3).sum()
        return total


def _register(kind: str) -> None:
    scheme, model = KINDS[kind]
    steps = 3 * 3 * (2 if kind == "hamiltonian" else 1)

    @register_model(f"{kind}_cnn", family="discrete", paper=RUTHOTTO20, scheme=scheme, evals_per_forward=steps,
                    reference=[{"table_id": "RUTHOTTO20_T1", "model": model,
                                "variant": "symmetric layer + TV normalization"}],
                    weight_decay=2e-4, smoothness=2e-4, box=1.0)
    def factory(num_classes: int = 10, in_channels: int = 3, widths=None, nt: int = 3, h: float = 1.0,
                weight_decay: float = 2e-4, smoothness: float = 2e-4, box: float | None = 1.0) -> nn.Module:
        return PDECNN(kind, num_classes, in_channels, widths, nt, h, weight_decay, smoothness, box)

    factory.__doc__ = f"{model} of Ruthotto & Haber (widths by num_classes, see paper_widths)."


for _kind in KINDS:
    _register(_kind)
