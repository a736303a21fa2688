"""Tumour fraction and copy number from plasma DNA: the share of cfDNA shed by a tumour.

Tumour DNA carries the tumour's copy-number changes, diluted by normal cfDNA. Following
ichorCNA (Adalsteinsson et al. 2017), read counts are corrected for GC and mappability, divided
by a panel of normals (healthy plasma), and explained by a hidden Markov model whose states
are tumour copy numbers 0..8 (8 standing for any amplification; plus subclonal losses and gains). With normal fraction n and
tumour ploidy P, a clonal copy number c shifts the natural-log ratio by
`ln(((1 - n) c + 2 n) / ((1 - n) P + 2 n))`; a subclonal change present in a share s of tumour
cells by `ln(((1 - n)((1 - s) c + 2 s) + 2 n) / ((1 - n) P + 2 n))`. Emissions are Student-t
(degrees of freedom fitted to the sample's neighbour differences between ichorCNA's 2.1 and 4,
scale from the data's bin-to-bin noise), self-transitions 0.9999.

Instead of EM from a few restarts, the likelihood (forward algorithm) is evaluated on a full
grid of tumour fraction x baseline copy number (2, 3, 4: the tumour's most common copy number,
on whose level the median-centred data sit) at once (vectorised over the grid), which is
deterministic, then refined between each baseline's best grid point and its neighbours. Each
baseline is a solution with its posterior mass (ichorCNA lists its restarts the same way); the
chosen one has the largest, and two within odds of 10 are flagged as close. The 95 % interval
of a detected tumour spans the solutions by their weight, from the likelihood flattened by the
residuals' dispersion over 10-bin windows (neighbouring bins are not independent), and is never
one grid point wide; an undetected sample gets a one-sided 95 % upper bound from the profile
likelihood (the largest tumour fraction within 1.35 of the best: the tumour fraction cannot go
below 0), since a tumour without changes fits every tumour fraction alike.

Bins are masked at centromeres (100 kb flanks), where mostly blacklisted or mostly N. chrX is
judged on its own level (sex comes from the chrY reads: men have one copy, women two, and
neither is a gain). The panel of normals keeps every donor: its per-bin median, shared patterns
(principal components), each bin's spread beyond the donors' counting noise (widening that bin's
emission scale), each arm's healthy spread (arm shifts of healthy size, judged with the sample's
own counting noise, are taken out before the fit: real healthy plasma moves GC-rich arms by 2-3
times their typical spread) and a leave-one-out null of its donors (the detection line is kept
above the largest healthy gain).

The priors decide between readings the counts alone cannot tell apart: a genome-doubled tumour
whose changes are even is a diploid one at a higher purity, and its odd changes are diploid
changes in half of the tumour cells. So every baseline gets state changes of the same make-up
(`jump_weights`): a change returns to the baseline or goes to a near copy number (one copy from
a diploid genome; one or two after doubling, each half as likely), rarely further (down to no
copy at all), or to a subclonal state (the same near copy numbers in 20, 30, ..., 80 % of tumour
cells; about one change in five: after doubling a subclone may lose or gain two copies as the
clone may, which a diploid reading would otherwise explain better). Chromosomes start at the
baseline with the same probability whatever the baseline (`initial_weights`). Genome doubling has its prior (about 30 % of
tumours), a near-triploid baseline 10 %, and the tumour fraction a Beta(1, 3) prior. With a
panel of normals the fit runs twice: the second time the panel's shared patterns and the
centring are fitted on the bins the first fit put at the baseline only, so that large tumour
changes neither bend the pattern removal nor shift the baseline level.
A sample counts as carrying tumour DNA when the best fit beats tumour fraction 0 by a
log-posterior margin of 10 (or more: the panel's largest leave-one-out gain plus 2).

Lo's genome-wide approach is reported beside it: per chromosome arm, the z-score of the arm's
mean ratio (against the panel of normals' arms when it has samples, else against the sample's
own arms), and the copy-number aberration score (the number of arms with |z| > 3).
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize, special

from plasmacount import __version__, tracks
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.files import read_archive, sample_file_stem, write_archive
from plasmacount.gc import fit_gc_curve
from plasmacount.genome import AUTOSOME_KEYS, Layout, centromere_bins, centromere_regions, name_key
from plasmacount.progress import stage
from plasmacount.quality import Limits
from plasmacount.reference import ignore_empty_bins
from plasmacount.segment import bin_to_bin_sd
from plasmacount.tracks import GenomeTrack

SCHEMA_VERSION = "1.2"
PANEL_FORMAT = "plasmacount-tumor-panel"
# The emissions' Student-t degrees of freedom: ichorCNA's fixed 2.1 is the heaviest tail allowed;
# each sample gets the value its own neighbour differences fit best, but at most 4. Real healthy
# plasma often fits far more (near Gaussian), yet lighter tails let every residual wave that no
# copy-number state describes (panel mismatch, library patterns) become a state: on the simulated
# development cohorts (seeds 3, 101, 202) a cap of 8 doubled the diploid tumours' error at 10 M
# fragments, while 4 left it as at 2.1 and tightens healthy plasma's upper bound by about a quarter.
DEGREES_OF_FREEDOM_RANGE = (2.1, 4.0)
SELF_TRANSITION = 0.9999
CLONAL_STATES = (0, 1, 2, 3, 4, 5, 6, 7, 8)  # 0: both copies lost in the tumour (homozygous deletion)
# Subclonal states: the baseline -2 .. +2 copies in a share of tumour cells. Two-copy steps are
# near changes after genome doubling only (`jump_weights`), as for the clonal states.
SUBCLONAL_STEPS = (-2, -1, 1, 2)
TUMOR_FRACTIONS = np.round(
    np.concatenate([[0.0], np.arange(0.005, 0.05, 0.005), np.arange(0.05, 0.3, 0.01), np.arange(0.3, 0.92, 0.02)]), 4
)
BASELINES = (2, 3, 4)  # the tumour's most common copy number (4 after genome doubling)
# Prior share of each baseline: genome doubling in about 30 % of solid tumours (Bielski et al.,
# Nat Genet 2018); a near-triploid baseline 10 % (an assumption: doubled genomes that lost much
# are counted as doubled); diploid the other 60 %. As log odds against diploid.
BASELINE_PRIOR_SHARES = {2: 0.6, 3: 0.1, 4: 0.3}
BASELINE_LOG_PRIOR = {
    copies: math.log(share / BASELINE_PRIOR_SHARES[2]) for copies, share in BASELINE_PRIOR_SHARES.items()
}
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


@dataclass
class CorrectedProfile:
    """log2 ratios per bin after GC, mappability and panel correction (NaN where unused)."""

    layout: Layout
    log2: np.ndarray
    used: np.ndarray
    keys: np.ndarray
    gc_residual: float


# A bin mostly blacklisted (ENCODE) or mostly assembly gap (N) counts artefacts or nothing.
MASKED_SHARE = 0.5


def masked_bins(layout: Layout, annotation: BinAnnotation | None) -> np.ndarray:
    """Bins left out of every copy-number fit: centromeres (with 100 kb flanks), and with an
    annotation, bins more than half blacklisted or more than half N."""
    mask = centromere_bins(layout)
    if annotation is not None:
        with np.errstate(invalid="ignore"):
            mask |= np.nan_to_num(annotation.blacklist) > MASKED_SHARE
            mask |= np.nan_to_num(annotation.n_fraction) > MASKED_SHARE
    return mask


def correct(
    counts: np.ndarray, layout: Layout, annotation: BinAnnotation | None, min_mappability: float = 0.9
) -> CorrectedProfile:
    """ichorCNA-style bin filtering, GC then mappability correction, log2, centred on the autosomes."""
    keys = layout.bin_keys()
    raw = counts.astype(float)
    gc = annotation.gc if annotation is not None else np.full(layout.n_bins, np.nan)
    mappability = annotation.mappability if annotation is not None else np.full(layout.n_bins, np.nan)
    used = (raw > 0) & np.isfinite(gc) & (keys != "Y")
    used &= ~(np.isfinite(mappability) & (mappability < min_mappability))
    used &= ~masked_bins(layout, annotation)
    autosomal = used & np.isin(keys, AUTOSOME_KEYS)
    if autosomal.sum() < 50:
        raise DataError(
            f"only {int(autosomal.sum())} usable autosomal bins (reads > 0, known GC, mappability >= {min_mappability}); "
            "check the counts and the bin annotation"
        )
    # "Ideal" bins for the fits: without the top 1 % of counts.
    ideal = autosomal & (raw < np.quantile(raw[autosomal], 0.99))
    gc_curve = fit_gc_curve(raw, gc, ideal, n_strata=50)
    corrected = raw / gc_curve.factors
    if np.isfinite(mappability[ideal]).sum() > 50:
        map_curve = fit_gc_curve(
            np.nan_to_num(corrected), np.where(np.isfinite(mappability), mappability, np.nan), ideal, n_strata=20
        )
        corrected = corrected / np.where(np.isfinite(map_curve.factors), map_curve.factors, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log2 = np.where(used & (corrected > 0), np.log2(np.maximum(corrected, 1e-12)), np.nan)
    log2 -= np.nanmedian(log2[autosomal])
    return CorrectedProfile(layout, log2, used & np.isfinite(log2), keys, gc_curve.residual)


@dataclass
class NormalPanel:
    """Healthy plasma: every donor's corrected log2 profile, and what the model takes from them
    (per-bin median, shared patterns, per-bin spread beyond counting noise, arm means)."""

    layout: Layout
    median: np.ndarray
    samples: list[str] = field(default_factory=list)
    arm_means: dict = field(default_factory=dict)  # arm -> list of healthy arm means
    source: str = "plasmacount"
    components: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # k x bins; NaN-free, 0 where unused
    donors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # donors x bins, log2 (NaN where unused)
    # Per bin, the donors' variance there beyond their own bin-to-bin noise, plus the panel
    # median's own uncertainty (log2 squared; may be negative for quiet bins; NaN: unknown).
    excess_variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    arm_sd: dict = field(default_factory=dict)  # arm -> SD of healthy arm means beyond counting noise (log2)
    _null: list | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_donors(
        cls, layout: Layout, donors: np.ndarray, names: list[str], source: str = "plasmacount"
    ) -> NormalPanel:
        """The panel of these donors' corrected log2 profiles (one row each, in `layout`'s bins)."""
        donors = np.array(donors, dtype=float)
        keys = layout.bin_keys()
        # chrX is centred per donor: men and women then share one panel (chrX is judged on its own).
        on_x = keys == "X"
        for row in donors:
            if np.isfinite(row[on_x]).sum() >= 3:
                row[on_x] -= np.nanmedian(row[on_x])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(donors, axis=0)
        residual = donors - median
        usable = np.all(np.isfinite(residual), axis=0) & np.isin(keys, AUTOSOME_KEYS)
        k = min(5, max(0, len(donors) // 4))
        components = np.zeros((k, layout.n_bins))
        if k and usable.sum() > k:
            _, _, vt = np.linalg.svd(residual[:, usable] - residual[:, usable].mean(axis=0), full_matrices=False)
            components[:, usable] = vt[:k]
        panel = cls(layout, median, list(names), {}, source, components, donors)
        cleaned = np.array([panel.remove_shared_patterns(row, layout) for row in residual])
        panel.excess_variance, noise = _excess_variance(cleaned)
        for name, mask in arms(layout):
            values = np.array(
                [float(np.nanmean(row[mask])) if np.isfinite(row[mask]).any() else float("nan") for row in cleaned]
            )
            bins = np.isfinite(cleaned[:, mask]).sum(axis=1)
            keep = np.isfinite(values) & (bins > 0)
            panel.arm_means[name] = values[keep].tolist()
            if keep.sum() >= 5:
                # What healthy arms vary by beyond the donors' own counting noise over the arm.
                counting = float(np.nanmean(noise[keep] / bins[keep]))
                panel.arm_sd[name] = math.sqrt(max(float(np.var(values[keep], ddof=1)) - counting, 0.0))
        return panel

    def without(self, donor: int) -> NormalPanel:
        """The panel of the other donors (for a leave-one-out null)."""
        keep = [i for i in range(len(self.donors)) if i != donor]
        return NormalPanel.from_donors(self.layout, self.donors[keep], [self.samples[i] for i in keep], self.source)

    def remove_shared_patterns(
        self, log2: np.ndarray, layout: Layout, fit_bins: np.ndarray | None = None
    ) -> np.ndarray:
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

    def null_fits(self, min_mappability: float = 0.9) -> list[dict]:
        """Each donor fitted against the panel of the others (leave-one-out): what healthy plasma
        gives. Empty without at least 8 donors. Computed once per panel."""
        if self._null is None:
            self._null = []
            if len(self.donors) >= 8:
                for i, row in enumerate(self.donors):
                    profile = CorrectedProfile(
                        self.layout, row.copy(), np.isfinite(row), self.layout.bin_keys(), float("nan")
                    )
                    fit = fit_profile(profile, self.without(i), calibrate=False)
                    self._null.append(
                        {
                            "sample": self.samples[i],
                            "gain": fit["log_posterior_gain_over_zero"],
                            "upper": fit["tumor_fraction_high"],
                        }
                    )
        return self._null

    def save(self, path: str | os.PathLike) -> None:
        metadata = {
            "format": PANEL_FORMAT,
            "format_version": "1.1",
            "plasmacount_version": __version__,
            "layout": self.layout.to_json(),
            "samples": self.samples,
            "arm_means": self.arm_means,
            "source": self.source,
            # The leave-one-out null travels with the panel: it costs one fit per donor.
            "null_fits": self.null_fits(),
        }
        write_archive(
            path,
            metadata,
            {
                "median": self.median,
                "components": self.components,
                "donors": self.donors,
                "excess_variance": self.excess_variance,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike, layout: Layout) -> NormalPanel:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: panel of normals not found; check the path")
        with open(path, "rb") as stream:
            head = stream.read(2)
        if head == b"PK":
            metadata, arrays = read_archive(path, PANEL_FORMAT, 1)
            panel_layout = Layout.from_json(metadata["layout"])
            if arrays.get("donors") is not None and arrays["donors"].size:
                panel = cls.from_donors(panel_layout, arrays["donors"], metadata["samples"], metadata["source"])
                panel._null = metadata.get("null_fits")
            else:
                panel = cls(
                    panel_layout,
                    arrays["median"],
                    metadata["samples"],
                    metadata["arm_means"],
                    metadata["source"],
                    arrays.get("components", np.zeros((0, 0))),
                )
        else:
            panel = _import_ichorcna_panel(path, layout)
        if panel.layout.bin_size != layout.bin_size:
            raise DataError(
                f"{path}: panel of normals has {panel.layout.bin_size:,} bp bins, the sample {layout.bin_size:,} bp; "
                "use a panel of the sample's bin size"
            )
        return panel

    def on(self, layout: Layout, values: np.ndarray | None = None) -> np.ndarray:
        """The panel median (or another per-bin array of the panel) in `layout`'s bin order (NaN where the panel has no value)."""
        values = self.median if values is None else values
        result = np.full(layout.n_bins, np.nan)
        if values.size != self.layout.n_bins:
            return result
        for contig in layout.contigs:
            if self.layout.has(contig.name):
                mine = self.layout.contig(contig.name)
                n = min(mine.n_bins, contig.n_bins)
                result[contig.first_bin : contig.first_bin + n] = values[mine.first_bin : mine.first_bin + n]
        return result


# Shrinkage of a bin's spread estimate towards the panel's typical bin (in donors): with 26 donors
# a bin's variance is known to about +-28 %, so one noisy estimate must not decide alone.
EXCESS_SHRINKAGE_DONORS = 5


def _excess_variance(cleaned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bin: the donors' mean square there minus their own bin-to-bin noise (shrunk), plus the
    variance of the panel median itself (pi/2 x variance / donors); and each donor's bin-to-bin noise."""
    noise = np.array(
        [bin_to_bin_sd(row[np.isfinite(row)]) ** 2 if np.isfinite(row).sum() > 10 else np.nan for row in cleaned]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_square = np.nanmean(cleaned**2, axis=0)
        seen = np.isfinite(cleaned).sum(axis=0)
        typical_noise = float(np.nanmean(noise)) if np.isfinite(noise).any() else float("nan")
    shrink = seen / (seen + EXCESS_SHRINKAGE_DONORS)
    excess = shrink * (mean_square - typical_noise) + math.pi / 2 * mean_square / np.maximum(seen, 1)
    return np.where(seen >= 5, excess, np.nan), noise


def _import_ichorcna_panel(path: Path, layout: Layout) -> NormalPanel:
    """ichorCNA's PoN as TSV (chr, 1-based start, end, annotation columns up to cor.map, one column
    per healthy donor, Median): every donor is kept."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows: dict[tuple[str, int], list[float]] = {}
    try:
        with opener(path, "rt") as stream:
            header = stream.readline().rstrip("\n").split("\t")
            if "Median" not in header or header[:3] not in (["chr", "start", "end"], ["seqnames", "start", "end"]):
                raise DataError(f"{path}: not an ichorCNA panel of normals (needs chr, start, end ... Median columns)")
            column = header.index("Median")
            first = header.index("cor.map") + 1 if "cor.map" in header else column
            names = [name.removesuffix(".reads") for name in header[first:column]]
            for number, line in enumerate(stream, 2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) <= column:
                    raise DataError(f"{path}: line {number} is short; the panel is corrupt, re-create it")
                rows[(name_key(fields[0]), int(fields[1]) - 1)] = [
                    float("nan") if v in ("NA", "") else float(v) for v in fields[first : column + 1]
                ]
    except (OSError, UnicodeDecodeError, EOFError, ValueError) as error:
        raise DataError(f"{path}: cannot read the panel ({error}); check the file") from error
    keys = layout.bin_keys()
    _, start, _ = layout.bin_table()
    width = len(names) + 1
    table = np.array([rows.get((key, int(s)), [float("nan")] * width) for key, s in zip(keys, start)]).reshape(
        layout.n_bins, width
    )
    median = table[:, -1]
    if np.isfinite(median).sum() < 50:
        raise DataError(f"{path}: fewer than 50 of its bins match the sample's bins (another build or bin size?)")
    source = f"ichorCNA:{path.name}"
    if len(names) >= 3:
        return NormalPanel.from_donors(layout, table[:, :-1].T, names, source)
    return NormalPanel(layout, median, [], {}, source=source)


def arms(layout: Layout) -> list[tuple[str, np.ndarray]]:
    """Chromosome arms as (name like '1p', bin mask), split at the build's centromeres."""
    keys = layout.bin_keys()
    _, start, end = layout.bin_table()
    centromeres = {key: (first + last) // 2 for key, (first, last) in centromere_regions(layout).items()}
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
    """A panel of normals from healthy plasma counts: every donor's corrected profile, kept."""
    if len(samples) < 3:
        raise UsageError(f"a panel of normals needs at least 3 healthy samples (10+ advised); got {len(samples)}")
    layout = samples[0].layout
    for sample in samples[1:]:
        if sample.layout.n_bins != layout.n_bins or sample.bin_size != layout.bin_size:
            raise DataError(
                f"{sample.sample}: its bins differ from {samples[0].sample}'s; count every sample with the same bins"
            )
    if annotation is not None:
        annotation = annotation.on_layout(layout)
    donors = np.array([correct(s.counts, layout, annotation).log2 for s in samples])
    return NormalPanel.from_donors(layout, donors, [s.sample for s in samples])


SUBCLONAL = [
    (step, fraction) for fraction in SUBCLONE_FRACTIONS for step in SUBCLONAL_STEPS
]  # (copy step, share of tumour cells)


def _state_means(tumour_fraction: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Natural-log ratio of every state (last axis) for every grid point (first axis), relative to
    the baseline state (the data are centred on their median, which is the baseline's level).
    States: clonal copy numbers 0-8, then the baseline -2 .. +2 copies in 20-80 % of the tumour
    cells (each subclonal event can take its own share)."""
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


def _t_logpdf(x: np.ndarray, scale: float, nu: float) -> np.ndarray:
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
    in five subclonal) over the same near steps. Every baseline's rows have the same make-up, so
    that none is favoured by the normalisation alone: the choice of baseline rests on the data,
    BASELINE_LOG_PRIOR and these per-change costs."""
    clonal = np.array(CLONAL_STATES, dtype=float)[None, :]
    steps = np.abs(clonal - baseline[:, None])
    near = np.floor(baseline / 2)[:, None]
    clonal_weight = np.where(steps == 0, 0.0, np.where(steps <= near, 1.0, np.exp(-JUMP_COST * (steps - near)))) / near
    # A subclonal change moves the same near copy numbers in a share of the tumour cells: per
    # direction SUBCLONAL_EVENT_WEIGHT, split over the near steps and the shares.
    subclonal_steps = np.abs(np.array([step for step, _ in SUBCLONAL], dtype=float))[None, :]
    subclonal_weight = np.where(subclonal_steps <= near, 1.0, np.exp(-JUMP_COST * (subclonal_steps - near))) / near
    subclonal_weight = subclonal_weight * SUBCLONAL_EVENT_WEIGHT / len(SUBCLONE_FRACTIONS)
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


def forward_log_likelihood(
    values: np.ndarray,
    breaks: np.ndarray,
    means: np.ndarray,
    scales: np.ndarray,
    weights: np.ndarray,
    initial: np.ndarray,
    nu: float,
) -> np.ndarray:
    """Log-likelihood of the data under each grid point's HMM (vectorised over the grid); `scales`: the t scale of each bin,
    `nu` its degrees of freedom."""
    grid, states = means.shape
    stay = SELF_TRANSITION
    alpha = initial.copy()
    total = np.zeros(grid)
    for t, value in enumerate(values):
        if breaks[t]:
            predicted = initial
        else:
            predicted = stay * alpha + (1 - stay) * weights
        log_emission = _t_logpdf(value - means, scales[t], nu)
        peak = log_emission.max(axis=1, keepdims=True)
        alpha = predicted * np.exp(log_emission - peak)
        norm = alpha.sum(axis=1, keepdims=True)
        alpha /= norm
        total += np.log(norm[:, 0]) + peak[:, 0]
    return total


def viterbi(
    values: np.ndarray,
    breaks: np.ndarray,
    means: np.ndarray,
    scales: np.ndarray,
    weights: np.ndarray,
    initial: np.ndarray,
    nu: float,
) -> np.ndarray:
    """Most likely state per bin for one grid point (`means`, `weights`, `initial`: one per state), chromosome by chromosome."""
    path = np.empty(values.size, dtype=np.int64)
    starts = np.flatnonzero(breaks)
    for first, last in zip(starts, np.append(starts[1:], values.size)):
        path[first:last] = _viterbi_run(values[first:last], means, scales[first:last], weights, initial, nu)
    return path


def _viterbi_run(
    values: np.ndarray, means: np.ndarray, scales: np.ndarray, weights: np.ndarray, initial: np.ndarray, nu: float
) -> np.ndarray:
    states = means.size
    with np.errstate(divide="ignore"):
        transition = np.log((1 - SELF_TRANSITION) * np.tile(weights, (states, 1)) + SELF_TRANSITION * np.eye(states))
        score = _t_logpdf(values[0] - means, scales[0], nu) + np.log(initial)
    back = np.zeros((values.size, states), dtype=np.int64)
    for t in range(1, values.size):
        candidates = score[:, None] + transition
        back[t] = np.argmax(candidates, axis=0)
        score = candidates.max(axis=0) + _t_logpdf(values[t] - means, scales[t], nu)
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


# Sex from the share of reads on chrY (ichorCNA's rule: male above 0.1 %).
MALE_CHRY_SHARE = 0.001
# Two solutions "differ by little" when the posterior odds between them are below this.
CLOSE_SOLUTION_ODDS = 10.0
FINE_GRID_POINTS = 41  # tumour fractions between the best grid point's neighbours, for the estimate and its interval


def infer_sex(counts: np.ndarray, keys: np.ndarray, usable: np.ndarray | None = None) -> tuple[str, float | None]:
    """("male" / "female" / "unknown", share of reads on chrY), counted on the `usable` bins
    (known GC, well mappable: chrY's repeats draw reads from women too); unknown without chrY bins."""
    usable = np.ones(keys.size, dtype=bool) if usable is None else usable
    on_y = (keys == "Y") & usable
    total = float(counts[usable].sum())
    if not on_y.any() or total <= 0:
        return "unknown", None
    share = float(counts[on_y].sum()) / total
    return ("male" if share > MALE_CHRY_SHARE else "female"), share


def _log_trapezoid(x: np.ndarray, log_y: np.ndarray) -> float:
    """log of the integral of exp(log_y) over x (trapezoid rule)."""
    if x.size < 2:
        return float(log_y.max()) if log_y.size else float("-inf")
    peak = float(log_y.max())
    y = np.exp(log_y - peak)
    return peak + math.log(max(float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x))), 1e-300))


DISPERSION_WINDOW = 10  # bins


def residual_dispersion(residual: np.ndarray, breaks: np.ndarray, window: int = DISPERSION_WINDOW) -> float:
    """How much more the residuals' sums over `window` neighbouring bins (within a chromosome)
    spread than independent bins would let them (robust SDs, squared; never below 1)."""
    starts = np.flatnonzero(breaks)
    window_sums = []
    for first, last in zip(starts, np.append(starts[1:], residual.size)):
        for begin in range(first, last - window + 1, window):
            window_sums.append(float(residual[begin : begin + window].sum()))
    if len(window_sums) < 20:
        return 1.0
    sums = np.array(window_sums)
    bins = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    spread = 1.4826 * np.median(np.abs(sums - np.median(sums))) / math.sqrt(window)
    return float(max(1.0, (spread / bins) ** 2)) if bins > 0 else 1.0


def posterior_quantiles(x: np.ndarray, log_density: np.ndarray, probabilities: tuple[float, ...]) -> list[float]:
    """Quantiles of a density known at points `x` (linear between them): never one point for two
    different probabilities, however sharp the density."""
    order = np.argsort(x)
    x, log_density = x[order], log_density[order]
    density = np.exp(log_density - log_density.max())
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    cdf /= cdf[-1]
    return [float(np.interp(p, cdf, x)) for p in probabilities]


def tail_degrees_of_freedom(
    values: np.ndarray, breaks: np.ndarray, limits: tuple[float, float] = DEGREES_OF_FREEDOM_RANGE
) -> float:
    """The Student-t degrees of freedom that best fit (maximum likelihood, scale fitted with it)
    the neighbour differences within chromosomes, divided by sqrt(2), within `limits`.
    Copy-number steps are few among the differences; outlier bins and library artefacts make the
    tails heavy and the fitted value low. Real healthy plasma (ichorCNA's HD_ULP donors) fits 5
    to several hundred, most above 15; a low value means outliers beyond what the states describe."""
    low, high = limits
    same_chromosome = ~breaks[1:]
    differences = np.diff(values)[same_chromosome] / math.sqrt(2)
    differences = differences[np.isfinite(differences)]
    if differences.size < 100 or not np.any(differences != 0):
        return low
    spread = float(np.std(differences))

    def negative_log_likelihood(parameters: np.ndarray) -> float:
        nu = low + (high - low) * float(special.expit(parameters[0]))
        scale = spread * math.exp(float(np.clip(parameters[1], -20, 20)))
        return -float(np.sum(_t_logpdf(differences, scale, nu)))

    best = optimize.minimize(
        negative_log_likelihood,
        np.array([0.0, 0.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400},
    )
    return float(low + (high - low) * special.expit(best.x[0]))


# An undetected sample's upper bound: a one-sided 95 % bound from the profile likelihood
# (chi-square 1 degree of freedom at 90 %, halved: 2.706 / 2), the tumour fraction being bounded
# below by 0, where the likelihood-ratio statistic is a 50:50 mix of 0 and chi-square 1 (Self and
# Liang, JASA 1987).
UPPER_BOUND_DROP = 1.353


def _log_prior(tumour_fraction: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    return np.array([BASELINE_LOG_PRIOR[int(b)] for b in baseline]) + TUMOR_FRACTION_PRIOR_SHAPE * np.log1p(
        -tumour_fraction
    )


def fit_profile(profile: CorrectedProfile, panel: NormalPanel | None = None, calibrate: bool = True) -> dict:
    """The tumour model on one corrected profile: tumour fraction and its interval, ploidy,
    alternative solutions and the HMM path (see the module docstring). `calibrate`: set the
    detection margin from the panel's leave-one-out null as well."""
    layout, keys = profile.layout, profile.keys
    excluded = centromere_bins(layout)
    normal = panel.on(layout) if panel is not None else None
    extra = (
        panel.on(layout, panel.excess_variance)
        if panel is not None and panel.excess_variance.size
        else np.full(layout.n_bins, np.nan)
    )
    unchanged = None
    grid_tf, grid_baseline = (
        a.ravel() for a in np.meshgrid(TUMOR_FRACTIONS, np.array(BASELINES, dtype=float), indexing="ij")
    )
    means = _state_means(grid_tf, grid_baseline)
    weights = jump_weights(grid_baseline)
    initial = initial_weights(weights, grid_baseline)
    on_x = keys == "X"
    # Two rounds: the second re-fits the panel's shared patterns and the centring on the bins the
    # first round put at the baseline copy number, so that large changes do not bend either.
    for _ in range(2 if panel is not None else 1):
        log2 = profile.log2.copy()
        log2[excluded] = np.nan
        if panel is not None and normal is not None:
            log2 = log2 - np.where(np.isfinite(normal), normal, np.nan)
            log2 = panel.remove_shared_patterns(log2, layout, unchanged)
        used = np.isfinite(log2) & np.isin(keys, AUTOSOME_KEYS)
        if used.sum() < 50:
            raise DataError(
                f"only {int(used.sum())} usable autosomal bins after the panel of normals; does the panel match the sample's bins?"
            )
        centred_on = used & unchanged if unchanged is not None and (used & unchanged).sum() > 50 else used
        centre = float(np.nanmedian(log2[centred_on]))
        log2 -= centre
        x_used = np.isfinite(log2) & on_x
        chrx_median = float(np.median(log2[x_used])) if x_used.sum() >= 3 else None
        # chrX on its own median, as the panel's donors: one copy in men, two in women, and no
        # fixed offset for either (whole-chrX changes are not fitted; arm-level ones still show).
        if chrx_median is not None:
            log2[on_x] -= chrx_median
        # The fit sees arm shifts of healthy size taken out; the profile shown keeps them.
        fitted = _without_healthy_arm_shifts(log2, used, layout, panel) if panel is not None and panel.arm_sd else log2
        natural = fitted[used] * math.log(2)
        keys_used = keys[used]
        breaks = np.concatenate([[True], keys_used[1:] != keys_used[:-1]])
        scale = max(bin_to_bin_sd(natural), 1e-4)
        # Each bin's scale: this sample's noise plus what the panel's donors show there beyond theirs.
        excess = np.nan_to_num(extra[used], nan=0.0) * math.log(2) ** 2
        scales = np.sqrt(np.maximum(scale**2 + excess, 0.25 * scale**2))
        nu = tail_degrees_of_freedom(natural, breaks)
        with stage("tumor: HMM over the grid"):
            log_likelihood = forward_log_likelihood(natural, breaks, means, scales, weights, initial, nu)
        log_posterior = log_likelihood + _log_prior(grid_tf, grid_baseline)
        best = int(np.argmax(log_posterior))
        path = viterbi(natural, breaks, means[best], scales, weights[best], initial[best], nu)
        unchanged = np.zeros(layout.n_bins, dtype=bool)
        unchanged[np.flatnonzero(used)[path == CLONAL_STATES.index(int(grid_baseline[best]))]] = True
    # Refine each baseline between the neighbours of its best grid point: the estimate and its
    # interval are then continuous, never one grid point wide.
    fine = {}
    for b in BASELINES:
        here = grid_baseline == b
        position = int(np.flatnonzero(TUMOR_FRACTIONS == grid_tf[here][int(np.argmax(log_posterior[here]))])[0])
        fine[b] = np.linspace(
            TUMOR_FRACTIONS[max(position - 1, 0)],
            TUMOR_FRACTIONS[min(position + 1, TUMOR_FRACTIONS.size - 1)],
            FINE_GRID_POINTS,
        )
    # One forward pass over the three fine grids together: it is vectorised over grid points.
    fine_tf = np.concatenate([fine[b] for b in BASELINES])
    fine_baseline = np.repeat(np.array(BASELINES, dtype=float), FINE_GRID_POINTS)
    fine_weights = jump_weights(fine_baseline)
    fine_likelihood = forward_log_likelihood(
        natural,
        breaks,
        _state_means(fine_tf, fine_baseline),
        scales,
        fine_weights,
        initial_weights(fine_weights, fine_baseline),
        nu,
    )
    points = {}
    for b in BASELINES:
        here = grid_baseline == b
        tf_b, order = np.unique(np.concatenate([grid_tf[here], fine[b]]), return_index=True)
        likelihood_b = np.concatenate([log_likelihood[here], fine_likelihood[fine_baseline == b]])[order]
        points[b] = (tf_b, likelihood_b, _log_prior(tf_b, np.full(tf_b.size, float(b))))
    # The reading chosen: the baseline with the largest posterior mass over TF > 0.
    best_baseline = max(
        BASELINES,
        key=lambda b: _log_trapezoid(points[b][0][points[b][0] > 0], (points[b][1] + points[b][2])[points[b][0] > 0]),
    )
    baseline = float(best_baseline)
    tf_points, likelihood_points, prior_points = points[best_baseline]
    top = int(np.argmax(np.where(tf_points > 0, likelihood_points + prior_points, -np.inf)))
    zero_log_posterior = float(log_posterior[grid_tf == 0].max())
    zero_gap = float(likelihood_points[top] + prior_points[top] - zero_log_posterior)
    margin = DETECTION_MARGIN
    null = panel.null_fits() if calibrate and panel is not None else []
    if null:
        # Healthy plasma must not reach the line: above the largest leave-one-out gain of the
        # panel's own donors by NULL_MARGIN.
        margin = max(DETECTION_MARGIN, max(n["gain"] for n in null) + NULL_MARGIN)
    detected = zero_gap > margin
    row = int(np.flatnonzero(grid_baseline == baseline)[0])  # transition rows of the best baseline
    if detected:
        tumour_fraction = float(tf_points[top])
        best_means = _state_means(np.array([tumour_fraction]), np.array([baseline]))[0]
        path = viterbi(natural, breaks, best_means, scales, weights[row], initial[row], nu)
        # Neighbouring bins' residuals are not independent (library waves), so the likelihood is
        # sharper than the data: it is flattened by the residuals' dispersion over 10-bin windows.
        dispersion = residual_dispersion(natural - best_means[path], breaks)
    else:
        dispersion = 1.0
    # Solutions: each baseline's posterior mass over the tumour fraction (TF > 0).
    solutions = []
    for b in BASELINES:
        tf_b, likelihood_b, prior_b = points[b]
        positive = tf_b > 0
        lp_b = likelihood_b / dispersion + prior_b
        at = int(np.argmax(np.where(positive, lp_b, -np.inf)))
        solutions.append(
            {
                "baseline_copy_number": b,
                "chosen": b == best_baseline,
                "tumor_fraction": round(float(tf_b[at]), 5),
                "log_posterior": float(likelihood_b[at] + prior_b[at]),
                "log_mass": _log_trapezoid(tf_b[positive], lp_b[positive]),
            }
        )
    total = max(solution["log_mass"] for solution in solutions)
    norm = math.log(sum(math.exp(solution["log_mass"] - total) for solution in solutions)) + total
    for solution in solutions:
        solution["probability"] = math.exp(solution.pop("log_mass") - norm)
    solutions.sort(key=lambda solution: -solution["probability"])
    close = len(solutions) > 1 and solutions[1]["probability"] * CLOSE_SOLUTION_ODDS > solutions[0]["probability"]
    if detected:
        # The interval spans every solution by its posterior weight: a genome-doubled reading
        # that the counts cannot rule out widens it.
        grid = np.unique(np.concatenate([points[b][0] for b in BASELINES]))
        grid = grid[grid > 0]
        mixture = np.logaddexp.reduce(
            [np.interp(grid, points[b][0], points[b][1] / dispersion + points[b][2]) for b in BASELINES], axis=0
        )
        low, high = posterior_quantiles(grid, mixture, (0.025, 0.975))
    else:
        tumour_fraction, low = 0.0, 0.0
        # The upper bound of healthy-looking plasma: the largest tumour fraction whose best
        # reading stays within UPPER_BOUND_DROP of the best, interpolated between grid points.
        # Not a posterior quantile: a tumour without any copy-number change fits every tumour
        # fraction equally, and its mass would decide such a quantile.
        profile_by_tf = np.array([log_posterior[grid_tf == tf].max() for tf in TUMOR_FRACTIONS])
        line = profile_by_tf.max() - UPPER_BOUND_DROP
        last = int(np.flatnonzero(profile_by_tf >= line).max())
        high = float(TUMOR_FRACTIONS[last])
        if last + 1 < TUMOR_FRACTIONS.size:
            step = (profile_by_tf[last] - line) / (profile_by_tf[last] - profile_by_tf[last + 1])
            high += float(step * (TUMOR_FRACTIONS[last + 1] - TUMOR_FRACTIONS[last]))
    described = [state_copy_number(k, baseline) for k in range(means.shape[1])]
    # Ploidy: the tumour's mean copy number along the path (subclonal states count as their mixture).
    effective = np.array(
        [(1 - share) * baseline + share * copy if subclonal else copy for copy, subclonal, share in described]
    )
    ploidy = float(np.mean(effective[path])) if detected else 2.0
    subclonal_shares = [described[k][2] for k in path if described[k][1]]
    return {
        "tumor_fraction": tumour_fraction,
        "tumor_fraction_low": low,
        "tumor_fraction_high": high,
        "tumor_detected": bool(detected),
        "ploidy": ploidy,
        "baseline_copy_number": baseline if detected else 2.0,
        "subclone_fraction": float(np.median(subclonal_shares)) if detected and subclonal_shares else None,
        "log_posterior_gain_over_zero": zero_gap,
        "detection_margin": margin,
        "residual_dispersion": dispersion,
        "solutions": solutions if detected else [],
        "solutions_close": bool(close) if detected else False,
        "chrX_median_log2": chrx_median,
        "noise_scale": scale,
        "degrees_of_freedom": nu,
        "bins_used": int(used.sum()),
        "bins_masked_centromere": int((excluded & np.isin(keys, AUTOSOME_KEYS)).sum()),
        "_log2": log2,
        "_used": used,
        "_path": path,
        "_described": described,
        "_baseline": baseline,
    }


# Arm shifts of healthy size are taken out before the fit: a shift m on an arm whose healthy
# arms vary by SD s (beyond counting noise, plus the sample's own counting noise over the arm)
# loses m * exp(-(m / (ARM_LIMIT s))^2 / 2).
ARM_LIMIT = 3.0


def _without_healthy_arm_shifts(log2: np.ndarray, used: np.ndarray, layout: Layout, panel: NormalPanel) -> np.ndarray:
    """Each arm's mean shift, as far as it is of the size healthy plasma's arms shift by (with
    this sample's counting noise), taken out: real healthy profiles move whole GC-rich arms (chr19, 20, 22) by 2-3 times their typical
    spread, which a one-arm tumour at 5-10 % would otherwise explain. Shifts far beyond
    healthy arms (tumour changes) keep almost all of their size."""
    log2 = log2.copy()
    noise = bin_to_bin_sd(log2[used]) ** 2
    for name, mask in arms(layout):
        here = mask & used
        if here.sum() < 3 or name not in panel.arm_sd:
            continue
        # Healthy size for this sample: the panel's arm spread plus its own counting noise over the arm.
        sd = math.sqrt(panel.arm_sd[name] ** 2 + noise / here.sum())
        shift = float(np.mean(log2[here]))
        log2[here] -= shift * math.exp(-0.5 * (shift / (ARM_LIMIT * sd)) ** 2)
    return log2


# Log-posterior a sample must gain beyond the largest of the panel's leave-one-out healthy gains.
NULL_MARGIN = 2.0


def analyse(
    sample: SampleCounts,
    annotation: BinAnnotation | None,
    panel: NormalPanel | None = None,
    size_selected: bool = False,
    min_mappability: float = 0.9,
) -> dict:
    """Tumour fraction, ploidy, segments, arm z-scores and CNA score of one sample."""
    counts = sample.short if size_selected else sample.counts
    if size_selected and not sample.paired:
        raise UsageError(f"{sample.sample}: size selection needs paired-end data (fragment lengths)")
    layout = sample.layout
    if annotation is not None:
        if annotation.bin_size != layout.bin_size:
            raise UsageError(
                f"the annotation has {annotation.bin_size:,} bp bins but {sample.sample} {layout.bin_size:,} bp"
            )
        from plasmacount.genome import check_compatible

        check_compatible(
            annotation.layout, [(c.name, c.length) for c in layout.contigs], sample.sample, "the bin annotation"
        )
        annotation = annotation.on_layout(layout)
    profile = correct(counts, layout, annotation, min_mappability)
    usable = np.ones(layout.n_bins, dtype=bool)
    if annotation is not None:
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(annotation.gc) & ~(np.nan_to_num(annotation.mappability, nan=1.0) < min_mappability)
            usable &= ~masked_bins(layout, annotation)
    sex, y_share = infer_sex(sample.counts.astype(float), profile.keys, usable)
    fit = fit_profile(profile, panel)
    log2, used, path = fit.pop("_log2"), fit.pop("_used"), fit.pop("_path")
    described, baseline = fit.pop("_described"), fit.pop("_baseline")
    segments = _segments(layout, profile.keys, used, log2, path, described, fit["tumor_fraction"], baseline)
    arm_z, score = _arm_scores(layout, log2, panel, fit["noise_scale"] / math.log(2))
    return {
        "schema_version": SCHEMA_VERSION,
        "plasmacount_version": __version__,
        "sample": sample.sample,
        "source": sample.source,
        **fit,
        "sex": sex,
        "chrY_read_share": y_share,
        "bin_size": layout.bin_size,
        "gc_residual": profile.gc_residual,
        "size_selected": size_selected,
        "panel_of_normals": None if panel is None else {"source": panel.source, "samples": len(panel.samples)},
        "segments": segments,
        "arms": arm_z,
        "cna_score": score,
        "arm_reference": "panel of normals" if panel is not None and panel.arm_means else "the sample's own arms",
        "profile": GenomeTrack.from_layout(layout, log2),
    }


@dataclass(frozen=True)
class TumorOptions:
    """How every sample of a batch is analysed (`analyse`): short fragments only, and the bins'
    lowest mappability."""

    size_select: bool = False
    min_mappability: float = 0.9


def make_panel(
    paths: Sequence[str | os.PathLike], annotation: BinAnnotation | None, output: str | os.PathLike
) -> NormalPanel:
    """A panel of normals from healthy plasma's counts files, written to `output`."""
    from plasmacount.counts import load_batch

    panel = build_panel([sample for sample, _ in load_batch(paths)], annotation)
    panel.save(output)
    return panel


def run_batch(
    paths: Sequence[str | os.PathLike],
    annotation: BinAnnotation | None,
    panel: NormalPanel | str | os.PathLike | None,
    output: str | os.PathLike,
    options: TumorOptions = TumorOptions(),
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Analyse every counts file against the panel (a NormalPanel, or its file: from `make_panel`
    or ichorCNA's PoN TSV, read on the first sample's bins) and write the outputs."""
    from plasmacount.counts import load_batch

    samples = [sample for sample, _ in load_batch(paths)]
    if panel is not None and not isinstance(panel, NormalPanel):
        panel = NormalPanel.load(panel, samples[0].layout)
    results = []
    for i, sample in enumerate(samples):
        results.append(analyse(sample, annotation, panel, options.size_select, options.min_mappability))
        if progress:
            progress(i + 1, len(samples))
    write_outputs(results, output)
    return results


def _segments(
    layout: Layout,
    keys: np.ndarray,
    used: np.ndarray,
    log2: np.ndarray,
    path: np.ndarray,
    described: list[tuple[float, bool, float]],
    tumour_fraction: float,
    baseline: float,
) -> list[dict]:
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
            segments.append(
                {
                    "chrom": layout.contigs[int(index[chosen[0]])].name,
                    "start": int(start[chosen[0]]),
                    "end": int(end[chosen[-1]]),
                    "bins": int(chosen.size),
                    "log2_ratio": float(np.mean(log2[chosen])),
                    "copy_number": copy if tumour_fraction > 0 else 2.0,
                    "subclonal": bool(subclonal) and tumour_fraction > 0,
                    "event": "neutral"
                    if tumour_fraction == 0 or (copy == baseline and not subclonal)
                    else "gain"
                    if copy > baseline
                    else "loss",
                }
            )
            first = t
    return segments


# A profile's QC as the report's table shows it: at 1 Mb bins fewer than 1,000 usable bins leave
# too little genome to fit; a noise scale (the emissions' fitted SD, natural-log copy ratio) above 0.1
# hides single-copy changes at low tumour fractions.
TUMOR_BINS_USED_LIMITS = Limits(warn=1000, fail=-math.inf, floor=True)
TUMOR_NOISE_SCALE_LIMITS = Limits(warn=0.1, fail=math.inf)

# The copy-number aberration score counts the arms whose |z| exceeds this (Lo's genome-wide approach).
CNA_ARM_Z = 3.0


def _arm_scores(layout: Layout, log2: np.ndarray, panel: NormalPanel | None, bin_sd: float) -> tuple[dict, int]:
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
    arm_means = panel.arm_means if panel is not None else {}
    own = np.array([m for m, _ in means.values()])
    center, spread = float(np.median(own)), float(1.4826 * np.median(np.abs(own - np.median(own)))) or 1e-6
    for name, (mean, n) in means.items():
        reference = arm_means.get(name)
        if reference and len(reference) >= 3:
            sd = math.sqrt(float(np.var(reference, ddof=1)) + bin_sd**2 / n)
            z = (mean - float(np.mean(reference))) / max(sd, 1e-6)
        else:
            z = (mean - center) / spread
        result[name] = {"mean_log2": mean, "bins": n, "z": z}
    return result, int(sum(abs(v["z"]) > CNA_ARM_Z for v in result.values()))


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
            stored["files"], track_paths = tracks.write_profile_tracks(
                output, sample, "tumor", result["profile"], "plasmacount tumor: corrected log2 ratio"
            )
            written += track_paths
        written.append(write_json(output / f"{sample_file_stem(sample)}.tumor.json", stored))
    seg = tracks.write_seg(
        output / "tumor.seg",
        [
            (result["sample"], s["chrom"], s["start"], s["end"], s["bins"], s["log2_ratio"])
            for result in results
            for s in result["segments"]
        ],
    )
    bed = output / "tumor.bed"
    with atomic_output(bed, "w") as stream:
        stream.write("#chrom\tstart\tend\tname\tscore\tstrand\tsample\tcopy_number\tsubclonal\tlog2_ratio\n")
        for result in results:
            for s in result["segments"]:
                if s["event"] != "neutral":
                    stream.write(
                        f"{s['chrom']}\t{s['start']}\t{s['end']}\t{s['event']}\t0\t.\t{result['sample']}\t{s['copy_number']:g}\t"
                        f"{str(s['subclonal']).lower()}\t{s['log2_ratio']:.4f}\n"
                    )
    table = output / "tumor.tsv"
    with atomic_output(table, "w") as stream:
        stream.write(
            "sample\ttumor_fraction\ttumor_fraction_low\ttumor_fraction_high\tdetected\tploidy\tcna_score\tsegments_altered\t"
            "sex\tsolutions_close\n"
        )
        for r in results:
            altered = sum(s["event"] != "neutral" for s in r["segments"])
            stream.write(
                f"{r['sample']}\t{r['tumor_fraction']:.4f}\t{r['tumor_fraction_low']:.4f}\t{r['tumor_fraction_high']:.4f}\t"
                f"{str(r['tumor_detected']).lower()}\t{r['ploidy']:.2f}\t{r['cna_score']}\t{altered}\t{r['sex']}\t"
                f"{str(r['solutions_close']).lower()}\n"
            )
    return written + [seg, bed, table]
