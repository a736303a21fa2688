"""Fetal sex and sex-chromosome aneuploidies from chrX and chrY dosage.

chrY: a male fetus adds fetal chrY DNA in proportion to the fetal fraction; women carry a
small background of reads mis-mapped to chrY, concentrated in regions homologous to chrX and
the autosomes. The model learnt from the panel keeps the chrY bins where female pregnancies
have almost no reads ("clean" bins), measures each sample's chrY dose there, and calls the
fetal sex against the female background distribution (adjusted for the sample's own depth),
with an inconclusive band between the two.

chrX: relative to female pregnancies, X dosage is 1 - FF/2 for a male (or 45,X) fetus and
1 + FF/2 for 47,XXX. Sex-chromosome aneuploidies are classified by the likelihood of the
observed (X dosage, Y dose) under each fetal karyotype, integrating over the sample's
sex-independent fetal fraction (from fragment sizes or the bin profile).
"""
from __future__ import annotations

import math

import numpy as np

FEMALE_Z_MAX = 5.0   # below: female
MALE_Z_MIN = 10.0    # above: male; between: inconclusive
MIN_MALE_Y_FRACTION = 0.005  # a male fetus below 0.5 % fetal fraction cannot be tested anyway
KARYOTYPES = {  # expected (X dosage change, chrY dose) in units of the fetal fraction
    "46,XX": (0.0, 0.0), "46,XY": (-0.5, 1.0), "45,X": (-0.5, 0.0), "47,XXX": (0.5, 0.0), "47,XXY": (0.0, 1.0), "47,XYY": (-0.5, 2.0),
}
PRIORS = {"46,XX": 0.4985, "46,XY": 0.4985, "45,X": 0.00075, "47,XXX": 0.00075, "47,XXY": 0.00075, "47,XYY": 0.00075}


def y_dose(coverage: np.ndarray, clean: np.ndarray) -> float:
    """Mean GC-corrected coverage of clean chrY bins, relative to an autosomal bin (male adult: 0.5)."""
    return float(np.mean(coverage[clean])) if clean.any() else float("nan")


def fit_sex_model(coverages: np.ndarray, keys: np.ndarray, mask: np.ndarray, reads: np.ndarray) -> dict:
    """Clean chrY bins, the female background of the chrY dose, and the panel's fetal sexes."""
    on_y = mask & (keys == "Y")
    if on_y.sum() < 5:
        raise ValueError("too few usable chrY bins to learn fetal sex")
    # Clean bins: where the low end of the panel (female pregnancies) has almost no reads. Fetal
    # chrY DNA covers every chrY bin alike; the female background piles up in homologous bins.
    low_end = np.quantile(coverages[:, on_y], 0.1, axis=0)
    clean_here = low_end <= 3 * max(np.quantile(low_end, 0.2), 1e-6)
    clean = np.zeros_like(on_y)
    clean[np.flatnonzero(on_y)[clean_here]] = True
    if clean.sum() < 5:
        clean = on_y
    # Two groups of chrY dose on the log scale: split at the largest gap.
    first_doses = coverages[:, clean].mean(axis=1)
    logs = np.sort(np.log10(np.maximum(first_doses, 1e-6)))
    gap = int(np.argmax(np.diff(logs))) if logs.size > 1 else 0
    threshold = 10 ** ((logs[gap] + logs[gap + 1]) / 2) if logs.size > 1 else math.inf
    female = first_doses < threshold
    # A real split leaves the background far below the fetal chrY signal; otherwise the panel
    # holds one fetal sex only, told by whether its dose looks like background (< 1 % FF).
    # A male fetus at FF 2 % gives a dose of 0.01; the female background stays well under 0.004.
    if female.any() and (~female).any():
        low, high = np.median(first_doses[female]), np.median(first_doses[~female])
        if low > 0.004:  # even the lower group carries fetal chrY: an all-male panel
            female = first_doses < 0.004
        elif high < 0.01:  # even the upper group is background: an all-female panel
            female = np.ones(female.shape, dtype=bool)
    if female.sum() >= 3 and (~female).sum() >= 3:
        # With the fetal sexes known, keep the bins where female pregnancies have under a tenth of
        # the male signal: a choice by ratio, so it does not favour bins that collect few reads.
        female_mean = coverages[female][:, on_y].mean(axis=0)
        male_mean = coverages[~female][:, on_y].mean(axis=0)
        by_ratio = (male_mean > 0) & (female_mean < 0.1 * np.maximum(male_mean - female_mean, 1e-12))
        if by_ratio.sum() >= 5:
            clean = np.zeros_like(on_y)
            clean[np.flatnonzero(on_y)[by_ratio]] = True
    doses = np.array([y_dose(row, clean) for row in coverages])
    if female.sum() >= 3:
        female_doses = doses[female]
        center = float(np.median(female_doses))
        spread = float(1.4826 * np.median(np.abs(female_doses - center))) or 1e-6
    else:  # no female pregnancies to learn the background from (such a panel is refused later)
        center, spread = 0.0, 1e-3
    model = {"clean_bins": [int(i) for i in np.flatnonzero(clean)], "female_dose_median": center, "female_dose_sd": spread,
             "median_reads": float(np.median(reads)), "n_clean_bins": int(clean.sum())}
    model["panel_sexes"] = ["female" if is_female else "male" for is_female in female]
    model["panel_doses"] = [float(d) for d in doses]
    return model


def fetal_sex(dose: float, model: dict, reads: float, y_fraction: float | None = None) -> dict:
    """female / male / inconclusive from the chrY dose, with the z against the female background.

    `y_fraction`, the fetal fraction the dose implies, guards the z: a panel whose female
    pregnancies have next to no reads in the clean bins has a near-zero spread, and then a
    sample aligned a little differently (another aligner or version) looks male on a trace of
    mis-mapped reads. A chrY dose worth less than MIN_MALE_Y_FRACTION of fetal DNA is background."""
    if not np.isfinite(dose):
        return {"sex": "inconclusive", "z": float("nan")}
    # The background's counting noise grows as depth falls; the panel spread is at its median depth.
    scale = math.sqrt(max(model["median_reads"] / max(reads, 1.0), 1.0))
    sd = model["female_dose_sd"] * scale
    z = (dose - model["female_dose_median"]) / sd
    sex = "female" if z < FEMALE_Z_MAX else "male" if z > MALE_Z_MIN else "inconclusive"
    if sex != "female" and y_fraction is not None and y_fraction < MIN_MALE_Y_FRACTION:
        sex = "female"
    return {"sex": sex, "z": float(z)}


def classify(x_change: float, x_sd: float, y_fraction: float, y_sd: float, fetal_fraction: float | None, fetal_fraction_sd: float | None) -> dict:
    """Posterior probability of each fetal sex-chromosome karyotype.

    `x_change`: X dosage relative to female pregnancies minus 1; `y_fraction`: chrY dose as a
    fetal fraction (2 x dose above the female background); `fetal_fraction`: sex-independent FF.
    """
    if fetal_fraction is None or not np.isfinite(fetal_fraction) or not np.isfinite(x_change):
        return {"posteriors": None, "best": None, "fit": None}
    sd_f = max(fetal_fraction_sd or 0.01, 0.005)
    grid = np.linspace(max(0.002, fetal_fraction - 4 * sd_f), fetal_fraction + 4 * sd_f, 161)
    prior_f = np.exp(-0.5 * ((grid - fetal_fraction) / sd_f) ** 2)
    prior_f /= prior_f.sum()
    log_marginals = {}
    best_fit = {}
    for karyotype, (x_unit, y_unit) in KARYOTYPES.items():
        log_like = (-0.5 * ((x_change - x_unit * grid) / x_sd) ** 2 - 0.5 * ((y_fraction - y_unit * grid) / y_sd) ** 2)
        peak = log_like.max()
        log_marginals[karyotype] = math.log(PRIORS[karyotype]) + peak + math.log(float((np.exp(log_like - peak) * prior_f).sum()))
        best_fit[karyotype] = float(-2 * peak)
    top = max(log_marginals.values())
    weights = {k: math.exp(v - top) for k, v in log_marginals.items()}
    total = sum(weights.values())
    posteriors = {k: w / total for k, w in weights.items()}
    best = max(posteriors, key=posteriors.get)
    return {"posteriors": posteriors, "best": best, "fit": best_fit[best]}
