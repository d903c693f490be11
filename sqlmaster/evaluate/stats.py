"""Bootstrap confidence intervals and latency percentiles for evaluation metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[bool] | Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of ``values`` (seeded, so reruns give the same interval).

    For 0/1 values the number of ones in a resample of size n is exactly Binomial(n, mean), so we draw that
    directly: the same distribution as resampling indices, in O(n_resamples) instead of O(n * n_resamples).
    An empty input gives ``(nan, nan)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arr = np.asarray(values, dtype=float)
    n = arr.size
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if np.isin(arr, (0.0, 1.0)).all():
        means = rng.binomial(n, arr.mean(), size=n_resamples) / n
    else:
        means = np.empty(n_resamples)
        chunk = max(1, 2_000_000 // n)  # bound memory: chunk x n indices at a time
        for start in range(0, n_resamples, chunk):
            stop = min(n_resamples, start + chunk)
            idx = rng.integers(0, n, size=(stop - start, n))
            means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation); nan for no values."""
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max of per-example latencies in seconds."""
    arr = np.asarray(latencies_s, dtype=float)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
    }
