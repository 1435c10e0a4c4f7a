"""Confidence intervals: every figure that compares policies or reward models carries one."""

from __future__ import annotations

import math
import random


def longer_first(a: str, b: str) -> float:
    """The 'longer joke wins' baseline's verdict on (a, b): 1, 0.5 or 0 by character length.

    >>> longer_first("a long one", "short"), longer_first("same", "size")
    (1.0, 0.5)
    """
    return 1.0 if len(a) > len(b) else 0.5 if len(a) == len(b) else 0.0


def bootstrap_mean_ci(values: list[float], rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of values (resampled with replacement, `rounds` times).

    >>> bootstrap_mean_ci([1.0] * 10)
    (1.0, 1.0)
    >>> lo, hi = bootstrap_mean_ci([0.0, 1.0] * 50, seed=1); lo < 0.5 < hi and hi - lo < 0.25
    True
    """
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(rounds))
    return means[int((1 - level) / 2 * (rounds - 1))], means[math.ceil((1 + level) / 2 * (rounds - 1))]
