"""Fetal fraction: the share of plasma cell-free DNA that comes from the placenta.

Estimators, each with its own standard deviation, combined by inverse-variance weighting:
- **chrY** (male fetuses): 2 x the chrY dose above the female background (`sex_chromosomes`)
  (a male adult's dose is 0.5), calibrated against the chrX estimate over the panel's male
  pregnancies; the most precise, the label the other estimators are trained on.
- **chrX** (male fetuses): 2 x (1 - X dosage); noisy, used for calibration and reported.
- **fragment size** (paired-end): placental DNA is shorter; a ridge regression on the shares of
  fragment lengths in 10 bp windows from 90 to 250 bp, trained on the panel's male pregnancies.
- **bin profile** (sex-independent, in the spirit of SeqFF/PREFACE): placental DNA covers the
  genome slightly differently; a ridge regression on the sample's principal-component scores,
  trained on the panel's male pregnancies.
Each trained estimator's standard deviation is its cross-validated error on the panel, and
its skill there (cross-validated r and RMSE) is kept in the reference. For the bin profile the
cross-validation refits the principal components in every fold too: scores of samples that
shaped the components fit better than a new sample's, and an SD from them alone gave 95 %
intervals that held the truth in only 84 % of new pregnancies (strong placental pattern). A
sex-independent estimator below SKILL_MIN_R gives no estimate (null, with the reason), since an
estimate that does not track the truth would only look precise. In real labs with a few hundred samples the
bin-profile estimator rarely has such skill (PREFACE: r 0.49-0.64 in-house); fragment sizes
(paired-end) usually do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NotRequired, TypedDict

import numpy as np

if TYPE_CHECKING:
    from plasmacount.counts import SampleCounts
    from plasmacount.reference import Profile, Reference
    from plasmacount.sex_chromosomes import FittedSexModel

SIZE_WINDOWS = [(low, low + 10) for low in range(90, 250, 10)]
SKILL_MIN_R = 0.8  # cross-validated correlation with chrY fetal fraction on the panel
INDEPENDENT_METHODS = ("fragment_size", "bin_profile")


class RidgeModel(TypedDict):
    """A trained ridge regression of the fetal fraction: standardisation, weights (intercept
    first), the cross-validated penalty, error and correlation on the panel's male pregnancies."""

    mean: list[float]
    scale: list[float]
    weights: list[float]
    penalty: float
    cv_rmse: float
    cv_r: float
    n_training: int
    # The bin-profile model only: the errors of the scores-only cross-validation, before the
    # outer one (components refitted per fold) took the worse of both.
    scores_cv_rmse: NotRequired[float]
    scores_cv_r: NotRequired[float]


class FetalFractionModels(TypedDict):
    """The fetal-fraction models a reference keeps: the chrY-to-chrX calibration, the panel's
    female chrX level, and the size and bin-profile regressions (None where untrained)."""

    y_calibration: float
    x_mean: float
    size: RidgeModel | None
    profile: RidgeModel | None


def skilled(model: RidgeModel | None) -> bool:
    """Whether a trained estimator tracks the fetal fraction well enough to be used."""
    return model is not None and bool(model) and float(model.get("cv_r", 0.0)) >= SKILL_MIN_R


def size_features(histogram: np.ndarray) -> np.ndarray | None:
    """Shares of fragments in 10 bp windows 90-250 bp (None without enough paired-end fragments)."""
    counts = np.array([histogram[low:high].sum() for low, high in SIZE_WINDOWS], dtype=float)
    if counts.sum() < 1000:
        return None
    return counts / counts.sum()


def _ridge_fit(features: np.ndarray, labels: np.ndarray, folds: int = 10) -> RidgeModel:
    """Ridge regression with the penalty chosen by cross-validation; returns weights and CV error."""
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0
    standard = (features - mean) / scale
    n = len(labels)
    fold_of = np.arange(n) % max(2, min(folds, n))
    best = None
    for penalty in (0.01, 0.1, 1.0, 10.0, 100.0):
        errors = np.empty(n)
        for fold in np.unique(fold_of):
            train, test = fold_of != fold, fold_of == fold
            weights = _solve(standard[train], labels[train], penalty)
            errors[test] = labels[test] - (weights[0] + standard[test] @ weights[1:])
        rmse = float(np.sqrt(np.mean(errors**2)))
        if best is None or rmse < best[0]:
            best = (rmse, penalty, errors)
    assert best is not None  # the first penalty always sets it
    rmse, penalty, errors = best
    weights = _solve(standard, labels, penalty)
    predicted = labels - errors
    r = float(np.corrcoef(predicted, labels)[0, 1]) if np.std(predicted) > 0 else 0.0
    return {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": weights.tolist(),
        "penalty": penalty,
        "cv_rmse": rmse,
        "cv_r": r,
        "n_training": int(n),
    }


def _solve(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    design = np.column_stack([np.ones(len(y)), x])
    regulariser = penalty * np.eye(design.shape[1])
    regulariser[0, 0] = 0.0
    return np.linalg.solve(design.T @ design + regulariser, design.T @ y)


def _ridge_predict(model: RidgeModel, features: np.ndarray) -> float:
    standard = (features - np.array(model["mean"])) / np.array(model["scale"])
    weights = np.array(model["weights"])
    return float(weights[0] + standard @ weights[1:])


def profile_cross_validation(
    block_logs: np.ndarray, labels: np.ndarray, male: np.ndarray, n_components: int, penalty: float, folds: int = 10
) -> dict:
    """Cross-validated error of the bin-profile estimator with the principal components refitted
    in every fold (on all training pregnancies, as the reference does), so a held-out sample's
    scores are those of a new sample. `block_logs`: panel x autosomal block log ratios."""
    n = len(labels)
    fold_of = np.arange(n) % max(2, min(folds, n))
    predicted = np.full(n, np.nan)
    for fold in np.unique(fold_of):
        train, test = fold_of != fold, fold_of == fold
        centre = block_logs[train].mean(axis=0)
        _, _, vt = np.linalg.svd(block_logs[train] - centre, full_matrices=False)
        components = vt[:n_components]
        scores_train = (block_logs[train] - centre) @ components.T
        scores_test = (block_logs[test] - centre) @ components.T
        chosen = male[train]
        if chosen.sum() < 5:
            continue
        mean, scale = scores_train[chosen].mean(axis=0), scores_train[chosen].std(axis=0)
        scale[scale == 0] = 1.0
        weights = _solve((scores_train[chosen] - mean) / scale, labels[train][chosen], penalty)
        predicted[test] = weights[0] + ((scores_test - mean) / scale) @ weights[1:]
    usable = male & np.isfinite(predicted)
    errors = labels[usable] - predicted[usable]
    r = (
        float(np.corrcoef(predicted[usable], labels[usable])[0, 1])
        if usable.sum() > 2 and np.std(predicted[usable]) > 0
        else 0.0
    )
    return {"cv_rmse": float(np.sqrt(np.mean(errors**2))) if errors.size else float("inf"), "cv_r": r}


def fit_models(
    samples,
    scores: np.ndarray,
    sex_model: FittedSexModel,
    x_ratios: np.ndarray,
    x_mean: float,
    block_logs: np.ndarray | None = None,
) -> FetalFractionModels:
    """Y calibration and the size and profile regressions, trained on the panel's male pregnancies
    (`scores`: each panel sample's principal-component scores under the final model;
    `block_logs`, when given, lets the profile regression's skill be cross-validated with the
    components refitted per fold, and its SD is then the larger of the two errors)."""
    sexes = sex_model["panel_sexes"]
    male = np.array([s == "male" for s in sexes])
    doses = np.array(sex_model["panel_doses"])
    raw_y = 2 * (doses - sex_model["female_dose_median"])
    ff_x = 2 * (1 - x_ratios / x_mean)
    ok = male & np.isfinite(ff_x) & np.isfinite(raw_y)
    # chrY dose x 2 is the fetal fraction when chrY bins take reads like autosomal ones; the
    # panel's chrX estimate corrects the scale, weighed by its precision against a prior of 1.
    calibration = 1.0
    if ok.sum() >= 5:
        slope = float((ff_x[ok] * raw_y[ok]).sum() / (raw_y[ok] ** 2).sum())
        residual = ff_x[ok] - slope * raw_y[ok]
        slope_var = float(residual.var(ddof=1) / (raw_y[ok] ** 2).sum())
        prior_var = 0.1**2
        calibration = (slope / slope_var + 1.0 / prior_var) / (1 / slope_var + 1 / prior_var)
        if not 0.5 < calibration < 2.0:
            calibration = 1.0
    result: FetalFractionModels = {"y_calibration": calibration, "x_mean": float(x_mean), "size": None, "profile": None}
    labels = calibration * raw_y
    if male.sum() >= 10:
        features = [size_features(s.fragment_lengths) for s in samples]
        usable = [i for i in np.flatnonzero(male) if features[i] is not None]
        if len(usable) >= 10:
            result["size"] = _ridge_fit(np.array([features[i] for i in usable]), labels[usable])
        if scores.ndim == 2 and scores.shape[1] > 0:
            profile = _ridge_fit(scores[male], labels[male])
            if block_logs is not None:
                outer = profile_cross_validation(block_logs, labels, male, scores.shape[1], profile["penalty"])
                profile["scores_cv_rmse"], profile["scores_cv_r"] = profile["cv_rmse"], profile["cv_r"]
                profile["cv_rmse"] = max(profile["cv_rmse"], outer["cv_rmse"])
                profile["cv_r"] = min(profile["cv_r"], outer["cv_r"])
            result["profile"] = profile
    return result


def estimate(
    sample: SampleCounts,
    profile: Profile,
    reference: Reference,
    y_fraction: float,
    y_sd: float,
    sex: str,
    x_ratio: float,
    x_sd: float,
) -> dict:
    """Every applicable estimate with a 95 % interval, and their inverse-variance combination."""
    models = reference.fetal_fraction_models
    estimates = {}
    if sex == "male" and np.isfinite(y_fraction):
        estimates["chrY"] = (y_fraction, y_sd)
        ff_x = 2 * (1 - x_ratio / models["x_mean"])
        if np.isfinite(ff_x):
            estimates["chrX"] = (ff_x, 2 * x_sd)
    withheld = {}
    for name, model in (("fragment_size", models.get("size")), ("bin_profile", models.get("profile"))):
        if model is None:
            continue
        if not skilled(model):
            withheld[name] = {
                "estimate": None,
                "low": None,
                "high": None,
                "sd": None,
                "reason": f"no skill on the panel (cross-validated r {model['cv_r']:.2f} < {SKILL_MIN_R})",
            }
        elif name == "fragment_size" and sample.paired:
            features = size_features(sample.fragment_lengths)
            if features is not None:
                estimates[name] = (_ridge_predict(model, features), model["cv_rmse"])
        elif name == "bin_profile" and profile.scores.size:
            estimates[name] = (_ridge_predict(model, profile.scores), model["cv_rmse"])
    methods = {name: interval(value, sd) for name, (value, sd) in estimates.items()}
    methods.update(withheld)
    combined = None
    usable = {k: v for k, v in estimates.items() if k != "chrX" and np.isfinite(v[0]) and v[1] > 0}
    if usable:
        weights = {k: 1 / sd**2 for k, (_, sd) in usable.items()}
        total = sum(weights.values())
        value = sum(weights[k] * usable[k][0] for k in usable) / total
        combined = interval(value, math.sqrt(1 / total))
    sex_independent = {k: v for k, v in usable.items() if k in INDEPENDENT_METHODS}
    independent = None
    if sex_independent:
        weights = {k: 1 / sd**2 for k, (_, sd) in sex_independent.items()}
        total = sum(weights.values())
        independent = (sum(weights[k] * sex_independent[k][0] for k in sex_independent) / total, math.sqrt(1 / total))
    return {"methods": methods, "combined": combined, "sex_independent": independent}


def interval(value: float, sd: float) -> dict:
    return {
        "estimate": float(np.clip(value, 0.0, 1.0)),
        "low": float(np.clip(value - 1.96 * sd, 0.0, 1.0)),
        "high": float(np.clip(value + 1.96 * sd, 0.0, 1.0)),
        "sd": float(sd),
    }
