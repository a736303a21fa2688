"""DELFI: the genome-wide fragmentation profile of Cristiano et al. (2019, Nature 570: 385).

Cancer changes where and how finely plasma DNA is cut, which shows in the ratio of short
(100-150 bp) to long (151-220 bp) fragments along the genome. As published:
1. count short and long fragments per 100 kb bin of the autosomes;
2. leave out bins that hold gap (N) bases, bins that overlap a centromere (no arm), and bins
   mostly (>= 50 %) blacklisted;
3. correct short and long counts for GC separately: a loess of the counts on bin GC (degree 2,
   span 0.75), its prediction smoothed again by a loess over a 0.001-step GC grid (DELFI's
   `gc.correct`), subtracted, and the median added back;
4. merge the remaining bins of each arm into windows of 50 bins (5 Mb): p arms from their
   start, q arms from their end, a last chunk of fewer than 50 bins left out;
5. a window's ratio is its corrected short sum over its corrected long sum; FinaleToolkit
   instead averages its 50 bins' ratios, each bin's short/long ratio GC-corrected on its own
   (`window_ratio="mean"`).
Differences to the published scripts, stated: the GC of a bin is the reference's (DELFI uses its
fragments' mean GC), a fragment's size class goes to the bin of its start unless the counts were
made with `size_class_placement="midpoint"` (DELFI's and FinaleToolkit's rule; `--convention
finaletoolkit` selects it), and loess is evaluated exactly (R's default interpolates on a
kd-tree). FinaleToolkit smooths with Cappellari's `loess_1d` (the `loess` package) once, on a
0.01 GC grid interpolated linearly, fitted on the bins that have a ratio; `gc_smoother=
"loess_1d"` calls that package, if the user installed it, to give FinaleToolkit's numbers. Its
licence allows non-commercial use only and no redistribution, so plasmacount neither ships,
requires nor reimplements it, and DELFI's two-stage smoother stays the default.

Beside the windows: the genome-wide profile's correlation with a panel's median profile, arm z
scores against the panel, and a classifier-ready feature table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.gc import loess
from plasmacount.genome import AUTOSOME_KEYS, Layout, centromere_regions

BIN_SIZE = 100_000
BINS_PER_WINDOW = 50
SHORT_RANGE = (100, 150)
LONG_RANGE = (151, 220)
BLACKLIST_LIMIT = 0.5
LOESS_SPAN = 0.75
GC_GRID_STEP = 0.001
WINDOW_RATIOS = ("sum", "mean")
GC_SMOOTHERS = ("delfi", "loess_1d")
LOESS_1D_GRID_STEP = 0.01
MINIMUM_BINS = 10  # a GC loess needs points; a small (test) genome may have bins and no 50-bin arm


@dataclass
class DelfiProfile:
    """A sample's DELFI bins (after the filters) and 5 Mb windows."""

    sample: str
    bins: dict  # chrom, start, end, arm, gc, short, long, ratio and their GC-corrected values (arrays)
    windows: list[dict]  # chrom, arm, start, end, bins, short, long, ratio (corrected sums)
    window_ratio: str = "sum"
    notes: list[str] = field(default_factory=list)
    gc_smoother: str = "delfi"

    @property
    def ratios(self) -> np.ndarray:
        return np.array([w["ratio"] for w in self.windows], dtype=float)

    @property
    def coverage(self) -> np.ndarray:
        """Each window's corrected short + long fragments, over their mean: DELFI's coverage profile."""
        total = np.array([w["short"] + w["long"] for w in self.windows], dtype=float)
        return total / total.mean() if total.size and total.mean() > 0 else total


def arms(layout: Layout) -> np.ndarray:
    """Each bin's arm ("1p", "1q", ...), or "" for a bin of no autosome arm (overlapping a centromere,
    or not an autosome)."""
    regions = centromere_regions(layout)
    _, start, end = layout.bin_table()
    keys = layout.bin_keys()
    result = np.full(layout.n_bins, "", dtype=object)
    for key in AUTOSOME_KEYS:
        if key not in regions:
            continue
        first, last = regions[key]
        on = keys == key
        result[on & (end <= first)] = f"{key}p"
        result[on & (start >= last)] = f"{key}q"
    return result


def gc_correct(values: np.ndarray, gc: np.ndarray) -> np.ndarray:
    """DELFI's `gc.correct`: values minus their two-stage loess on GC, plus their median."""
    grid = np.arange(gc.min(), gc.max() + GC_GRID_STEP / 2, GC_GRID_STEP)
    trend = loess(gc, values, grid, span=LOESS_SPAN, degree=2)
    predicted = loess(grid, trend, gc, span=LOESS_SPAN, degree=2)
    return values - predicted + np.median(values)


def loess_1d_function():
    """Cappellari's loess_1d from the user-installed `loess` package, or a usage error naming it."""
    try:
        from loess.loess_1d import loess_1d
    except ImportError:
        raise UsageError(
            "the loess_1d GC smoother needs the `loess` package (pip install loess; its licence allows "
            "non-commercial use only), or use the default DELFI smoother"
        ) from None
    return loess_1d


def gc_correct_loess_1d(values: np.ndarray, gc: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """FinaleToolkit's correction: values minus Cappellari's loess_1d (degree 2, frac 0.75) of
    the `fitted` bins on a 0.01 GC grid, interpolated linearly, plus their median."""
    loess_1d = loess_1d_function()
    x, y = gc[fitted], values[fitted]
    grid = np.arange(x.min(), x.max() + LOESS_1D_GRID_STEP, LOESS_1D_GRID_STEP)
    _, line, _ = loess_1d(x, y, xnew=grid, degree=2, frac=LOESS_SPAN)
    return values - np.interp(gc, grid, line) + np.median(y)


def profile(
    counts: SampleCounts, annotation: BinAnnotation, window_ratio: str = "sum", gc_smoother: str = "delfi"
) -> DelfiProfile:
    """The DELFI profile of a sample counted in 100 kb bins with short 100-150 and long 151-220 bp."""
    if window_ratio not in WINDOW_RATIOS:
        raise UsageError(f"the window ratio is 'sum' (DELFI) or 'mean' (FinaleToolkit), not {window_ratio!r}")
    if gc_smoother not in GC_SMOOTHERS:
        raise UsageError(f"the GC smoother is one of {', '.join(GC_SMOOTHERS)}, not {gc_smoother!r}")
    if not counts.paired:
        raise UsageError(f"{counts.sample}: DELFI needs paired-end data (fragment lengths)")
    if counts.bin_size != BIN_SIZE or annotation.bin_size != BIN_SIZE:
        raise UsageError(f"{counts.sample}: DELFI is defined on 100 kb bins; count with a 100 kb annotation (--bins)")
    if tuple(counts.short_range) != SHORT_RANGE or tuple(counts.long_range) != LONG_RANGE:
        raise UsageError(
            f"{counts.sample}: DELFI needs short 100-150 and long 151-220 bp; count with the default --short-range/--long-range"
        )
    layout = annotation.layout
    if counts.layout != layout:
        counts = counts.on_layout(layout)
    arm = arms(layout)
    keep = (
        (arm != "")
        & (annotation.n_fraction == 0)
        & np.isfinite(annotation.gc)
        & (np.nan_to_num(annotation.blacklist) < BLACKLIST_LIMIT)
    )
    if keep.sum() < MINIMUM_BINS:
        raise DataError(
            f"{counts.sample}: only {int(keep.sum())} usable 100 kb bins on the autosomes; is this a human genome layout?"
        )
    index, start, end = layout.bin_table()
    chosen = np.flatnonzero(keep)
    short, long_ = counts.short[chosen].astype(float), counts.long[chosen].astype(float)
    gc = annotation.gc[chosen]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(long_ > 0, short / long_, np.nan)
    bins = {
        "chrom": np.array(layout.names, dtype=object)[index[chosen]],
        "start": start[chosen],
        "end": end[chosen],
        "arm": arm[chosen],
        "gc": gc,
        "short": short,
        "long": long_,
        "ratio": ratio,
    }
    if gc_smoother == "delfi":
        bins.update(
            short_corrected=gc_correct(short, gc),
            long_corrected=gc_correct(long_, gc),
            ratio_corrected=_gc_correct_known(ratio, gc),
        )
    else:
        fitted = np.isfinite(ratio)  # FinaleToolkit fits every column on the bins with all values
        if fitted.sum() < MINIMUM_BINS:
            raise DataError(
                f"{counts.sample}: only {int(fitted.sum())} bins with long fragments to fit the GC curve on"
            )
        bins.update(
            short_corrected=gc_correct_loess_1d(short, gc, fitted),
            long_corrected=gc_correct_loess_1d(long_, gc, fitted),
            ratio_corrected=np.where(fitted, gc_correct_loess_1d(np.nan_to_num(ratio), gc, fitted), np.nan),
        )
    windows = merge_windows(bins, window_ratio)
    notes = (
        []
        if counts.filters.get("size_class_placement") == "midpoint"
        else [
            "short and long fragments are placed in bins by their start (DELFI and FinaleToolkit: by midpoint; --size-class-placement midpoint)"
        ]
    )
    if not windows:
        notes.append(
            f"no arm holds {BINS_PER_WINDOW} usable 100 kb bins: no 5 Mb windows (the 100 kb bins are in <sample>.delfi_bins.tsv)"
        )
    return DelfiProfile(counts.sample, bins, windows, window_ratio, notes, gc_smoother)


def _gc_correct_known(values: np.ndarray, gc: np.ndarray) -> np.ndarray:
    """`gc_correct` over the finite values (a bin without long fragments has no ratio)."""
    result = np.full(values.shape, np.nan)
    known = np.isfinite(values)
    if known.sum() > 3:
        result[known] = gc_correct(values[known], gc[known])
    return result


def merge_windows(bins: dict, window_ratio: str = "sum") -> list[dict]:
    """The 50-bin windows of each arm (p arms from their start, q arms from their end; a last
    chunk of fewer than 50 bins left out) from bins in genome order with `arm`, `short_corrected`,
    `long_corrected` and, for `window_ratio="mean"`, `ratio_corrected`."""
    windows = []
    for name in dict.fromkeys(bins["arm"]):
        members = np.flatnonzero(bins["arm"] == name)
        chunks = (
            [members[i : i + BINS_PER_WINDOW] for i in range(0, members.size, BINS_PER_WINDOW)]
            if name.endswith("p")
            else [members[max(0, i - BINS_PER_WINDOW) : i] for i in range(members.size, 0, -BINS_PER_WINDOW)][::-1]
        )
        for chunk in chunks:
            if chunk.size < BINS_PER_WINDOW:
                continue
            short_counts, long_counts = bins["short_corrected"][chunk], bins["long_corrected"][chunk]
            if window_ratio == "sum":
                ratio = float(short_counts.sum() / long_counts.sum()) if long_counts.sum() > 0 else float("nan")
            else:
                corrected = bins["ratio_corrected"][chunk]
                ratio = float(np.nanmean(corrected)) if np.isfinite(corrected).any() else float("nan")
            windows.append(
                {
                    "chrom": bins["chrom"][chunk[0]],
                    "arm": name,
                    "start": int(bins["start"][chunk[0]]),
                    "end": int(bins["end"][chunk[-1]]),
                    "bins": int(chunk.size),
                    "short": float(short_counts.sum()),
                    "long": float(long_counts.sum()),
                    "ratio": ratio,
                }
            )
    return windows


def panel_median(profiles: list[DelfiProfile]) -> dict:
    """The median ratio and coverage per window of a panel of healthy profiles (same windows), and
    each arm's mean and SD of the arm ratio, for z scores."""
    keys = [(w["arm"], w["start"]) for w in profiles[0].windows]
    for other in profiles[1:]:
        if [(w["arm"], w["start"]) for w in other.windows] != keys:
            raise DataError(
                f"{other.sample}: its DELFI windows differ from {profiles[0].sample}'s; count every sample on one annotation"
            )
    ratios = np.array([p.ratios for p in profiles])
    arm_ratio = {}
    for arm in dict.fromkeys(w["arm"] for w in profiles[0].windows):
        values = [_arm_ratio(p, arm) for p in profiles]
        arm_ratio[arm] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"))
    return {
        "windows": keys,
        "ratio": np.median(ratios, axis=0),
        "coverage": np.median([p.coverage for p in profiles], axis=0),
        "arm_ratio": arm_ratio,
        "samples": len(profiles),
    }


def _arm_ratio(profile: DelfiProfile, arm: str) -> float:
    chosen = [w for w in profile.windows if w["arm"] == arm]
    return float(sum(w["short"] for w in chosen) / sum(w["long"] for w in chosen))


def summary(profile: DelfiProfile, panel: dict | None = None) -> dict:
    """The profile's figures for the fragments JSON: windows, genome ratio, correlation with the panel."""
    ratios = profile.ratios
    result = {
        "windows": len(profile.windows),
        "bins": int(profile.bins["short"].size),
        "window_ratio": profile.window_ratio,
        "gc_smoother": profile.gc_smoother,
        "median_ratio": float(np.nanmedian(ratios)) if ratios.size else None,
        "correlation_with_panel": None,
        "panel_samples": None,
        "notes": list(profile.notes),
    }
    if panel is not None:
        if [(w["arm"], w["start"]) for w in profile.windows] != panel["windows"]:
            raise DataError(
                f"{profile.sample}: its DELFI windows differ from the panel's; count on the panel's annotation"
            )
        known = np.isfinite(ratios) & np.isfinite(panel["ratio"])
        result["correlation_with_panel"] = float(np.corrcoef(ratios[known], panel["ratio"][known])[0, 1])
        result["panel_samples"] = panel["samples"]
    return result


def feature_table(
    profile: DelfiProfile, mitochondrial_fraction: float | None, panel: dict | None = None
) -> dict[str, float | None]:
    """One row of classifier-ready features: the window ratios and coverages (`ratio_<arm>_<start>`,
    `coverage_<arm>_<start>`), arm z scores against the panel (`z_<arm>`), the mitochondrial fraction."""
    row: dict[str, float | None] = {}
    for w, coverage in zip(profile.windows, profile.coverage):
        row[f"ratio_{w['arm']}_{w['start']}"] = w["ratio"]
        row[f"coverage_{w['arm']}_{w['start']}"] = float(coverage)
    for arm in dict.fromkeys(w["arm"] for w in profile.windows):
        z = None
        if panel is not None and arm in panel["arm_ratio"]:
            mean, sd = panel["arm_ratio"][arm]
            z = float((_arm_ratio(profile, arm) - mean) / sd) if sd and np.isfinite(sd) and sd > 0 else None
        row[f"z_{arm}"] = z
    row["mitochondrial_fraction"] = mitochondrial_fraction
    return row


PANEL_FORMAT = "plasmacount-delfi-panel"


def save_panel(panel: dict, path: str | os.PathLike) -> None:
    from plasmacount.files import write_archive

    metadata = {
        "format": PANEL_FORMAT,
        "format_version": "1.0",
        "windows": [list(key) for key in panel["windows"]],
        "arm_ratio": {arm: list(values) for arm, values in panel["arm_ratio"].items()},
        "samples": panel["samples"],
    }
    write_archive(path, metadata, {"ratio": panel["ratio"], "coverage": panel["coverage"]})


def load_panel(path: str | os.PathLike) -> dict:
    from plasmacount.files import read_archive

    metadata, arrays = read_archive(path, PANEL_FORMAT, 1)
    return {
        "windows": [tuple(key) for key in metadata["windows"]],
        "ratio": arrays["ratio"],
        "coverage": arrays["coverage"],
        "arm_ratio": {arm: tuple(values) for arm, values in metadata["arm_ratio"].items()},
        "samples": metadata["samples"],
    }
