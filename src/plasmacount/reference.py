"""The panel of normals: what euploid pregnancies look like in this lab, bin by bin.

A sample's counts carry systematic structure that counting statistics do not explain: GC bias
(removed per sample, `gc`), bins that always collect more or fewer reads (removed by dividing
by the panel's median profile), and patterns shared by groups of samples (library batches,
flow cells, and the placental coverage pattern that scales with fetal fraction), removed by a
principal-component correction learnt from the panel. What is left is close to counting noise.

The reference also holds everything the calls need from the panel: per-chromosome null
distributions measured on held-out panel samples (each sample normalised by a reference built
without it, in 10 folds), per-bin residual profiles for segment nulls, the fetal-sex model
learnt from chrY, the fetal-fraction models with their cross-validated skill, and a QC
verdict. It records bin size, build, contigs, samples and the plasmacount version,
and refuses samples counted another way.

File format ("plasmacount-reference", version 1): an archive (see `files`) with
`metadata.json` (layout, samples, models, QC) and arrays (mask, GC, median profile, PCA).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

import numpy as np

from plasmacount import __version__
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.files import read_archive, write_archive
from plasmacount.gc import GcCurve, fit_gc_curve
from plasmacount.genome import AUTOSOME_KEYS, Layout, check_compatible, name_key
from plasmacount.progress import stage
from plasmacount.quality import FAIL, WARN, Findings, Limits
from plasmacount.segment import WINDOW_SIZES, window_bins, window_inflation

if TYPE_CHECKING:
    from plasmacount.aneuploidy import ChromosomeNull
    from plasmacount.fetal_fraction import FetalFractionModels
    from plasmacount.sex_chromosomes import SexModel

FORMAT = "plasmacount-reference"
FORMAT_VERSION = "1.0"
MINIMUM_PANEL = 20
TESTED_KEYS = ("13", "18", "21")


def ignore_empty_bins(function):
    """Bins without data (gaps, unused chrY) give NaN medians by design; NumPy's warnings about
    them say nothing, so the functions that take such medians silence them."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return function(*args, **kwargs)

    return wrapper


@dataclass
class Profile:
    """One sample normalised against a reference (or a fold of it)."""

    raw: np.ndarray
    gc_curve: GcCurve
    coverage: np.ndarray  # GC-corrected coverage, mean 1 over used autosomal bins
    log_ratio: np.ndarray  # natural-log ratio to the panel after PCA correction (NaN outside the mask)
    expected: np.ndarray  # relative expected count per bin (GC x panel median x PCA)
    scores: np.ndarray  # the sample's principal-component scores
    chromosome_ratio: dict[str, float]
    chromosome_counts: dict[str, float]
    autosomal: np.ndarray  # used autosomal bins


@dataclass
class NormalisationModel:
    """Median profile and principal components learnt from a set of panel samples."""

    mask: np.ndarray
    keys: np.ndarray
    gc: np.ndarray
    median: np.ndarray
    center: np.ndarray  # mean log ratio of the autosomal blocks
    components: np.ndarray  # k x autosomal blocks (orthonormal rows)
    loadings: np.ndarray  # k x all blocks (regression of each block's log ratio on the scores)
    blocks: np.ndarray  # per bin, its block (about 1/3000 of the genome), -1 when unused
    covariates: np.ndarray | None = None  # bins x c: bin properties for the within-sample correction

    @property
    def n_blocks(self) -> int:
        return int(self.blocks.max()) + 1 if self.blocks.size and self.blocks.max() >= 0 else 0

    def block_logs(self, coverage: np.ndarray) -> np.ndarray:
        """Log ratio of coverage to the median profile in each block (NaN for empty blocks)."""
        return _block_logs(coverage[None, :], self.median, self.blocks, self.n_blocks)[0]

    @property
    def autosomal_blocks(self) -> np.ndarray:
        return _autosomal_blocks(self.blocks, self.keys, self.n_blocks)

    @property
    def autosomal(self) -> np.ndarray:
        return self.mask & np.isin(self.keys, AUTOSOME_KEYS)

    @functools.cached_property
    def block_keys(self) -> np.ndarray:
        """Per block, the name key of its chromosome."""
        result = np.full(self.n_blocks, "", dtype=object)
        used = self.blocks >= 0
        result[self.blocks[used]] = self.keys[used]
        return result

    @ignore_empty_bins
    def normalise(self, counts: np.ndarray, excluded: frozenset[str] = frozenset()) -> Profile:
        """A sample normalised against the model. Chromosomes in `excluded` (found aneuploid) do
        not inform the sample's principal-component scores: projected with them, a trisomy would
        leak into the correction of every other chromosome."""
        raw = counts.astype(float)
        autosomal = self.autosomal
        curve, coverage = gc_corrected_coverage(raw, self.median, self.gc, autosomal)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = coverage / self.median
            log = np.where(self.mask & (ratio > 0), np.log(np.maximum(ratio, 1e-9)), np.nan)
        scores = np.zeros(self.components.shape[0])
        reconstruction = np.zeros_like(log)
        if self.components.size:
            block_log = self.block_logs(coverage)
            centred = np.nan_to_num(block_log[self.autosomal_blocks]) - self.center
            if excluded:
                keep = ~np.isin(self.block_keys[self.autosomal_blocks], list(excluded))
                scores, *_ = np.linalg.lstsq(self.components[:, keep].T, centred[keep], rcond=None)
            else:
                scores = self.components @ centred
            by_block = scores @ self.loadings
            reconstruction = np.where(self.blocks >= 0, by_block[np.maximum(self.blocks, 0)], 0.0)
        within = self.within_sample(log - reconstruction, autosomal, excluded)
        reconstruction = reconstruction + within
        corrected = log - reconstruction
        corrected -= np.nanmedian(corrected[autosomal])
        expected = curve.factors * self.median * np.exp(np.nan_to_num(reconstruction))
        ratios, sums = chromosome_ratios(raw, expected, self.mask, self.keys)
        return Profile(raw, curve, coverage, corrected, expected, scores, ratios, sums, autosomal)

    def within_sample(self, log: np.ndarray, autosomal: np.ndarray, excluded: frozenset[str]) -> np.ndarray:
        """The part of a sample's own log ratios (after the panel's PCA) that its bins' properties
        predict, fitted on this sample alone (over autosomes not found aneuploid, twice, the second
        time without bins more than 4 MADs off, such as CNVs).

        The panel's components remove the library effects the panel has seen; a new library
        chemistry or size selection moves bins by what they are (mappability, GC x mappability,
        how well they are covered), not by where they lie, and that is removed here without any
        panel sample showing it (WisecondorX's within-sample reference bins serve the same end).
        A trisomy moves one chromosome's bins whatever their properties, so it is left alone."""
        if self.covariates is None or self.covariates.shape[1] == 0:
            return np.zeros_like(log)
        use = autosomal & np.isfinite(log)
        if excluded:
            use &= ~np.isin(self.keys, list(excluded))
        if use.sum() < 10 * (self.covariates.shape[1] + 1):
            return np.zeros_like(log)
        design = np.column_stack([np.ones(int(use.sum())), self.covariates[use]])
        target = log[use]
        keep = np.ones(target.size, dtype=bool)
        for _ in range(2):
            coefficients, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
            residual = target - design @ coefficients
            spread = 1.4826 * np.median(np.abs(residual - np.median(residual)))
            keep = np.abs(residual - np.median(residual)) <= 4 * spread if spread > 0 else keep
        return self.covariates @ coefficients[1:]


def bin_covariates(
    annotation: BinAnnotation | None, gc: np.ndarray, median: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Per bin, the standardised properties a new library bias may follow (see
    NormalisationModel.within_sample): mappability, GC x mappability, mappability squared (when the
    annotation has mappability) and the log of the panel's median coverage. 0 outside `mask`."""

    def standard(values: np.ndarray) -> np.ndarray:
        values = np.where(mask & np.isfinite(values), values, np.nan)
        centre, scale = np.nanmean(values), np.nanstd(values)
        return np.nan_to_num((values - centre) / (scale if scale > 0 else 1.0))

    columns = []
    mappability = annotation.mappability if annotation is not None else None
    if (
        mappability is not None
        and np.isfinite(mappability[mask]).sum() > 0.5 * mask.sum()
        and np.nanstd(mappability[mask]) > 0
    ):
        m, g = standard(mappability), standard(gc)
        columns += [m, standard(g * m), standard(m**2)]
    with np.errstate(divide="ignore", invalid="ignore"):
        columns.append(standard(np.log(median)))
    return np.column_stack(columns) if columns else np.zeros((gc.size, 0))


def gc_corrected_coverage(
    raw: np.ndarray, median: np.ndarray, gc: np.ndarray, autosomal: np.ndarray
) -> tuple[GcCurve, np.ndarray]:
    """GC curve and GC-corrected coverage of a sample (mean 1 over used autosomal bins).

    The curve is fitted on counts over the panel's median profile: the bins' own stickiness is
    then gone from the scatter around the curve, which makes it much more precise. Panel and
    tested samples go through this same function, so the PCA sees what it is later applied to.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(np.isfinite(median) & (median > 0), raw / median, np.nan)
    curve = fit_gc_curve(np.nan_to_num(relative), gc, autosomal & np.isfinite(relative), n_strata=60)
    return curve, _coverage(raw, curve, autosomal)


def _coverage(raw: np.ndarray, curve: GcCurve, autosomal: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = raw / curve.factors
    mean = np.nanmean(corrected[autosomal]) if autosomal.any() else 1.0
    return corrected / (mean if mean > 0 else 1.0)


def chromosome_ratios(
    raw: np.ndarray, expected: np.ndarray, mask: np.ndarray, keys: np.ndarray, excluded: frozenset[str] = frozenset()
) -> tuple[dict[str, float], dict[str, float]]:
    """Observed/expected of each chromosome against observed/expected of the other autosomes.

    1 for a normal chromosome; 1 + FF/2 for a fetal trisomy (the chromosome itself is left out of
    its denominator, so its own excess does not dilute the ratio). Chromosomes in `excluded`
    (found aberrant) are left out of every denominator, so a trisomy at a high fetal fraction does
    not pull every other chromosome down with it.
    """
    use = mask & np.isfinite(expected) & (expected > 0)
    observed_by, expected_by = {}, {}
    for key in AUTOSOME_KEYS + ["X", "Y"]:
        here = use & (keys == key)
        observed_by[key] = raw[here].sum()
        expected_by[key] = expected[here].sum()
    denominator = [k for k in AUTOSOME_KEYS if k not in excluded]
    total_observed = sum(observed_by[k] for k in denominator)
    total_expected = sum(expected_by[k] for k in denominator)
    ratios = {}
    for key in AUTOSOME_KEYS + ["X"]:
        rest_observed = total_observed - (observed_by[key] if key in denominator else 0)
        rest_expected = total_expected - (expected_by[key] if key in denominator else 0)
        if expected_by[key] > 0 and rest_observed > 0 and rest_expected > 0:
            ratios[key] = float((observed_by[key] / expected_by[key]) / (rest_observed / rest_expected))
        else:
            ratios[key] = float("nan")
    return ratios, observed_by


def _blocks(keys: np.ndarray, use: np.ndarray, n_target: int = 3000) -> np.ndarray:
    """Group consecutive bins of a contig into blocks of ~1/n_target of the genome.

    The principal components are learnt on blocks, not bins: shared patterns (batches, flow
    cells) are broad, and with per-bin noise 28,000 dimensions drown them for 200 samples,
    while 3,000 blocks keep them sharp.
    """
    size = max(1, int(round(keys.size / n_target)))
    blocks = np.full(keys.size, -1, dtype=np.int64)
    next_id = 0
    start = 0
    while start < keys.size:
        end = start
        while end < keys.size and keys[end] == keys[start]:
            end += 1
        local = np.arange(end - start) // size
        blocks[start:end] = next_id + local
        next_id += int(local.max()) + 1 if end > start else 0
        start = end
    blocks[~use] = -1
    # Renumber so that only blocks with used bins remain, in order.
    present = np.unique(blocks[blocks >= 0])
    renumber = np.full(next_id, -1, dtype=np.int64)
    renumber[present] = np.arange(present.size)
    return np.where(blocks >= 0, renumber[np.maximum(blocks, 0)], -1)


def _block_logs(coverages: np.ndarray, median: np.ndarray, blocks: np.ndarray, n_blocks: int) -> np.ndarray:
    used = blocks >= 0
    expected = np.bincount(blocks[used], weights=median[used], minlength=n_blocks)
    result = np.empty((coverages.shape[0], n_blocks))
    for i, row in enumerate(coverages):
        observed = np.bincount(blocks[used], weights=np.nan_to_num(row[used]), minlength=n_blocks)
        with np.errstate(divide="ignore", invalid="ignore"):
            result[i] = np.log(np.maximum(observed, 1e-9) / expected)
    return result


def _autosomal_blocks(blocks: np.ndarray, keys: np.ndarray, n_blocks: int) -> np.ndarray:
    autosomal = np.zeros(n_blocks, dtype=bool)
    used = blocks >= 0
    autosomal[blocks[used & np.isin(keys, AUTOSOME_KEYS)]] = True
    return autosomal


@ignore_empty_bins
def fit_normalisation(
    coverages: np.ndarray,
    mask: np.ndarray,
    keys: np.ndarray,
    gc: np.ndarray,
    female: np.ndarray,
    n_components: int,
    annotation: BinAnnotation | None = None,
) -> NormalisationModel:
    """Median profile (females only for chrX), PCA of the block log ratios of the autosomes, and
    the bin properties for the within-sample correction."""
    median = np.nanmedian(coverages, axis=0)
    on_x = keys == "X"
    if female.sum() >= 3:
        median[on_x] = np.nanmedian(coverages[female][:, on_x], axis=0)
    median = np.where(np.isfinite(median) & (median > 0), median, np.nan)
    use = mask & np.isfinite(median)
    blocks = _blocks(keys, use & (keys != "Y"))
    n_blocks = int(blocks.max()) + 1 if (blocks >= 0).any() else 0
    logs = _block_logs(coverages, median, blocks, n_blocks)
    autosomal = _autosomal_blocks(blocks, keys, n_blocks)
    x_blocks = np.zeros(n_blocks, dtype=bool)
    x_blocks[blocks[(blocks >= 0) & on_x]] = True
    matrix = logs[:, autosomal]
    center = matrix.mean(axis=0)
    k = min(n_components, max(0, matrix.shape[0] - 2))
    if k > 0:
        _, _, vt = np.linalg.svd(matrix - center, full_matrices=False)
        components = vt[:k]
        scores = (matrix - center) @ components.T
        # Every block (chrX from female samples) gets loadings by least squares on the scores.
        loadings = np.zeros((k, n_blocks))
        rows = np.ones(coverages.shape[0], dtype=bool)
        for selection, chosen in ((rows, ~x_blocks), (female if female.sum() > k + 2 else rows, x_blocks)):
            if chosen.any():
                target = np.nan_to_num(logs[selection][:, chosen] - logs[selection][:, chosen].mean(axis=0))
                solution, *_ = np.linalg.lstsq(scores[selection], target, rcond=None)
                loadings[:, chosen] = solution
    else:
        components = np.zeros((0, int(autosomal.sum())))
        loadings = np.zeros((0, n_blocks))
    return NormalisationModel(
        use, keys, gc, median, center, components, loadings, blocks, bin_covariates(annotation, gc, median, use)
    )


class PanelDistance(TypedDict):
    """How far the panel's own samples lie from its centre (`panel_distance`): median and 99th centile."""

    median: float
    q99: float


class EstimatorSkill(TypedDict):
    """A trained fetal-fraction estimator's cross-validated skill on the panel, and whether it is used."""

    cv_r: float
    cv_rmse: float
    n_training: int
    used: bool


class ReferenceQc(TypedDict):
    """The reference's own QC: status (quality.PASS / WARN / FAIL), reasons, and what they rest on."""

    status: str
    reasons: list[str]
    outlier_samples: list[str]
    female_samples: int
    male_samples: int
    fetal_fraction_skill: dict[str, EstimatorSkill | None]
    effective_chrY_bins: float | None
    median_reads: int


class ReferenceMetadata(TypedDict):
    """What a reference keeps beside its arrays (`metadata.json`): the models learnt from the panel
    and its QC. Keys that references of earlier versions lack are optional."""

    sex_model: SexModel
    panel_sexes: list[str]
    # Per chromosome key its held-out null, and "dispersion_median": the panel's median noise dispersion.
    chromosomes: dict[str, ChromosomeNull | float]
    fetal_fraction: FetalFractionModels
    reads: list[int]
    paired: bool
    n_components: int
    folds: int
    bins_used: int
    window_inflation: NotRequired[dict[str, float]]
    score_sd: NotRequired[list[float]]
    panel_distance: NotRequired[PanelDistance]
    qc: NotRequired[ReferenceQc]


@dataclass
class Reference:
    """A panel of normals and the models learnt from it (see the module docstring)."""

    layout: Layout
    model: NormalisationModel
    samples: list[str]
    metadata: ReferenceMetadata
    panel: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def bin_size(self) -> int:
        return self.layout.bin_size

    @property
    def qc_status(self) -> str | None:
        """The reference's own QC status (quality.PASS/WARN/FAIL; None if never checked); references
        written before the QC vocabulary was shared stored it in capitals."""
        qc = self.metadata.get("qc")
        return None if qc is None or qc.get("status") is None else str(qc["status"]).lower()

    @property
    def qc_reasons(self) -> list[str]:
        """Why the reference's QC status is not a pass (empty if never checked)."""
        qc = self.metadata.get("qc")
        return list(qc["reasons"]) if qc is not None else []

    @property
    def sex_model(self) -> SexModel:
        return self.metadata["sex_model"]

    @property
    def panel_sexes(self) -> list[str]:
        """Each panel sample's fetal sex ('female' or 'male'), in panel order."""
        return self.metadata["panel_sexes"]

    @property
    def fetal_fraction_models(self) -> FetalFractionModels:
        return self.metadata["fetal_fraction"]

    def chromosome_null(self, key: str) -> ChromosomeNull:
        """The panel's held-out null of one chromosome's ratio (key as in genome.name_key)."""
        return cast("ChromosomeNull", self.metadata["chromosomes"][key])

    @property
    def dispersion_median(self) -> float:
        """The panel's median noise dispersion: stands in for a sample whose own is not finite."""
        return cast(float, self.metadata["chromosomes"]["dispersion_median"])

    @property
    def median_reads(self) -> float:
        """The panel samples' median number of counted reads."""
        return float(np.median(self.metadata["reads"]))

    @property
    def score_sd(self) -> np.ndarray:
        """The panel's SD of each principal-component score (empty in references that lack it)."""
        return np.asarray(self.metadata.get("score_sd", []), dtype=float)

    @property
    def panel_distance_q99(self) -> float:
        """The 99th centile of the panel samples' distance from its centre (inf if not kept)."""
        distance = self.metadata.get("panel_distance")
        return distance["q99"] if distance is not None else float("inf")

    @property
    def window_inflation(self) -> dict[str, float]:
        """The panel's own median window-z inflation per window size (as a string of bp)."""
        return self.metadata.get("window_inflation", {})

    def check_sample(self, counts: SampleCounts, where: str) -> None:
        """Refuse a sample counted with another bin size, build or contig set."""
        if counts.bin_size != self.bin_size:
            raise DataError(
                f"{where}: counted in {counts.bin_size:,} bp bins but the reference uses {self.bin_size:,} bp bins; "
                "count it again with the reference's bins"
            )
        mine = {name_key(c.name): c.n_bins for c in counts.layout.contigs}
        for contig in self.layout.contigs:
            key = name_key(contig.name)
            if key not in mine:
                raise DataError(f"{where}: has no {contig.name}; count it against the reference's genome build")
            if mine[key] != contig.n_bins:
                raise DataError(
                    f"{where}: {contig.name} has {mine[key]:,} bins but the reference has {contig.n_bins:,}: "
                    "genome builds differ; count it against the reference's build"
                )

    def check_annotation(self, annotation: BinAnnotation, where: str) -> None:
        """Refuse a bin annotation other than the one this reference was made with (other bin size,
        build, or GC content). The reference keeps its bins' GC and mappability, so a test needs no
        annotation; one given is only checked, to catch a reference made for other bins."""
        if annotation.bin_size != self.bin_size:
            raise UsageError(
                f"{where} has {annotation.bin_size:,} bp bins but the reference {self.bin_size:,} bp; "
                "give the annotation the reference was made with, or none"
            )
        check_compatible(annotation.layout, [(c.name, c.length) for c in self.layout.contigs], "the reference", where)
        gc = annotation.on_layout(self.layout).gc
        both = np.isfinite(gc) & np.isfinite(self.model.gc)
        if both.any() and np.max(np.abs(gc[both] - self.model.gc[both])) > 1e-6:
            raise UsageError(
                f"{where} is not the annotation the reference was made with (its GC per bin differs); "
                "make the reference again with it, or leave --bins out"
            )

    def align(self, counts: SampleCounts) -> np.ndarray:
        """The sample's counts in the reference's bin order (names matched by key)."""
        if counts.layout == self.layout:
            return counts.counts
        return counts.on_layout(self.layout).counts

    def save(self, path: str | os.PathLike) -> None:
        metadata = dict(self.metadata)
        metadata.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "plasmacount_version": __version__,
                "layout": self.layout.to_json(),
                "build": self.layout.build,
                "samples": self.samples,
            }
        )
        model = self.model
        arrays = {
            "mask": model.mask.astype(np.uint8),
            "gc": model.gc,
            "median": model.median,
            "center": model.center,
            "components": model.components,
            "loadings": model.loadings,
            "blocks": model.blocks,
        }
        if model.covariates is not None:
            arrays["covariates"] = model.covariates
        arrays.update({f"panel_{name}": value for name, value in self.panel.items()})
        write_archive(path, metadata, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Reference:
        metadata, arrays = read_archive(path, FORMAT, 1)
        layout = Layout.from_json(metadata["layout"])
        keys = layout.bin_keys()
        try:
            model = NormalisationModel(
                arrays["mask"].astype(bool),
                keys,
                arrays["gc"],
                arrays["median"],
                arrays["center"],
                arrays["components"],
                arrays["loadings"],
                arrays["blocks"],
                arrays.get("covariates"),
            )
        except KeyError as error:
            raise DataError(f"{path}: reference lacks {error}; rebuild it with `plasmacount reference`") from None
        panel = {name[len("panel_") :]: value for name, value in arrays.items() if name.startswith("panel_")}
        return cls(layout, model, list(metadata["samples"]), cast(ReferenceMetadata, metadata), panel)


def default_mask(annotation: BinAnnotation | None, layout: Layout, mean_counts: np.ndarray) -> np.ndarray:
    """Bins worth using: known GC, mostly sequenced, mappable, outside the blacklist, with reads."""
    mask = np.ones(layout.n_bins, dtype=bool)
    if annotation is not None:
        mask &= np.isfinite(annotation.gc)
        mask &= np.nan_to_num(annotation.n_fraction, nan=0.0) < 0.5
        mappability = annotation.mappability
        mask &= ~(np.isfinite(mappability) & (mappability < 0.5))
        mask &= np.nan_to_num(annotation.blacklist, nan=0.0) < 0.5
    keys = layout.bin_keys()
    autosomal = np.isin(keys, AUTOSOME_KEYS)
    typical = np.median(mean_counts[mask & autosomal]) if (mask & autosomal).any() else 0.0
    # chrY is judged separately (most pregnancies have almost no chrY reads).
    mask &= (mean_counts > 0.2 * typical) | (keys == "Y")
    return mask


@ignore_empty_bins
def build_reference(
    samples: Sequence[SampleCounts],
    annotation: BinAnnotation | None,
    n_components: int = 8,
    folds: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> Reference:
    """Build the panel of normals from euploid pregnancies' counts (both fetal sexes)."""
    from plasmacount import aneuploidy, fetal_fraction, sex_chromosomes

    if len(samples) < MINIMUM_PANEL:
        raise UsageError(
            f"a reference needs at least {MINIMUM_PANEL} euploid samples (100+ advised); got {len(samples)}"
        )
    names = [s.sample for s in samples]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"sample names must be unique in a reference; repeated: {', '.join(duplicates[:5])}")
    layout = samples[0].layout
    for sample in samples[1:]:
        if sample.bin_size != layout.bin_size:
            raise DataError(
                f"{sample.sample}: counted in {sample.bin_size:,} bp bins, but {samples[0].sample} in {layout.bin_size:,} bp; "
                "count every panel sample with the same bins"
            )
        if [name_key(c.name) for c in sample.layout.contigs] != [
            name_key(c.name) for c in layout.contigs
        ] or sample.layout.n_bins != layout.n_bins:
            raise DataError(
                f"{sample.sample}: its contigs or bins differ from {samples[0].sample}'s (another genome build?); "
                "count every panel sample against one build"
            )
    if annotation is not None:
        if annotation.bin_size != layout.bin_size:
            raise UsageError(
                f"the annotation has {annotation.bin_size:,} bp bins but the samples {layout.bin_size:,} bp"
            )
        from plasmacount.genome import check_compatible

        check_compatible(
            annotation.layout, [(c.name, c.length) for c in layout.contigs], samples[0].sample, "the bin annotation"
        )
        annotation = annotation.on_layout(layout)
    keys = layout.bin_keys()
    counts = np.array([s.counts for s in samples], dtype=float)
    gc = annotation.gc if annotation is not None else np.full(layout.n_bins, np.nan)
    if not np.isfinite(gc).any():
        raise UsageError("the reference needs bin GC content: pass --bins ANNOTATION (from `plasmacount bins`)")
    reads = counts.sum(axis=1)
    mask = default_mask(annotation, layout, (counts / np.maximum(reads[:, None], 1)).mean(axis=0) * reads.mean())
    autosomal = mask & np.isin(keys, AUTOSOME_KEYS)
    with stage("reference: GC correction"):
        curves = [fit_gc_curve(row, gc, autosomal) for row in counts]
        coverages = np.array([_coverage(row, curve, autosomal) for row, curve in zip(counts, curves)])
    # Unstable bins: far more spread across the panel than their neighbours (after GC correction).
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = coverages / np.nanmedian(coverages, axis=0)
        spread = np.nanstd(relative, axis=0) * np.sqrt(np.maximum(np.nanmean(counts, axis=0), 1))
    typical = np.nanmedian(spread[autosomal])
    mad = np.nanmedian(np.abs(spread[autosomal] - typical))
    mask &= ~(np.isfinite(spread) & (spread > typical + 8 * 1.4826 * mad) & (keys != "Y"))
    # Second pass: GC curves fitted against the first-pass median profile, as for tested samples.
    first_median = np.nanmedian(coverages, axis=0)
    with stage("reference: GC correction"):
        second = [gc_corrected_coverage(row, first_median, gc, autosomal) for row in counts]
    curves = [curve for curve, _ in second]
    coverages = np.array([coverage for _, coverage in second])
    if progress:
        progress(1, folds + 2)

    # Fetal sex first: the chrX median must come from female pregnancies only.
    sex_model = sex_chromosomes.fit_sex_model(coverages, keys, mask, reads)
    female = np.array([s == "female" for s in sex_model["panel_sexes"]])
    if female.sum() < 5 or (~female).sum() < 5:
        raise DataError(
            f"the panel has {int(female.sum())} female and {int((~female).sum())} male pregnancies; "
            "a reference needs at least 5 of each fetal sex (for chrX/chrY and fetal-fraction models)"
        )

    # Held-out normalisation of every panel sample.
    n = len(samples)
    folds = max(2, min(folds, n))
    fold_of = np.arange(n) % folds
    held_out: list[Profile | None] = [None] * n
    for fold in range(folds):
        train = fold_of != fold
        with stage("reference: held-out normalisation"):
            model = fit_normalisation(
                coverages[train], mask, keys, gc, female[train], min(n_components, int(train.sum()) // 4), annotation
            )
            for i in np.flatnonzero(~train):
                held_out[i] = model.normalise(counts[i])
        if progress:
            progress(fold + 2, folds + 2)
    final = fit_normalisation(coverages, mask, keys, gc, female, min(n_components, n // 4), annotation)
    profiles = [p for p in held_out if p is not None]

    with stage("reference: chromosome nulls and fetal-fraction models"):
        chromosome_stats = aneuploidy.fit_chromosome_nulls(profiles, female)
    residuals = np.array([p.log_ratio for p in profiles], dtype=np.float32)
    female_residuals = residuals[female]
    bin_sd = np.nanstd(residuals, axis=0)
    bin_sd[keys == "X"] = np.nanstd(female_residuals[:, keys == "X"], axis=0)
    # The panel's own window z spread (residual structure the PCA leaves): samples are judged against it.
    panel_reads = float(np.median(reads))
    window_levels = {}
    for size in WINDOW_SIZES:
        levels = [
            window_inflation(
                residuals[i].astype(float) / np.log(2),
                (bin_sd / np.log(2)) ** 2 * panel_reads / max(reads[i], 1.0),
                keys,
                np.zeros(keys.size, dtype=bool),
                window_bins(size, layout.bin_size),
            )[0]
            for i in range(len(profiles))
        ]
        window_levels[str(size)] = float(np.median(levels))
    x_ratios = np.array([p.chromosome_ratio["X"] for p in profiles])
    scores = np.array([final.normalise(row).scores for row in counts])
    panel_block_logs = _block_logs(coverages, final.median, final.blocks, final.n_blocks)[:, final.autosomal_blocks]
    ff_models = fetal_fraction.fit_models(
        samples,
        scores,
        sex_model,
        x_ratios,
        cast("ChromosomeNull", chromosome_stats["X"])["mean"],
        block_logs=np.nan_to_num(panel_block_logs),
    )
    # How far panel samples lie from the panel centre in the normalisation space (per-component SD
    # units): a tested sample far beyond them is one the panel does not describe.
    score_sd = scores.std(axis=0) if scores.size else np.zeros(0)
    distances = panel_distance(scores, score_sd)
    if progress:
        progress(folds + 2, folds + 2)

    metadata: ReferenceMetadata = {
        "sex_model": sex_chromosomes.stored_sex_model(sex_model),
        "panel_sexes": sex_model["panel_sexes"],
        "chromosomes": chromosome_stats,
        "fetal_fraction": ff_models,
        "reads": [int(r) for r in reads],
        "paired": bool(all(s.paired for s in samples)),
        "n_components": int(final.components.shape[0]),
        "folds": int(folds),
        "bins_used": int(mask.sum()),
        "window_inflation": window_levels,
        "score_sd": [float(v) for v in score_sd],
        "panel_distance": {
            "median": float(np.median(distances)) if distances.size else 0.0,
            "q99": float(np.quantile(distances, 0.99)) if distances.size else 0.0,
        },
    }
    reference = Reference(layout, final, names, metadata, {"residuals": residuals, "bin_sd": bin_sd.astype(np.float64)})
    reference.metadata["qc"] = reference_qc(reference, profiles, female, reads)
    return reference


def panel_distance(scores: np.ndarray, score_sd: np.ndarray) -> np.ndarray:
    """Root mean square of principal-component scores in units of the panel's SD per component."""
    scores = np.atleast_2d(scores)
    if scores.shape[1] == 0:
        return np.zeros(scores.shape[0])
    return np.sqrt(np.mean((scores / np.where(score_sd > 0, score_sd, 1.0)) ** 2, axis=1))


# Reference QC limits: a panel smaller than PANEL_SIZE_WARN is warned about; a tested chromosome's
# CV against its counting limit (see quality.Limits); a panel sample whose chromosome z is beyond
# PANEL_OUTLIER_Z is an outlier, and outliers in more than PANEL_OUTLIER_SHARE of the panel (at
# least 3) fail it.
PANEL_SIZE_WARN = 50
PANEL_CV_EXCESS_LIMITS = Limits(warn=1.4, fail=2.0)
PANEL_OUTLIER_Z = 4.0
PANEL_OUTLIER_SHARE = 0.02


def reference_qc(reference: Reference, profiles: list[Profile], female: np.ndarray, reads: np.ndarray) -> ReferenceQc:
    """A QC status (quality.PASS / WARN / FAIL) with reasons, from held-out panel statistics."""
    findings = Findings()
    n = len(reference.samples)
    if n < PANEL_SIZE_WARN:
        findings.add(WARN, f"only {n} samples (100+ advised)")
    for key in TESTED_KEYS:
        stats = reference.chromosome_null(key)
        excess = stats["cv"] / max(stats["poisson_cv"], 1e-12)
        findings.check(
            excess, PANEL_CV_EXCESS_LIMITS, f"chr{key} CV {100 * stats['cv']:.3f} % is {excess:.1f}x its counting limit"
        )
    outliers = []
    for i, profile in enumerate(profiles):
        for key in AUTOSOME_KEYS:
            stats = reference.chromosome_null(key)
            z = (profile.chromosome_ratio[key] - stats["mean"]) / max(stats["sd"], 1e-12)
            if abs(z) > PANEL_OUTLIER_Z:
                outliers.append(f"{reference.samples[i]} (chr{key} z {z:.1f})")
    if outliers:
        findings.add(
            FAIL if len(outliers) > max(2, PANEL_OUTLIER_SHARE * n) else WARN,
            "panel samples look aneuploid or noisy: " + ", ".join(outliers[:5]) + (" ..." if len(outliers) > 5 else ""),
        )
    from plasmacount.fetal_fraction import SKILL_MIN_R, skilled

    ff_models = reference.fetal_fraction_models
    skill: dict[str, EstimatorSkill | None] = {
        name: (
            {
                "cv_r": model["cv_r"],
                "cv_rmse": model["cv_rmse"],
                "n_training": model["n_training"],
                "used": skilled(model),
            }
            if model
            else None
        )
        for name, model in (("fragment_size", ff_models.get("size")), ("bin_profile", ff_models.get("profile")))
    }
    if not any(entry and entry["used"] for entry in skill.values()):
        shown = ", ".join(f"{name} r {entry['cv_r']:.2f}" for name, entry in skill.items() if entry) or "none trained"
        findings.add(
            WARN,
            f"no sex-independent fetal-fraction estimator reaches r >= {SKILL_MIN_R} on the panel ({shown}): "
            "female fetal fraction is not determinable and female calls are made on z alone",
        )
    used = int(reference.model.mask.sum())
    if used < 0.5 * reference.layout.n_bins:
        findings.add(WARN, f"only {used:,} of {reference.layout.n_bins:,} bins usable")
    return {
        "status": findings.status,
        "reasons": findings.reasons,
        "outlier_samples": outliers,
        "female_samples": int(female.sum()),
        "male_samples": int((~female).sum()),
        "fetal_fraction_skill": skill,
        "effective_chrY_bins": reference.sex_model.get("effective_chrY_bins"),
        "median_reads": int(np.median(reads)),
    }
