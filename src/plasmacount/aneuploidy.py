"""Whole-chromosome aneuploidy: is there an extra (or missing) copy of a chromosome in the fetus?

A fetal trisomy raises its chromosome's share of plasma DNA by a factor 1 + FF/2. The statistic
is the chromosome **z**: the normalised chromosome ratio (see `reference.chromosome_ratios`,
computed without the bins of segmental CNVs) against its held-out panel distribution, with a
per-sample standard deviation = systematic panel variance plus this sample's own counting
variance (overdispersion x Poisson), so a shallow sample is not judged by a deep panel's spread.

A sample can carry structure the panel never saw (a new library bias): then every chromosome's
z spreads wider than N(0, 1). The **inflation** of a sample is the robust spread of the z of the
autosomes not under test (not 13, 18 or 21, nor any with a CNV); every z is divided by it when it
exceeds 1, and QC reports it.

The call:
- **Fetal fraction not determinable** (a female pregnancy without a sex-independent estimator
  that has shown skill on the panel): positive when z >= Z_POSITIVE, otherwise negative, as
  WisecondorX and NIPTeR decide (an excess below what a trisomy at LOWEST_FETAL_FRACTION gives
  is a no-call, not a positive); the smallest fetal fraction this sample could have shown
  (`minimum_fetal_fraction`) is stated with it.
- **Fetal fraction determinable**: the likelihood of "trisomy" is integrated over the fetal
  fraction's posterior (`FetalFractionPosterior`) and compared with "euploid" (a Bayes factor,
  NIFTY-style). Positive needs z >= Z_POSITIVE and a Bayes factor >= 100; negative needs
  z < Z_POSITIVE and either a Bayes factor <= 1/100 or a fetal fraction at or above the
  sample's limit with the counts favouring euploidy; a no-call is left only when the measured
  fetal fraction is below that limit, or z is just under the threshold while the counts favour
  a trisomy (borderline).
  An excess far larger than the fetal fraction explains is still called, with a note.
The limit (`minimum_fetal_fraction`) is the fetal fraction at which a trisomy reaches
Z_POSITIVE with NEGATIVE_POWER probability at this sample's noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from plasmacount.genome import AUTOSOME_KEYS

if TYPE_CHECKING:
    from plasmacount.reference import Profile, Reference

ALL_KEYS = AUTOSOME_KEYS + ["X"]
TESTED_KEYS = ("13", "18", "21")
# A fixed threshold, as the field uses (NIPTeR 3, WisecondorX 5 for segments): 3.5 keeps the false
# positive rate per chromosome at about 2 in 10,000 when z is honestly N(0, 1).
Z_POSITIVE = 3.5
LOG_BAYES_FACTOR = math.log(100.0)
# A negative from a measured fetal fraction needs this probability of having seen a trisomy.
NEGATIVE_POWER = 0.9
# Without a fetal fraction, an excess smaller than a trisomy at this fetal fraction gives is not called
# (labs report no fetal fraction below 3-4 %; a library pattern the panel never saw gives such excesses).
LOWEST_FETAL_FRACTION = 0.03
# Population prior of the fetal fraction (lognormal; median 10 %, most pregnancies 4-20 %).
PRIOR_MEDIAN, PRIOR_LOG_SD = 0.10, 0.6


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


POWER_Z = _normal_quantile(NEGATIVE_POWER)


@dataclass(frozen=True)
class FetalFractionPosterior:
    """A fetal fraction known to some precision, as a distribution on a grid (fractions 0-1)."""

    grid: np.ndarray
    weights: np.ndarray  # sum 1

    @classmethod
    def from_estimate(cls, estimate: float, sd: float) -> FetalFractionPosterior:
        """Population prior times a normal likelihood of the estimate (truncated to 0.2-50 %)."""
        grid = np.linspace(0.002, 0.5, 500)
        log_prior = -0.5 * ((np.log(grid) - math.log(PRIOR_MEDIAN)) / PRIOR_LOG_SD) ** 2 - np.log(grid)
        log_like = -0.5 * ((grid - estimate) / max(sd, 1e-4)) ** 2
        log_post = log_prior + log_like
        weights = np.exp(log_post - log_post.max())
        return cls(grid, weights / weights.sum())

    def quantile(self, q: float) -> float:
        return float(np.interp(q, np.cumsum(self.weights), self.grid))

    @property
    def median(self) -> float:
        return self.quantile(0.5)


def noise_dispersion(profile: Profile, mask_autosomal: np.ndarray) -> float:
    """Overdispersion of a sample's bin counts relative to Poisson (1 = counting noise only)."""
    residual = profile.log_ratio[mask_autosomal & np.isfinite(profile.log_ratio)]
    expected = profile.raw[mask_autosomal & np.isfinite(profile.log_ratio)]
    keep = np.isfinite(residual) & (expected > 0)
    if keep.sum() < 20:
        return float("nan")
    scaled = residual[keep] * np.sqrt(expected[keep])
    return float((1.4826 * np.median(np.abs(scaled - np.median(scaled)))) ** 2)


def poisson_variance(counts: dict[str, float], key: str) -> float:
    """Counting variance of a chromosome ratio: 1/n(chromosome) + 1/n(other autosomes)."""
    own = counts.get(key, 0.0)
    rest = sum(counts[k] for k in AUTOSOME_KEYS) - (own if key in AUTOSOME_KEYS else 0.0)
    return (1.0 / own if own > 0 else math.inf) + (1.0 / rest if rest > 0 else math.inf)


class ChromosomeNull(TypedDict):
    """The held-out panel distribution of one chromosome's ratio: its mean and SD, the SD against
    the mean and against counting alone, the variance beyond counting, and the samples it rests on."""

    mean: float
    sd: float
    cv: float
    poisson_cv: float
    systematic_variance: float
    n: int


def fit_chromosome_nulls(profiles, female: np.ndarray) -> dict[str, ChromosomeNull | float]:
    """Held-out panel distribution of each chromosome's ratio (chrX from female pregnancies)."""
    dispersion = np.array([noise_dispersion(profile, profile.autosomal) for profile in profiles])
    stats: dict[str, ChromosomeNull | float] = {}
    for key in ALL_KEYS:
        rows = [i for i in range(len(profiles)) if key != "X" or female[i]]
        values = np.array([profiles[i].chromosome_ratio[key] for i in rows])
        counting = np.array([dispersion[i] * poisson_variance(profiles[i].chromosome_counts, key) for i in rows])
        ok = np.isfinite(values) & np.isfinite(counting)
        values, counting = values[ok], counting[ok]
        mean = float(np.mean(values)) if values.size else 1.0
        sd = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
        systematic = max(0.0, sd**2 - float(np.mean(counting))) if values.size > 1 else 0.0
        poisson_cv = (
            float(np.median(np.sqrt([poisson_variance(profiles[i].chromosome_counts, key) for i in rows])))
            if rows
            else float("nan")
        )
        null: ChromosomeNull = {
            "mean": mean,
            "sd": sd,
            "cv": sd / mean if mean else float("nan"),
            "poisson_cv": poisson_cv,
            "systematic_variance": systematic,
            "n": int(values.size),
        }
        stats[key] = null
    stats["dispersion_median"] = float(np.nanmedian(dispersion))
    return stats


def score_chromosomes(
    ratios: dict[str, float], counts: dict[str, float], reference: Reference, dispersion: float
) -> dict:
    """z of every chromosome of one sample (before inflation), from its chromosome ratios and reads."""
    if not np.isfinite(dispersion):
        dispersion = reference.dispersion_median
    result = {}
    for key in ALL_KEYS:
        stats = reference.chromosome_null(key)
        ratio = ratios[key]
        sd = math.sqrt(stats["systematic_variance"] + dispersion * poisson_variance(counts, key))
        z = (ratio - stats["mean"]) / sd if np.isfinite(ratio) and sd > 0 else float("nan")
        result[key] = {"ratio": ratio, "sd": sd, "z": z, "reference_mean": stats["mean"]}
    return result


def _trimmed_mean_square(values: np.ndarray, trim: int) -> np.ndarray:
    centred = values - np.median(values, axis=-1, keepdims=True)
    squares = np.sort(centred**2, axis=-1)
    return squares[..., : values.shape[-1] - trim].mean(axis=-1)


@functools.lru_cache(maxsize=64)
def _null_mean_square(n: int, trim: int) -> float:
    """The expected trimmed mean square of n median-centred N(0, 1) values (fixed-seed Monte Carlo)."""
    draws = np.random.default_rng([n, trim, 2026]).normal(0.0, 1.0, (20_000, n))
    return float(_trimmed_mean_square(draws, trim).mean())


def trimmed_spread(values: np.ndarray, trim: int = 2) -> float:
    """SD of values that should be N(c, 1) for one shared c, from their mean square around the
    median without the `trim` largest, scaled to be 1 for such data.

    The shared centre c is allowed: a trisomy of a tested chromosome sits in every other
    chromosome's denominator and moves all their z together. Dropping the largest keeps one or
    two real events from counting. Far more efficient than a MAD on the 19 values it is used for."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size <= trim + 3:
        return float("nan")
    return float(math.sqrt(_trimmed_mean_square(values, trim) / _null_mean_square(values.size, trim)))


def beyond_threshold(scores: dict) -> frozenset[str]:
    """The autosomes whose abs(z) reaches Z_POSITIVE."""
    return frozenset(k for k in AUTOSOME_KEYS if np.isfinite(scores[k]["z"]) and abs(scores[k]["z"]) >= Z_POSITIVE)


def z_inflation(scores: dict, excluded: set[str]) -> float:
    """Spread of the z of the autosomes not under test (1 = as the panel; never below 1)."""
    values = np.array([scores[k]["z"] for k in AUTOSOME_KEYS if k not in TESTED_KEYS and k not in excluded])
    spread = trimmed_spread(values)
    return float(max(1.0, spread)) if np.isfinite(spread) else 1.0


def deflate(scores: dict, inflation: float) -> dict:
    """Scores with every SD multiplied (and z divided) by the sample's inflation."""
    return {key: {**s, "sd": s["sd"] * inflation, "z": s["z"] / inflation} for key, s in scores.items()}


def minimum_fetal_fraction(sd: float) -> float:
    """Smallest FF at which a trisomy reaches Z_POSITIVE with NEGATIVE_POWER probability at this noise."""
    return 2.0 * (Z_POSITIVE + POWER_Z) * sd


def log_bayes_factor(deviation: float, sd: float, reference_mean: float, posterior: FetalFractionPosterior) -> float:
    """log P(ratio | trisomy, FF posterior) / P(ratio | euploid)."""
    shift = posterior.grid / 2.0 * reference_mean
    with np.errstate(divide="ignore"):
        log_terms = (2 * deviation * shift - shift**2) / (2 * sd**2) + np.log(posterior.weights)
    peak = float(log_terms.max())
    return peak + math.log(float(np.exp(log_terms - peak).sum()))


def call_trisomy(score: dict, posterior: FetalFractionPosterior | None, no_call_reason: str | None) -> dict:
    """Positive / negative / no-call for a trisomy of one chromosome, with the reason and any note."""
    z, sd, ratio = score["z"], score["sd"], score["ratio"]
    minimum = minimum_fetal_fraction(sd) if np.isfinite(sd) else float("nan")
    result = {"z": z, "log_bayes_factor": None, "minimum_fetal_fraction": minimum, "reason": None, "note": None}
    if no_call_reason:
        return {**result, "result": "no-call", "reason": no_call_reason}
    if not np.isfinite(z):
        return {**result, "result": "no-call", "reason": "chromosome not measurable"}
    if posterior is None:
        excess = (ratio - score["reference_mean"]) / score["reference_mean"]
        if z >= Z_POSITIVE and excess < LOWEST_FETAL_FRACTION / 2:
            return {
                **result,
                "result": "no-call",
                "reason": f"z {z:.1f} but an excess of {100 * excess:.2f} % is less than a trisomy at fetal fraction "
                f"{100 * LOWEST_FETAL_FRACTION:.0f} % gives (a maternal or library effect?)",
            }
        if z >= Z_POSITIVE:
            return {**result, "result": "positive", "note": "fetal fraction not determinable: called on z alone"}
        return {
            **result,
            "result": "negative",
            "note": f"fetal fraction not determinable: a trisomy at fetal fraction >= {100 * minimum:.1f} % would have been seen",
        }
    deviation = ratio - score["reference_mean"]
    log_bf = log_bayes_factor(deviation, sd, score["reference_mean"], posterior)
    result["log_bayes_factor"] = log_bf
    if z >= Z_POSITIVE and log_bf >= LOG_BAYES_FACTOR:
        high = posterior.quantile(0.975)
        if (deviation / score["reference_mean"] - high / 2) / sd > 4:
            result["note"] = (
                f"excess {100 * deviation / score['reference_mean']:.2f} % is larger than fetal fraction "
                f"<= {100 * high:.1f} % explains: consider maternal or mosaic causes"
            )
        return {**result, "result": "positive"}
    if z < Z_POSITIVE and (log_bf <= -LOG_BAYES_FACTOR or (posterior.median >= minimum and log_bf < 0)):
        return {**result, "result": "negative"}
    if z < Z_POSITIVE and log_bf >= 0:
        reason = (
            f"borderline: z {z:.1f} is below the threshold but the counts favour a trisomy at this fetal fraction "
            f"({math.exp(min(log_bf, 700)):.0f}:1)"
        )
    elif z < Z_POSITIVE:
        reason = (
            f"fetal fraction {100 * posterior.median:.1f} % below this sample's minimum {100 * minimum:.1f} % "
            "for its depth and noise"
        )
    else:
        reason = f"z {z:.1f} above the threshold but the fetal fraction ({100 * posterior.median:.1f} %) does not support a trisomy"
    return {**result, "result": "no-call", "reason": reason}
