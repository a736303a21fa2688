"""CpG methylation of single cfDNA molecules, and the fetal fraction it reads.

Long-read sequencing calls each molecule's CpGs (MM/ML tags; counted in the compiled pass,
see docs/counts-format.md). Placental DNA is less methylated than blood DNA over most of the
genome, and a long molecule carries tens to hundreds of CpGs, so each molecule's methylated share
says which tissue it more likely came from; the share of placental molecules is the fetal
fraction, for a pregnancy of either fetal sex and without chrY.

The model, per bin b of the genome: a molecule with n CpG calls of which m methylated is
beta-binomial, with mean level M_b and concentration k_M if it is maternal (blood), P_b and k_P
if placental. The fetal fraction f maximises the sum over molecules of
log(f BB(m | n, P_b, k_P) + (1 - f) BB(m | n, M_b, k_M)); its 95 % interval is where twice the
log-likelihood stays within 3.84 of the maximum. The share is over the molecules of the
autosomes (bins where the reference knows both levels).

The reference (`MethylationReference`) is learnt from a panel: non-pregnant women give M_b and
k_M; pregnancies with known fetal fractions give P_b and k_P: P_b is M_b moved by one panel-wide
offset on the logit scale, fitted by maximum likelihood together with k_P.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from plasmacount.errors import DataError, UsageError
from plasmacount.files import read_archive, write_archive
from plasmacount.genome import AUTOSOME_KEYS, Layout, name_key

FORMAT = "plasmacount-methylation-reference"
FORMAT_VERSION = "1.0"
CONCENTRATIONS = np.geomspace(1.0, 2000.0, 80)  # grid for the beta-binomial concentrations
CHI2_95 = 3.841458820694124
MINIMUM_MOLECULES = 50  # fewer molecules with calls: no estimate


@dataclass(frozen=True)
class MethylationReference:
    """Methylation levels of blood (maternal) and placenta per bin, and the scatter of molecules."""

    layout: Layout
    maternal: np.ndarray  # per bin, NaN where the panel had no calls
    placental: np.ndarray
    maternal_concentration: float
    placental_concentration: float
    source: str

    def save(self, path: str | os.PathLike) -> None:
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layout": self.layout.to_json(),
            "source": self.source,
            "maternal_concentration": self.maternal_concentration,
            "placental_concentration": self.placental_concentration,
        }
        write_archive(path, metadata, {"maternal": self.maternal, "placental": self.placental})

    @classmethod
    def load(cls, path: str | os.PathLike) -> MethylationReference:
        metadata, arrays = read_archive(path, FORMAT, 1)
        return cls(
            Layout.from_json(metadata["layout"]),
            arrays["maternal"],
            arrays["placental"],
            float(metadata["maternal_concentration"]),
            float(metadata["placental_concentration"]),
            metadata["source"],
        )


def _log_beta_binomial(m: np.ndarray, n: np.ndarray, level: np.ndarray, concentration: float) -> np.ndarray:
    """log BB(m | n, level, concentration) without the binomial coefficient (common to both tissues)."""
    a, b = level * concentration, (1 - level) * concentration
    return special.betaln(m + a, n - m + b) - special.betaln(a, b)


def _autosomal_bins(layout: Layout) -> np.ndarray:
    keep = np.zeros(layout.n_bins, dtype=bool)
    for contig in layout.contigs:
        if name_key(contig.name) in AUTOSOME_KEYS:
            keep[contig.first_bin : contig.first_bin + contig.n_bins] = True
    return keep


def _usable(molecules: np.ndarray, keep: np.ndarray) -> np.ndarray:
    bins = molecules[:, 0]
    inside = (bins >= 0) & (bins < keep.size)
    inside[inside] &= keep[bins[inside]]
    return molecules[inside & (molecules[:, 2] > 0)]


def _best_concentration(m: np.ndarray, n: np.ndarray, level: np.ndarray) -> float:
    totals = [float(_log_beta_binomial(m, n, level, k).sum()) for k in CONCENTRATIONS]
    return float(CONCENTRATIONS[int(np.argmax(totals))])


def _shrunk_levels(
    rows: np.ndarray, calls: np.ndarray, methylated: np.ndarray, overall: float, concentration: float
) -> np.ndarray:
    """Each bin's level, its own share of methylated calls shrunk towards the genome-wide level by
    empirical Bayes: a bin with few calls (small bins, a shallow panel) says little about itself.
    The sampling variance of a bin's share counts the molecules' own scatter (their concentration):
    a molecule's calls move together."""
    squares = np.bincount(rows[:, 0], weights=rows[:, 2].astype(float) ** 2, minlength=calls.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = methylated / calls
        sampling = overall * (1 - overall) * (calls + squares * (1 / (concentration + 1))) / calls**2
    seen = calls > 0
    between = max(float(np.var(share[seen]) - np.mean(sampling[seen])), 1e-6) if seen.sum() > 1 else 1e-6
    weight = np.where(seen, between / (between + sampling), 0.0)
    return np.where(seen, overall + weight * (np.nan_to_num(share) - overall), overall)


def learn_reference(
    layout: Layout, samples: list[tuple[np.ndarray, float]], source: str = "panel"
) -> MethylationReference:
    """A reference from a panel: (molecule rows, known fetal fraction) per sample; a fraction of 0
    marks a non-pregnant woman (blood only). Needs at least one of each kind."""
    keep = _autosomal_bins(layout)
    blood = [_usable(rows, keep) for rows, fraction in samples if fraction == 0]
    pregnant = [(_usable(rows, keep), fraction) for rows, fraction in samples if fraction > 0]
    if not blood or not pregnant:
        raise UsageError(
            "a methylation reference needs non-pregnant samples (fetal fraction 0) and pregnancies with known fetal fractions"
        )
    if any(not 0 < fraction < 1 for _, fraction in pregnant):
        raise UsageError("known fetal fractions must lie between 0 and 1")
    pooled = np.concatenate(blood)
    calls = np.bincount(pooled[:, 0], weights=pooled[:, 2], minlength=layout.n_bins)
    methylated = np.bincount(pooled[:, 0], weights=pooled[:, 3], minlength=layout.n_bins)
    overall = methylated.sum() / max(calls.sum(), 1)
    maternal_concentration = _best_concentration(pooled[:, 3], pooled[:, 2], np.full(pooled.shape[0], overall))
    maternal = np.where(
        keep & (calls > 0), _shrunk_levels(pooled, calls, methylated, overall, maternal_concentration), np.nan
    )
    maternal_concentration = _best_concentration(pooled[:, 3], pooled[:, 2], maternal[pooled[:, 0]])
    rows = np.concatenate([r for r, _ in pregnant])
    fractions = np.concatenate([np.full(r.shape[0], f) for r, f in pregnant])
    rows_ok = np.isfinite(maternal[rows[:, 0]])
    rows, fractions = rows[rows_ok], fractions[rows_ok]
    m, n, b = rows[:, 3].astype(float), rows[:, 2].astype(float), rows[:, 0]
    blood_level = maternal[b]
    logit_blood = special.logit(np.clip(maternal, 0.01, 0.99))
    blood_part = _log_beta_binomial(m, n, blood_level, maternal_concentration) + np.log1p(-fractions)
    fetal_weight = np.log(fractions)

    def mixture(levels: np.ndarray, concentration: float) -> float:
        return float(np.logaddexp(_log_beta_binomial(m, n, levels[b], concentration) + fetal_weight, blood_part).sum())

    # First the panel-wide placental offset from blood (logit scale) and the concentration, by
    # maximum likelihood (EM alone crawls when the two tissues overlap, as they do molecule by molecule).
    best = (-np.inf, 0.0, 0.0)
    for concentration in CONCENTRATIONS[::4]:
        fit = optimize.minimize_scalar(
            lambda d, concentration=concentration: -mixture(special.expit(logit_blood + d), concentration),
            bounds=(-4.0, 4.0),
            method="bounded",
            options={"xatol": 1e-4},
        )
        if -fit.fun > best[0]:
            best = (-float(fit.fun), float(fit.x), float(concentration))
    _, offset, placental_concentration = best
    # Each bin's placental level is blood's moved by that offset. Refining bins one by one (EM
    # with shrinkage) drifted towards blood on simulated panels and made estimates worse, so the
    # reference keeps the panel-wide offset: regions where placenta deviates from it are not modelled.
    placental = np.where(np.isfinite(maternal), np.clip(special.expit(logit_blood + offset), 0.01, 0.99), np.nan)
    return MethylationReference(
        layout,
        maternal,
        placental,
        maternal_concentration,
        placental_concentration,
        f"{source}: {len(blood)} non-pregnant, {len(pregnant)} pregnancies with known fetal fractions",
    )


def fetal_fraction(molecules: np.ndarray, reference: MethylationReference, layout: Layout) -> dict:
    """The fetal fraction of one sample's molecules (rows: bin, length, calls, methylated) with its
    95 % likelihood interval; `estimate` None (and a reason) when too few molecules have calls."""
    if layout != reference.layout:
        raise DataError(
            "the methylation reference was learnt on other bins; count with the reference's --bins or learn one on these"
        )
    keep = _autosomal_bins(layout) & np.isfinite(reference.maternal) & np.isfinite(reference.placental)
    rows = _usable(molecules, keep)
    result: dict = {
        "estimate": None,
        "interval": None,
        "molecules": int(rows.shape[0]),
        "cpg_calls": int(rows[:, 2].sum()),
        "method": "per-molecule beta-binomial mixture of placental and blood methylation",
        "reference": reference.source,
    }
    if rows.shape[0] < MINIMUM_MOLECULES:
        result["reason"] = f"{rows.shape[0]} autosomal molecules with CpG calls (at least {MINIMUM_MOLECULES} needed)"
        return result
    m, n, b = rows[:, 3].astype(float), rows[:, 2].astype(float), rows[:, 0]
    fetal = _log_beta_binomial(m, n, reference.placental[b], reference.placental_concentration)
    blood = _log_beta_binomial(m, n, reference.maternal[b], reference.maternal_concentration)

    def log_likelihood(f: float) -> float:
        return float(np.logaddexp(fetal + math.log(f), blood + math.log1p(-f)).sum())

    low, high = 1e-6, 1 - 1e-6
    best = optimize.minimize_scalar(
        lambda f: -log_likelihood(f), bounds=(low, high), method="bounded", options={"xatol": 1e-6}
    )
    f_hat, top = float(best.x), -float(best.fun)
    limit = top - CHI2_95 / 2
    lower = low if log_likelihood(low) >= limit else optimize.brentq(lambda f: log_likelihood(f) - limit, low, f_hat)
    upper = high if log_likelihood(high) >= limit else optimize.brentq(lambda f: log_likelihood(f) - limit, f_hat, high)
    result.update(estimate=f_hat, interval=[float(lower), float(upper)])
    return result
