"""Whole-chromosome aneuploidy: is there an extra (or missing) copy of a chromosome in the fetus?

A fetal trisomy raises its chromosome's share of plasma DNA by a factor 1 + FF/2. Three
statistics measure the excess against the panel of normals:
- **z**: the normalised chromosome ratio (see `reference.chromosome_ratios`) against its held-out
  panel distribution, with a per-sample standard deviation = systematic panel variance plus
  this sample's own counting variance (overdispersion x Poisson), so a shallow sample is not
  judged by a deep panel's spread;
- **NCV** (normalised chromosome value, Sehnert 2011): the chromosome over the denominator set
  of chromosomes that minimises its variation in the panel;
- **regression z** (NIPTeR's RBZ): observed over predicted share, predicted from other
  chromosomes' shares by a linear model fitted on the panel.
The call is FF-aware (NIFTY-style): the log-likelihood ratio of "trisomy at this fetal
fraction" against "euploid" given the ratio and its standard deviation. Positive needs z >= 3
and a likelihood ratio >= 100 for trisomy; negative needs the ratio to favour euploidy 100:1
(or z < 3 with enough fetal DNA to have seen a trisomy); everything else is a no-call with its
reason. The minimum fetal fraction for a reliable call is computed per sample: the FF at
which a trisomy would give z >= 3 with 99 % probability at this sample's noise.
"""
from __future__ import annotations

import math

import numpy as np

AUTOSOME_KEYS = [str(i) for i in range(1, 23)]
ALL_KEYS = AUTOSOME_KEYS + ["X"]
Z_THRESHOLD = 3.0
LOG_LR_THRESHOLD = math.log(100.0)
Z_POWER = 2.326  # one-sided 99 %


def noise_dispersion(profile, mask_autosomal: np.ndarray) -> float:
    """Overdispersion of a sample's bin counts relative to Poisson (1 = counting noise only)."""
    residual = profile.log_ratio[mask_autosomal & np.isfinite(profile.log_ratio)]
    expected = profile.raw[mask_autosomal & np.isfinite(profile.log_ratio)]
    keep = np.isfinite(residual) & (expected > 0)
    if keep.sum() < 20:
        return float("nan")
    scaled = residual[keep] * np.sqrt(expected[keep])
    return float((1.4826 * np.median(np.abs(scaled - np.median(scaled)))) ** 2)


def poisson_variance(profile, key: str) -> float:
    """Counting variance of a chromosome ratio: 1/n(chromosome) + 1/n(other autosomes)."""
    counts = profile.chromosome_counts
    own = counts.get(key, 0.0)
    rest = sum(counts[k] for k in AUTOSOME_KEYS) - (own if key in AUTOSOME_KEYS else 0.0)
    return (1.0 / own if own > 0 else math.inf) + (1.0 / rest if rest > 0 else math.inf)


def fit_chromosome_nulls(profiles, female: np.ndarray) -> dict:
    """Held-out panel distribution of each chromosome's ratio (chrX from female pregnancies)."""
    dispersion = [noise_dispersion(profile, profile.autosomal) for profile in profiles]
    dispersion = np.array(dispersion)
    stats = {}
    for key in ALL_KEYS:
        rows = [i for i in range(len(profiles)) if key != "X" or female[i]]
        values = np.array([profiles[i].chromosome_ratio[key] for i in rows])
        counting = np.array([dispersion[i] * poisson_variance(profiles[i], key) for i in rows])
        ok = np.isfinite(values) & np.isfinite(counting)
        values, counting = values[ok], counting[ok]
        mean = float(np.mean(values)) if values.size else 1.0
        sd = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
        systematic = max(0.0, sd**2 - float(np.mean(counting))) if values.size > 1 else 0.0
        poisson_cv = float(np.median(np.sqrt([poisson_variance(profiles[i], key) for i in rows]))) if rows else float("nan")
        stats[key] = {"mean": mean, "sd": sd, "cv": sd / mean if mean else float("nan"), "poisson_cv": poisson_cv,
                      "systematic_variance": systematic, "n": int(values.size)}
    stats["dispersion_median"] = float(np.nanmedian(dispersion))
    return stats


def gc_corrected_sums(counts: np.ndarray, factors: np.ndarray, mask: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per sample, GC-corrected reads on each chromosome (1-22, X): the inputs of NCV and regression."""
    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = np.where(np.isfinite(factors) & mask, counts / factors, 0.0)
    return np.stack([corrected[:, keys == key].sum(axis=1) for key in ALL_KEYS], axis=1)


def _candidates(target: str) -> list[int]:
    return [ALL_KEYS.index(k) for k in AUTOSOME_KEYS if k not in ("13", "18", "21", target)]


def fit_ncv(sums: np.ndarray, max_denominators: int = 6) -> dict:
    """Greedy choice of the denominator chromosomes that minimise each chromosome's CV."""
    result = {}
    for target in ALL_KEYS:
        t = ALL_KEYS.index(target)
        chosen: list[int] = []
        best_cv = math.inf
        for _ in range(max_denominators):
            trial = None
            for candidate in _candidates(target):
                if candidate in chosen:
                    continue
                ratio = sums[:, t] / sums[:, chosen + [candidate]].sum(axis=1)
                cv = float(np.std(ratio, ddof=1) / np.mean(ratio))
                if trial is None or cv < trial[0]:
                    trial = (cv, candidate)
            if trial is None or trial[0] > best_cv * 0.99:
                break
            best_cv = trial[0]
            chosen.append(trial[1])
        ratio = sums[:, t] / sums[:, chosen].sum(axis=1)
        result[target] = {"denominators": [ALL_KEYS[i] for i in chosen], "mean": float(np.mean(ratio)), "sd": float(np.std(ratio, ddof=1))}
    return result


def fit_regression(sums: np.ndarray, n_predictors: int = 4) -> dict:
    """Forward-selected linear models predicting each chromosome's share from others' shares."""
    shares = sums / sums[:, : len(AUTOSOME_KEYS)].sum(axis=1, keepdims=True)
    n = shares.shape[0]
    result = {}
    for target in ALL_KEYS:
        t = ALL_KEYS.index(target)
        chosen: list[int] = []
        for _ in range(min(n_predictors, max(0, n - 3))):
            best = None
            for candidate in _candidates(target):
                if candidate in chosen:
                    continue
                design = np.column_stack([np.ones(n), shares[:, chosen + [candidate]]])
                coefficients, *_ = np.linalg.lstsq(design, shares[:, t], rcond=None)
                residual = shares[:, t] - design @ coefficients
                if best is None or residual.var() < best[0]:
                    best = (residual.var(), candidate)
            if best is None:
                break
            chosen.append(best[1])
        design = np.column_stack([np.ones(n), shares[:, chosen]])
        coefficients, *_ = np.linalg.lstsq(design, shares[:, t], rcond=None)
        ratio = shares[:, t] / (design @ coefficients)
        result[target] = {"predictors": [ALL_KEYS[i] for i in chosen], "coefficients": [float(c) for c in coefficients],
                          "cv": float(np.std(ratio, ddof=1))}
    return result


def score_chromosomes(profile, sums: np.ndarray, reference) -> dict:
    """z, NCV z and regression z of every chromosome of one sample."""
    chromosomes = reference.metadata["chromosomes"]
    dispersion = noise_dispersion(profile, profile.autosomal)
    if not np.isfinite(dispersion):
        dispersion = chromosomes["dispersion_median"]
    shares = sums / sums[: len(AUTOSOME_KEYS)].sum()
    result = {}
    for key in ALL_KEYS:
        stats = chromosomes[key]
        ratio = profile.chromosome_ratio[key]
        sd = math.sqrt(stats["systematic_variance"] + dispersion * poisson_variance(profile, key))
        z = (ratio - stats["mean"]) / sd if np.isfinite(ratio) and sd > 0 else float("nan")
        ncv = reference.metadata["ncv"][key]
        denominator = sum(sums[ALL_KEYS.index(k)] for k in ncv["denominators"])
        ncv_z = ((sums[ALL_KEYS.index(key)] / denominator) - ncv["mean"]) / ncv["sd"] if denominator > 0 and ncv["sd"] > 0 else float("nan")
        model = reference.metadata["regression"][key]
        predicted = model["coefficients"][0] + sum(c * shares[ALL_KEYS.index(k)] for c, k in zip(model["coefficients"][1:], model["predictors"]))
        own = profile.chromosome_counts.get(key, 0.0)
        cv = max(model["cv"], 1.15 / math.sqrt(own) if own > 0 else math.inf)
        regression_z = (shares[ALL_KEYS.index(key)] / predicted - 1) / cv if predicted > 0 else float("nan")
        result[key] = {"ratio": ratio, "sd": sd, "z": z, "ncv_z": ncv_z, "regression_z": regression_z,
                       "reference_mean": stats["mean"]}
    return result


def minimum_fetal_fraction(sd: float) -> float:
    """Smallest FF at which a trisomy reaches z >= 3 with 99 % probability at this noise."""
    return 2.0 * (Z_THRESHOLD + Z_POWER) * sd


def call_trisomy(score: dict, fetal_fraction: float | None, fetal_fraction_low: float | None, qc_failed: bool) -> dict:
    """Positive / negative / no-call for a trisomy of one chromosome, with the reason."""
    z, sd, ratio = score["z"], score["sd"], score["ratio"]
    minimum = minimum_fetal_fraction(sd) if np.isfinite(sd) else float("nan")
    result = {"z": z, "log_likelihood_ratio": None, "minimum_fetal_fraction": minimum, "reason": None}
    if qc_failed:
        return {**result, "result": "no-call", "reason": "sample QC failed"}
    if not np.isfinite(z):
        return {**result, "result": "no-call", "reason": "chromosome not measurable"}
    if fetal_fraction is None or not np.isfinite(fetal_fraction):
        if z >= Z_THRESHOLD + 3:
            return {**result, "result": "positive", "reason": "fetal fraction unknown; z far above threshold"}
        return {**result, "result": "no-call", "reason": "fetal fraction unknown"}
    deviation = ratio - score["reference_mean"]
    expected = max(fetal_fraction_low if fetal_fraction_low is not None else fetal_fraction, 1e-4) / 2.0
    log_lr = (2 * deviation * expected - expected**2) / (2 * sd**2)
    result["log_likelihood_ratio"] = log_lr
    if z >= Z_THRESHOLD and log_lr >= LOG_LR_THRESHOLD:
        return {**result, "result": "positive"}
    # A negative needs enough fetal DNA to have shown a trisomy: judged on the FF's lower bound.
    enough = (fetal_fraction_low if fetal_fraction_low is not None else fetal_fraction) >= minimum
    if log_lr <= -LOG_LR_THRESHOLD or (z < Z_THRESHOLD and enough):
        return {**result, "result": "negative"}
    if z >= Z_THRESHOLD:
        reason = "z above threshold but not explained by a fetal trisomy at this fetal fraction (mosaicism or maternal event?)"
    else:
        reason = f"fetal fraction {100 * fetal_fraction:.1f} % below this sample's minimum {100 * minimum:.1f} % for its depth and noise"
    return {**result, "result": "no-call", "reason": reason}
