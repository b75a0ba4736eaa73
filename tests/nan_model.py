"""A registered test model whose logits turn NaN at a chosen training step."""

import torch

from debench.registry import register_model


@register_model("test_nan_after", family="discrete", paper="test", scheme="none")
class NaNAfter(torch.nn.Module):
    """Logits turn NaN from training step ``after`` on: an injected divergence."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, after: int = 5):
        super().__init__()
        self.head = torch.nn.Linear(in_channels, num_classes)
        self.after, self.steps = after, 0

    def forward(self, x):
        self.steps += self.training
        out = self.head(x.mean((2, 3)))
        return out * float("nan") if self.steps >= self.after else out
