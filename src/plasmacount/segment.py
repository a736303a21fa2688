"""Segmentation of a normalised coverage profile into stretches of constant copy ratio.

Circular binary segmentation (Olshen et al. 2004) with per-bin weights: each region is tested
for the arc (i, j] whose weighted mean differs most from the rest, by the statistic
T = (mean_in - mean_out) / sqrt(1/W_in + 1/W_out) on values whose noise variance is 1/weight;
a region splits when |T| exceeds the threshold, and the pieces are tested again. The
threshold replaces CBS's permutation p-value with a fixed bar, since the calls that follow
require a much stronger segment z anyway.
"""

from __future__ import annotations

import math

import numpy as np

from plasmacount.genome import AUTOSOME_KEYS


def _best_arc(values: np.ndarray, weights: np.ndarray, min_bins: int) -> tuple[float, int, int]:
    """The arc with the largest |T| (compiled; `_best_arc_numpy` is the same in NumPy)."""
    from plasmacount._segmentkernel import best_arc

    return best_arc(
        np.ascontiguousarray(values, dtype=np.float64), np.ascontiguousarray(weights, dtype=np.float64), min_bins
    )


def _best_arc_numpy(values: np.ndarray, weights: np.ndarray, min_bins: int) -> tuple[float, int, int]:
    m = values.size
    cw = np.concatenate([[0.0], np.cumsum(weights)])
    cx = np.concatenate([[0.0], np.cumsum(weights * values)])
    total_w, total_x = cw[-1], cx[-1]
    best = (0.0, 0, 0)
    chunk = max(1, 4_000_000 // max(m, 1))
    for first in range(0, m, chunk):
        i = np.arange(first, min(first + chunk, m))[:, None]
        j = np.arange(m + 1)[None, :]
        w_in = cw[j] - cw[i]
        x_in = cx[j] - cx[i]
        w_out = total_w - w_in
        valid = (j - i >= min_bins) & (m - (j - i) >= min_bins) & (w_in > 0) & (w_out > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (x_in / w_in - (total_x - x_in) / w_out) / np.sqrt(1 / w_in + 1 / w_out)
        t = np.where(valid, np.abs(t), 0.0)
        flat = int(np.argmax(t))
        value = float(t.flat[flat])
        if value > best[0]:
            row, column = divmod(flat, t.shape[1])
            best = (value, int(first + row), int(column))
    return best


def bin_to_bin_sd(values: np.ndarray) -> float:
    """Noise SD of one bin from neighbour differences (robust MAD): copy-number steps barely move it."""
    differences = np.diff(values)
    return float(1.4826 * np.median(np.abs(differences - np.median(differences))) / math.sqrt(2))


# Window sizes of the genome-wide segment-noise check (bp): a library pattern shows at its own scale.
WINDOW_SIZES = (2_000_000, 10_000_000, 30_000_000)


def window_bins(size: int, bin_size: int) -> int:
    """Bins in a window of `size` bp (at least 2)."""
    return max(2, int(round(size / bin_size)))


def window_inflation(
    log2: np.ndarray, variance: np.ndarray, keys: np.ndarray, excluded: np.ndarray, size: int
) -> tuple[float, int]:
    """Robust SD of the z of windows of `size` bins on the autosomes, each against its
    chromosome's median window (1 = independent counting-level noise; never below 1): a library
    pattern the panel never saw widens it at its own scale. Whole-chromosome changes (trisomies)
    are the chromosome test's business and do not count here. Returns the spread and the number of
    windows it was measured on."""
    z: list[float] = []
    for key in AUTOSOME_KEYS:
        bins = np.flatnonzero((keys == key) & np.isfinite(log2) & np.isfinite(variance) & (variance > 0) & ~excluded)
        means, sds = [], []
        for first in range(0, bins.size - size + 1, size):
            chosen = bins[first : first + size]
            weights = 1 / variance[chosen]
            means.append(float((log2[chosen] * weights).sum() / weights.sum()))
            sds.append(float(1 / math.sqrt(weights.sum())))
        if len(means) >= 2:
            centre = float(np.median(means))
            z.extend((m - centre) / sd for m, sd in zip(means, sds))
    if len(z) < 20:
        return 1.0, len(z)
    values = np.array(z)
    return float(max(1.0, 1.4826 * np.median(np.abs(values - np.median(values))))), len(z)


def segment(
    values: np.ndarray, weights: np.ndarray, threshold: float = 5.0, min_bins: int = 3
) -> list[tuple[int, int]]:
    """Half-open index ranges of the segments of `values` (NaN-free; weights = 1/variance)."""
    pending = [(0, values.size)]
    done = []
    while pending:
        start, end = pending.pop()
        if end - start < 2 * min_bins:
            done.append((start, end))
            continue
        statistic, i, j = _best_arc(values[start:end], weights[start:end], min_bins)
        if statistic < threshold:
            done.append((start, end))
            continue
        cuts = sorted({start, start + i, start + j, end})
        pieces = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        if len(pieces) == 1:
            done.append(pieces[0])
        else:
            pending.extend(pieces)
    return sorted(done)
