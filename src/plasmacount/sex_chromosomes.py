"""Fetal sex and sex-chromosome aneuploidies from chrX and chrY dosage.

chrY: a male fetus adds fetal chrY DNA in proportion to the fetal fraction; women carry a
background of reads mis-mapped to chrY, whose amount varies per sample and whose place varies
per bin (often piled into a few bins homologous to chrX and the autosomes). The model learnt
from the panel is per bin: the female background (median of female pregnancies), the male
signal (how much a male fetus adds there, relative to the chrY mean) and the noise (spread of
female pregnancies plus a male's counting noise). A sample's chrY dose is a weighted least-squares
fit over every usable chrY bin with two columns, the male signal and the female background
pattern (each sample has its own amount of background), weighted by 1/noise, so hot background
bins count little and no bin is thrown away by a fixed rule. The panel's fetal sexes are found by
iteration: a first split of the robust (median-over-bins) dose by a two-group mixture, then the
bin model, the doses and the split again until they agree. The fetal sex of a sample is called
against the female distribution of the dose (adjusted for its depth), with an inconclusive
band between the two.

chrX: relative to female pregnancies, X dosage is 1 - FF/2 for a male (or 45,X) fetus and
1 + FF/2 for 47,XXX. Sex-chromosome aneuploidies are classified by the likelihood of the
observed (X dosage, Y dose) under each fetal karyotype, integrating over the sample's
sex-independent fetal fraction (from fragment sizes or the bin profile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

FEMALE_Z_MAX = 5.0  # below: female
MALE_Z_MIN = 10.0  # above: male; between: inconclusive
MIN_MALE_Y_FRACTION = 0.005  # a male fetus below 0.5 % fetal fraction cannot be tested anyway
KARYOTYPES = {  # expected (X dosage change, chrY dose) in units of the fetal fraction
    "46,XX": (0.0, 0.0),
    "46,XY": (-0.5, 1.0),
    "45,X": (-0.5, 0.0),
    "47,XXX": (0.5, 0.0),
    "47,XXY": (0.0, 1.0),
    "47,XYY": (-0.5, 2.0),
}
PRIORS = {"46,XX": 0.4985, "46,XY": 0.4985, "45,X": 0.00075, "47,XXX": 0.00075, "47,XXY": 0.00075, "47,XYY": 0.00075}


class ChrYBinModel(TypedDict):
    """Per usable chrY bin: its index, the female background, the male signal and the weight
    (arrays while it is fitted, lists once stored in a reference)."""

    y_bins: Sequence[int] | np.ndarray
    y_background: Sequence[float] | np.ndarray
    y_signal: Sequence[float] | np.ndarray
    y_weights: Sequence[float] | np.ndarray


class SexModel(ChrYBinModel):
    """The sex model a reference keeps: the chrY bin model and the female distribution of the
    dose at the panel's median depth, with each panel sample's dose."""

    female_dose_median: float
    female_dose_sd: float
    median_reads: float
    n_chrY_bins: int
    autosomal_bins: int
    effective_chrY_bins: float
    panel_doses: list[float]


class FittedSexModel(SexModel):
    """The sex model as fitted, with the panel's fetal sexes (which a reference keeps apart)."""

    panel_sexes: list[str]


def _design(model: ChrYBinModel, use: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the per-sample chrY fit (male signal, female background) and the bin weights."""
    signal = np.asarray(model["y_signal"], dtype=float)
    background = np.asarray(model["y_background"], dtype=float)
    weights = np.asarray(model["y_weights"], dtype=float)
    if use is not None:
        signal, background, weights = signal[use], background[use], weights[use]
    columns = [signal]
    # The background's amount varies per sample: fitted as a second column when there is one.
    if (background > 0).sum() >= 3 and np.linalg.matrix_rank(np.column_stack([signal, background])) == 2:
        columns.append(background)
    return np.column_stack(columns), weights


def y_dose(coverage: np.ndarray, model: ChrYBinModel) -> float:
    """A sample's chrY dose, in units of the mean chrY coverage of an autosome-relative bin (a
    male adult: about 0.5), fitted with its own amount of the panel's female background pattern."""
    bins = np.asarray(model["y_bins"], dtype=np.int64)
    if bins.size == 0:
        return float("nan")
    values = coverage[bins]
    use = np.isfinite(values)
    if use.sum() < 3:
        return float("nan")
    design, weights = _design(model, use)
    gram = design.T @ (weights[:, None] * design)
    solution = np.linalg.solve(gram, design.T @ (weights * values[use]))
    return float(solution[0])


def _two_groups(values: np.ndarray) -> np.ndarray:
    """Boolean 'upper group' by a two-component Gaussian mixture (EM, unequal variances)."""
    low, high = np.quantile(values, [0.1, 0.9])
    if not high > low:
        return np.zeros(values.shape, dtype=bool)
    means = np.array([low, high], dtype=float)
    sds = np.full(2, (high - low) / 4)
    shares = np.array([0.5, 0.5])
    upper = values > means.mean()
    for _ in range(200):
        log_density = -0.5 * ((values[:, None] - means) / sds) ** 2 - np.log(sds) + np.log(shares)
        log_density -= log_density.max(axis=1, keepdims=True)
        responsibility = np.exp(log_density)
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        weight = responsibility.sum(axis=0)
        if (weight < 1e-9).any():
            break
        means = (responsibility * values[:, None]).sum(axis=0) / weight
        sds = np.sqrt((responsibility * (values[:, None] - means) ** 2).sum(axis=0) / weight)
        sds = np.maximum(sds, 1e-3 * (high - low) + 1e-12)
        shares = weight / weight.sum()
        new_upper = responsibility[:, 1] > 0.5 if means[1] > means[0] else responsibility[:, 0] > 0.5
        if (new_upper == upper).all():
            break
        upper = new_upper
    return upper


# A male fetus at 1 % fetal fraction gives a chrY dose of about 0.005 (a male adult 0.5); the
# female background's median over chrY bins stays below this.
ALL_MALE_DOSE = 0.004


def _bin_model(
    coverages: np.ndarray, bins: np.ndarray, female: np.ndarray, reads: np.ndarray, autosomal_bins: int
) -> ChrYBinModel:
    values = coverages[:, bins]
    background = np.median(values[female], axis=0)
    # Each sample carries its own amount of the background: scaled per sample before the spread
    # and the male signal are measured, so a heavy-background sample does not look male.
    total = max(float((background**2).sum()), 1e-300)
    amount = (values @ background) / total if background.any() else np.zeros(values.shape[0])
    female_residual = values[female] - amount[female, None] * background
    spread = 1.4826 * np.median(np.abs(female_residual - np.median(female_residual, axis=0)), axis=0)
    excess = values[~female] - np.median(amount[female]) * background
    signal = np.clip(np.median(excess, axis=0), 0.0, None)
    mean_signal = float(signal.mean()) if signal.size else 0.0
    signal = signal / mean_signal if mean_signal > 0 else np.ones(bins.size)
    # A male's counting noise: a bin of mean coverage c holds about c x reads/bins reads.
    per_bin_reads = float(np.median(reads)) / max(autosomal_bins, 1)
    male_level = max(mean_signal, 1e-4)
    counting = (background + signal * male_level) / max(per_bin_reads, 1.0)
    variance = spread**2 + counting
    variance = np.maximum(variance, 0.05 * float(np.median(variance)) + 1e-12)
    return {"y_bins": bins, "y_background": background, "y_signal": signal, "y_weights": 1.0 / variance}


def fit_sex_model(coverages: np.ndarray, keys: np.ndarray, mask: np.ndarray, reads: np.ndarray) -> FittedSexModel:
    """The per-bin chrY model, the female distribution of the chrY dose, and the panel's fetal sexes."""
    on_y = mask & (keys == "Y")
    if on_y.sum() < 5:
        raise ValueError("too few usable chrY bins to learn fetal sex")
    bins = np.flatnonzero(on_y)
    autosomal_bins = int((mask & ~np.isin(keys, ["X", "Y"])).sum())
    # First split: the median over bins ignores a background piled into a minority of bins.
    first = np.median(coverages[:, bins], axis=1)
    logs = np.log10(np.maximum(first, 1e-5))
    male = _two_groups(logs) if logs.size >= 4 else np.zeros(logs.size, dtype=bool)
    if (
        male.all()
        or (~male).all()
        or np.median(first[~male]) > ALL_MALE_DOSE
        or np.median(first[male]) < 2.5 * ALL_MALE_DOSE
    ):
        # No plausible two-group split (one fetal sex only, or groups a mixture cannot part): the
        # dose a male fetus at 1 % fetal fraction would give parts them; the iteration refines it.
        male = first > ALL_MALE_DOSE
    model: ChrYBinModel | None = None
    doses = first
    for _ in range(10):
        female = ~male
        if female.sum() < 3 or male.sum() < 3:
            break
        model = _bin_model(coverages, bins, female, reads, autosomal_bins)
        doses = np.array([y_dose(row, model) for row in coverages])
        center = float(np.median(doses[female]))
        spread = float(1.4826 * np.median(np.abs(doses[female] - center))) or 1e-6
        # Male: the dose stands clear of the female background (the same bar as `fetal_sex`'s
        # lower edge) and is worth more than MIN_MALE_Y_FRACTION of fetal DNA.
        new_male = ((doses - center) / spread > FEMALE_Z_MAX) & (2 * (doses - center) >= MIN_MALE_Y_FRACTION)
        if (new_male == male).all():
            break
        male = new_male
    female = ~male
    if model is None or female.sum() < 3 or male.sum() < 3:
        # One fetal sex only (such a panel is refused later): uniform weights, background from the
        # female pregnancies if any.
        background = np.median(coverages[female][:, bins], axis=0) if female.sum() >= 3 else np.zeros(bins.size)
        model = {
            "y_bins": bins,
            "y_background": background,
            "y_signal": np.ones(bins.size),
            "y_weights": np.ones(bins.size),
        }
        doses = np.array([y_dose(row, model) for row in coverages])
    if female.sum() >= 3:
        center = float(np.median(doses[female]))
        spread = float(1.4826 * np.median(np.abs(doses[female] - center))) or 1e-6
    else:
        center, spread = 0.0, 1e-3
    weights = np.asarray(model["y_weights"])
    return {
        "y_bins": [int(i) for i in model["y_bins"]],
        "y_background": [float(v) for v in model["y_background"]],
        "y_signal": [float(v) for v in model["y_signal"]],
        "y_weights": [float(v) for v in weights],
        "female_dose_median": center,
        "female_dose_sd": spread,
        "median_reads": float(np.median(reads)),
        "n_chrY_bins": int(bins.size),
        "autosomal_bins": autosomal_bins,
        "effective_chrY_bins": float(weights.sum() ** 2 / max((weights**2).sum(), 1e-300)),
        "panel_doses": [float(d) for d in doses],
        "panel_sexes": ["female" if is_female else "male" for is_female in female],
    }


def stored_sex_model(fitted: FittedSexModel) -> SexModel:
    """The sex model as a reference keeps it: without the panel's sexes, which it keeps apart."""
    return {key: value for key, value in fitted.items() if key != "panel_sexes"}  # type: ignore[return-value]


def y_fraction(dose: float, model: SexModel, calibration: float) -> float:
    """The fetal fraction a chrY dose implies: twice its excess over the female background, on the
    panel's chrX-calibrated scale (a male adult's dose is 0.5)."""
    return calibration * 2 * (dose - model["female_dose_median"])


def dose_sd(dose: float, model: SexModel, reads: float) -> float:
    """SD of a sample's chrY dose: the female spread at this depth and the fit's counting noise."""
    depth = math.sqrt(max(model["median_reads"] / max(reads, 1.0), 1.0))
    return math.hypot(model["female_dose_sd"] * depth, dose_counting_sd(max(dose, 0.0), model, reads))


def fetal_sex(dose: float, model: SexModel, reads: float, y_fraction: float | None = None) -> dict:
    """female / male / inconclusive from the chrY dose, with the z against the female background.

    `y_fraction`, the fetal fraction the dose implies, guards the z: a panel whose female
    pregnancies have next to no reads on chrY has a near-zero spread, and then a
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


def dose_counting_sd(dose: float, model: SexModel, reads: float) -> float:
    """Counting SD of a chrY dose: the weighted fit's SD under Poisson noise at this sample's reads."""
    design, weights = _design(model)
    per_bin_reads = max(reads, 1.0) / max(model["autosomal_bins"], 1)
    # Poisson variance of each bin's coverage, in coverage units, at this dose.
    expected = np.asarray(model["y_background"]) + np.asarray(model["y_signal"]) * max(dose, 0.0)
    variance = np.maximum(expected, 0.0) / max(per_bin_reads, 1e-9)
    inverse = np.linalg.inv(design.T @ (weights[:, None] * design))
    sandwich = inverse @ (design.T @ ((weights**2 * variance)[:, None] * design)) @ inverse
    return float(math.sqrt(max(sandwich[0, 0], 0.0)))


def classify(x_change: float, x_sd: float, y_fraction: float, y_sd: float, posterior) -> dict:
    """Posterior probability of each fetal sex-chromosome karyotype.

    `x_change`: X dosage relative to female pregnancies minus 1; `y_fraction`: chrY dose as a
    fetal fraction (2 x dose above the female background); `posterior`: the sex-independent fetal
    fraction (an `aneuploidy.FetalFractionPosterior`), or None to integrate over the population
    prior of the fetal fraction alone.
    """
    from plasmacount.aneuploidy import FetalFractionPosterior

    if not np.isfinite(x_change) or not np.isfinite(x_sd) or not np.isfinite(y_fraction):
        return {"posteriors": None, "best": None, "fit": None}
    if posterior is None:
        posterior = FetalFractionPosterior.from_estimate(0.10, 10.0)  # the prior: the likelihood is flat
    grid, prior_f = posterior.grid, posterior.weights
    log_marginals = {}
    best_fit = {}
    for karyotype, (x_unit, y_unit) in KARYOTYPES.items():
        log_like = -0.5 * ((x_change - x_unit * grid) / x_sd) ** 2 - 0.5 * ((y_fraction - y_unit * grid) / y_sd) ** 2
        with np.errstate(divide="ignore"):
            log_joint = log_like + np.log(prior_f)
        peak = float(log_joint.max())
        log_marginals[karyotype] = math.log(PRIORS[karyotype]) + peak + math.log(float(np.exp(log_joint - peak).sum()))
        best_fit[karyotype] = float(-2 * log_like.max())
    top = max(log_marginals.values())
    weights = {k: math.exp(v - top) for k, v in log_marginals.items()}
    total = sum(weights.values())
    posteriors = {k: w / total for k, w in weights.items()}
    best = max(posteriors, key=lambda karyotype: posteriors[karyotype])
    return {"posteriors": posteriors, "best": best, "fit": best_fit[best]}
