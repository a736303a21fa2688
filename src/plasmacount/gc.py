"""GC bias: each library over- or under-represents GC-rich and GC-poor DNA in its own way.

The correction fits, per sample, a smooth curve of normalised coverage against bin GC
(a local linear fit through the medians of equally populated GC strata: LOESS-like and robust
to aneuploid or CNV bins) and divides every bin by the curve at its GC. The residual of the
strata around the curve is a QC measure of how well the curve explains the bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GcCurve:
    """A sample's coverage-versus-GC curve, evaluated at the strata and at every bin."""

    strata_gc: np.ndarray
    strata_coverage: np.ndarray
    fitted: np.ndarray  # curve at the strata
    factors: np.ndarray  # curve at every bin (NaN where GC is unknown)
    residual: float  # RMS of strata medians around the curve (relative)


def fit_gc_curve(counts: np.ndarray, gc: np.ndarray, use: np.ndarray, n_strata: int = 40, span: float = 0.3) -> GcCurve:
    """Fit the GC curve on bins `use` (normal-copy bins with known GC) and evaluate it everywhere."""
    use = use & np.isfinite(gc)
    values = counts[use].astype(float)
    mean = values.mean() if values.size and values.mean() > 0 else 1.0
    coverage = values / mean
    order = np.argsort(gc[use], kind="stable")
    groups = np.array_split(order, min(n_strata, max(1, order.size // 20)))
    strata_gc = np.array([np.median(gc[use][g]) for g in groups])
    strata_coverage = np.array([np.median(coverage[g]) for g in groups])
    fitted = _local_linear(strata_gc, strata_coverage, strata_gc, span)
    residual = float(np.sqrt(np.mean((strata_coverage / np.maximum(fitted, 1e-9) - 1) ** 2))) if fitted.size else 0.0
    factors = np.full(gc.shape, np.nan)
    known = np.isfinite(gc)
    clipped = np.clip(gc[known], strata_gc[0], strata_gc[-1]) if strata_gc.size else gc[known]
    factors[known] = np.interp(clipped, strata_gc, fitted) if strata_gc.size > 1 else 1.0
    factors[known] = np.maximum(factors[known], 0.05)
    return GcCurve(strata_gc, strata_coverage, fitted, factors, residual)


def _local_linear(x: np.ndarray, y: np.ndarray, at: np.ndarray, span: float) -> np.ndarray:
    """Tricube-weighted local linear regression of y on x, evaluated at `at`."""
    if x.size < 3:
        return np.full(at.shape, np.median(y) if y.size else 1.0)
    k = max(3, int(np.ceil(span * x.size)))
    result = np.empty(at.size)
    for i, point in enumerate(at):
        distance = np.abs(x - point)
        radius = np.partition(distance, k - 1)[k - 1] * 1.0001 + 1e-12
        weight = np.clip(1 - (distance / radius) ** 3, 0, None) ** 3
        sw = weight.sum()
        mx, my = (weight * x).sum() / sw, (weight * y).sum() / sw
        sxx = (weight * (x - mx) ** 2).sum()
        slope = (weight * (x - mx) * (y - my)).sum() / sxx if sxx > 0 else 0.0
        result[i] = my + slope * (point - mx)
    return result


def loess(x: np.ndarray, y: np.ndarray, at: np.ndarray, span: float = 0.75, degree: int = 2) -> np.ndarray:
    """Cleveland's loess (gaussian family, no robustness iterations), evaluated exactly at `at`:
    at each point a least-squares polynomial of `degree` in x, weighted by the tricube of the
    distance over the distance to the ceil(span * n)-th nearest x (span <= 1). The weighted
    normal equations are solved for a block of points at once."""
    x, y, at = (np.asarray(v, dtype=float) for v in (x, y, at))
    k = min(x.size, max(degree + 1, int(np.ceil(span * x.size))))
    result = np.empty(at.size)
    block = max(1, 4_000_000 // max(x.size, 1))
    powers = np.arange(2 * degree + 1)
    for first in range(0, at.size, block):
        points = at[first : first + block]
        offset = x[None, :] - points[:, None]
        distance = np.abs(offset)
        radius = np.partition(distance, k - 1, axis=1)[:, k - 1 : k]
        radius = np.where(radius > 0, radius, 1e-12)
        weight = np.clip(1 - (distance / radius) ** 3, 0, None) ** 3
        # moments sum(w * offset^j) for j = 0..2 degree, and sum(w * y * offset^j) for j = 0..degree
        moment_terms, target_terms = [], []
        term, weighted_y = weight, weight * y[None, :]
        for j in powers:
            moment_terms.append(term.sum(axis=1))
            if j <= degree:
                target_terms.append(weighted_y.sum(axis=1))
                weighted_y = weighted_y * offset
            term = term * offset
        moments, targets = np.stack(moment_terms, axis=1), np.stack(target_terms, axis=1)
        normal = np.stack([moments[:, j : j + degree + 1] for j in range(degree + 1)], axis=1)
        result[first : first + block] = (np.linalg.pinv(normal) @ targets[:, :, None])[:, 0, 0]
    return result
