"""Argument checks shared by the optimizers: a clear error that names the argument."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import Tensor


def check_learning_rate(lr: Any) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr as a Tensor must have one element, got shape {tuple(lr.shape)}")
        if lr.is_complex() or not lr.is_floating_point():
            raise TypeError(f"lr as a Tensor must be real floating point, got {lr.dtype}")
        value = float(lr)
    elif isinstance(lr, (int, float)) and not isinstance(lr, bool):
        value = float(lr)
    else:
        raise TypeError(f"lr must be a float or a one-element Tensor, got {type(lr).__name__}")
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"lr must be finite and >= 0, got {value}")


def check_number(name: str, value: Any, low: float, high: float, *, high_open: bool) -> None:
    """Require ``low <= value <= high`` (``< high`` if ``high_open``) for a real number."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    above_low = value >= low
    below_high = value < high if high_open else value <= high
    if not (above_low and below_high and not math.isnan(value)):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in [{low}, {high}{bracket}, got {value}")


def check_flag(name: str, value: Any, *, allow_none: bool = False) -> None:
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "a bool or None" if allow_none else "a bool"
    raise TypeError(f"{name} must be {expected}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
