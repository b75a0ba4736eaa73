"""Runge-Kutta and PolyNet residual blocks on the CIFAR ResNet skeleton.

A block applies one step of an explicit Runge-Kutta method (Butcher tableau with unit step) to
``x' = f(x)``, evaluating the same residual function ``f`` (conv-BN-ReLU-conv-BN) once per
stage, then the ReLU of the ResNet block: ``x_{n+1} = relu(rk_step(f, x_n))``. PolyNet's poly-2
block (Zhang, Li, Loy, Lin, CVPR 2017) is ``relu(x + f(x) + f(f(x)))``, the backward-Euler
step ``(I - f)^{-1} x`` truncated after ``f^2`` (Lu et al. 2018's reading). The two blocks that
change resolution/width (first of stages 2 and 3) cannot be iterated and stay forward-Euler
ResNet blocks. Parameter counts equal ``resnet{depth}``'s. PolyNet's authors build poly-2
differently (per-application BatchNorm and projection, a ReLU between the applications): model arg
``form: authors`` (:class:`PolyAuthorsBlock`), a named variant with its own parameter count.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.resnet import HE16, BasicBlock, BasicBranch, CifarResNet
from debench.models.discrete.schemes import TABLEAUX, poly2_step, rk_step
from debench.registry import register_model

LU18 = "Lu, Zhong, Li, Dong. ICML 2018 (numerical-scheme reading of residual blocks)"
POLYNET = "Zhang, Li, Loy, Lin. PolyNet: A Pursuit of Structural Diversity in Very Deep Networks. CVPR 2017"


class SchemeBlock(nn.Module):
    """``relu(step(f, x))`` for ``method`` in :data:`TABLEAUX` or ``"poly2"``."""

    def __init__(self, planes: int, method: str):
        super().__init__()
        if method != "poly2" and method not in TABLEAUX:
            raise ValueError(f"method must be 'poly2' or one of {sorted(TABLEAUX)}, got {method!r}")
        self.branch, self.method = BasicBranch(planes, planes), method

    @property
    def stages(self) -> int:
        return 2 if self.method == "poly2" else len(TABLEAUX[self.method].b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "poly2":
            return F.relu(poly2_step(self.branch, x))
        return F.relu(rk_step(self.branch, x, TABLEAUX[self.method]))


class PolyAuthorsBlock(nn.Module):
    """PolyNet's poly-2 module as the authors' released model builds it, on the CIFAR block.

    In the authors' model (their Caffe release, ported in Cadene/pretrained-models.pytorch
    ``pretrainedmodels/models/polynet.py`` @2fe1bd6, ``InceptionResNetBPoly``/``PolyConv2d``):
    the inner convolutions are shared between the two applications of ``F``, each application has
    its own BatchNorm layers and its own last (projection) convolution, and the second application
    reads ``relu(F_1(x))``: ``out = relu(x + F_1(x) + F_2(relu(F_1(x))))``. Here ``F`` is the CIFAR
    branch conv-BN-ReLU-conv-BN: the first convolution is shared, BN1, the second convolution and
    BN2 are per application. Their residual scale (1 down to 0.7 over the ImageNet network's depth)
    has no CIFAR counterpart and is 1.
    """

    def __init__(self, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)  # shared by both applications
        self.bn1 = nn.ModuleList([nn.BatchNorm2d(planes) for _ in range(2)])
        self.conv2 = nn.ModuleList([nn.Conv2d(planes, planes, 3, 1, 1, bias=False) for _ in range(2)])
        self.bn2 = nn.ModuleList([nn.BatchNorm2d(planes) for _ in range(2)])
        self.stages = 2

    def application(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return self.bn2[k](self.conv2[k](F.relu(self.bn1[k](self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.application(x, 0)
        return F.relu(x + f1 + self.application(F.relu(f1), 1))


def scheme_resnet(depth: int, method: str, num_classes: int = 10, in_channels: int = 3,
                  form: str = "lu2018") -> CifarResNet:
    """CIFAR ResNet of ``depth`` whose shape-preserving blocks are :class:`SchemeBlock` s
    (``method="poly2", form="authors"``: :class:`PolyAuthorsBlock` s)."""

    def block(i, o, s, idx, total):
        if not (s == 1 and i == o):
            return BasicBlock(i, o, s)
        return PolyAuthorsBlock(o) if (method, form) == ("poly2", "authors") else SchemeBlock(o, method)

    return CifarResNet(depth, num_classes, in_channels, block=block)


def evals(depth: int, stages: int) -> int:
    """Residual-function evaluations: 2 Euler transition blocks + ``stages`` per other block."""
    return 2 + (3 * ((depth - 2) // 6) - 2) * stages


def _register(prefix: str, depth: int, methods: tuple[str, ...], paper: str, scheme: str) -> None:
    stages = 2 if methods[0] == "poly2" else len(TABLEAUX[methods[0]].b)

    @register_model(f"{prefix}{depth}", family="discrete", paper=paper, scheme=scheme,
                    evals_per_forward=evals(depth, stages))
    def factory(num_classes: int = 10, in_channels: int = 3, method: str = methods[0],
                form: str = "lu2018") -> nn.Module:
        """``form`` (poly2 only): ``lu2018``, ``relu(x + f(x) + f(f(x)))`` with one shared ``f``
        (Lu et al. 2018's numerical-scheme reading, the default); ``authors``, the PolyNet
        authors' module (:class:`PolyAuthorsBlock`: shared convolution, per-application BN and
        projection, ``relu`` between the applications), a named variant with more parameters."""
        if method not in methods:
            raise ValueError(f"{prefix}{depth}: method must be one of {methods}, got {method!r}")
        forms = ("lu2018", "authors") if method == "poly2" else ("lu2018",)
        if form not in forms:
            raise ValueError(f"{prefix}{depth}: form must be one of {forms}, got {form!r}")
        return scheme_resnet(depth, method, num_classes, in_channels, form)

    factory.__doc__ = f"ResNet-{depth} skeleton with {scheme} blocks (methods {methods})."


for _depth in (20, 56, 110):
    _register("rk2_resnet", _depth, ("midpoint", "heun"), LU18 + "; " + HE16, "Runge-Kutta 2 (midpoint or Heun)")
for _depth in (20, 56):
    _register("rk4_resnet", _depth, ("rk4",), LU18 + "; " + HE16, "classical Runge-Kutta 4")
    _register("polynet_resnet", _depth, ("poly2",), POLYNET, "approximate backward Euler (I + F + F^2)")
