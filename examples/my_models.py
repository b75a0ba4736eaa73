"""A researcher's own model, registered from outside debench (config key ``plugins``).

Run it beside the published ResNets with ``config/example_plugin.yaml``:

    PYTHONPATH=examples snakemake --cores 2 --configfile config/example_plugin.yaml

``reference`` points the report at the published ResNet-56 row, so the new model's table row
shows the published number it is compared with (the row's own model stays what it is).
"""

import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.resnet import BasicBranch, CifarResNet, ShortcutA
from debench.registry import register_model


class HalfStepBlock(nn.Module):
    """Forward Euler with step h = 0.5: x + h f(x) (a smaller step than ResNet's h = 1)."""

    def __init__(self, in_planes: int, planes: int, stride: int, h: float):
        super().__init__()
        self.branch, self.shortcut, self.h = BasicBranch(in_planes, planes, stride), ShortcutA(in_planes, planes, stride), h

    def forward(self, x):
        return F.relu(self.shortcut(x) + self.h * self.branch(x))


@register_model("halfstep_resnet56", family="discrete", paper="(your paper here)",
                scheme="forward Euler, step 0.5", evals_per_forward=27,
                reference=[{"table_id": "HE16_T6", "model": "ResNet", "depth": "56"}])
def halfstep_resnet56(num_classes: int = 10, in_channels: int = 3, h: float = 0.5) -> nn.Module:
    return CifarResNet(56, num_classes, in_channels, block=lambda i, o, s, idx, total: HalfStepBlock(i, o, s, h))
