"""Simulated long-read plasma: whole cfDNA molecules with their CpG methylation and known origins.

Single-molecule sequencing of plasma (nanopore, PacBio) reads each cfDNA molecule end to end and
its CpG methylation at once. This module writes such data as an aligned BAM (unpaired reads,
MM/ML tags) over the synthetic genome, from molecules whose origin (maternal blood or placenta)
is known, so the long-molecule histogram, the methylation counts and the fetal fraction from
methylation can be checked against the truth.

Every effect is an assumption with a knob (`LongReadEffects`), the pessimistic setting beside
the default; docs/simulation.md gives their sources:
- lengths: a nucleosomal peak (maternal 167 bp, placental 143 bp) and a log-normal tail of long
  molecules (maternal median 1.5 kb, 30 % of molecules; placental median 900 bp, 15 %): long
  cfDNA is mostly maternal (Yu et al. 2021, PNAS);
- methylation per 100 kb region: blood around 75 % methylated (region to region SD 8 %), placenta
  about 20 points lower (placental hypomethylation, Lun et al. 2013), with its own region-to-region
  deviation from that offset (`placental_region_sd`; pessimistic 0.15): the estimator is not told
  this deviation;
- each molecule's own level scatters around its region's level (Beta with concentration
  `molecule_concentration`, pessimistic 5), and each CpG is then methylated with that probability;
- calls: a methylated CpG reads as methylated with probability 1 - `call_error` (and the other
  way round), with an ML probability drawn on the called side of 128.
"""

from __future__ import annotations

import array
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from plasmacount.files import atomic_path
from plasmacount.genome import name_key
from plasmacount.synthetic_genome import SyntheticGenome

COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")


@dataclass(frozen=True)
class LongReadEffects:
    """The assumptions of the long-read simulator (see the module docstring)."""

    maternal_peak: float = 167.0
    placental_peak: float = 143.0
    maternal_long_share: float = 0.30
    placental_long_share: float = 0.15
    maternal_long_median: float = 1500.0
    placental_long_median: float = 900.0
    long_sigma: float = 1.0
    longest: int = 50_000
    blood_level: float = 0.75
    blood_region_sd: float = 0.08
    placental_offset: float = -0.20
    placental_region_sd: float = 0.08
    molecule_concentration: float = 20.0
    call_error: float = 0.05

    @classmethod
    def pessimistic(cls) -> LongReadEffects:
        """Placenta and blood closer and noisier: regions deviate more, molecules scatter more."""
        return cls(placental_offset=-0.15, placental_region_sd=0.15, molecule_concentration=5.0, call_error=0.10)


@dataclass(frozen=True)
class LongReadSample:
    """The truth of one simulated long-read sample."""

    sample: str
    molecules: int
    fetal_fraction: float  # share of molecules from the placenta (0: not pregnant)
    fetal_sex: str | None  # "male", "female", or None when not pregnant


def region_levels(genome: SyntheticGenome, seed: int, effects: LongReadEffects) -> tuple[np.ndarray, np.ndarray]:
    """Methylation level of blood and placenta per bin of the genome's layout (fixed by `seed`:
    the same tissues in every sample)."""
    layout = genome.layout()
    rng = np.random.default_rng(seed)
    blood = np.clip(rng.normal(effects.blood_level, effects.blood_region_sd, layout.n_bins), 0.02, 0.98)
    placenta = np.clip(
        blood + effects.placental_offset + rng.normal(0, effects.placental_region_sd, layout.n_bins), 0.02, 0.98
    )
    return blood, placenta


def _lengths(
    rng: np.random.Generator, n: int, peak: float, long_share: float, long_median: float, effects: LongReadEffects
) -> np.ndarray:
    long_ = rng.random(n) < long_share
    lengths = np.where(long_, np.exp(rng.normal(np.log(long_median), effects.long_sigma, n)), rng.normal(peak, 15, n))
    return np.clip(np.round(lengths), 60, effects.longest).astype(np.int64)


def write_long_read_bam(
    path: str | os.PathLike,
    genome: SyntheticGenome,
    sample: LongReadSample,
    seed: int,
    effects: LongReadEffects = LongReadEffects(),
    level_seed: int = 1,
) -> Path:
    """A coordinate-sorted, indexed BAM of `sample.molecules` whole molecules with MM/ML tags."""
    import pysam

    rng = np.random.default_rng(seed)
    layout = genome.layout()
    blood, placenta = region_levels(genome, level_seed, effects)
    names = [n for n in genome.names if name_key(n) not in ("M", "EBV")]
    lengths_of = {n: genome.sequence(n).size for n in names}

    # Dosage per origin: the mother is XX; the fetus XY or XX.
    def weights(fetal: bool) -> np.ndarray:
        result = []
        for n in names:
            key = name_key(n)
            if key == "Y":
                copies = 1.0 if fetal and sample.fetal_sex == "male" else 0.0
            elif key == "X":
                copies = 1.0 if fetal and sample.fetal_sex == "male" else 2.0
            else:
                copies = 2.0
            result.append(copies * lengths_of[n])
        weights = np.array(result, dtype=float)
        return weights / weights.sum()

    fetal = rng.random(sample.molecules) < sample.fetal_fraction
    records = []
    for is_fetal in (False, True):
        n = int((fetal == is_fetal).sum())
        if n == 0:
            continue
        contig = rng.choice(len(names), size=n, p=weights(is_fetal))
        length = _lengths(
            rng,
            n,
            effects.placental_peak if is_fetal else effects.maternal_peak,
            effects.placental_long_share if is_fetal else effects.maternal_long_share,
            effects.placental_long_median if is_fetal else effects.maternal_long_median,
            effects,
        )
        for c, L in zip(contig.tolist(), length.tolist()):
            size = lengths_of[names[c]]
            L = min(L, size - 1)
            records.append((c, int(rng.integers(0, size - L)), L, is_fetal))
    records.sort()
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": n, "LN": s} for n, s in zip(genome.names, genome.lengths)],
        "RG": [{"ID": "long", "SM": sample.sample, "PL": "ONT"}],
    }
    tid = {n: i for i, n in enumerate(genome.names)}
    with atomic_path(path) as temporary:
        with pysam.AlignmentFile(str(temporary), "wb", header=header) as out:
            for i, (c, start, L, is_fetal) in enumerate(records):
                name = names[c]
                sequence = genome.sequence(name)[start : start + L].tobytes()
                reverse = bool(rng.random() < 0.5)
                original = sequence.translate(COMPLEMENT)[::-1] if reverse else sequence
                # CpG sites: the C of each CG in the molecule's own read orientation.
                cytosine = np.frombuffer(original, dtype=np.uint8) == ord("C")
                cpg = np.flatnonzero(cytosine[:-1] & (np.frombuffer(original, dtype=np.uint8)[1:] == ord("G")))
                global_bin = layout.contig(name).first_bin + start // genome.bin_size if layout.has(name) else -1
                if cpg.size and global_bin >= 0:
                    level = placenta[global_bin] if is_fetal else blood[global_bin]
                    kappa = effects.molecule_concentration
                    own = rng.beta(level * kappa, (1 - level) * kappa)
                    methylated = rng.random(cpg.size) < own
                    called = methylated ^ (rng.random(cpg.size) < effects.call_error)
                    ml = np.where(called, rng.integers(160, 256, cpg.size), rng.integers(0, 96, cpg.size))
                    rank = np.cumsum(cytosine) - 1  # index of each C among the read's Cs
                    listed = rank[cpg]
                    deltas = np.diff(np.concatenate([[-1], listed])) - 1
                    mm = "C+m?," + ",".join(map(str, deltas.tolist())) + ";"
                else:
                    mm, ml = None, np.zeros(0, dtype=np.int64)
                record = pysam.AlignedSegment(out.header)
                record.query_name = f"{sample.sample}_{i:08d}_{'P' if is_fetal else 'B'}"
                record.flag = 16 if reverse else 0
                record.reference_id = tid[name]
                record.reference_start = start
                record.mapping_quality = 60
                record.cigartuples = [(0, L)]
                record.query_sequence = sequence.decode()
                if mm is not None:
                    record.set_tag("MM", mm, "Z")
                    record.set_tag("ML", array.array("B", ml.astype(np.uint8).tolist()))
                record.set_tag("RG", "long", "Z")
                out.write(record)
        pysam.index(str(temporary), str(temporary) + ".bai")
    os.replace(str(temporary) + ".bai", str(path) + ".bai")
    return Path(path)


def truth_row(sample: LongReadSample, effects: LongReadEffects) -> dict:
    return asdict(sample) | {"effects": asdict(effects)}
