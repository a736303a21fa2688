"""Simulated plasma DNA sequencing with known answers: the truth every statistic is checked against.

A sample is drawn in three steps (see `docs/simulation.md` for the model and its defaults):
1. **Design** (`design_cohort`): who the sample is. A pregnancy (fetal fraction, fetal sex,
   trisomies, sex-chromosome aneuploidies, fetal and maternal CNVs, confined placental
   mosaicism, maternal mosaic X loss), a cancer patient (tumour fraction, ploidy, arm-level and
   focal copy-number changes, subclonal events), a healthy donor, or an EBV-screening
   participant (none / carrier / nasopharyngeal carcinoma); plus its depth and the technical
   effects of its run (GC bias curve, overdispersion, batch, duplicates).
2. **Expected counts** (`expected_counts`): per bin,
   `mu = N * stickiness * mappable * gc_bias(gc) * batch * dosage / normaliser`, where dosage
   mixes the copy numbers of every cell population by its fraction.
3. **Observation**: counts drawn gamma-Poisson (variance = dispersion x mean) with short/long
   fragments split by the bin's fetal or tumour share (`simulate_counts`), or individual reads
   with positions, lengths, flags, MAPQ and sequences (`simulate_reads`).
Every random draw comes from generators seeded by (seed, sample index), so output is the same
for the same seed whatever the order or the number of samples written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from plasmacount import __version__
from plasmacount.bins import BinAnnotation
from plasmacount.counts import DEFAULT_LONG_RANGE, DEFAULT_LONGEST_LENGTH, DEFAULT_SHORT_RANGE, SampleCounts
from plasmacount.errors import UsageError
from plasmacount.files import atomic_output, sample_file_stem, write_json
from plasmacount.genome import (
    AUTOSOME_KEYS,
    EBV_LENGTH,
    HG38_CENTROMERES,
    HG38_LENGTHS,
    HG38_MEAN_GC,
    MITOCHONDRION_LENGTH,
    SYNDROME_REGIONS,
    Layout,
    name_key,
)
from plasmacount.long_read_simulation import LongReadEffects, LongReadSample, write_long_read_bam
from plasmacount.synthetic_genome import (
    EBV_W_REPEAT_COPIES,
    EBV_W_REPEAT_START,
    EBV_W_REPEAT_UNIT,
    SyntheticGenome,
    isochore_gc,
)

COHORTS = ("nipt", "euploid", "cancer", "healthy", "ebv")
AUTOSOMES = [f"chr{key}" for key in AUTOSOME_KEYS]
RARE_TRISOMIES = ("chr7", "chr16", "chr22", "chr15", "chr2", "chr3", "chr8", "chr9", "chr14", "chr20")
CANCER_EVENTS = (
    ("1q gain", "chr1", "q", 3),
    ("8q gain", "chr8", "q", 3),
    ("3p loss", "chr3", "p", 1),
    ("16q loss", "chr16", "q", 1),
    ("17p loss", "chr17", "p", 1),
    ("13q loss", "chr13", "q", 1),
    ("20q gain", "chr20", "q", 3),
    ("5p gain", "chr5", "p", 3),
    ("4 loss", "chr4", "whole", 1),
    ("7 gain", "chr7", "whole", 3),
    ("18q loss", "chr18", "q", 1),
    ("6p gain", "chr6", "p", 3),
)
FOCAL_AMPLIFICATIONS = (
    ("11q13 amplification", "chr11", 69_000_000, 70_500_000),
    ("8q24 MYC amplification", "chr8", 126_500_000, 128_500_000),
    ("17q12 ERBB2 amplification", "chr17", 39_500_000, 40_000_000),
)


# ----------------------------------------------------------------------------- fragment sizes


def _peak(lengths: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((lengths - centre) / width) ** 2)


def fragment_length_distribution(
    kind: str, longest: int = DEFAULT_LONGEST_LENGTH, shift: float = 0.0, shoulder: float = 1.0
) -> np.ndarray:
    """Probability of each fragment length 0..longest (bp) for a source of cfDNA.

    maternal: haematopoietic cfDNA, mode ~167 bp, 10 bp ripple below 150 bp, dinucleosomes,
    and a tail of long molecules; fetal: placental, mode ~145 bp, more short fragments;
    tumour: enriched at 90-150 bp; ebv_carrier: short viral DNA (80-110 bp);
    ebv_tumour: nucleosome-protected viral DNA from NPC, like maternal DNA.
    `shift` (bp) and `shoulder` (weight of the sub-nucleosomal shoulder) vary between samples,
    as library preparation does in real runs.
    """
    x = np.arange(longest + 1, dtype=float) - shift
    ripple = sum(_peak(x, 167 - 10.4 * k, 2.5) * 0.35 * 0.8**k for k in range(1, 7))
    tail = np.where(x > 250, np.exp(-((np.log(np.maximum(x, 1)) - np.log(700)) ** 2) / (2 * 0.7**2)), 0.0)
    if kind in ("maternal", "ebv_tumour"):
        density = (
            _peak(x, 167, 10)
            + 0.12 * shoulder * _peak(x, 150, 24)
            + ripple * 0.25
            + 0.02 * _peak(x, 335, 30)
            + 0.00003 * tail
        )
    elif kind == "fetal":
        density = (
            _peak(x, 145, 11)
            + 0.4 * shoulder * _peak(x, 125, 22)
            + 0.5 * _peak(x, 166, 10)
            + ripple * 0.5
            + 0.015 * _peak(x, 320, 30)
            + 0.000015 * tail
        )
    elif kind == "tumour":
        density = (
            _peak(x, 146, 12)
            + 0.6 * shoulder * _peak(x, 115, 22)
            + 0.4 * _peak(x, 166, 10)
            + ripple * 0.5
            + 0.015 * _peak(x, 320, 30)
            + 0.000015 * tail
        )
    elif kind == "ebv_carrier":
        density = _peak(x, 96, 16) + 0.35 * _peak(x, 140, 25) + 0.1 * _peak(x, 167, 10)
    elif kind == "mitochondrial":
        density = _peak(x, 70, 25) + 0.3 * _peak(x, 130, 40)
    else:
        raise ValueError(f"unknown fragment source {kind!r}")
    density[: max(0, 30 + int(round(shift)))] = 0.0
    return density / density.sum()


# ----------------------------------------------------------------------------- sample design


@dataclass
class SampleDesign:
    """The truth of one simulated sample (written beside the data)."""

    sample: str
    cohort: str
    reads: int
    paired: bool
    read_length: int
    sex: str  # the donor's sex: female for pregnancies
    fetal_fraction: float | None = None
    fetal_sex: str | None = None
    fetal_karyotype: str | None = None
    findings: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    maternal_x_mosaic_loss: float = 0.0
    tumor_fraction: float | None = None
    tumor_ploidy: float | None = None
    tumor_genome_doubled: bool = False
    ebv_status: str = "negative"
    ebv_fragments_expected: float = 0.0
    ebv_nucleosomal_share: float | None = (
        None  # share of viral fragments nucleosome-sized (NPC-like); None: 1 for NPC, 0 for carriers
    )
    gc_slope: float = 0.0
    gc_curvature: float = 0.0
    dispersion: float = 1.2
    batch: int = 0
    batch_scores: list[float] = field(default_factory=list)
    duplicate_rate: float = 0.05
    unmapped_rate: float = 0.01
    chrY_background: float = 0.0005
    mitochondrial_rate: float = 0.0005
    size_shift: float = 0.0
    size_shoulder: float = 1.0
    # A library effect no panel sample has: a per-bin pattern of this SD (0.005 = 0.5 %), drawn
    # from `library_bias_seed`. Real libraries have such surprises; 0 by default. Its kind:
    # "positional", smooth along the genome (no bin property predicts it: only QC can catch it),
    # or "bin_features", a random function of each bin's mappability and GC x mappability (what
    # a new library chemistry or size selection does; a within-sample correction can remove it).
    library_bias: float = 0.0
    library_bias_seed: int = 0
    library_bias_kind: str = "positional"


def _fetal_fraction(rng: np.random.Generator, median: float) -> float:
    return float(np.clip(rng.lognormal(math.log(median), 0.45), 0.02, 0.35))


def _scaled_region(chrom: str, start: int, end: int, scale: float) -> tuple[str, int, int]:
    return chrom, int(start * scale), max(int(end * scale), int(start * scale) + 1)


def design_cohort(
    cohort: str,
    n_samples: int,
    reads: int,
    seed: int = 1,
    paired: bool = False,
    read_length: int = 50,
    scale: float = 1.0,
    fetal_fraction_median: float = 0.10,
    n_batches: int = 4,
    prefix: str | None = None,
    ebv: EbvDraws | None = None,
) -> list[SampleDesign]:
    """Designs of `n_samples` samples of a cohort (see COHORTS); `scale` shrinks coordinates."""
    if cohort not in COHORTS:
        raise UsageError(f"--cohort must be one of {', '.join(COHORTS)}, not {cohort!r}")
    if n_samples < 1:
        raise UsageError(f"--samples must be at least 1, not {n_samples}")
    if prefix is not None and sample_file_stem(prefix) != prefix:
        raise UsageError(
            f"--prefix {prefix!r} is not a plain name: use letters, digits, '.', '_', '+' or '-' (no '/' or '..')"
        )
    if reads < 1000:
        raise UsageError(f"--reads must be at least 1000, not {reads}")
    designs = []
    for index in range(n_samples):
        rng = np.random.default_rng([seed, index, 1])
        name = f"{prefix or cohort}_{index + 1:04d}"
        sample_reads = int(reads * rng.uniform(0.8, 1.2))
        batch = index % n_batches
        design = SampleDesign(
            sample=name,
            cohort=cohort,
            reads=sample_reads,
            paired=paired,
            read_length=read_length,
            sex="female",
            gc_slope=float(rng.normal(0.0, 0.6)),
            gc_curvature=float(rng.normal(-5.0, 3.0)),
            dispersion=float(rng.uniform(1.1, 1.3)),
            batch=batch,
            batch_scores=[
                float(x)
                for x in rng.normal(np.array([1.0, -1.0, 0.5])[:3] * (batch - (n_batches - 1) / 2) / n_batches, 0.3)
            ],
            duplicate_rate=float(rng.uniform(0.02, 0.15)),
            unmapped_rate=float(rng.uniform(0.005, 0.02)),
            chrY_background=float(rng.uniform(0.0003, 0.001)),
            mitochondrial_rate=float(rng.uniform(0.0002, 0.002)),
            size_shift=float(rng.normal(0.0, 1.0)),
            size_shoulder=float(rng.lognormal(0.0, 0.15)),
        )
        if cohort in ("nipt", "euploid"):
            _design_pregnancy(design, rng, cohort, fetal_fraction_median, scale)
        elif cohort in ("cancer", "healthy"):
            _design_cancer(design, rng, cohort, scale)
        else:
            _design_ebv(design, rng, ebv or EbvDraws())
        designs.append(design)
    return designs


def _design_pregnancy(
    design: SampleDesign, rng: np.random.Generator, cohort: str, ff_median: float, scale: float
) -> None:
    design.fetal_fraction = _fetal_fraction(rng, ff_median)
    design.fetal_sex = "male" if rng.random() < 0.5 else "female"
    sex_chromosomes = "XY" if design.fetal_sex == "male" else "XX"
    design.fetal_karyotype = f"46,{sex_chromosomes}"
    if cohort == "euploid":
        return
    u = rng.random()
    if u < 0.06:
        design.findings.append("T21")
        design.fetal_karyotype = f"47,{sex_chromosomes},+21"
        design.events.append({"type": "trisomy", "origin": "fetal", "chrom": "chr21", "fetal_cn": 3})
    elif u < 0.10:
        design.findings.append("T18")
        design.fetal_karyotype = f"47,{sex_chromosomes},+18"
        design.events.append({"type": "trisomy", "origin": "fetal", "chrom": "chr18", "fetal_cn": 3})
    elif u < 0.13:
        design.findings.append("T13")
        design.fetal_karyotype = f"47,{sex_chromosomes},+13"
        design.events.append({"type": "trisomy", "origin": "fetal", "chrom": "chr13", "fetal_cn": 3})
    elif u < 0.15:
        chrom = str(rng.choice(RARE_TRISOMIES))
        design.findings.append(f"T{chrom[3:]}")
        design.fetal_karyotype = f"47,{sex_chromosomes},+{chrom[3:]}"
        design.events.append({"type": "trisomy", "origin": "fetal", "chrom": chrom, "fetal_cn": 3})
    elif u < 0.20:
        karyotype = str(rng.choice(["45,X", "47,XXX", "47,XXY", "47,XYY"]))
        design.findings.append(karyotype)
        design.fetal_karyotype = karyotype
        design.fetal_sex = "male" if "Y" in karyotype else "female"
    elif u < 0.25:
        name = str(rng.choice(sorted(SYNDROME_REGIONS)))
        chrom, start, end = _scaled_region(*SYNDROME_REGIONS[name], scale)
        cn = 1 if rng.random() < 0.8 else 3
        design.findings.append(f"{'del' if cn == 1 else 'dup'}:{chrom}:{start}-{end}:fetal")
        design.events.append(
            {
                "type": "cnv",
                "origin": "fetal",
                "chrom": chrom,
                "start": start,
                "end": end,
                "fetal_cn": cn,
                "maternal_cn": 2,
                "name": name,
            }
        )
    elif u < 0.28:
        chrom = str(rng.choice(AUTOSOMES))
        length = int(rng.uniform(1e6, 8e6) * scale)
        start = int(rng.uniform(0.1, 0.7) * HG38_LENGTHS[chrom] * scale)
        cn = 1 if rng.random() < 0.5 else 3
        inherited = rng.random() < 0.5
        design.findings.append(f"{'del' if cn == 1 else 'dup'}:{chrom}:{start}-{start + length}:maternal")
        design.events.append(
            {
                "type": "cnv",
                "origin": "maternal",
                "chrom": chrom,
                "start": start,
                "end": start + length,
                "fetal_cn": cn if inherited else 2,
                "maternal_cn": cn,
                "name": None,
            }
        )
    elif u < 0.29:
        chrom = str(rng.choice(["chr16", "chr2", "chr7", "chr13", "chr18", "chr21"]))
        level = float(rng.uniform(0.3, 1.0))
        design.findings.append(f"CPM:+{chrom[3:]}")
        design.events.append(
            {
                "type": "confined_placental_mosaicism",
                "origin": "placental",
                "chrom": chrom,
                "fetal_cn": 2 + level,
                "mosaic_level": level,
            }
        )
    elif u < 0.30:
        design.maternal_x_mosaic_loss = float(rng.uniform(0.1, 0.3))
        design.findings.append("maternal_mosaic_X_loss")


def with_finding(
    design: SampleDesign, finding: str | None, fetal_fraction: float, scale: float = 1.0, fetal_sex: str | None = None
) -> SampleDesign:
    """A pregnancy design changed to carry one finding at a given fetal fraction.

    `finding`: None (euploid), "T<n>" (fetal trisomy), a sex-chromosome karyotype ("45,X",
    "47,XXX", "47,XXY", "47,XYY"), or "del:<syndrome>"/"dup:<syndrome>" with a name from
    `genome.SYNDROME_REGIONS` (a fetal CNV of that region).
    """
    sex = fetal_sex or design.fetal_sex or "female"
    changed = dataclasses.replace(
        design,
        fetal_fraction=fetal_fraction,
        fetal_sex=sex,
        events=[],
        findings=[],
        fetal_karyotype="46,XY" if sex == "male" else "46,XX",
        maternal_x_mosaic_loss=0.0,
    )
    sex_chromosomes = "XY" if sex == "male" else "XX"
    if finding is None:
        return changed
    if finding.startswith("T"):
        changed.events = [{"type": "trisomy", "origin": "fetal", "chrom": f"chr{finding[1:]}", "fetal_cn": 3}]
        changed.fetal_karyotype = f"47,{sex_chromosomes},+{finding[1:]}"
    elif finding in ("45,X", "47,XXX", "47,XXY", "47,XYY"):
        changed.fetal_karyotype = finding
        changed.fetal_sex = "male" if "Y" in finding else "female"
    elif finding[:4] in ("del:", "dup:") and finding[4:] in SYNDROME_REGIONS:
        chrom, start, end = _scaled_region(*SYNDROME_REGIONS[finding[4:]], scale)
        changed.events = [
            {
                "type": "cnv",
                "origin": "fetal",
                "chrom": chrom,
                "start": start,
                "end": end,
                "fetal_cn": 1 if finding.startswith("del") else 3,
                "maternal_cn": 2,
                "name": finding[4:],
            }
        ]
        finding = f"{finding[:3]}:{chrom}:{start}-{end}:fetal"
    else:
        raise UsageError(f"unknown finding {finding!r}")
    changed.findings = [finding]
    return changed


def _arm_region(chrom: str, arm: str, scale: float) -> tuple[int, int]:
    centromere, length = HG38_CENTROMERES[chrom], HG38_LENGTHS[chrom]
    start, end = {"p": (0, centromere), "q": (centromere, length), "whole": (0, length)}[arm]
    return int(start * scale), int(end * scale)


def _design_cancer(design: SampleDesign, rng: np.random.Generator, cohort: str, scale: float) -> None:
    design.sex = "female" if rng.random() < 0.5 else "male"
    design.tumor_fraction = 0.0
    design.tumor_ploidy = 2.0
    if cohort == "healthy" or rng.random() < 0.15:
        design.findings.append("no tumour DNA")
        return
    design.tumor_fraction = float(rng.uniform(0.01, 0.30))
    design.tumor_genome_doubled = bool(rng.random() < 0.25)
    base = 4 if design.tumor_genome_doubled else 2
    chosen = rng.choice(len(CANCER_EVENTS), size=int(rng.integers(3, 8)), replace=False)
    for i in sorted(chosen):
        name, chrom, arm, cn = CANCER_EVENTS[i]
        start, end = _arm_region(chrom, arm, scale)
        clonal = 1.0 if rng.random() < 0.8 else float(rng.uniform(0.3, 0.7))
        # After genome doubling, later gains and losses move one or two of the four copies.
        step = 1 if base == 2 else int(rng.integers(1, 3))
        tumour_cn = base + step if cn > 2 else base - step
        design.events.append(
            {
                "type": "cnv",
                "origin": "tumour",
                "chrom": chrom,
                "start": start,
                "end": end,
                "tumour_cn": tumour_cn,
                "clonal_fraction": clonal,
                "name": name,
            }
        )
    if rng.random() < 0.3:
        name, chrom, start, end = FOCAL_AMPLIFICATIONS[int(rng.integers(len(FOCAL_AMPLIFICATIONS)))]
        design.events.append(
            {
                "type": "cnv",
                "origin": "tumour",
                "chrom": chrom,
                "start": int(start * scale),
                "end": max(int(end * scale), int(start * scale) + 1),
                "tumour_cn": int(rng.integers(6, 12)),
                "clonal_fraction": 1.0,
                "name": name,
            }
        )
    design.findings = [e["name"] for e in design.events]
    design.tumor_ploidy = float(base)  # replaced by the genome-wide mean once the layout is known


@dataclass(frozen=True)
class EbvDraws:
    """The simulator's assumptions about plasma EBV DNA in a screened population, each a knob
    (docs/simulation.md). The defaults follow the brief (NPC: about 5 to several thousand EBV
    fragments per 10 M, nucleosome-sized; carriers: a few to tens, short). The pessimistic setting
    (`PESSIMISTIC_EBV`) makes the two classes overlap as an independent generator did: a third of
    NPC with carrier-like loads, and carriers whose viral DNA is partly nucleosome-sized."""

    npc_share: float = 0.10
    carrier_share: float = 0.20
    npc_low_load_share: float = 0.0  # NPC drawn with a carrier's load (1-30 fragments per 10 M)
    carrier_nucleosomal_share_max: float = 0.0  # each carrier's nucleosome-sized share: uniform up to this

    def __post_init__(self) -> None:
        if not (
            0 <= self.npc_share
            and 0 <= self.carrier_share
            and self.npc_share + self.carrier_share <= 1
            and 0 <= self.npc_low_load_share <= 1
            and 0 <= self.carrier_nucleosomal_share_max <= 1
        ):
            raise UsageError("EBV draws: the shares must lie between 0 and 1 (NPC and carriers together at most 1)")


PESSIMISTIC_EBV = EbvDraws(npc_low_load_share=1 / 3, carrier_nucleosomal_share_max=0.5)


def _design_ebv(design: SampleDesign, rng: np.random.Generator, draws: EbvDraws) -> None:
    design.sex = "male"
    u = rng.random()
    per_10m = design.reads / 1e7
    if u < draws.npc_share:
        design.ebv_status = "npc"
        design.ebv_fragments_expected = float(np.exp(rng.uniform(np.log(5), np.log(5000)))) * per_10m
        # Extra draws only when a knob asks for them: the default cohorts stay as they were.
        if draws.npc_low_load_share and rng.random() < draws.npc_low_load_share:
            design.ebv_fragments_expected = float(rng.uniform(1, 30)) * per_10m
        design.findings.append("NPC")
    elif u < draws.npc_share + draws.carrier_share:
        design.ebv_status = "carrier"
        design.ebv_fragments_expected = float(rng.uniform(1, 30)) * per_10m
        if draws.carrier_nucleosomal_share_max:
            design.ebv_nucleosomal_share = float(rng.uniform(0, draws.carrier_nucleosomal_share_max))
        design.findings.append("EBV carrier")


# ----------------------------------------------------------------------------- genome model


@dataclass(frozen=True)
class LabEffects:
    """The simulator's assumptions about a lab's per-bin effects, each a knob (docs/simulation.md).

    Every effect is an assumption, and a method tuned to one setting may fail on real data, so
    benchmarks run the pessimistic settings too: `placental_pattern_sd=0` (no placental coverage
    pattern: female fetal fraction from the bin profile is then impossible, as it nearly is in
    real labs with a few hundred samples) and a small `y_hotspot_share` (the female chrY
    background piled into a few bins).
    """

    # Per-bin efficiency of placental DNA against maternal DNA (lognormal SD). Real placental
    # coverage differs only subtly (SeqFF/PREFACE need thousands of samples), so the default is
    # weak; 0.15 is the strong pattern earlier versions assumed.
    placental_pattern_sd: float = 0.03
    # Share of chrY bins where the female mis-mapping background lands (the rest get 3 % of it).
    y_hotspot_share: float = 0.2
    # Per-bin stickiness shared by every sample (lognormal SD) and the batch factors' amplitude.
    stickiness_sd: float = 0.05
    batch_factor_sd: float = 0.03
    # Healthy plasma's whole-arm shifts: each sample moves each chromosome arm by a normal draw
    # of this SD (log2) on an arm of average GC, rising with the arm's GC (1 + 85 x its GC above
    # 41 %: about 7 times on chr19 and chr22). ichorCNA's real HD_ULP donors show about 0.003 on
    # typical arms and 0.02 on 19p and 22q (their panel's `NormalPanel.arm_sd`); 0 by default,
    # which no real lab has, and PESSIMISTIC_TUMOR_EFFECTS sets 0.004.
    healthy_arm_shift_sd: float = 0.0


PESSIMISTIC_EFFECTS = LabEffects(placental_pattern_sd=0.0, y_hotspot_share=0.05)
STRONG_PLACENTAL_EFFECTS = LabEffects(placental_pattern_sd=0.15)
PESSIMISTIC_TUMOR_EFFECTS = LabEffects(healthy_arm_shift_sd=0.004)
ARM_SHIFT_GC_SLOPE = 85.0  # how much more GC-rich arms shift: per unit of GC above ARM_SHIFT_GC_FLOOR
ARM_SHIFT_GC_FLOOR = 0.41


def _arm_shifts(layout: Layout, gc: np.ndarray, scale: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's chromosome arm (p/q split at the hg38 centromere, else mid-contig) and that
    arm's shift SD, rising with the arm's mean GC."""
    arm_of_bin = np.zeros(layout.n_bins, dtype=np.int64)
    arm_sd = np.zeros(layout.n_bins)
    arm = 0
    for contig in layout.contigs:
        centromere = HG38_CENTROMERES[contig.name] * scale if contig.name in HG38_CENTROMERES else contig.length / 2
        starts = np.arange(contig.n_bins) * layout.bin_size
        for part in (starts < centromere, starts >= centromere):
            here = contig.first_bin + np.flatnonzero(part)
            if here.size:
                arm_of_bin[here] = arm
                arm_sd[here] = sd * (1 + ARM_SHIFT_GC_SLOPE * max(0.0, float(np.mean(gc[here])) - ARM_SHIFT_GC_FLOOR))
                arm += 1
    return arm_of_bin, arm_sd


def smooth_pattern(rng: np.random.Generator, n_bins: int) -> np.ndarray:
    """A smooth random per-bin pattern of mean 0 and SD 1 (correlated over ~1/200 of the genome)."""
    walk = np.cumsum(rng.normal(0, 1, n_bins))
    window = max(5, n_bins // 200)
    smooth = np.convolve(
        walk - np.convolve(walk, np.ones(window * 10) / (window * 10), mode="same"),
        np.ones(window) / window,
        mode="same",
    )
    return (smooth - smooth.mean()) / (smooth.std() or 1.0)


def library_pattern(design: SampleDesign, model: GenomeModel) -> np.ndarray:
    """The per-bin pattern (mean 0, SD 1) of a sample's library bias (see SampleDesign)."""
    rng = np.random.default_rng([design.library_bias_seed, 0, 11])
    if design.library_bias_kind == "positional":
        return smooth_pattern(rng, model.layout.n_bins)
    if design.library_bias_kind != "bin_features":
        raise ValueError(f"library_bias_kind must be 'positional' or 'bin_features', not {design.library_bias_kind!r}")
    standard = lambda values: (values - values.mean()) / (values.std() or 1.0)  # noqa: E731
    mappable, gc = standard(model.mappable), standard(model.gc)
    a, b, c = rng.normal(0, 1, 3)
    return standard(a * mappable + b * gc * mappable + c * mappable**2)


@dataclass
class GenomeModel:
    """Bins and their properties, plus the bin effects shared by every sample of a lab."""

    layout: Layout
    gc: np.ndarray
    mappable: np.ndarray
    stickiness: np.ndarray
    batch_loadings: np.ndarray  # factors x bins
    placental_effect: np.ndarray  # per-bin efficiency of placental DNA relative to maternal DNA
    y_homology: np.ndarray  # where mis-mapped reads land on chrY (sums to 1 over chrY bins)
    scale: float
    other_contigs: list[tuple[str, int]]
    # Healthy whole-arm shifts (LabEffects.healthy_arm_shift_sd): each bin's arm and that arm's SD (log2).
    arm_of_bin: np.ndarray | None = None
    arm_shift_sd: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        layout: Layout,
        gc: np.ndarray,
        mappable: np.ndarray,
        scale: float,
        seed: int,
        other_contigs: list[tuple[str, int]],
        effects: LabEffects = LabEffects(),
    ) -> GenomeModel:
        rng = np.random.default_rng([seed, 0, 7])
        stickiness = rng.lognormal(0.0, effects.stickiness_sd, layout.n_bins)
        loadings = [effects.batch_factor_sd * smooth_pattern(rng, layout.n_bins) for _ in range(3)]
        gc = np.where(np.isnan(gc), np.nanmean(gc), gc)
        mappable = np.clip(np.where(np.isnan(mappable), 1.0, mappable), 0.0, 1.0)
        # Placental DNA covers the genome a little differently (nucleosome positions, methylation):
        # the signal that profile-based fetal-fraction methods (SeqFF, PREFACE) learn.
        placental = rng.lognormal(0.0, 1.0, layout.n_bins) ** effects.placental_pattern_sd
        # Reads mis-mapped to chrY in women land mostly in regions homologous to X/autosomes.
        index = layout.bin_table()[0]
        on_y = (
            np.array([name_key(c.name) == "Y" for c in layout.contigs])[index] if layout.contigs else np.zeros(0, bool)
        )
        homology = np.zeros(layout.n_bins)
        if on_y.any():
            homologous = on_y & (rng.random(layout.n_bins) < effects.y_hotspot_share)
            if not homologous.any():  # a small share of few bins: at least one hot bin
                homologous[np.flatnonzero(on_y)[len(np.flatnonzero(on_y)) // 2]] = True
            homology[homologous] = 0.97 * rng.lognormal(0, 0.5, homologous.sum())
            homology[homologous] *= 0.97 / homology[homologous].sum()
            homology[on_y] += 0.03 / on_y.sum()
        arm_of_bin, arm_shift_sd = None, None
        if effects.healthy_arm_shift_sd > 0:
            arm_of_bin, arm_shift_sd = _arm_shifts(layout, gc, scale, effects.healthy_arm_shift_sd)
        return cls(
            layout,
            gc,
            mappable,
            stickiness,
            np.array(loadings),
            placental,
            homology,
            scale,
            other_contigs,
            arm_of_bin,
            arm_shift_sd,
        )

    def annotation(self) -> BinAnnotation:
        """The bins' GC and mappability as an annotation file would hold them."""
        unmappable = self.mappable <= 0
        return BinAnnotation(
            self.layout,
            np.where(unmappable, np.nan, self.gc),
            unmappable.astype(float),
            self.mappable,
            np.zeros(self.layout.n_bins),
            sources=["simulated hg38 layout"],
        )

    @classmethod
    def from_annotation(cls, annotation: BinAnnotation, seed: int, effects: LabEffects = LabEffects()) -> GenomeModel:
        """Real bins (e.g. hg38 from an imported QDNAseq table): real GC, mappability, N gaps."""
        mappable = annotation.mappability.copy()
        mappable = np.where(np.isnan(mappable), 1.0, mappable) * (1.0 - np.nan_to_num(annotation.n_fraction, nan=1.0))
        mappable[np.isnan(annotation.gc)] = 0.0
        chrom = annotation.layout.contigs[0].name
        prefix = "chr" if chrom.startswith("chr") else ""
        others = [(f"{prefix}M" if prefix else "MT", MITOCHONDRION_LENGTH), ("chrEBV", EBV_LENGTH)]
        scale = 1.0 if annotation.layout.build != "unknown" else _scale_of(annotation.layout)
        return cls.build(annotation.layout, annotation.gc.copy(), mappable, scale, seed, others, effects)

    @classmethod
    def from_synthetic(cls, genome: SyntheticGenome, seed: int, effects: LabEffects = LabEffects()) -> GenomeModel:
        annotation = genome.annotation()
        mappable = annotation.mappability
        others = [(name, length) for name, length in zip(genome.names, genome.lengths) if name not in HG38_LENGTHS]
        return cls.build(annotation.layout, annotation.gc, mappable, genome.scale, seed, others, effects)

    @classmethod
    def hg38_layout(cls, bin_size: int, seed: int, effects: LabEffects = LabEffects()) -> GenomeModel:
        """hg38 names and lengths with a synthetic GC landscape (no annotation given)."""
        layout = Layout.from_lengths(HG38_LENGTHS.items(), bin_size)
        rng = np.random.default_rng([seed, 0, 3])
        gc = np.concatenate(
            [isochore_gc(rng, c.n_bins, HG38_MEAN_GC[c.name], 400_000 / bin_size) for c in layout.contigs]
        )
        gc += rng.normal(0, 0.01, gc.size)
        mappable = np.clip(rng.beta(20, 1.5, layout.n_bins), 0, 1)
        for contig in layout.contigs:
            centre = HG38_CENTROMERES[contig.name] // bin_size
            gap = max(1, 3_000_000 // bin_size)
            mappable[contig.first_bin + max(0, centre - gap // 2) : contig.first_bin + centre + gap // 2] = 0.0
        return cls.build(
            layout, gc, mappable, 1.0, seed, [("chrM", MITOCHONDRION_LENGTH), ("chrEBV", EBV_LENGTH)], effects
        )


def _scale_of(layout: Layout) -> float:
    try:
        return layout.contig("chr1").length / HG38_LENGTHS["chr1"]
    except KeyError:
        return 1.0


def copy_numbers(design: SampleDesign, model: GenomeModel) -> dict[str, np.ndarray]:
    """Per bin copy number of each cell population whose DNA is in the sample."""
    layout = model.layout
    index, start, end = layout.bin_table()
    keys = np.array([name_key(n) for n in layout.names])[index]

    def bins_of(chrom: str, first: int | None = None, last: int | None = None) -> np.ndarray:
        here = keys == name_key(chrom)
        if first is not None:
            here &= (end > first) & (start < last)
        return here

    def sex_chromosome_cn(sex_chromosomes: str) -> np.ndarray:
        cn = np.full(layout.n_bins, 2.0)
        cn[keys == "X"] = sex_chromosomes.count("X")
        cn[keys == "Y"] = sex_chromosomes.count("Y")
        return cn

    populations = {}
    if design.fetal_fraction is not None:
        maternal = sex_chromosome_cn("XX")
        maternal[keys == "X"] -= design.maternal_x_mosaic_loss
        karyotype = design.fetal_karyotype or "46,XX"
        fetal = sex_chromosome_cn(karyotype.split(",")[1] if karyotype.count(",") else "XX")
        for event in design.events:
            if event["type"] in ("trisomy", "confined_placental_mosaicism"):
                fetal[bins_of(event["chrom"])] = event["fetal_cn"]
            elif event["type"] == "cnv":
                here = bins_of(event["chrom"], event["start"], event["end"])
                fetal[here] = event["fetal_cn"]
                maternal[here] = event["maternal_cn"]
        populations["maternal"] = maternal
        populations["fetal"] = fetal
    else:
        normal = sex_chromosome_cn("XY" if design.sex == "male" else "XX")
        populations["normal"] = normal
        if design.tumor_fraction:
            tumour = normal * (2.0 if design.tumor_genome_doubled else 1.0)
            for event in design.events:
                here = bins_of(event["chrom"], event["start"], event["end"])
                # A subclonal event is carried by a share of tumour cells: their mean copy number.
                fraction = event.get("clonal_fraction", 1.0)
                tumour[here] = tumour[here] + fraction * (event["tumour_cn"] - tumour[here])
            populations["tumour"] = tumour
    return populations


def population_fractions(design: SampleDesign) -> dict[str, float]:
    if design.fetal_fraction is not None:
        return {"maternal": 1.0 - design.fetal_fraction, "fetal": design.fetal_fraction}
    tumour = design.tumor_fraction or 0.0
    return {"normal": 1.0 - tumour, "tumour": tumour} if tumour else {"normal": 1.0}


def expected_counts(design: SampleDesign, model: GenomeModel) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Expected counted fragments per bin, and each population's share of every bin's DNA."""
    populations = copy_numbers(design, model)
    fractions = population_fractions(design)
    dna = {
        name: fractions[name] * cn * (model.placental_effect if name == "fetal" else 1.0)
        for name, cn in populations.items()
    }
    dosage = sum(dna.values()) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {
            name: np.where(dosage > 0, amount / 2.0 / np.maximum(dosage, 1e-12), 0.0) for name, amount in dna.items()
        }
    centred = model.gc - 0.41
    gc_bias = np.exp(design.gc_slope * centred + design.gc_curvature * centred**2)
    batch = np.exp(np.asarray(design.batch_scores[: len(model.batch_loadings)]) @ model.batch_loadings)
    weight = model.stickiness * model.mappable * gc_bias * batch
    if design.library_bias:
        weight = weight * np.exp(design.library_bias * library_pattern(design, model))
    if model.arm_shift_sd is not None:
        assert model.arm_of_bin is not None  # set with arm_shift_sd by GenomeModel.build
        # Drawn from the sample's own draws (name, GC bias, batch scores): samples of two cohorts
        # that share a name do not share their arm shifts.
        identity = repr((design.sample, design.gc_slope, design.gc_curvature, tuple(design.batch_scores))).encode()
        arm_rng = np.random.default_rng([zlib.crc32(identity), 0, 13])
        weight = weight * np.exp2(
            arm_rng.normal(0.0, 1.0, int(model.arm_of_bin.max()) + 1)[model.arm_of_bin] * model.arm_shift_sd
        )
    mu = weight * dosage
    # Female chrY background: reads of other chromosomes mis-mapped onto chrY.
    on_y = model.layout.bin_keys() == "Y"
    total = mu.sum()
    if on_y.any():
        homology = model.y_homology[on_y] * model.mappable[on_y]
        mu[on_y] += design.chrY_background * total * homology / max(homology.sum(), 1e-12)
    mu *= design.reads / mu.sum()
    return mu, shares


def _gamma_poisson(rng: np.random.Generator, mu: np.ndarray, dispersion: float) -> np.ndarray:
    """Counts with mean mu and variance dispersion x mu."""
    if dispersion <= 1.0:
        return rng.poisson(mu)
    shape = np.maximum(mu, 1e-9) / (dispersion - 1.0)
    return rng.poisson(rng.gamma(shape, mu / shape))


def _source_of(population: str) -> str:
    return {"maternal": "maternal", "normal": "maternal", "fetal": "fetal", "tumour": "tumour"}[population]


def _tumour_ploidy(design: SampleDesign, model: GenomeModel) -> float:
    populations = copy_numbers(design, model)
    tumour = populations.get("tumour")
    if tumour is None:
        return 2.0
    autosomal = np.array([name_key(c.name) not in ("X", "Y") for c in model.layout.contigs])[
        model.layout.bin_table()[0]
    ]
    weight = model.mappable * autosomal
    return float((tumour * weight).sum() / weight.sum())


# ----------------------------------------------------------------------------- count level


def simulate_counts(design: SampleDesign, model: GenomeModel, seed: int, index: int) -> SampleCounts:
    """Counts, fragment sizes and QC of one sample, drawn directly at the bin level."""
    rng = np.random.default_rng([seed, index, 2])
    mu, shares = expected_counts(design, model)
    counts = _gamma_poisson(rng, mu, design.dispersion)
    layout = model.layout
    short = np.zeros(layout.n_bins, dtype=np.int64)
    long_ = np.zeros(layout.n_bins, dtype=np.int64)
    histogram = np.zeros(DEFAULT_LONGEST_LENGTH + 2, dtype=np.int64)
    other_counts = np.zeros(len(model.other_contigs), dtype=np.int64)
    other_hist = np.zeros((len(model.other_contigs), DEFAULT_LONGEST_LENGTH + 2), dtype=np.int64)
    if design.paired:
        distributions = {name: _sizes(design, _source_of(name)) for name in shares}
        p_short = sum(
            shares[n] * distributions[n][DEFAULT_SHORT_RANGE[0] : DEFAULT_SHORT_RANGE[1] + 1].sum() for n in shares
        )
        p_long = sum(
            shares[n] * distributions[n][DEFAULT_LONG_RANGE[0] : DEFAULT_LONG_RANGE[1] + 1].sum() for n in shares
        )
        short = rng.binomial(counts, np.clip(p_short, 0, 1))
        long_ = rng.binomial(counts - short, np.clip(p_long / np.maximum(1 - p_short, 1e-12), 0, 1))
        total = counts.sum()
        mixture = sum((shares[n] * counts).sum() / max(total, 1) * distributions[n] for n in shares)
        histogram[: DEFAULT_LONGEST_LENGTH + 1] = rng.multinomial(total, mixture / mixture.sum())
    for row, (name, _length) in enumerate(model.other_contigs):
        if name_key(name) == "EBV":
            n = rng.poisson(design.ebv_fragments_expected) if design.ebv_fragments_expected else 0
            source = "ebv"
        else:
            n = rng.poisson(design.mitochondrial_rate * design.reads)
            source = "mitochondrial"
        other_counts[row] = n
        if design.paired and n:
            other_hist[row, : DEFAULT_LONGEST_LENGTH + 1] = rng.multinomial(n, _sizes(design, source))
    counted = int(counts.sum())
    per_read = 2 if design.paired else 1
    duplicates = int(round(design.duplicate_rate * counted))
    low_mapq = int(round(counted * float(np.mean(1 - model.mappable)) / max(float(np.mean(model.mappable)), 1e-6)))
    mapped = (counted + duplicates + low_mapq + int(other_counts.sum())) * per_read
    unmapped = int(round(design.unmapped_rate * mapped))
    qc = {
        "total": mapped + unmapped,
        "unmapped": unmapped,
        "secondary": 0,
        "supplementary": 0,
        "mapped": mapped,
        "qc_fail": 0,
        "duplicates": duplicates * per_read,
        "low_mapq": low_mapq * per_read,
        "paired_reads": mapped if design.paired else 0,
        "improper_pairs": 0,
        "second_mates": (counted + int(other_counts.sum())) if design.paired else 0,
        "unmarked_duplicates": 0,
        "counted": counted,
        "counted_pairs": counted if design.paired else 0,
        "counted_single": 0 if design.paired else counted,
        "outside_bins": 0,
        "pairs_by_geometry": 0,
    }
    per_contig = {c.name: int(counts[c.first_bin : c.first_bin + c.n_bins].sum()) for c in layout.contigs}
    per_contig.update({name: int(n) for (name, _), n in zip(model.other_contigs, other_counts) if n})
    return SampleCounts(
        sample=design.sample,
        layout=layout,
        counts=counts,
        paired=design.paired,
        short=short,
        long=long_,
        fragment_lengths=histogram,
        other_contigs=[{"name": name, "length": int(length)} for name, length in model.other_contigs],
        other_counts=other_counts,
        other_fragment_lengths=other_hist,
        qc=qc,
        per_contig_counts=per_contig,
        source={"path": None, "type": "simulated", "seed": seed},
        filters={
            "min_mapq": 20,
            "skip_duplicates": True,
            "skip_qc_fail": True,
            "remove_unmarked_duplicates": False,
            "short_range": list(DEFAULT_SHORT_RANGE),
            "long_range": list(DEFAULT_LONG_RANGE),
            "longest_length": DEFAULT_LONGEST_LENGTH,
        },
    )


# ----------------------------------------------------------------------------- read level

_QUALITY_LEVELS = np.array([37, 25, 11, 2], dtype=np.uint8)  # NovaSeq binned qualities
_QUALITY_WEIGHTS = np.array([0.90, 0.06, 0.03, 0.01])


@dataclass
class Fragments:
    """Simulated molecules, sorted by contig index and start."""

    contig: np.ndarray  # index into the genome's contig list
    start: np.ndarray
    length: np.ndarray
    reverse: np.ndarray  # strand of the first read
    duplicate: np.ndarray


def simulate_fragments(
    design: SampleDesign,
    model: GenomeModel,
    genome: SyntheticGenome | None,
    contig_lengths: list[tuple[str, int]],
    seed: int,
    index: int,
) -> Fragments:
    """Molecules of one sample: counts per bin as in `simulate_counts`, spread within bins."""
    rng = np.random.default_rng([seed, index, 4])
    mu, shares = expected_counts(design, model)
    # Molecules exist in non-unique sequence too; the aligner gives them MAPQ 0 there.
    mu = mu / np.maximum(model.mappable, 0.05) * (model.mappable > 0)
    counts = _gamma_poisson(rng, mu, design.dispersion)
    layout = model.layout
    names = [n for n, _ in contig_lengths]
    contig_index_of_bin = np.array([names.index(c.name) for c in layout.contigs])[layout.bin_table()[0]]
    _, bin_start, bin_end = layout.bin_table()
    n = int(counts.sum())
    bin_of = np.repeat(np.arange(layout.n_bins), counts)
    # Length by source: each molecule belongs to a population with the bin's share.
    populations = list(shares)
    lengths = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    cumulative = np.cumsum(np.stack([shares[p][bin_of] for p in populations]), axis=0)
    chosen = (u[None, :] >= cumulative[:-1]).sum(axis=0)
    for k, population in enumerate(populations):
        here = chosen == k
        lengths[here] = _draw_lengths(rng, _sizes(design, _source_of(population)), int(here.sum()))
    lengths = np.maximum(lengths, design.read_length)
    starts = bin_start[bin_of] + (rng.random(n) * (bin_end[bin_of] - bin_start[bin_of])).astype(np.int64)
    contigs = contig_index_of_bin[bin_of]
    # Viral and mitochondrial molecules.
    extra_contig, extra_start, extra_length = [], [], []
    for name, length in contig_lengths:
        if name in layout.names:
            continue
        key = name_key(name)
        if key == "EBV":
            k = rng.poisson(design.ebv_fragments_expected) if design.ebv_fragments_expected else 0
            source = "ebv"
        elif key == "M":
            k = rng.poisson(design.mitochondrial_rate * design.reads)
            source = "mitochondrial"
        else:
            continue
        extra_contig.append(np.full(k, names.index(name)))
        extra_length.append(np.maximum(_draw_lengths(rng, _sizes(design, source), k), design.read_length))
        extra_start.append((rng.random(k) * length).astype(np.int64))
    if extra_contig:
        contigs = np.concatenate([contigs] + extra_contig)
        starts = np.concatenate([starts] + extra_start)
        lengths = np.concatenate([lengths] + extra_length)
    # Keep molecules inside their contig and off N gaps.
    contig_length = np.array([length for _, length in contig_lengths])[contigs]
    lengths = np.minimum(lengths, contig_length)
    starts = np.clip(starts, 0, contig_length - lengths)
    if genome is not None:
        keep = np.ones(starts.size, dtype=bool)
        for c in np.unique(contigs):
            here = np.flatnonzero(contigs == c)
            sequence = genome.sequences[c]
            keep[here] = (sequence[starts[here]] != ord("N")) & (sequence[starts[here] + lengths[here] - 1] != ord("N"))
        contigs, starts, lengths = contigs[keep], starts[keep], lengths[keep]
    reverse = rng.random(starts.size) < 0.5
    duplicate = np.zeros(starts.size, dtype=bool)
    n_duplicates = rng.binomial(starts.size, design.duplicate_rate)
    copies = (
        rng.choice(starts.size, size=n_duplicates, replace=True)
        if n_duplicates and starts.size
        else np.zeros(0, dtype=np.int64)
    )
    contigs = np.concatenate([contigs, contigs[copies]])
    starts = np.concatenate([starts, starts[copies]])
    lengths = np.concatenate([lengths, lengths[copies]])
    reverse = np.concatenate([reverse, reverse[copies]])
    duplicate = np.concatenate([duplicate, np.ones(copies.size, dtype=bool)])
    order = np.lexsort((duplicate, starts, contigs))
    return Fragments(contigs[order], starts[order], lengths[order], reverse[order], duplicate[order])


def nucleosomal_share(design: SampleDesign) -> float:
    """The share of a sample's viral fragments that are nucleosome-sized (NPC-like)."""
    if design.ebv_nucleosomal_share is not None:
        return design.ebv_nucleosomal_share
    return 1.0 if design.ebv_status == "npc" else 0.0


def _sizes(design: SampleDesign, source: str) -> np.ndarray:
    """The sample's fragment-length distribution for a source (viral and mitochondrial DNA unshifted)."""
    if source in ("maternal", "fetal", "tumour"):
        return fragment_length_distribution(source, shift=design.size_shift, shoulder=design.size_shoulder)
    if source == "ebv":  # NPC-derived (nucleosome-sized) and carrier (short) viral DNA in the sample's proportion
        share = nucleosomal_share(design)
        if share >= 1:
            return fragment_length_distribution("ebv_tumour")
        if share <= 0:
            return fragment_length_distribution("ebv_carrier")
        return share * fragment_length_distribution("ebv_tumour") + (1 - share) * fragment_length_distribution(
            "ebv_carrier"
        )
    return fragment_length_distribution(source)


def _draw_lengths(rng: np.random.Generator, distribution: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(distribution)
    return np.searchsorted(cdf, rng.random(n) * cdf[-1]).astype(np.int64)


def _reads_of(fragments: Fragments, design: SampleDesign, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Read records (one per single-end fragment, two per pair), sorted by contig and position."""
    L = design.read_length
    n = fragments.start.size
    if not design.paired:
        pos = np.where(fragments.reverse, fragments.start + fragments.length - L, fragments.start)
        flag = np.where(fragments.reverse, 0x10, 0) | np.where(fragments.duplicate, 0x400, 0)
        reads = {
            "contig": fragments.contig,
            "pos": pos,
            "flag": flag.astype(np.int64),
            "fragment": np.arange(n),
            "next_pos": np.full(n, -1),
            "tlen": np.zeros(n, dtype=np.int64),
            "mate_contig": np.full(n, -1),
        }
    else:
        first_is_read1 = rng.random(n) < 0.5
        left = fragments.start
        right = fragments.start + fragments.length - L
        proper = rng.random(n) >= 0.003
        base = 0x1 | np.where(proper, 0x2, 0) | np.where(fragments.duplicate, 0x400, 0)
        flag_left = base | 0x20 | np.where(first_is_read1, 0x40, 0x80)
        flag_right = base | 0x10 | np.where(first_is_read1, 0x80, 0x40)
        reads = {
            "contig": np.concatenate([fragments.contig, fragments.contig]),
            "pos": np.concatenate([left, right]),
            "flag": np.concatenate([flag_left, flag_right]).astype(np.int64),
            "fragment": np.concatenate([np.arange(n), np.arange(n)]),
            "next_pos": np.concatenate([right, left]),
            "tlen": np.concatenate([fragments.length, -fragments.length]).astype(np.int64),
            "mate_contig": np.concatenate([fragments.contig, fragments.contig]),
        }
    order = np.lexsort((reads["flag"] & 0x80, reads["pos"], reads["contig"]))
    return {key: value[order] for key, value in reads.items()}


def _bases(
    genome: SyntheticGenome | None, contig: np.ndarray, pos: np.ndarray, read_length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Forward-strand bases of reads (with 0.2 % substitutions) and their mismatch counts."""
    n = pos.size
    if genome is None:
        bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (n, read_length))]
        return bases, np.zeros(n, dtype=np.uint8)
    bases = np.empty((n, read_length), dtype=np.uint8)
    offsets = np.arange(read_length)
    for c in np.unique(contig):
        here = np.flatnonzero(contig == c)
        sequence = genome.sequences[c]
        bases[here] = sequence[np.minimum(pos[here, None] + offsets, sequence.size - 1)]
    errors = rng.random((n, read_length)) < 0.002
    substitute = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, errors.sum())]
    mismatches = (errors & (bases != 0)).sum(axis=1)
    bases[errors] = substitute
    return bases, np.minimum(mismatches, 255).astype(np.uint8)


def _qualities(rng: np.random.Generator, n: int, read_length: int) -> np.ndarray:
    return _QUALITY_LEVELS[np.searchsorted(np.cumsum(_QUALITY_WEIGHTS), rng.random((n, read_length)) * 0.999999)]


def bam_header(design: SampleDesign, contig_lengths: list[tuple[str, int]], sorted_by: str = "coordinate") -> str:
    lines = [f"@HD\tVN:1.6\tSO:{sorted_by}"]
    lines += [f"@SQ\tSN:{name}\tLN:{length}" for name, length in contig_lengths]
    lines.append(f"@RG\tID:{design.sample}\tSM:{design.sample}\tLB:{design.sample}-lib1\tPL:ILLUMINA")
    lines.append(f"@PG\tID:plasmacount-simulate\tPN:plasmacount\tVN:{__version__}")
    return "\n".join(lines) + "\n"


def write_bam(
    path: str | os.PathLike,
    design: SampleDesign,
    model: GenomeModel,
    genome: SyntheticGenome | None,
    contig_lengths: list[tuple[str, int]],
    seed: int,
    index: int,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 1_000_000,
) -> None:
    """Simulate one sample's reads and write them as a coordinate-sorted BAM (index it afterwards)."""
    from plasmacount.alignment_writer import BamWriter, mapped_records, read_names, unplaced_records

    rng = np.random.default_rng([seed, index, 5])
    fragments = simulate_fragments(design, model, genome, contig_lengths, seed, index)
    reads = _reads_of(fragments, design, rng)
    unique = genome.unique if genome is not None else None
    ebv_index = next((i for i, (n, _) in enumerate(contig_lengths) if name_key(n) == "EBV"), -1)
    writer = BamWriter(path, bam_header(design, contig_lengths), contig_lengths, threads=threads)
    try:
        n = reads["pos"].size
        for first in range(0, n, chunk):
            part = slice(first, min(first + chunk, n))
            contig, pos, flag = reads["contig"][part], reads["pos"][part], reads["flag"][part].copy()
            m = pos.size
            if unique is not None:
                repeat = np.zeros(m, dtype=bool)
                for c in np.unique(contig):
                    here = np.flatnonzero(contig == c)
                    repeat[here] = ~unique[c][pos[here]]
            else:
                repeat = rng.random(m) > model.mappable.mean()
                if ebv_index >= 0:
                    w = (
                        (contig == ebv_index)
                        & (pos >= EBV_W_REPEAT_START)
                        & (pos < EBV_W_REPEAT_START + EBV_W_REPEAT_COPIES * EBV_W_REPEAT_UNIT)
                    )
                    repeat |= w
            mapq = np.where(repeat, 0, np.where(rng.random(m) < 0.01, rng.integers(1, 30, m), 60)).astype(np.uint8)
            # A few records are QC-failed, secondary or supplementary copies, as in real runs.
            flag |= np.where(rng.random(m) < 0.002, 0x200, 0)
            extra = rng.random(m) < 0.002
            bases, mismatches = _bases(genome, contig, pos, design.read_length, rng)
            names = read_names(reads["fragment"][part] + 1)
            records = mapped_records(
                contig,
                pos,
                flag,
                mapq,
                reads["mate_contig"][part],
                reads["next_pos"][part],
                reads["tlen"][part],
                names,
                bases,
                _qualities(rng, m, design.read_length),
                mismatches,
                design.sample,
            )
            if extra.any():
                # Secondary/supplementary copies sit at their read's position, keeping the order.
                k = int(extra.sum())
                kind = np.where(rng.random(k) < 0.5, 0x100, 0x800)
                copies = mapped_records(
                    contig[extra],
                    pos[extra],
                    (flag[extra] & ~0x400) | kind,
                    np.zeros(k, np.uint8),
                    reads["mate_contig"][part][extra],
                    reads["next_pos"][part][extra],
                    reads["tlen"][part][extra],
                    names[extra],
                    bases[extra],
                    _qualities(rng, k, design.read_length),
                    mismatches[extra],
                    design.sample,
                )
                records = np.concatenate([records, copies])
                records = records[np.lexsort((records["pos"], records["ref"]))]
            writer.write(records.tobytes())
            if progress:
                progress(part.stop, n)
        n_unmapped = rng.binomial(fragments.start.size, design.unmapped_rate)
        if n_unmapped:
            per = 2 if design.paired else 1
            names = np.repeat(read_names(np.arange(n_unmapped) + fragments.start.size + 1), per)
            flag = np.full(n_unmapped * per, 0x4)
            if design.paired:
                flag = flag | 0x1 | 0x8 | np.tile([0x40, 0x80], n_unmapped)
            bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (n_unmapped * per, design.read_length))]
            writer.write(
                unplaced_records(
                    flag, names, bases, _qualities(rng, n_unmapped * per, design.read_length), design.sample
                )
            )
    except BaseException as error:
        writer.abort(error)
        raise
    writer.close()


def write_fastq(
    directory: Path,
    design: SampleDesign,
    model: GenomeModel,
    genome: SyntheticGenome,
    contig_lengths: list[tuple[str, int]],
    seed: int,
    index: int,
) -> list[Path]:
    """Reads as they leave the sequencer (shuffled, in read orientation), gzip FASTQ."""
    from plasmacount.alignment_writer import fastq_records, open_fastq, read_names, reverse_complement

    rng = np.random.default_rng([seed, index, 6])
    fragments = simulate_fragments(design, model, genome, contig_lengths, seed, index)
    order = rng.permutation(fragments.start.size)
    L = design.read_length
    contig, start, length, reverse = (
        fragments.contig[order],
        fragments.start[order],
        fragments.length[order],
        fragments.reverse[order],
    )
    names = read_names(np.arange(order.size) + 1)
    left, _ = _bases(genome, contig, start, L, rng)
    right, _ = _bases(genome, contig, start + length - L, L, rng)
    right = reverse_complement(right)  # the reverse read, as the sequencer reads it
    if not design.paired:
        reads = np.where(reverse[:, None], right, left)
        paths = [directory / f"{design.sample}.fastq.gz"]
        with open_fastq(paths[0]) as stream:
            stream.write(fastq_records(names, reads, _qualities(rng, order.size, L)))
        return paths
    read1 = np.where(reverse[:, None], right, left)
    read2 = np.where(reverse[:, None], left, right)
    paths = [directory / f"{design.sample}_R1.fastq.gz", directory / f"{design.sample}_R2.fastq.gz"]
    for path, reads, suffix in ((paths[0], read1, b"/1"), (paths[1], read2, b"/2")):
        with open_fastq(path) as stream:
            stream.write(fastq_records(names, reads, _qualities(rng, order.size, L), suffix))
    return paths


# ----------------------------------------------------------------------------- truth


def truth_row(design: SampleDesign) -> dict:
    return {
        "sample": design.sample,
        "cohort": design.cohort,
        "reads": design.reads,
        "paired": design.paired,
        "sex": design.sex,
        "fetal_sex": design.fetal_sex or "",
        "fetal_fraction": "" if design.fetal_fraction is None else f"{design.fetal_fraction:.4f}",
        "fetal_karyotype": design.fetal_karyotype or "",
        "findings": ";".join(design.findings),
        "tumor_fraction": "" if design.tumor_fraction is None else f"{design.tumor_fraction:.4f}",
        "tumor_ploidy": "" if design.tumor_ploidy is None else f"{design.tumor_ploidy:.3f}",
        "ebv_status": design.ebv_status,
        "ebv_fragments_expected": f"{design.ebv_fragments_expected:.2f}",
        "ebv_nucleosomal_share": f"{nucleosomal_share(design):.3f}" if design.ebv_status != "negative" else "",
        "batch": design.batch,
        "duplicate_rate": f"{design.duplicate_rate:.4f}",
    }


def write_truth(directory: Path, designs: list[SampleDesign], settings: dict) -> None:
    rows = [truth_row(d) for d in designs]
    with atomic_output(directory / "truth.tsv", "w") as stream:
        stream.write("\t".join(rows[0]) + "\n")
        for row in rows:
            stream.write("\t".join(str(v) for v in row.values()) + "\n")
    write_json(
        directory / "truth.json",
        {"plasmacount_version": __version__, "settings": settings, "samples": [asdict(d) for d in designs]},
    )


@dataclass
class SimulationRequest:
    """What `plasmacount simulate` was asked for."""

    output: Path
    cohort: str = "nipt"
    samples: int = 10
    reads: int = 10_000_000
    seed: int = 1
    lab_seed: int = 1
    paired: bool = False
    read_length: int = 50
    output_format: str = "counts"
    genome: str = "synthetic"
    scale: float = 1 / 200
    bin_size: int | None = None
    bins: str | None = None
    fetal_fraction_median: float = 0.10
    threads: int = 2
    prefix: str | None = None
    effects: LabEffects = field(default_factory=LabEffects)
    ebv: EbvDraws = field(default_factory=EbvDraws)
    long_read_effects: LongReadEffects = field(default_factory=LongReadEffects)


FORMATS = ("counts", "bam", "cram", "fastq", "long-bam")


def run_simulation(request: SimulationRequest, progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Design a cohort, write its data in the requested format and its truth; returns data paths."""
    if request.output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {request.output_format!r}")
    if request.genome not in ("synthetic", "hg38"):
        raise UsageError(f"--genome must be synthetic or hg38, not {request.genome!r}")
    if request.genome == "hg38" and request.output_format in ("cram", "fastq", "long-bam"):
        raise UsageError(
            "--genome hg38 has no sequence here: use --format counts or bam, or --genome synthetic for CRAM/FASTQ"
        )
    if not 0 < request.scale <= 1:
        raise UsageError(f"--scale must be in (0, 1], not {request.scale}")
    if request.read_length < 20 or request.read_length > 300:
        raise UsageError(f"--read-length must be between 20 and 300, not {request.read_length}")
    output = Path(request.output)
    output.mkdir(parents=True, exist_ok=True)
    genome = None
    if request.genome == "synthetic":
        from plasmacount.synthetic_genome import make_genome

        # The genome and the lab's per-bin effects come from the lab seed, so cohorts simulated
        # with different sample seeds (a reference panel and a test batch) share them.
        genome = make_genome(request.scale, seed=request.lab_seed, bin_size=request.bin_size)
        model = GenomeModel.from_synthetic(genome, request.lab_seed, request.effects)
        contig_lengths = list(zip(genome.names, genome.lengths))
        if request.output_format != "counts":
            genome.write(output / "genome")
        else:  # counts need only the bin annotation (GC, mappability) for later steps
            (output / "genome").mkdir(exist_ok=True)
            genome.annotation().save(output / "genome" / "bins.npz")
        scale = request.scale
    elif request.bins:
        model = GenomeModel.from_annotation(BinAnnotation.load(request.bins), request.lab_seed, request.effects)
        contig_lengths = [(c.name, c.length) for c in model.layout.contigs] + model.other_contigs
        scale = model.scale
    else:
        model = GenomeModel.hg38_layout(request.bin_size or 100_000, request.lab_seed, request.effects)
        contig_lengths = list(HG38_LENGTHS.items()) + model.other_contigs
        scale = 1.0
        (output / "genome").mkdir(exist_ok=True)
        model.annotation().save(output / "genome" / "bins.npz")
    designs = design_cohort(
        request.cohort,
        request.samples,
        request.reads,
        request.seed,
        request.paired,
        request.read_length,
        scale,
        request.fetal_fraction_median,
        prefix=request.prefix,
        ebv=request.ebv,
    )
    for design in designs:
        if design.tumor_fraction:
            design.tumor_ploidy = round(_tumour_ploidy(design, model), 3)
    paths: list[Path] = []
    for index, design in enumerate(designs):
        if request.output_format == "counts":
            path = output / f"{design.sample}.counts.npz"
            simulate_counts(design, model, request.seed, index).save(path)
            paths.append(path)
        elif request.output_format == "fastq":
            assert genome is not None  # FASTQ and long reads need the synthetic genome (checked above)
            paths.extend(write_fastq(output, design, model, genome, contig_lengths, request.seed, index))
        elif request.output_format == "long-bam":
            # Whole molecules with CpG methylation (long_read_simulation); --reads is their number.
            assert genome is not None
            sample = LongReadSample(design.sample, design.reads, design.fetal_fraction or 0.0, design.fetal_sex)
            paths.append(
                write_long_read_bam(
                    output / f"{design.sample}.bam",
                    genome,
                    sample,
                    request.seed * 100_003 + index,
                    request.long_read_effects,
                    level_seed=request.lab_seed,
                )
            )
        else:
            import pysam

            bam = output / f"{design.sample}.bam"
            within = (
                (
                    lambda done, total, index=index: progress(
                        index * 1000 + 1000 * done // max(total, 1), 1000 * len(designs)
                    )
                )
                if progress
                else None
            )
            write_bam(bam, design, model, genome, contig_lengths, request.seed, index, request.threads, progress=within)
            if request.output_format == "cram":
                cram = output / f"{design.sample}.cram"
                pysam.view(
                    "-C",
                    "-T",
                    str(output / "genome" / "genome.fa"),
                    "-@",
                    str(request.threads),
                    "-o",
                    str(cram),
                    str(bam),
                    catch_stdout=False,
                )
                bam.unlink()
                pysam.index(str(cram))
                paths.append(cram)
            else:
                pysam.index("-@", str(request.threads), str(bam))
                paths.append(bam)
        if progress:
            progress(1000 * (index + 1), 1000 * len(designs))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(request).items()}
    settings["bin_size"] = model.layout.bin_size
    write_truth(output, designs, settings)
    return paths
