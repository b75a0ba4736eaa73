"""CIFAR ResNets of He et al. 2016 (Sec. 4.2): a residual block is one forward-Euler step.

Three stages of ``n`` basic blocks at 16/32/64 channels, depth 6n+2, option-A shortcuts
(stride-2 subsampling and zero-padded channels, so no shortcut has parameters). Parameter
counts match Table 6 of the paper: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.registry import register_model

HE16 = "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016"


class ShortcutA(nn.Module):
    """Option-A identity shortcut: subsample spatially and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            half = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra - half))
        return x


class BasicBranch(nn.Sequential):
    """The residual function f: conv-BN-ReLU-conv-BN."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )


class BasicBlock(nn.Module):
    """x_{n+1} = relu(shortcut(x_n) + f(x_n)): forward Euler with unit step."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.branch = BasicBranch(in_planes, planes, stride)
        self.shortcut = ShortcutA(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.branch(x))


class CifarResNet(nn.Module):
    """Stem conv, three stages of residual blocks, global average pool, linear head.

    Args:
        depth: 6n+2 total layers.
        num_classes: classifier outputs.
        in_channels: image channels (3 for CIFAR, 1 for MNIST).
        widths: channels of the three stages.
        block: callable ``(in_planes, planes, stride, index, total) -> nn.Module``; lets other
            families reuse this skeleton with their own block (index/total drive schedules such
            as stochastic depth's linear survival decay).
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64), block=None):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        block = block or (lambda i, o, s, idx, total: BasicBlock(i, o, s))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks, in_planes, total = [], widths[0], 3 * n
        for stage, planes in enumerate(widths):
            for j in range(n):
                stride = 2 if stage > 0 and j == 0 else 1
                blocks.append(block(in_planes, planes, stride, len(blocks), total))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_planes, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _register_resnet(depth: int, params_m: str) -> None:
    @register_model(
        f"resnet{depth}",
        family="discrete",
        paper=HE16,
        scheme="forward Euler",
        evals_per_forward=3 * ((depth - 2) // 6),
        reference=[{"table_id": "HE16_T6", "model": "ResNet", "depth": str(depth)}],
        compilable=True,
    )
    def factory(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return CifarResNet(depth, num_classes, in_channels)

    factory.__doc__ = f"ResNet-{depth} for CIFAR ({params_m}M parameters in He et al. Table 6)."


for _depth, _params in ((20, "0.27"), (32, "0.46"), (44, "0.66"), (56, "0.85"), (110, "1.7")):
    _register_resnet(_depth, _params)
