"""Prenatal testing of one plasma sample against a panel of normals: the result a lab reports.

For each sample: quality control, fetal sex, fetal fraction (every estimator and their
combination), whole-chromosome aneuploidy calls for every autosome (`aneuploidy`),
sex-chromosome aneuploidies (`sex_chromosomes`), and sub-chromosomal CNVs (segmentation of
the normalised profile, `segment`) with their origin (fetal or maternal, from the size of the
ratio shift against the fetal fraction), the syndrome region they hit, and the smallest event
this sample could have shown. Every negative is qualified by what the sample could see; every
no-call states its reason.

Result schema ("nipt", version 1.0; `docs/nipt-schema.md`): keys are always present, null
when not applicable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasmacount import __version__, aneuploidy, fetal_fraction, sex_chromosomes, tracks
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError
from plasmacount.files import atomic_output, check_unique_samples, sample_file_stem, table_cell, write_json
from plasmacount.genome import AUTOSOME_KEYS, HG38_LENGTHS, SYNDROME_REGIONS, name_key
from plasmacount.progress import stage
from plasmacount.quality import FAIL, PASS, WARN, Findings, Limits
from plasmacount.reference import Profile, Reference, chromosome_ratios, ignore_empty_bins, panel_distance
from plasmacount.segment import WINDOW_SIZES, bin_to_bin_sd, segment, window_bins, window_inflation
from plasmacount.tracks import GenomeTrack
from plasmacount.workers import map_in_processes

SCHEMA_VERSION = "2.0"
NAMED_TRISOMIES = {"21": "T21", "18": "T18", "13": "T13"}
CNV_Z_THRESHOLD = 5.0
CNV_POWER = 0.9  # the CNV limits stated are sizes / fetal fractions seen with this probability
# Sample QC limits (see quality.Limits): counted reads (a floor), the GC bias left after correction,
# the bin-to-bin variance as a multiple of counting noise, and chr21's CV as a multiple of its
# counting limit. The report's QC table judges with these same objects.
MINIMUM_READS = 500_000
WARN_READS = 3_000_000
COUNTED_READS_LIMITS = Limits(warn=WARN_READS, fail=MINIMUM_READS, floor=True)
GC_RESIDUAL_LIMITS = Limits(warn=0.03, fail=0.10)
BIN_VARIANCE_LIMITS = Limits(warn=1.6, fail=3.0)
CHR21_CV_EXCESS_LIMITS = Limits(warn=1.5, fail=2.5)
# The fetal fraction below which a lab reports with caution (the field's conventional 4 %) and
# below which few tests report at all (2 %); shown in the report's QC table, not used in calling,
# which asks per trisomy whether the fraction reaches its detection limit.
FETAL_FRACTION_LIMITS = Limits(warn=0.04, fail=0.02, floor=True)
# Chromosome z spread (over the untested autosomes, `aneuploidy.z_inflation`; 1 in 100 panel-like
# samples exceed 1.44, 1 in 1,000 1.62) and window z spread (`segment.window_inflation`, against the panel's own): above WARN the
# sample's statistics are wider than the panel's and its calls become no-calls; above FAIL the
# sample differs from the panel too much for anything. Below WARN, z is still divided by it.
INFLATION_WARN, INFLATION_FAIL = 1.55, 2.0
INFLATION_LIMITS = Limits(warn=INFLATION_WARN, fail=INFLATION_FAIL)
# Per window size (bp): warn and fail levels (fewer, longer windows measure the spread less precisely).
# On 200 simulated euploid pregnancies (pessimistic lab, 10 M reads) the 99th percentiles were 1.08,
# 1.13 and 1.08.
WINDOW_INFLATION_LIMITS = {2_000_000: (1.15, 1.4), 10_000_000: (1.2, 1.5), 30_000_000: (1.15, 1.5)}
# A sample further from the panel centre (normalisation space) than this times the panel's 99th
# percentile is warned about.
DISTANCE_FACTOR = 1.5
# A copy-ratio shift no fetal event gives (a heterozygous maternal CNV shifts by about 0.5).
MATERNAL_SHIFT = 0.2
# Aberrations on this many autosomes at once suggest a maternal condition (e.g. a malignancy).
PATTERN_CHROMOSOMES = 3


@dataclass(frozen=True)
class NiptOptions:
    cnv_z: float = CNV_Z_THRESHOLD
    cnv_min_bins: int = 5
    segment_threshold: float = 5.0


def _chromosome_names(sample: SampleCounts) -> dict[str, str]:
    """Name key -> the chromosome name as the sample's input spells it."""
    return {name_key(c.name): c.name for c in sample.layout.contigs}


@dataclass(frozen=True)
class WindowSpread:
    """A sample's window z spread per window size (bp): against the panel's own spread (what QC
    judges), against counting noise (what a segment's counting SD is widened by), and the number
    of windows each was measured on."""

    relative: dict[int, float]
    counting: dict[int, float]
    windows: dict[int, int]
    bin_size: int

    def at(self, n_bins: int, against: str) -> float:
        """The spread for a segment of n bins ('relative' or 'counting'), interpolated on log length."""
        values = getattr(self, against)
        sizes = sorted(values)
        lengths = [math.log(window_bins(size, self.bin_size)) for size in sizes]
        return float(np.interp(math.log(max(n_bins, 1)), lengths, [values[size] for size in sizes]))

    def beyond_limits(self, level: int) -> list[str]:
        """The window sizes whose relative spread passes their warn (level 0) or fail (level 1) limit, described.

        A limit is the larger of the fixed one and 1 + k x the sampling SD of a MAD spread over that
        many windows (1.16 / sqrt(n); k 3 to warn, 6 to fail): fewer windows measure it less precisely."""
        return [
            f"{size // 1_000_000} Mb window z spread {value:.2f}x the panel's"
            for size, value in sorted(self.relative.items())
            if value
            > max(
                WINDOW_INFLATION_LIMITS[size][level],
                1 + (3, 6)[level] * 1.16 / math.sqrt(max(self.windows.get(size, 1), 1)),
            )
        ]


def _qc(
    sample: SampleCounts,
    profile: Profile,
    scores: dict,
    counts_by_chromosome: dict,
    dispersion: float,
    inflation: float,
    spread: WindowSpread,
    distance: float,
    distance_limit: float,
) -> dict:
    counted = int(sample.counts.sum())
    chr21 = scores["21"]
    poisson_cv = math.sqrt(aneuploidy.poisson_variance(counts_by_chromosome, "21"))
    findings = Findings()
    reads_level = COUNTED_READS_LIMITS.status(counted)
    findings.add(
        reads_level,
        f"only {counted:,} counted reads (minimum {MINIMUM_READS:,})"
        if reads_level == FAIL
        else f"{counted:,} counted reads (fewer than {WARN_READS:,})",
    )
    residual = profile.gc_curve.residual
    findings.check(residual, GC_RESIDUAL_LIMITS, f"GC curve residual {residual:.3f}")
    findings.check(dispersion, BIN_VARIANCE_LIMITS, f"bin-to-bin variance {dispersion:.2f}x counting noise")
    if np.isfinite(distance) and distance > distance_limit:
        findings.add(
            WARN,
            f"normalisation-space distance {distance:.2f} is beyond the panel's "
            f"(99th percentile x {DISTANCE_FACTOR:g} = {distance_limit:.2f})",
        )
    inflation_level = INFLATION_LIMITS.status(inflation)
    findings.add(
        inflation_level,
        f"chromosome z spread {inflation:.2f}x the panel's"
        + (": the sample does not match the reference" if inflation_level == FAIL else ""),
    )
    failing = spread.beyond_limits(1)
    for text in failing:
        findings.add(FAIL, f"{text}: the sample does not match the reference")
    if not failing:
        for text in spread.beyond_limits(0):
            findings.add(WARN, text)
    excess = chr21["sd"] / poisson_cv if poisson_cv > 0 else float("nan")
    findings.check(
        excess, CHR21_CV_EXCESS_LIMITS, f"chr21 CV {100 * chr21['sd']:.3f} % is {excess:.1f}x its counting limit"
    )
    return {
        "status": findings.status,
        "reasons": findings.reasons,
        "counted_reads": counted,
        "gc_residual": residual,
        "bin_variance_ratio": dispersion,
        "chromosome_z_inflation": inflation,
        "window_z_inflation": max(spread.relative.values()) if spread.relative else 1.0,
        "window_z_inflation_by_size": {str(size): value for size, value in sorted(spread.relative.items())},
        "panel_distance": distance,
        "chr21_cv": chr21["sd"],
        "chr21_poisson_cv": poisson_cv,
    }


ALL_EVENTS = (
    ["T21", "T18", "T13"]
    + [f"T{k}" for k in AUTOSOME_KEYS if k not in NAMED_TRISOMIES]
    + ["45,X", "47,XXX", "47,XXY", "47,XYY"]
)


def _failed_result(sample_name: str, reason: str, source: dict | None = None) -> dict:
    """A result with every call a no-call (reference mismatch, unreadable sample)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "plasmacount_version": __version__,
        "sample": sample_name,
        "source": source,
        "reference": None,
        "qc": {
            "status": FAIL,
            "reasons": [reason],
            "counted_reads": None,
            "gc_residual": None,
            "bin_variance_ratio": None,
            "chromosome_z_inflation": None,
            "window_z_inflation": None,
            "window_z_inflation_by_size": None,
            "panel_distance": None,
            "chr21_cv": None,
            "chr21_poisson_cv": None,
        },
        "fetal_sex": "inconclusive",
        "fetal_sex_detail": {"chrY_z": None, "chrY_dose": None},
        "fetal_fraction": {
            "estimate": None,
            "low": None,
            "high": None,
            "determinable": False,
            "methods": {},
            "note": None,
        },
        "chromosomes": {},
        "calls": [
            {
                "event": event,
                "result": "no-call",
                "score": None,
                "z": None,
                "log_bayes_factor": None,
                "minimum_fetal_fraction": None,
                "reason": reason,
                "note": None,
            }
            for event in ALL_EVENTS
        ],
        "sex_chromosomes": None,
        "cnvs": [],
        "pattern": None,
        "detection_limit": None,
        "fragment_sizes": None,
        "profile": None,
    }


def _scale(reference: Reference) -> float:
    """Coordinate scale of the reference genome against hg38 (1 for real genomes)."""
    try:
        chr1 = reference.layout.contig("chr1")
    except KeyError:
        return 1.0
    if reference.layout.build != "unknown":
        return 1.0
    return chr1.length / HG38_LENGTHS["chr1"]


@ignore_empty_bins
def analyse_sample(
    sample: SampleCounts, reference: Reference, options: NiptOptions = NiptOptions(), where: str | None = None
) -> dict:
    """The full prenatal result of one sample (see the module docstring)."""
    try:
        reference.check_sample(sample, where or sample.sample)
    except DataError as error:
        return _failed_result(sample.sample, f"reference mismatch: {error}", sample.source)
    counts = reference.align(sample).astype(float)
    model = reference.model
    keys = reference.layout.bin_keys()
    profile = model.normalise(counts)
    names = _chromosome_names(sample)
    dispersion = aneuploidy.noise_dispersion(profile, profile.autosomal)
    # A whole-chromosome aneuploidy must not steer the principal-component correction of the rest.
    first_scores = aneuploidy.score_chromosomes(
        profile.chromosome_ratio, profile.chromosome_counts, reference, dispersion
    )
    aneuploid = aneuploidy.beyond_threshold(first_scores)
    if aneuploid:
        profile = model.normalise(counts, aneuploid)
        dispersion = aneuploidy.noise_dispersion(profile, profile.autosomal)
        first_scores = aneuploidy.score_chromosomes(
            profile.chromosome_ratio, profile.chromosome_counts, reference, dispersion
        )

    # Fetal sex and the chrY dose.
    sex_model = reference.sex_model
    dose = sex_chromosomes.y_dose(profile.coverage, sex_model)
    calibration = reference.fetal_fraction_models["y_calibration"]
    y_fraction = sex_chromosomes.y_fraction(dose, sex_model, calibration)
    sex = sex_chromosomes.fetal_sex(dose, sex_model, counts.sum(), y_fraction)
    dose_sd = sex_chromosomes.dose_sd(dose, sex_model, counts.sum())
    # The calibration of chrY against chrX is itself known to about 5 %.
    y_sd = math.hypot(calibration * 2 * dose_sd, 0.05 * max(y_fraction, 0.0))

    # Fetal fraction.
    ff = fetal_fraction.estimate(
        sample, profile, reference, y_fraction, y_sd, sex["sex"], profile.chromosome_ratio["X"], first_scores["X"]["sd"]
    )
    combined = ff["combined"]
    independent = ff["sex_independent"]
    ff_note = None
    if combined and independent and "chrY" in ff["methods"]:
        y_estimate = ff["methods"]["chrY"]
        gap = abs(y_estimate["estimate"] - independent[0])
        if gap > 4 * math.hypot(y_estimate["sd"], independent[1]):
            # More (or less) chrY than the fetal fraction explains: 47,XYY, a vanishing twin, a male
            # donor organ... The chrY estimate is then not a fetal fraction.
            combined = fetal_fraction.interval(independent[0], independent[1])
            ff_note = "chrY dose disagrees with the sex-independent estimate; chrY left out"
    if combined is None:
        ff_note = (
            "not determinable: female or inconclusive fetal sex and no sex-independent estimator with skill on this "
            "reference; calls decided on z alone"
        )
    ff_value = combined["estimate"] if combined else None
    posterior = (
        aneuploidy.FetalFractionPosterior.from_estimate(combined["estimate"], combined["sd"]) if combined else None
    )

    # Segmental CNVs first: a CNV's bins must not count towards its chromosome's test.
    cnvs, cnv_bins, spread = _cnvs(profile, reference, keys, names, counts.sum(), ff_value, sex["sex"], options)
    # Aberrant chromosomes leave every denominator (two passes settle it).
    excluded: frozenset[str] = frozenset()
    for _ in range(3):
        ratios, by_chromosome = chromosome_ratios(profile.raw, profile.expected, model.mask & ~cnv_bins, keys, excluded)
        scores = aneuploidy.score_chromosomes(ratios, by_chromosome, reference, dispersion)
        aberrant_now = aneuploidy.beyond_threshold(scores)
        if aberrant_now == excluded:
            break
        excluded = aberrant_now
    with_cnv = {name_key(c["chrom"]) for c in cnvs}
    inflation = aneuploidy.z_inflation(scores, with_cnv)
    scores = aneuploidy.deflate(scores, inflation)
    score_sd = reference.score_sd
    distance = (
        float(panel_distance(profile.scores, score_sd)[0])
        if score_sd.size == profile.scores.size and score_sd.size
        else float("nan")
    )
    distance_limit = DISTANCE_FACTOR * reference.panel_distance_q99
    qc = _qc(sample, profile, scores, by_chromosome, dispersion, inflation, spread, distance, distance_limit)

    # Gains and losses on several chromosomes at once: a maternal condition, not fetal trisomies.
    aberrant = sorted(
        aneuploidy.beyond_threshold(scores)
        | {name_key(c["chrom"]) for c in cnvs if c["origin"] != "maternal" and name_key(c["chrom"]) in AUTOSOME_KEYS},
        key=lambda k: int(k),
    )
    pattern: dict | None = None
    if len(aberrant) >= PATTERN_CHROMOSOMES:
        pattern = {
            "chromosomes": [names.get(k, k) for k in aberrant],
            "note": f"gains or losses on {len(aberrant)} autosomes at once: a pattern that suggests a maternal condition "
            "(for example a malignancy) rather than fetal aneuploidies; refer for clinical review",
        }
    window_inflated = bool(spread.beyond_limits(0))
    inflated = inflation > INFLATION_WARN or window_inflated
    if qc["status"] == FAIL:
        sample_reason = "sample QC failed: " + "; ".join(qc["reasons"])
    elif inflated:
        sample_reason = "sample statistics wider than the reference's (see QC): it does not match the panel"
    else:
        sample_reason = None
    # Spread only in the chromosome z (19 values, so about 1 in 300 panel-like samples passes the
    # warn line by chance) with every window spread within limits: the z are already divided by
    # that spread, so a trisomy that still clears the line stands (with the warning); a negative
    # does not, since the sample may hide more than its spread shows.
    trisomy_positive_may_stand = sample_reason is not None and qc["status"] != FAIL and not window_inflated
    if sample_reason:
        # On a sample the panel does not describe, only shifts no fetal event gives are trusted.
        cnvs = [c for c in cnvs if abs(c["copy_ratio"] - 1) >= MATERNAL_SHIFT]
        if pattern and len({name_key(c["chrom"]) for c in cnvs if c["origin"] != "maternal"}) < PATTERN_CHROMOSOMES:
            pattern = None
    no_call_reason = sample_reason or (pattern["note"] if pattern else None)

    # Autosomal trisomies.
    calls = []
    for key in ["21", "18", "13"] + [k for k in AUTOSOME_KEYS if k not in NAMED_TRISOMIES]:
        decision = aneuploidy.call_trisomy(scores[key], posterior, no_call_reason)
        if trisomy_positive_may_stand and not pattern:
            despite = aneuploidy.call_trisomy(scores[key], posterior, None)
            if despite["result"] == "positive":
                decision = {
                    **despite,
                    "note": ((despite["note"] + "; ") if despite["note"] else "")
                    + f"called despite a chromosome z spread of {inflation:.2f}x the panel's (z divided by it)",
                }
        note = decision["note"]
        if decision["result"] == "positive" and any(name_key(c["chrom"]) == key for c in cnvs):
            note = ((note + "; ") if note else "") + "a CNV on this chromosome was left out of its test"
        calls.append(
            {
                "event": NAMED_TRISOMIES.get(key, f"T{key}"),
                "result": decision["result"],
                "score": decision["log_bayes_factor"],
                "z": decision["z"],
                "log_bayes_factor": decision["log_bayes_factor"],
                "minimum_fetal_fraction": decision["minimum_fetal_fraction"],
                "reason": decision["reason"],
                "note": note,
            }
        )

    # Sex-chromosome aneuploidies: X dosage and chrY dose, over the sex-independent FF when known.
    x_ratio, x_sd = scores["X"]["ratio"], scores["X"]["sd"]
    x_change = x_ratio / reference.chromosome_null("X")["mean"] - 1
    sca_posterior = aneuploidy.FetalFractionPosterior.from_estimate(*independent) if independent is not None else None
    classification = sex_chromosomes.classify(x_change, x_sd, y_fraction, y_sd, sca_posterior)
    calls.extend(_sca_calls(classification, sample_reason))

    chromosomes = {names.get(key, key): {"ratio": s["ratio"], "z": s["z"], "sd": s["sd"]} for key, s in scores.items()}
    detection = _detection_limits(profile, reference, keys, counts.sum(), ff_value, scores, spread, options)
    return {
        "schema_version": SCHEMA_VERSION,
        "plasmacount_version": __version__,
        "sample": sample.sample,
        "source": sample.source,
        "reference": {
            "samples": len(reference.samples),
            "qc_status": reference.qc_status,
            "bin_size": reference.bin_size,
            "build": reference.layout.build,
        },
        "qc": qc,
        "fetal_sex": sex["sex"],
        "fetal_sex_detail": {"chrY_z": sex["z"], "chrY_dose": dose},
        "fetal_fraction": {
            "estimate": ff_value,
            "low": combined["low"] if combined else None,
            "high": combined["high"] if combined else None,
            "determinable": combined is not None,
            "methods": ff["methods"],
            "note": ff_note,
        },
        "chromosomes": chromosomes,
        "calls": calls,
        "sex_chromosomes": {
            "x_ratio": x_ratio,
            "x_change": x_change,
            "x_sd": x_sd,
            "y_fetal_fraction": y_fraction,
            "y_sd": y_sd,
            "posteriors": classification["posteriors"],
            "best_karyotype": classification["best"],
        },
        "cnvs": cnvs,
        "pattern": pattern,
        "detection_limit": detection,
        "fragment_sizes": _size_summary(sample),
        "profile": GenomeTrack.from_layout(reference.layout, profile.log_ratio / math.log(2)),
    }


def _size_summary(sample: SampleCounts) -> dict | None:
    """The genome-wide fragment-size histogram up to 600 bp (paired-end only), for the report."""
    if not sample.paired or sample.fragment_lengths is None or sample.fragment_lengths.sum() == 0:
        return None
    histogram = sample.fragment_lengths
    return {
        "histogram_0_600": histogram[:601].astype(int).tolist(),
        "total": int(histogram.sum()),
        "mode": int(np.argmax(histogram[:-1])),
        "share_below_150": float(histogram[:150].sum() / histogram.sum()),
    }


def _sca_calls(classification: dict, no_call_reason: str | None) -> list[dict]:
    events = ["45,X", "47,XXX", "47,XXY", "47,XYY"]
    posteriors = classification["posteriors"]
    calls = []
    for event in events:
        base = {
            "event": event,
            "score": None,
            "z": None,
            "log_bayes_factor": None,
            "minimum_fetal_fraction": None,
            "reason": None,
            "note": None,
        }
        if no_call_reason:
            calls.append({**base, "result": "no-call", "reason": no_call_reason})
            continue
        if posteriors is None:
            calls.append({**base, "result": "no-call", "reason": "chrX not measurable"})
            continue
        probability = posteriors[event]
        base["score"] = probability
        if classification["fit"] is not None and classification["fit"] > 25:
            calls.append(
                {
                    **base,
                    "result": "no-call",
                    "reason": "X/Y dosage not explained by any fetal karyotype (maternal sex-chromosome mosaicism or CNV?)",
                }
            )
        elif probability >= 0.99:
            calls.append({**base, "result": "positive"})
        elif probability <= 0.01:
            calls.append({**base, "result": "negative"})
        else:
            calls.append(
                {
                    **base,
                    "result": "no-call",
                    "reason": f"posterior probability {probability:.2f}: X/Y dosage ambiguous at this fetal fraction",
                }
            )
    return calls


def _depth_scale(reference: Reference, reads: float) -> float:
    """The panel's median depth over this sample's: how much wider its counting noise is."""
    return reference.median_reads / max(reads, 1.0)


def _bin_variance(reference: Reference, reads: float) -> np.ndarray:
    """Per bin, the variance of this sample's log2 ratio (the panel's held-out spread at its depth)."""
    return (reference.panel["bin_sd"] / math.log(2)) ** 2 * _depth_scale(reference, reads)


def _segment_null(
    reference: Reference, chosen: np.ndarray, on_x: bool, variance: np.ndarray, reads: float
) -> tuple[float, float]:
    """SD and mean of a segment's log2 ratio under the panel: the larger of the held-out panel
    samples' spread over the same bins (at this sample's depth) and the counting SD."""
    depth_scale = _depth_scale(reference, reads)
    block = reference.panel["residuals"][:, chosen]
    if on_x:
        block = block[np.array([s == "female" for s in reference.panel_sexes])]
    panel_means = np.nanmean(block.astype(float), axis=1) / math.log(2)
    null_sd = float(np.nanstd(panel_means)) * math.sqrt(depth_scale) if panel_means.size > 2 else float("nan")
    analytic_sd = 1 / math.sqrt(float((1 / variance[chosen]).sum()))
    return (max(null_sd, analytic_sd) if np.isfinite(null_sd) else analytic_sd), float(np.nanmean(panel_means))


def _widened(null_sd: float, chosen: np.ndarray, variance: np.ndarray, spread: WindowSpread) -> float:
    """A segment's SD for calling: the panel null widened by the sample's spread relative to the
    panel, or the counting SD widened by the sample's own window spread at this length, whichever
    is larger."""
    counting = 1 / math.sqrt(float((1 / variance[chosen]).sum()))
    return max(null_sd * spread.at(chosen.size, "relative"), counting * spread.at(chosen.size, "counting"))


def _cnvs(
    profile: Profile,
    reference: Reference,
    keys: np.ndarray,
    names: dict,
    reads: float,
    ff: float | None,
    sex: str,
    options: NiptOptions,
) -> tuple[list[dict], np.ndarray, WindowSpread]:
    """Segment each chromosome and call CNVs with origin, syndrome and z against the panel.

    Returns the CNVs, the bins they cover, and the sample's window z spread, which widens every
    segment's SD at its length, so a library pattern the panel never saw does not become CNVs."""
    bin_sd = reference.panel["bin_sd"]
    log2 = profile.log_ratio / math.log(2)
    variance_all = _bin_variance(reference, reads)
    index, start, end = reference.layout.bin_table()
    scale = _scale(reference)
    segments = []
    chromosomes = AUTOSOME_KEYS + (["X"] if sex == "female" else [])
    for key in chromosomes:
        bins = np.flatnonzero((keys == key) & np.isfinite(log2) & np.isfinite(bin_sd) & (bin_sd > 0))
        if bins.size < 2 * options.cnv_min_bins:
            continue
        variance = variance_all[bins]
        weights = 1 / variance
        # Centred on the chromosome's median: a whole-chromosome change belongs to aneuploidy, and a
        # median is not pulled by the CNV itself.
        level = float(np.median(log2[bins]))
        values = log2[bins] - level
        for first, last in segment(values, weights, options.segment_threshold, options.cnv_min_bins):
            if last - first < options.cnv_min_bins or (last - first) > 0.8 * bins.size:
                continue
            chosen = bins[first:last]
            mean = float(np.average(log2[chosen], weights=weights[first:last]))
            sd, panel_mean = _segment_null(reference, chosen, key == "X", variance_all, reads)
            segments.append((key, chosen, mean, sd, panel_mean, level))
    # Segments with a shift no fetal event gives (maternal CNVs) are left out of the window spread.
    large = np.zeros(keys.size, dtype=bool)
    for _, chosen, mean, _, panel_mean, _ in segments:
        if abs(2 ** (mean - panel_mean) - 1) >= MATERNAL_SHIFT:
            large[chosen] = True
    panel_level = reference.window_inflation
    # Against counting noise (what a segment's counting SD must be widened by at its length) and
    # against the panel's own spread (what QC judges).
    measured = {
        size: window_inflation(log2, variance_all, keys, large, window_bins(size, reference.bin_size))
        for size in WINDOW_SIZES
    }
    spread = WindowSpread(
        relative={size: max(1.0, value / panel_level.get(str(size), 1.0)) for size, (value, _) in measured.items()},
        counting={size: value for size, (value, _) in measured.items()},
        windows={size: count for size, (_, count) in measured.items()},
        bin_size=reference.bin_size,
    )
    calls = []
    covered = np.zeros(keys.size, dtype=bool)
    for key, chosen, mean, sd, panel_mean, level in segments:
        sd = _widened(sd, chosen, variance_all, spread)
        z = (mean - panel_mean) / sd
        # A CNV differs from the panel and from the rest of its chromosome: pieces of a trisomy
        # (split at a gap) stand out from the panel only.
        if abs(z) < required_z(options.cnv_z, chosen.size) or abs(mean - level - panel_mean) / sd < required_z(
            options.cnv_z, chosen.size
        ):
            continue
        ratio = 2**mean
        # A shift far below what a heterozygous fetal event gives is noise or low-level mosaicism.
        if ff and abs(ratio - 1) < 0.5 * ff / 2:
            continue
        origin, origin_detail = _origin(ratio - 1, sd * math.log(2) * ratio, ff)
        chrom_start, chrom_end = int(start[chosen[0]]), int(end[chosen[-1]])
        contig = reference.layout.contigs[int(index[chosen[0]])].name
        covered[chosen] = True
        calls.append(
            {
                "chrom": names.get(key, contig),
                "start": chrom_start,
                "end": chrom_end,
                "size": chrom_end - chrom_start,
                "bins": int(chosen.size),
                "type": "deletion" if ratio < 1 else "duplication",
                "copy_ratio": ratio,
                "log2_ratio": mean,
                "z": z,
                "origin": origin,
                "origin_log_likelihood": origin_detail,
                "syndrome": _syndrome(key, chrom_start, chrom_end, scale),
            }
        )
    return calls, covered, spread


def required_z(base: float, n_bins: int) -> float:
    """The |z| a segment needs: stricter for short segments, of which far more are tested, and for
    long ones (over 100 bins), where smooth library patterns build up while counting noise falls:
    a pattern's z grows with the square root of the length, so the line rises by 1 per doubling.
    Never below base + 0.5. Set on the development cohorts (seeds 103 and 108, pessimistic lab):
    with base + 0 and 0.5 per doubling, 3 of 38 QC-passing samples with a 0.5 % library bias the
    panel never saw had a CNV (segments of 8-55 Mb, shifts of 1.4-3.9 %), 1 with this line."""
    n = max(n_bins, 1)
    return max(base + 0.5, base + 2.0 - 0.5 * math.log2(n / 5), base + 0.5 + math.log2(n / 100))


def _fetal_fraction_for_shift(shift_needed: float) -> float:
    """Fetal fraction whose heterozygous fetal deletion lowers log2 coverage by `shift_needed`."""
    return float(min(1.0, 2 * (1 - 2 ** (-shift_needed))))


def _detection_limits(
    profile: Profile,
    reference: Reference,
    keys: np.ndarray,
    reads: float,
    ff: float | None,
    scores: dict,
    spread: WindowSpread,
    options: NiptOptions,
) -> dict:
    """What this sample could have shown, at the calling thresholds with CNV_POWER probability.

    For each syndrome region: the smallest fetal fraction at which its heterozygous fetal deletion
    is called, with the same segment SD the calls use (panel null, counting, window inflation).
    Genome-wide: the smallest fetal deletion (bp) called at this sample's fetal fraction over
    typical bins (counting SD widened by the window spreads; the panel null is not in it, so a
    floor). Trisomies: `aneuploidy`'s minimum."""
    from statistics import NormalDist

    power_z = NormalDist().inv_cdf(CNV_POWER)
    variance = _bin_variance(reference, reads)
    usable = np.isfinite(profile.log_ratio) & np.isfinite(variance) & (variance > 0)
    _, start, end = reference.layout.bin_table()
    scale = _scale(reference)
    regions: dict[str, dict] = {}
    for name, (chrom, first, last) in SYNDROME_REGIONS.items():
        first, last = int(first * scale), int(last * scale)
        chosen = np.flatnonzero(usable & (keys == name_key(chrom)) & (end > first) & (start < last))
        if chosen.size < options.cnv_min_bins:
            regions[name] = {
                "bins": int(chosen.size),
                "minimum_fetal_fraction": None,
                "seen_at_this_fetal_fraction": None,
            }
            continue
        null_sd, _ = _segment_null(reference, chosen, False, variance, reads)
        sd = _widened(null_sd, chosen, variance, spread)
        needed = _fetal_fraction_for_shift((required_z(options.cnv_z, chosen.size) + power_z) * sd)
        regions[name] = {
            "bins": int(chosen.size),
            "minimum_fetal_fraction": needed,
            "seen_at_this_fetal_fraction": (ff >= needed) if ff is not None else None,
        }
    smallest = None
    typical = float(np.median(variance[usable & np.isin(keys, AUTOSOME_KEYS)])) if usable.any() else float("nan")
    if ff and np.isfinite(typical):
        shift = abs(math.log2(1 - ff / 2))
        for n in range(options.cnv_min_bins, 2001):
            widening = max(spread.at(n, "relative"), spread.at(n, "counting"))
            if shift * math.sqrt(n / typical) / widening >= required_z(options.cnv_z, n) + power_z:
                smallest = float(n * reference.bin_size)
                break
    return {
        "minimum_fetal_fraction_T21": aneuploidy.minimum_fetal_fraction(scores["21"]["sd"]),
        "minimum_fetal_fraction_T18": aneuploidy.minimum_fetal_fraction(scores["18"]["sd"]),
        "minimum_fetal_fraction_T13": aneuploidy.minimum_fetal_fraction(scores["13"]["sd"]),
        "smallest_fetal_deletion_bp": smallest,
        "cnv_power": CNV_POWER,
        "syndrome_regions": regions,
    }


def _origin(change: float, sd: float, ff: float | None) -> tuple[str, dict | None]:
    """fetal (shift ~FF/2), maternal (shift ~1/2) or uncertain, by likelihood.

    Without a fetal fraction, a shift near 1/2 (a heterozygous maternal event) is still maternal:
    no fetal event moves the coverage that far."""
    if not np.isfinite(change):
        return "uncertain", None
    sign = 1 if change > 0 else -1
    if ff is None:
        maternal = -0.5 * ((change - sign * 0.45) / math.sqrt(sd**2 + 0.05**2)) ** 2
        return ("maternal" if abs(change) >= 0.3 and maternal > -0.5 * 3**2 else "uncertain"), {
            "fetal": None,
            "maternal": maternal,
        }
    hypotheses = {"fetal": sign * ff / 2, "maternal": sign * 0.5, "maternal_only": sign * (1 - ff) / 2}
    sd_total = math.sqrt(sd**2 + (0.15 * ff / 2) ** 2)  # allow for fetal-fraction error
    log_like = {k: -0.5 * ((change - v) / sd_total) ** 2 for k, v in hypotheses.items()}
    maternal = max(log_like["maternal"], log_like["maternal_only"])
    fetal = log_like["fetal"]
    detail = {"fetal": fetal, "maternal": maternal}
    if fetal - maternal > math.log(100) and abs(change - hypotheses["fetal"]) < 4 * sd_total:
        return "fetal", detail
    if maternal - fetal > math.log(100):
        return "maternal", detail
    return "uncertain", detail


def _syndrome(key: str, start: int, end: int, scale: float) -> str | None:
    for name, (chrom, first, last) in SYNDROME_REGIONS.items():
        if name_key(chrom) != key:
            continue
        first, last = int(first * scale), int(last * scale)
        overlap = min(end, last) - max(start, first)
        if overlap > 0.5 * (last - first):
            return name
    return None


# ----------------------------------------------------------------------------- outputs


def _write_sample(output: Path, result: dict) -> list[Path]:
    """One sample's JSON, CNV BED and VCF, and its profile tracks."""
    sample = result["sample"]
    stem = sample_file_stem(sample)
    profile = result.get("profile")
    files = {"cnv_bed": f"{stem}.cnv.bed", "cnv_vcf": f"{stem}.cnv.vcf.gz"}
    written = []
    if profile is not None:
        track_files, track_paths = tracks.write_profile_tracks(
            output, sample, "nipt", profile, "plasmacount nipt: log2 ratio to the reference panel"
        )
        files.update(track_files, segments_seg=f"{stem}.nipt.seg")
        written += track_paths
        written.append(tracks.write_seg(output / files["segments_seg"], _profile_segments(sample, profile)))
    stored = {key: value for key, value in result.items() if key != "profile"}
    stored["files"] = files
    written.append(write_json(output / f"{stem}.nipt.json", stored))
    written.append(_write_bed(output / files["cnv_bed"], [result]))
    vcf = _write_vcf(output / f"{stem}.cnv.vcf", result)
    written.append(vcf)
    written.append(tracks.compress_and_index_vcf(vcf))
    return written


def write_results(results: Sequence[dict], output: str | os.PathLike, workers: int = 1) -> list[Path]:
    """Per sample JSON, CNV BED and VCF (on `workers` processes); one batch TSV. Returns the paths written."""
    check_unique_samples([r["sample"] for r in results])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = [path for paths in map_in_processes(_write_sample, results, output, workers) for path in paths]
    written.append(_write_bed(output / "nipt.cnv.bed", results))
    written.append(write_json(output / "nipt.batch_qc.json", batch_qc(results)))
    tsv = output / "nipt.tsv"
    columns = [
        "sample",
        "qc_status",
        "fetal_sex",
        "fetal_fraction",
        "fetal_fraction_low",
        "fetal_fraction_high",
        "z_13",
        "z_18",
        "z_21",
        "z_X",
        "positive",
        "no_call",
        "cnvs",
        "qc_reasons",
    ]
    with atomic_output(tsv, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for r in results:

            def chromosome(key: str, chromosomes: dict = r["chromosomes"]) -> float | None:
                return next((v["z"] for name, v in chromosomes.items() if name_key(name) == key), None)

            ff = r["fetal_fraction"]
            row = [
                r["sample"],
                r["qc"]["status"],
                r["fetal_sex"],
                table_cell(ff["estimate"]),
                table_cell(ff["low"]),
                table_cell(ff["high"]),
                table_cell(chromosome("13")),
                table_cell(chromosome("18")),
                table_cell(chromosome("21")),
                table_cell(chromosome("X")),
                ",".join(c["event"] for c in r["calls"] if c["result"] == "positive") or "-",
                ",".join(c["event"] for c in r["calls"] if c["result"] == "no-call") or "-",
                ",".join(f"{c['type'][:3]}:{c['chrom']}:{c['start']}-{c['end']}:{c['origin']}" for c in r["cnvs"])
                or "-",
                "; ".join(r["qc"]["reasons"]) or "-",
            ]
            stream.write("\t".join(row) + "\n")
    written.append(tsv)
    return written


SEG_THRESHOLD = 6.0  # |z| of a change point in the SEG track: a display track, so stricter than CNV calling's own test
SEG_MIN_BINS = 5


def _profile_segments(sample: str, profile: GenomeTrack) -> list[tuple[str, str, int, int, int, float]]:
    """Each chromosome segmented (CBS on the log2 profile), for IGV's SEG track."""
    rows = []
    finite = profile.finite()
    names = np.array(finite.chrom)
    for chrom in dict.fromkeys(finite.chrom):
        bins = np.flatnonzero(names == chrom)
        if bins.size == 0:
            continue
        values = finite.value[bins]
        spread = bin_to_bin_sd(values) if bins.size > 2 else 0.0
        if bins.size >= 2 * SEG_MIN_BINS and spread > 0:
            pieces = segment(values - np.median(values), np.full(values.size, spread**-2), SEG_THRESHOLD, SEG_MIN_BINS)
        else:
            pieces = [(0, bins.size)]
        for first, last in pieces:
            chosen = bins[first:last]
            rows.append(
                (
                    sample,
                    chrom,
                    int(finite.start[chosen[0]]),
                    int(finite.end[chosen[-1]]),
                    int(chosen.size),
                    float(np.mean(finite.value[chosen])),
                )
            )
    return rows


def _write_bed(path: Path, results: Sequence[dict]) -> Path:
    with atomic_output(path, "w") as stream:
        stream.write("#chrom\tstart\tend\tname\tscore\tstrand\tsample\ttype\torigin\tcopy_ratio\tz\tsyndrome\n")
        for r in results:
            for c in r["cnvs"]:
                name = f"{c['type']}_{c['origin']}"
                stream.write(
                    f"{c['chrom']}\t{c['start']}\t{c['end']}\t{name}\t{min(1000, int(abs(c['z']) * 10))}\t.\t{r['sample']}\t"
                    f"{c['type']}\t{c['origin']}\t{c['copy_ratio']:.4f}\t{c['z']:.2f}\t{c['syndrome'] or '.'}\n"
                )
    return path


def _write_vcf(path: Path, result: dict) -> Path:
    """CNVs as symbolic structural variants (VCF 4.2)."""
    contigs = sorted({c["chrom"] for c in result["cnvs"]})
    with atomic_output(path, "w") as stream:
        stream.write("##fileformat=VCFv4.2\n")
        stream.write(f"##source=plasmacount {__version__}\n")
        for contig in contigs:
            stream.write(f"##contig=<ID={contig}>\n")
        stream.write('##ALT=<ID=DEL,Description="Deletion">\n##ALT=<ID=DUP,Description="Duplication">\n')
        stream.write('##INFO=<ID=SVTYPE,Number=1,Type=String,Description="Type of structural variant">\n')
        stream.write('##INFO=<ID=END,Number=1,Type=Integer,Description="End position of the variant">\n')
        stream.write(
            '##INFO=<ID=SVLEN,Number=1,Type=Integer,Description="Difference in length between REF and ALT alleles">\n'
        )
        stream.write('##INFO=<ID=IMPRECISE,Number=0,Type=Flag,Description="Imprecise structural variation">\n')
        stream.write('##INFO=<ID=ORIGIN,Number=1,Type=String,Description="fetal, maternal or uncertain">\n')
        stream.write('##INFO=<ID=RATIO,Number=1,Type=Float,Description="Copy ratio against the panel of normals">\n')
        stream.write(
            '##INFO=<ID=ZSCORE,Number=1,Type=Float,Description="Segment z-score against the panel of normals">\n'
        )
        stream.write(
            '##INFO=<ID=SYNDROME,Number=1,Type=String,Description="Microdeletion/duplication syndrome region hit">\n'
        )
        stream.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for i, c in enumerate(sorted(result["cnvs"], key=lambda c: (contigs.index(c["chrom"]), c["start"]))):
            kind = "DEL" if c["type"] == "deletion" else "DUP"
            length = c["end"] - c["start"]
            info = (
                f"SVTYPE={kind};END={c['end']};SVLEN={-length if kind == 'DEL' else length};IMPRECISE;ORIGIN={c['origin']};"
                f"RATIO={c['copy_ratio']:.4f};ZSCORE={c['z']:.2f}"
            )
            if c["syndrome"]:
                info += ";SYNDROME=" + c["syndrome"].replace(" ", "_").replace(";", "_").replace(",", "_")
            stream.write(f"{c['chrom']}\t{max(1, c['start'])}\tcnv{i + 1}\tN\t<{kind}>\t.\tPASS\t{info}\n")
    return path


def _analyse_one(shared: tuple[Reference, NiptOptions], task: tuple[SampleCounts, str]) -> dict:
    reference, options = shared
    sample, where = task
    return analyse_sample(sample, reference, options, where=where)


def run_batch(
    paths: Sequence[str | os.PathLike],
    reference: Reference,
    output: str | os.PathLike,
    options: NiptOptions = NiptOptions(),
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> list[dict]:
    """Analyse every counts file (bad ones become failed results) on `workers` processes and
    write the outputs (the same whatever the number of workers)."""
    from plasmacount.counts import load_batch

    tasks = load_batch(paths)
    with stage("nipt: analysing samples"):
        results = map_in_processes(_analyse_one, tasks, (reference, options), workers, progress)
    with stage("nipt: writing outputs"):
        write_results(results, output, workers)
    return results


BATCH_MIN_SAMPLES = 8
BATCH_FLAGGED_SHARE = 0.2


def batch_qc(results: Sequence[dict]) -> dict:
    """QC across the samples of one run (`nipt.batch_qc.json`): a batch-wide shift of a
    chromosome's z (the batch's median z beyond 4 standard errors of a median, so 22 chromosomes
    rarely trip it by chance) or many samples warned or failed says the run differs from the
    panel even where each sample alone looks acceptable."""
    usable = [r for r in results if r["qc"]["status"] != FAIL and r["chromosomes"]]
    statuses = [r["qc"]["status"] for r in results]
    reasons = []
    flagged = sum(s != PASS for s in statuses)
    if results and flagged / len(results) > BATCH_FLAGGED_SHARE:
        reasons.append(f"{flagged} of {len(results)} samples warned or failed QC")
    medians = {}
    if len(usable) >= BATCH_MIN_SAMPLES:
        standard_error = 1.2533 / math.sqrt(len(usable))
        for name in usable[0]["chromosomes"]:
            if name_key(name) not in AUTOSOME_KEYS:
                continue
            z = [r["chromosomes"].get(name, {}).get("z") for r in usable]
            values = np.array([v for v in z if v is not None and np.isfinite(v)])
            if values.size >= BATCH_MIN_SAMPLES:
                medians[name] = float(np.median(values))
                if abs(medians[name]) > 4 * standard_error:
                    reasons.append(f"{name} z shifted across the batch (median {medians[name]:+.2f})")
    return {
        "status": WARN if reasons else PASS,
        "reasons": reasons,
        "samples": len(results),
        "flagged_samples": flagged,
        "median_chromosome_z": medians,
    }
