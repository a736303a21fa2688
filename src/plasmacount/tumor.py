"""Tumour fraction and copy number from plasma DNA: the share of cfDNA shed by a tumour.

Tumour DNA carries the tumour's copy-number changes, diluted by normal cfDNA. Following
ichorCNA (Adalsteinsson et al. 2017), read counts are corrected for GC and mappability, divided
by a panel of normals (healthy plasma), and explained by a hidden Markov model whose states
are tumour copy numbers 1..8 (8 standing for any amplification; plus subclonal losses and gains). With normal fraction n and
tumour ploidy P, a clonal copy number c shifts the natural-log ratio by
`ln(((1 - n) c + 2 n) / ((1 - n) P + 2 n))`; a subclonal change present in a share s of tumour
cells by `ln(((1 - n)((1 - s) c + 2 s) + 2 n) / ((1 - n) P + 2 n))`. Emissions are Student-t
(2.1 degrees of freedom, scale from the data's bin-to-bin noise), self-transitions 0.9999.

Instead of EM from a few restarts, the likelihood (forward algorithm) is evaluated on a full
grid of tumour fraction x baseline copy number (2, 3, 4: the tumour's most common copy number,
on whose level the median-centred data sit) at once (vectorised over the grid), which is
deterministic; with the priors below it gives a 95 % interval for the tumour fraction (profile
of the log posterior, drop 1.92), and the Viterbi path of the best grid point gives the
segments and the ploidy (the path's mean tumour copy number).

The priors decide between readings the counts alone cannot tell apart: a genome-doubled tumour
whose changes are even is a diploid one at a higher purity, and its odd changes are diploid
changes in half of the tumour cells. So every baseline gets state changes of the same make-up
(`jump_weights`): a change returns to the baseline or goes to a near copy number (one copy from
a diploid genome; one or two after doubling, each half as likely), rarely further, or to a
subclonal state (one copy off the baseline in 20, 30, ..., 80 % of tumour cells; about one
change in five). Chromosomes start at the baseline with the same probability whatever the
baseline (`initial_weights`). Genome doubling has its prior (about 30 % of tumours), a
triploid baseline a prior cost (otherwise a diploid tumour fits as a triploid one at a lower
purity), and the tumour fraction a Beta(1, 3) prior. With a panel of normals the fit runs
twice: the second time the panel's shared patterns and the centring are fitted on the bins the
first fit put at the baseline only, so that large tumour changes neither bend the pattern
removal nor shift the baseline level.
A sample counts as carrying tumour DNA when the best fit beats tumour fraction 0 by a
log-posterior margin of 10.

Lo's genome-wide approach is reported beside it: per chromosome arm, the z-score of the arm's
mean ratio (against the panel of normals' arms when it has samples, else against the sample's
own arms), and the copy-number aberration score (the number of arms with |z| > 3).
"""
from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special

from plasmacount import __version__
from plasmacount import tracks
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.files import read_archive, sample_file_stem, write_archive
from plasmacount.gc import fit_gc_curve
from plasmacount.genome import AUTOSOME_KEYS, HG38_CENTROMERES, HG38_LENGTHS, Layout, guess_build, name_key
from plasmacount.progress import stage
from plasmacount.reference import ignore_empty_bins
from plasmacount.segment import bin_to_bin_sd
from plasmacount.tracks import Profile

SCHEMA_VERSION = "1.1"
PANEL_FORMAT = "plasmacount-tumor-panel"
DEGREES_OF_FREEDOM = 2.1
SELF_TRANSITION = 0.9999
CLONAL_STATES = (1, 2, 3, 4, 5, 6, 7, 8)
SUBCLONAL_STEPS = (-1, 1)  # subclonal states: baseline -1 / +1 copy in a share of tumour cells
TUMOR_FRACTIONS = np.round(np.concatenate([[0.0], np.arange(0.005, 0.05, 0.005), np.arange(0.05, 0.3, 0.01), np.arange(0.3, 0.92, 0.02)]), 4)
BASELINES = (2, 3, 4)  # the tumour's most common copy number (4 after genome doubling)
# Log prior of each baseline: genome doubling is found in about 30 % of solid tumours
# (log 0.3 / 0.7); a triploid baseline must earn its place, since otherwise a diploid tumour
# fits as a triploid one at a lower purity.
BASELINE_LOG_PRIOR = {2: 0.0, 3: -10.0, 4: -0.85}
SUBCLONE_FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # shares of tumour cells a subclonal state may have
RETURN_SHARE = 0.6  # share of state changes that return to the baseline
SUBCLONAL_EVENT_WEIGHT = 0.25  # weight of subclonal against clonal near changes, per direction
JUMP_COST = 4.0  # log cost of each copy beyond the near copy numbers (amplifications, deep losses)
INITIAL_BASELINE_SHARE = 0.75  # probability that a chromosome starts at the baseline copy number
# Tumour fractions in plasma are mostly low: a Beta(1, 3) prior, density (1 - f)^2. Among
# readings the counts cannot tell apart (a change of one or of two copies at different
# purities) it prefers the lower purity.
TUMOR_FRACTION_PRIOR_SHAPE = 2.0
DETECTION_MARGIN = 10.0  # log-posterior gain over tumour fraction 0 needed to call tumour DNA present
# GRCh37 centromere midpoints (bp) for arms on hg19 data.
HG19_CENTROMERES = {"1": 123035434, "2": 93826171, "3": 92004854, "4": 51160117, "5": 47905641, "6": 60330166, "7": 59554331,
                    "8": 45338887, "9": 48867679, "10": 40754935, "11": 54534020, "12": 35824540, "13": 17700000, "14": 17200000,
                    "15": 19000000, "16": 36834733, "17": 23263006, "18": 16953839, "19": 26709063, "20": 28434640, "21": 12570000,
                    "22": 14000000, "X": 60132012, "Y": 11604553}


@dataclass
class CorrectedProfile:
    """log2 ratios per bin after GC, mappability and panel correction (NaN where unused)."""

    layout: Layout
    log2: np.ndarray
    used: np.ndarray
    keys: np.ndarray
    gc_residual: float


def _keys(layout: Layout) -> np.ndarray:
    return np.array([name_key(c.name) for c in layout.contigs])[layout.bin_table()[0]]


def correct(counts: np.ndarray, layout: Layout, annotation: BinAnnotation | None, min_mappability: float = 0.9) -> CorrectedProfile:
    """ichorCNA-style bin filtering, GC then mappability correction, log2, centred on the autosomes."""
    keys = _keys(layout)
    raw = counts.astype(float)
    gc = annotation.gc if annotation is not None else np.full(layout.n_bins, np.nan)
    mappability = annotation.mappability if annotation is not None else np.full(layout.n_bins, np.nan)
    used = (raw > 0) & np.isfinite(gc) & (keys != "Y")
    used &= ~(np.isfinite(mappability) & (mappability < min_mappability))
    autosomal = used & np.isin(keys, AUTOSOME_KEYS)
    if autosomal.sum() < 50:
        raise DataError(f"only {int(autosomal.sum())} usable autosomal bins (reads > 0, known GC, mappability >= {min_mappability}); "
                        "check the counts and the bin annotation")
    # "Ideal" bins for the fits: without the top 1 % of counts.
    ideal = autosomal & (raw < np.quantile(raw[autosomal], 0.99))
    gc_curve = fit_gc_curve(raw, gc, ideal, n_strata=50)
    corrected = raw / gc_curve.factors
    if np.isfinite(mappability[ideal]).sum() > 50:
        map_curve = fit_gc_curve(np.nan_to_num(corrected), np.where(np.isfinite(mappability), mappability, np.nan), ideal, n_strata=20)
        corrected = corrected / np.where(np.isfinite(map_curve.factors), map_curve.factors, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log2 = np.where(used & (corrected > 0), np.log2(np.maximum(corrected, 1e-12)), np.nan)
    log2 -= np.nanmedian(log2[autosomal])
    return CorrectedProfile(layout, log2, used & np.isfinite(log2), keys, gc_curve.residual)


@dataclass
class NormalPanel:
    """Median log2 ratio per bin of healthy plasma (and each sample's arm means, for arm z-scores)."""

    layout: Layout
    median: np.ndarray
    samples: list[str] = field(default_factory=list)
    arm_means: dict = field(default_factory=dict)   # arm -> list of healthy arm means
    source: str = "plasmacount"
    components: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # k x bins; NaN-free, 0 where unused

    def remove_shared_patterns(self, log2: np.ndarray, layout: Layout, fit_bins: np.ndarray | None = None) -> np.ndarray:
        """Subtract the sample's projection on the healthy panel's principal components (batch waves).
        `fit_bins` limits the fit to bins without copy-number change: a large tumour change that
        happens to resemble a component would otherwise be partly subtracted."""
        if self.components.size == 0 or layout != self.layout:
            return log2
        used = np.isfinite(log2) & np.any(self.components != 0, axis=0)
        if fit_bins is not None and (used & fit_bins).sum() > 10 * len(self.components):
            used &= fit_bins
        scores, *_ = np.linalg.lstsq(self.components[:, used].T, log2[used], rcond=None)
        return log2 - scores @ self.components

    def save(self, path: str | os.PathLike) -> None:
        metadata = {"format": PANEL_FORMAT, "format_version": "1.0", "plasmacount_version": __version__, "layout": self.layout.to_json(),
                    "samples": self.samples, "arm_means": self.arm_means, "source": self.source}
        write_archive(path, metadata, {"median": self.median, "components": self.components})

    @classmethod
    def load(cls, path: str | os.PathLike, layout: Layout) -> "NormalPanel":
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: panel of normals not found; check the path")
        with open(path, "rb") as stream:
            head = stream.read(2)
        if head == b"PK":
            metadata, arrays = read_archive(path, PANEL_FORMAT, 1)
            panel = cls(Layout.from_json(metadata["layout"]), arrays["median"], metadata["samples"], metadata["arm_means"], metadata["source"],
                        arrays.get("components", np.zeros((0, 0))))
        else:
            panel = _import_ichorcna_panel(path, layout)
        if panel.layout.bin_size != layout.bin_size:
            raise DataError(f"{path}: panel of normals has {panel.layout.bin_size:,} bp bins, the sample {layout.bin_size:,} bp; "
                            "use a panel of the sample's bin size")
        return panel

    def on(self, layout: Layout) -> np.ndarray:
        """The panel median in `layout`'s bin order (NaN where the panel has no value)."""
        result = np.full(layout.n_bins, np.nan)
        for contig in layout.contigs:
            if self.layout.has(contig.name):
                mine = self.layout.contig(contig.name)
                n = min(mine.n_bins, contig.n_bins)
                result[contig.first_bin : contig.first_bin + n] = self.median[mine.first_bin : mine.first_bin + n]
        return result


def _import_ichorcna_panel(path: Path, layout: Layout) -> NormalPanel:
    """ichorCNA's PoN as TSV (chr, 1-based start, end, ..., Median)."""
    opener = gzip.open if path.suffix == ".gz" else open
    values: dict[tuple[str, int], float] = {}
    try:
        with opener(path, "rt") as stream:
            header = stream.readline().rstrip("\n").split("\t")
            if "Median" not in header or header[:3] not in (["chr", "start", "end"], ["seqnames", "start", "end"]):
                raise DataError(f"{path}: not an ichorCNA panel of normals (needs chr, start, end ... Median columns)")
            column = header.index("Median")
            for number, line in enumerate(stream, 2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) <= column:
                    raise DataError(f"{path}: line {number} is short; the panel is corrupt, re-create it")
                if fields[column] not in ("NA", ""):
                    values[(name_key(fields[0]), int(fields[1]) - 1)] = float(fields[column])
    except (OSError, UnicodeDecodeError, EOFError, ValueError) as error:
        raise DataError(f"{path}: cannot read the panel ({error}); check the file") from error
    keys = _keys(layout)
    _, start, _ = layout.bin_table()
    median = np.array([values.get((key, int(s)), np.nan) for key, s in zip(keys, start)])
    if np.isfinite(median).sum() < 50:
        raise DataError(f"{path}: fewer than 50 of its bins match the sample's bins (another build or bin size?)")
    return NormalPanel(layout, median, [], {}, source=f"ichorCNA:{path.name}")


def arms(layout: Layout) -> list[tuple[str, np.ndarray]]:
    """Chromosome arms as (name like '1p', bin mask), from the build's centromeres."""
    keys = _keys(layout)
    _, start, end = layout.bin_table()
    chr1 = next((c.length for c in layout.contigs if name_key(c.name) == "1"), None)
    build = guess_build({"1": chr1}, layout.bin_size) if chr1 else "unknown"
    if build == "GRCh37":
        centromeres = HG19_CENTROMERES
    else:
        scale = chr1 / HG38_LENGTHS["chr1"] if chr1 and build == "unknown" else 1.0
        centromeres = {name_key(k): int(v * scale) for k, v in HG38_CENTROMERES.items()}
    result = []
    for key in AUTOSOME_KEYS + ["X"]:
        on = keys == key
        if not on.any() or key not in centromeres:
            continue
        middle = (start + end) // 2
        for arm, here in (("p", on & (middle < centromeres[key])), ("q", on & (middle >= centromeres[key]))):
            if here.sum() >= 3:
                result.append((f"{key}{arm}", here))
    return result


@ignore_empty_bins
def build_panel(samples: list[SampleCounts], annotation: BinAnnotation | None) -> NormalPanel:
    """A panel of normals from healthy plasma counts: per-bin median log2 ratio and arm means."""
    if len(samples) < 3:
        raise UsageError(f"a panel of normals needs at least 3 healthy samples (10+ advised); got {len(samples)}")
    layout = samples[0].layout
    for sample in samples[1:]:
        if sample.layout.n_bins != layout.n_bins or sample.bin_size != layout.bin_size:
            raise DataError(f"{sample.sample}: its bins differ from {samples[0].sample}'s; count every sample with the same bins")
    profiles = [correct(s.counts, layout, annotation) for s in samples]
    matrix = np.array([p.log2 for p in profiles])
    median = np.nanmedian(matrix, axis=0)
    residual = matrix - median
    keys = _keys(layout)
    usable = np.all(np.isfinite(residual), axis=0) & np.isin(keys, AUTOSOME_KEYS)
    k = min(5, max(0, len(samples) // 4))
    components = np.zeros((k, layout.n_bins))
    if k:
        _, _, vt = np.linalg.svd(residual[:, usable] - residual[:, usable].mean(axis=0), full_matrices=False)
        components[:, usable] = vt[:k]
    panel = NormalPanel(layout, median, [s.sample for s in samples], {}, components=components)
    cleaned = np.array([panel.remove_shared_patterns(row, layout) for row in residual])
    for name, mask in arms(layout):
        values = [float(np.nanmean(row[mask])) for row in cleaned]
        panel.arm_means[name] = [v for v in values if np.isfinite(v)]
    return panel


SUBCLONAL = [(step, fraction) for fraction in SUBCLONE_FRACTIONS for step in SUBCLONAL_STEPS]  # (copy step, share of tumour cells)


def _state_means(tumour_fraction: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Natural-log ratio of every state (last axis) for every grid point (first axis), relative to
    the baseline state (the data are centred on their median, which is the baseline's level).
    States: clonal copy numbers 1-8, then one copy below/above the baseline in 20-80 % of
    the tumour cells (each subclonal event can take its own share)."""
    purity = tumour_fraction[:, None]
    normal = 1 - purity
    average = purity * baseline[:, None] + 2 * normal
    clonal = np.array(CLONAL_STATES, dtype=float)[None, :]
    steps = np.array([step for step, _ in SUBCLONAL], dtype=float)[None, :]
    shares = np.array([share for _, share in SUBCLONAL], dtype=float)[None, :]
    mixed = baseline[:, None] + shares * steps
    clonal_means = np.log((purity * clonal + 2 * normal) / average)
    subclonal_means = np.log((purity * mixed + 2 * normal) / average)
    return np.concatenate([clonal_means, subclonal_means], axis=1)


def _t_logpdf(x: np.ndarray, scale: float) -> np.ndarray:
    nu = DEGREES_OF_FREEDOM
    constant = special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * math.log(nu * math.pi) - math.log(scale)
    return constant - (nu + 1) / 2 * np.log1p((x / scale) ** 2 / nu)


def jump_weights(baseline: np.ndarray) -> np.ndarray:
    """Where a change of state goes (one row per grid point, rows summing to 1).

    A change returns to the baseline with probability RETURN_SHARE. Otherwise, in each direction,
    one unit of weight is split evenly over the near copy numbers: one copy away from a diploid
    (or triploid) baseline, one or two copies after genome doubling, where losses and gains of
    one or of two of the four copies are both common, so that each costs log 2 more than a
    diploid change (there are twice as many choices). Copy numbers beyond fall by e^-JUMP_COST
    per copy, and subclonal states share SUBCLONAL_EVENT_WEIGHT per direction (about one change
    in five subclonal). Every baseline's rows have the same make-up, so that none is favoured by
    the normalisation alone: the choice of baseline rests on the data, BASELINE_LOG_PRIOR and
    these per-change costs."""
    clonal = np.array(CLONAL_STATES, dtype=float)[None, :]
    steps = np.abs(clonal - baseline[:, None])
    near = np.floor(baseline / 2)[:, None]
    clonal_weight = np.where(steps == 0, 0.0, np.where(steps <= near, 1.0, np.exp(-JUMP_COST * (steps - near)))) / near
    subclonal_weight = np.full((baseline.size, len(SUBCLONAL)), 2 * SUBCLONAL_EVENT_WEIGHT / len(SUBCLONAL))
    weights = np.concatenate([clonal_weight, subclonal_weight], axis=1)
    weights *= (1 - RETURN_SHARE) / weights.sum(axis=1, keepdims=True)
    return np.where(_baseline_states(baseline), RETURN_SHARE, weights)


def _baseline_states(baseline: np.ndarray) -> np.ndarray:
    """Per grid point, True at the clonal state of the baseline copy number."""
    clonal = np.array(CLONAL_STATES, dtype=float)[None, :] == baseline[:, None]
    return np.concatenate([clonal, np.zeros((baseline.size, len(SUBCLONAL)), dtype=bool)], axis=1)


def initial_weights(weights: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """The state at a chromosome's start: the baseline with probability INITIAL_BASELINE_SHARE
    whatever the baseline, the rest shared as the jump weights (`jump_weights(baseline)`) share it."""
    at_baseline = _baseline_states(baseline)
    rest = np.where(at_baseline, 0.0, weights)
    rest *= (1 - INITIAL_BASELINE_SHARE) / rest.sum(axis=1, keepdims=True)
    return np.where(at_baseline, INITIAL_BASELINE_SHARE, rest)


def forward_log_likelihood(values: np.ndarray, breaks: np.ndarray, means: np.ndarray, scale: float, weights: np.ndarray,
                           initial: np.ndarray) -> np.ndarray:
    """Log-likelihood of the data under each grid point's HMM (vectorised over the grid)."""
    grid, states = means.shape
    stay = SELF_TRANSITION
    alpha = initial.copy()
    total = np.zeros(grid)
    for t, value in enumerate(values):
        if breaks[t]:
            predicted = initial
        else:
            predicted = stay * alpha + (1 - stay) * weights
        log_emission = _t_logpdf(value - means, scale)
        peak = log_emission.max(axis=1, keepdims=True)
        alpha = predicted * np.exp(log_emission - peak)
        norm = alpha.sum(axis=1, keepdims=True)
        alpha /= norm
        total += np.log(norm[:, 0]) + peak[:, 0]
    return total


def viterbi(values: np.ndarray, breaks: np.ndarray, means: np.ndarray, scale: float, weights: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Most likely state per bin for one grid point (`means`, `weights`, `initial`: one per state), chromosome by chromosome."""
    path = np.empty(values.size, dtype=np.int64)
    starts = np.flatnonzero(breaks)
    for first, last in zip(starts, np.append(starts[1:], values.size)):
        path[first:last] = _viterbi_run(values[first:last], means, scale, weights, initial)
    return path


def _viterbi_run(values: np.ndarray, means: np.ndarray, scale: float, weights: np.ndarray, initial: np.ndarray) -> np.ndarray:
    states = means.size
    transition = np.log((1 - SELF_TRANSITION) * np.tile(weights, (states, 1)) + SELF_TRANSITION * np.eye(states))
    score = _t_logpdf(values[0] - means, scale) + np.log(initial)
    back = np.zeros((values.size, states), dtype=np.int64)
    for t in range(1, values.size):
        candidates = score[:, None] + transition
        back[t] = np.argmax(candidates, axis=0)
        score = candidates.max(axis=0) + _t_logpdf(values[t] - means, scale)
    path = np.empty(values.size, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(values.size - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def state_copy_number(state: int, baseline: float) -> tuple[float, bool, float]:
    """(tumour copy number of the changed cells, subclonal?, share of tumour cells changed) of a state."""
    if state < len(CLONAL_STATES):
        return float(CLONAL_STATES[state]), False, 1.0
    step, share = SUBCLONAL[state - len(CLONAL_STATES)]
    return float(baseline + step), True, share


def analyse(sample: SampleCounts, annotation: BinAnnotation | None, panel: NormalPanel | None = None,
            size_selected: bool = False, min_mappability: float = 0.9) -> dict:
    """Tumour fraction, ploidy, segments, arm z-scores and CNA score of one sample."""
    counts = sample.short if size_selected else sample.counts
    if size_selected and not sample.paired:
        raise UsageError(f"{sample.sample}: size selection needs paired-end data (fragment lengths)")
    layout = sample.layout
    if annotation is not None:
        if annotation.bin_size != layout.bin_size:
            raise UsageError(f"the annotation has {annotation.bin_size:,} bp bins but {sample.sample} {layout.bin_size:,} bp")
        from plasmacount.genome import check_compatible

        check_compatible(annotation.layout, [(c.name, c.length) for c in layout.contigs], sample.sample, "the bin annotation")
        annotation = annotation.on_layout(layout)
    profile = correct(counts, layout, annotation, min_mappability)
    normal = panel.on(layout) if panel is not None else None
    unchanged = None
    grid_tf, grid_baseline = (a.ravel() for a in np.meshgrid(TUMOR_FRACTIONS, np.array(BASELINES, dtype=float), indexing="ij"))
    means = _state_means(grid_tf, grid_baseline)
    weights = jump_weights(grid_baseline)
    initial = initial_weights(weights, grid_baseline)
    # Two rounds: the second re-fits the panel's shared patterns and the centring on the bins the
    # first round put at the baseline copy number, so that large changes do not bend either.
    for _ in range(2 if panel is not None else 1):
        log2 = profile.log2.copy()
        if panel is not None:
            log2 = log2 - np.where(np.isfinite(normal), normal, np.nan)
            log2 = panel.remove_shared_patterns(log2, layout, unchanged)
        used = np.isfinite(log2) & np.isin(profile.keys, AUTOSOME_KEYS)
        log2 -= np.nanmedian(log2[used & unchanged]) if unchanged is not None else np.nanmedian(log2[used])
        natural = log2[used] * math.log(2)
        keys_used = profile.keys[used]
        breaks = np.concatenate([[True], keys_used[1:] != keys_used[:-1]])
        scale = max(bin_to_bin_sd(natural), 1e-4)
        with stage("tumor: HMM over the grid"):
            log_likelihood = forward_log_likelihood(natural, breaks, means, scale, weights, initial)
        log_posterior = log_likelihood + np.array([BASELINE_LOG_PRIOR[int(b)] for b in grid_baseline]) + TUMOR_FRACTION_PRIOR_SHAPE * np.log1p(-grid_tf)
        best = int(np.argmax(log_posterior))
        path = viterbi(natural, breaks, means[best], scale, weights[best], initial[best])
        unchanged = np.zeros(layout.n_bins, dtype=bool)
        unchanged[np.flatnonzero(used)[path == CLONAL_STATES.index(int(grid_baseline[best]))]] = True
    profile_by_tf = np.array([log_posterior[grid_tf == tf].max() for tf in TUMOR_FRACTIONS])
    inside = TUMOR_FRACTIONS[profile_by_tf >= profile_by_tf.max() - 1.92]
    zero_gap = float(log_posterior[best] - profile_by_tf[0])
    detected = zero_gap > DETECTION_MARGIN
    tumour_fraction = float(grid_tf[best]) if detected else 0.0
    described = [state_copy_number(k, grid_baseline[best]) for k in range(means.shape[1])]
    # Ploidy: the tumour's mean copy number along the path (subclonal states count as their mixture).
    effective = np.array([(1 - share) * grid_baseline[best] + share * copy if subclonal else copy for copy, subclonal, share in described])
    ploidy = float(np.mean(effective[path])) if detected else 2.0
    subclonal_shares = [described[k][2] for k in path if described[k][1]]
    subclone_fraction = float(np.median(subclonal_shares)) if detected and subclonal_shares else None
    segments = _segments(layout, profile.keys, used, log2, path, described, tumour_fraction, float(grid_baseline[best]))
    arm_z, score = _arm_scores(layout, log2, panel, scale / math.log(2))
    return {
        "schema_version": SCHEMA_VERSION, "plasmacount_version": __version__, "sample": sample.sample, "source": sample.source,
        "tumor_fraction": tumour_fraction, "tumor_fraction_low": float(inside.min()) if detected else 0.0,
        "tumor_fraction_high": float(inside.max()), "tumor_detected": bool(detected),
        "ploidy": ploidy, "subclone_fraction": subclone_fraction,
        "log_posterior_gain_over_zero": zero_gap,
        "bins_used": int(used.sum()), "bin_size": layout.bin_size, "noise_scale": scale, "gc_residual": profile.gc_residual,
        "size_selected": size_selected, "panel_of_normals": None if panel is None else {"source": panel.source, "samples": len(panel.samples)},
        "segments": segments, "arms": arm_z, "cna_score": score,
        "arm_reference": "panel of normals" if panel is not None and panel.arm_means else "the sample's own arms",
        "profile": Profile.from_layout(layout, log2),
    }


def _segments(layout, keys, used, log2, path, described, tumour_fraction, baseline) -> list[dict]:
    """Runs of one state on one chromosome; `described` gives each state's (copy number, subclonal?, share).
    The copy number is the tumour's; gain and loss are against its baseline (4 after genome doubling)."""
    index, start, end = layout.bin_table()
    positions = np.flatnonzero(used)
    segments = []
    first = 0
    for t in range(1, positions.size + 1):
        if t == positions.size or path[t] != path[first] or keys[positions[t]] != keys[positions[first]]:
            chosen = positions[first:t]
            copy, subclonal, _share = described[int(path[first])]
            segments.append({"chrom": layout.contigs[int(index[chosen[0]])].name, "start": int(start[chosen[0]]), "end": int(end[chosen[-1]]),
                             "bins": int(chosen.size), "log2_ratio": float(np.mean(log2[chosen])),
                             "copy_number": copy if tumour_fraction > 0 else 2.0, "subclonal": bool(subclonal) and tumour_fraction > 0,
                             "event": "neutral" if tumour_fraction == 0 or (copy == baseline and not subclonal) else "gain" if copy > baseline else "loss"})
            first = t
    return segments


def _arm_scores(layout, log2, panel, bin_sd: float) -> tuple[dict, int]:
    """Arm z-scores: against the panel's arm means (their spread plus this sample's counting noise
    over the arm's bins), else against the sample's own arms."""
    result = {}
    means = {}
    for name, mask in arms(layout):
        values = log2[mask & np.isfinite(log2)]
        if values.size >= 3:
            means[name] = (float(values.mean()), values.size)
    if not means:
        return {}, 0
    use_panel = panel is not None and len(panel.arm_means) > 0
    own = np.array([m for m, _ in means.values()])
    center, spread = float(np.median(own)), float(1.4826 * np.median(np.abs(own - np.median(own)))) or 1e-6
    for name, (mean, n) in means.items():
        reference = panel.arm_means.get(name) if use_panel else None
        if reference and len(reference) >= 3:
            sd = math.sqrt(float(np.var(reference, ddof=1)) + bin_sd**2 / n)
            z = (mean - float(np.mean(reference))) / max(sd, 1e-6)
        else:
            z = (mean - center) / spread
        result[name] = {"mean_log2": mean, "bins": n, "z": z}
    return result, int(sum(abs(v["z"]) > 3 for v in result.values()))


def write_outputs(results: list[dict], output: str | os.PathLike) -> list[Path]:
    """Per sample JSON; all segments as SEG (IGV) and BED; a batch TSV."""
    from plasmacount.files import atomic_output, check_unique_samples, write_json

    check_unique_samples([r["sample"] for r in results])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        sample = result["sample"]
        stored = {key: value for key, value in result.items() if key != "profile"}
        if result.get("profile") is not None:
            stored["files"], track_paths = tracks.write_profile_tracks(output, sample, "tumor", result["profile"],
                                                                       "plasmacount tumor: corrected log2 ratio")
            written += track_paths
        written.append(write_json(output / f"{sample_file_stem(sample)}.tumor.json", stored))
    seg = tracks.write_seg(output / "tumor.seg", [(result["sample"], s["chrom"], s["start"], s["end"], s["bins"], s["log2_ratio"])
                                                  for result in results for s in result["segments"]])
    bed = output / "tumor.bed"
    with atomic_output(bed, "w") as stream:
        stream.write("#chrom\tstart\tend\tname\tscore\tstrand\tsample\tcopy_number\tsubclonal\tlog2_ratio\n")
        for result in results:
            for s in result["segments"]:
                if s["event"] != "neutral":
                    stream.write(f"{s['chrom']}\t{s['start']}\t{s['end']}\t{s['event']}\t0\t.\t{result['sample']}\t{s['copy_number']:g}\t"
                                 f"{str(s['subclonal']).lower()}\t{s['log2_ratio']:.4f}\n")
    table = output / "tumor.tsv"
    with atomic_output(table, "w") as stream:
        stream.write("sample\ttumor_fraction\ttumor_fraction_low\ttumor_fraction_high\tdetected\tploidy\tcna_score\tsegments_altered\n")
        for r in results:
            altered = sum(s["event"] != "neutral" for s in r["segments"])
            stream.write(f"{r['sample']}\t{r['tumor_fraction']:.4f}\t{r['tumor_fraction_low']:.4f}\t{r['tumor_fraction_high']:.4f}\t"
                         f"{str(r['tumor_detected']).lower()}\t{r['ploidy']:.2f}\t{r['cna_score']}\t{altered}\n")
    return written + [seg, bed, table]
