"""Higher-order Neural ODEs: ``x^(k) = f(t, x, x', ..., x^(k-1))`` (third order by default).

Second-order models (SONODE, Norcliffe et al. 2020; the second-order CNN) are registered already;
this family goes one order up. The k-th order equation is reduced to a first-order system on the
channel concatenation ``z = [x, x', ..., x^(k-1)]``:

    z' = [x', x'', ..., x^(k-1), f(t, z)],

started at ``z(0) = [stem(image), 0, ..., 0]`` and integrated by the shared solver
(:func:`debench.models.continuous.solver.solve`, any torchdiffeq method, NFE counted); the block
returns ``x(t1)``. Integrating the reduced system with a method of order p gives order p for ``x``;
the tests check p = 1 (Euler) and p = 4 (RK4) on ``x''' = x`` (solution ``e^t``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from debench.models.continuous.blocks import ODEBlock, split_options
from debench.models.future.common import ConvField, cifar_net
from debench.registry import register_model

HIGHER_ORDER = ("Higher-order Neural ODE (order reduction, as SONODE: Norcliffe, Bodnar, Day, Simidjievski, Lio. "
                "On Second Order Behaviour in Augmented Neural ODEs. NeurIPS 2020), ours at order 3")


class OrderReduction(nn.Module):
    """First-order field of ``x^(k) = f(t, z)`` on ``z = [x, ..., x^(k-1)]`` (chunks along dim 1).

    Args:
        f: ``f(t, z)`` returning one chunk (the k-th derivative).
        order: k >= 2.
    """

    def __init__(self, f: Callable | nn.Module, order: int = 3):
        super().__init__()
        if int(order) < 2:
            raise ValueError(f"model arg 'order' must be at least 2, got {order}")
        self.f, self.order = f, int(order)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        chunks = z.chunk(self.order, 1)
        return torch.cat([*chunks[1:], self.f(t, z)], 1)


class HigherOrderBlock(nn.Module):
    """``x(t1)`` of the order-``order`` equation from ``x(0)`` = input, zero initial derivatives.

    Args:
        dim: channels of ``x``.
        order: the equation's order.
        options: solver options (see :func:`debench.models.continuous.blocks.split_options`).
    """

    def __init__(self, dim: int, order: int, options: dict):
        super().__init__()
        config, reg = split_options(options)
        self.order = int(order)
        self.ode = ODEBlock(OrderReduction(ConvField(dim, k=order), order), config, **reg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x] + [torch.zeros_like(x)] * (self.order - 1), 1)
        return self.ode(z).chunk(self.order, 1)[0]


@register_model("third_order_node_cifar", family="continuous", paper=HIGHER_ORDER,
                scheme="third-order ODE reduced to first order, fixed-grid rk4, 3 stages",
                reference=[], method="rk4", step_size=0.25, adjoint=False, widths=(32, 64, 128))
def third_order_node_cifar(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, order: int = 3,
                           widths: tuple[int, ...] = (32, 64, 128), **options) -> nn.Module:
    """Third-order Neural ODE classifier in ODE-Net CIFAR's frame.

    Args:
        order: the equation's order (3; any k >= 2 works).
        widths: channels per stage.
        **options: solver options and RNODE weights, as for ``odenet_cifar``.

    Raises:
        TypeError: for an unknown option.
    """
    split_options(dict(options))
    return cifar_net(lambda w: HigherOrderBlock(w, order, dict(options)), widths, num_classes, in_channels)
