"""The training protocol: every hyperparameter in one place, type-checked, units in comments.

A protocol is data: the config's ``protocol`` block (plus per-model overrides) becomes a
:class:`Protocol`; an unknown key or a value of the wrong type is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from debench.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    optimizer: str = "sgd"              # sgd | adam | adamw
    lr: float = 0.1                     # peak learning rate at batch_size below
    momentum: float = 0.9               # SGD momentum (Adam: beta1)
    nesterov: bool = False
    weight_decay: float = 1e-4          # L2 coefficient (AdamW: decoupled)
    batch_size: int = 128               # images per optimizer step
    epochs: int | None = None           # budget in passes over the train split ...
    iterations: int | None = None       # ... or in optimizer steps (exactly one must be set)
    schedule: str = "step"              # step | cosine | constant | exponential (gamma per step)
    milestones: list[int] = field(default_factory=list)  # lr *= gamma at these (budget's unit)
    gamma: float = 0.1
    warmup_iterations: int = 0          # steps at warmup_lr before the schedule starts
    warmup_lr: float | None = None      # None: linear ramp to lr over warmup_iterations
    crop_padding: int = 4               # random-crop padding in pixels; 0 disables
    flip: bool = True                   # random horizontal flip
    input_norm: str = "channel"         # channel: per-channel mean/std | pixel_mean: mean image
                                        # subtracted, no scaling (He et al. 2016, Section 4.2)
    val_fraction: float = 0.0           # share of the train split held out for validation
    select_by: str = "last"             # last | best_val: which epoch's test error is reported
    grad_clip: float | None = None      # max global grad norm
    ema: float | None = None            # decay of an exponential moving average of the weights,
                                        # which is then what is evaluated (score SDEs: 0.9999)
    label_smoothing: float = 0.0
    eval_batch_size: int = 1024
    eval_every: int = 1                 # evaluate the test split every N epochs (and the last)
    checkpoint_every: int = 1           # epochs between checkpoints

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "protocol") -> "Protocol":
        """Build and check a protocol.

        Raises:
            ConfigError: naming ``where.key`` for an unknown key, a wrong type or a bad range.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in fields:
                import difflib

                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}.{key}: unknown protocol key{hint}")
            _check_type(f"{where}.{key}", value, fields[key].type)
        proto = cls(**values)
        proto.validate(where)
        return proto

    def validate(self, where: str = "protocol") -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{where}.{key}: {msg}")

        if (self.epochs is None) == (self.iterations is None):
            raise bad("epochs", "set exactly one of 'epochs' and 'iterations'")
        for key in ("epochs", "iterations"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise bad(key, f"must be > 0, got {v}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise bad("optimizer", f"must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("step", "cosine", "constant", "exponential"):
            raise bad("schedule", f"must be step, cosine, constant or exponential, got {self.schedule!r}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise bad("ema", f"must be in (0, 1), got {self.ema}")
        if self.input_norm not in ("channel", "pixel_mean"):
            raise bad("input_norm", f"must be channel or pixel_mean, got {self.input_norm!r}")
        if self.select_by not in ("last", "best_val"):
            raise bad("select_by", f"must be last or best_val, got {self.select_by!r}")
        if self.select_by == "best_val" and not self.val_fraction:
            raise bad("select_by", "best_val needs val_fraction > 0")
        if not (0.0 <= self.val_fraction < 1.0):
            raise bad("val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", f"must be > 0, got {self.lr}")
        for key in ("batch_size", "eval_batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, key) <= 0:
                raise bad(key, f"must be > 0, got {getattr(self, key)}")
        if self.weight_decay < 0 or self.crop_padding < 0 or self.warmup_iterations < 0:
            raise bad("weight_decay", "weight_decay, crop_padding and warmup_iterations must be >= 0")
        if sorted(self.milestones) != list(self.milestones):
            raise bad("milestones", f"must be increasing, got {self.milestones}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_type(key: str, value: Any, annotation: str) -> None:
    ann = str(annotation)
    if value is None:
        if "None" in ann:
            return
        raise ValueError(f"{key}: must not be null")
    if ann.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
        return
    base = ann.split("|")[0].strip()
    ok = _TYPES[base]
    if isinstance(value, bool) and base != "bool" or not isinstance(value, ok):
        raise ConfigError(f"{key}: expected {base}, got {type(value).__name__} {value!r}")


def lr_at(p: Protocol, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) under protocol ``p``."""
    if step < p.warmup_iterations:
        if p.warmup_lr is not None:
            return p.warmup_lr
        return p.lr * (step + 1) / p.warmup_iterations
    if p.schedule == "constant":
        return p.lr
    if p.schedule == "exponential":
        return p.lr * p.gamma ** (step - p.warmup_iterations)
    if p.schedule == "cosine":
        span = max(total_steps - p.warmup_iterations, 1)
        return 0.5 * p.lr * (1 + math.cos(math.pi * (step - p.warmup_iterations) / span))
    position = step if p.iterations is not None else step / steps_per_epoch
    return p.lr * p.gamma ** sum(position >= m for m in p.milestones)
