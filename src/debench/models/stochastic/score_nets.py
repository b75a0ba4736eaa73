"""Noise-conditional networks for score SDEs: a DDPM-style U-Net and an MLP for 2-D data.

Both predict the noise ``z`` of ``x_t = a(t) x_0 + s(t) z`` from ``(x_t, label(t))``; the score is
``-output / s(t)`` (the "scale by sigma" parameterization of Song et al.). The U-Net follows
Ho et al. 2020 in shape: residual blocks with GroupNorm/SiLU and an additive time embedding,
``num_res_blocks`` blocks per resolution, channel multipliers ``ch_mult``, self-attention at
the resolutions in ``attn_resolutions``, skip connections by concatenation. The defaults
(``ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1``) give
the 35.7M-parameter DDPM CIFAR-10 network's layout; small values make it a CPU-sized model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(label: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of a real-valued noise label (Transformer-style, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=label.device, dtype=torch.float32) / max(1, half - 1))
    args = label.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], 1)
    return F.pad(emb, (0, dim % 2))


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, c), c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _gn(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.temb = nn.Linear(temb, cout)
        self.norm2, self.drop, self.conv2 = _gn(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm, self.qkv, self.out = _gn(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.out(a.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Noise-prediction U-Net.

    Args:
        in_channels: image channels.
        image_size: input side (must be divisible by ``2 ** (len(ch_mult) - 1)``).
        ch, ch_mult, num_res_blocks, attn_resolutions, dropout: size of the network (see module doc).
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, ch: int = 128, ch_mult=(1, 2, 2, 2),
                 num_res_blocks: int = 2, attn_resolutions=(16,), dropout: float = 0.1):
        super().__init__()
        if image_size % (2 ** (len(ch_mult) - 1)):
            raise ValueError(f"image_size {image_size} is not divisible by 2^{len(ch_mult) - 1} (model arg 'ch_mult')")
        self.ch, temb = ch, 4 * ch
        self.embed = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down, skips, c, res = nn.ModuleList(), [ch], ch, image_size
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layer = nn.ModuleList([ResBlock(c, ch * mult, temb, dropout)])
                c = ch * mult
                if res in attn_resolutions:
                    layer.append(AttnBlock(c))
                self.down.append(layer)
                skips.append(c)
            if level < len(ch_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, 2, 1)]))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, temb, dropout), AttnBlock(c), ResBlock(c, c, temb, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                layer = nn.ModuleList([ResBlock(c + skips.pop(), ch * mult, temb, dropout)])
                c = ch * mult
                if res in attn_resolutions:
                    layer.append(AttnBlock(c))
                self.up.append(layer)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, 1, 1)]))
                res *= 2
        self.out = nn.Sequential(_gn(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, 1, 1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        emb = self.embed(timestep_embedding(label, self.ch))
        hs = [self.conv_in(x)]
        for layer in self.down:
            h = hs[-1]
            if isinstance(layer[0], nn.Conv2d):
                hs.append(layer[0](h))
                continue
            for m in layer:
                h = m(h, emb)
            hs.append(h)
        h = hs[-1]
        for m in self.mid:
            h = m(h, emb)
        for layer in self.up:
            if isinstance(layer[0], nn.Upsample):
                h = layer[1](layer[0](h))
                continue
            h = layer[0](torch.cat([h, hs.pop()], 1), emb)
            for m in layer[1:]:
                h = m(h, emb)
        return self.out(h)


class MLPScore(nn.Module):
    """Noise-prediction MLP for low-dimensional data: ``[x, emb(label)]`` through SiLU layers."""

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, emb: int = 32):
        super().__init__()
        self.emb = emb
        mods, c = [], dim + emb
        for _ in range(layers):
            mods += [nn.Linear(c, hidden), nn.SiLU()]
            c = hidden
        self.net = nn.Sequential(*mods, nn.Linear(c, dim))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, timestep_embedding(label, self.emb).to(x.dtype)], 1))
