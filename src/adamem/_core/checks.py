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


def check_number(
    name: str, value: Any, low: float, high: float, *, high_open: bool, low_open: bool = False
) -> None:
    """Require ``low <= value <= high`` for a real number (``low < value`` if ``low_open``,
    ``value < high`` if ``high_open``); the error states that interval.

    >>> check_number("eps", -1e-8, 0.0, float("inf"), low_open=True, high_open=True)
    Traceback (most recent call last):
    ValueError: eps must lie in (0.0, inf), got -1e-08
    """
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    above_low = value > low if low_open else value >= low
    below_high = value < high if high_open else value <= high
    if not (above_low and below_high and not math.isnan(value)):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value}")


def check_flag(name: str, value: Any, *, allow_none: bool = False) -> None:
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "a bool or None" if allow_none else "a bool"
    raise TypeError(f"{name} must be {expected}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
