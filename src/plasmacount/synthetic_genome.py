"""A scaled synthetic human genome that an aligner can map reads back to.

Read-level tests and the FASTQ-to-report workflow need a reference FASTA, and hg38 is too big
for this project's machines. The synthetic genome keeps hg38's chromosome names and relative
lengths (scaled, default 1/200) and the features that matter for counting:
- isochores: stretches of 100 kb-1 Mb (scaled) whose GC lies between 35 and 60 %, drawn
  around each chromosome's real mean GC, so GC bias moves chr19/chr22 against chr13/chr4;
- N gaps at centromeres, and mostly-N short arms on the acrocentric chromosomes;
- low-mappability stretches: a few repeat families copied (with 0.5 % divergence) to several
  places, and the pseudo-autosomal region shared by chrX and chrY, where reads get MAPQ 0;
- chrM and chrEBV (the Epstein-Barr virus genome at its real 171,823 bp, with a BamHI-W-like
  internal repeat), outside the binned chromosomes.
Sequences are otherwise random, so reads map uniquely everywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasmacount.bins import BinAnnotation
from plasmacount.files import atomic_output
from plasmacount.genome import (
    ACROCENTRIC,
    EBV_LENGTH,
    HG38_CENTROMERES,
    HG38_LENGTHS,
    HG38_MEAN_GC,
    MITOCHONDRION_LENGTH,
    Layout,
)

BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
# BamHI-W (IR1) in the real EBV genome: ~3.1 kb units repeated, starting near 12 kb.
EBV_W_REPEAT_START = 12_000
EBV_W_REPEAT_UNIT = 3_072
EBV_W_REPEAT_COPIES = 7


@dataclass
class SyntheticGenome:
    """Sequences (ASCII codes) and a per-base uniqueness mask of every contig."""

    names: list[str]
    sequences: list[np.ndarray]
    unique: list[np.ndarray]
    scale: float
    bin_size: int

    @property
    def lengths(self) -> list[int]:
        return [s.size for s in self.sequences]

    def layout(self) -> Layout:
        return Layout.from_lengths(
            ((n, s.size) for n, s in zip(self.names, self.sequences) if n in HG38_LENGTHS), self.bin_size
        )

    def sequence(self, name: str) -> np.ndarray:
        return self.sequences[self.names.index(name)]

    def annotation(self) -> BinAnnotation:
        """GC, N content and true mappability (share of unique bases) of every bin."""
        layout = self.layout()
        gc = np.full(layout.n_bins, np.nan)
        n_fraction = np.zeros(layout.n_bins)
        mappability = np.zeros(layout.n_bins)
        for contig in layout.contigs:
            sequence = self.sequence(contig.name)
            unique = self.unique[self.names.index(contig.name)]
            padded = contig.n_bins * self.bin_size
            is_gc = np.zeros(padded, dtype=bool)
            is_n = np.zeros(padded, dtype=bool)
            is_unique = np.zeros(padded, dtype=bool)
            is_gc[: sequence.size] = (sequence == ord("G")) | (sequence == ord("C"))
            is_n[: sequence.size] = sequence == ord("N")
            is_unique[: sequence.size] = unique
            bin_length = np.minimum(self.bin_size, sequence.size - np.arange(contig.n_bins) * self.bin_size)
            n_per_bin = is_n.reshape(contig.n_bins, -1).sum(axis=1)
            known = bin_length - n_per_bin
            span = slice(contig.first_bin, contig.first_bin + contig.n_bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                gc[span] = np.where(known > 0, is_gc.reshape(contig.n_bins, -1).sum(axis=1) / known, np.nan)
            n_fraction[span] = n_per_bin / bin_length
            mappability[span] = is_unique.reshape(contig.n_bins, -1).sum(axis=1) / bin_length
        return BinAnnotation(
            layout,
            gc,
            n_fraction,
            mappability,
            np.zeros(layout.n_bins),
            sources=[f"synthetic genome, scale 1/{round(1 / self.scale)}"],
        )

    def write(self, directory: str | os.PathLike) -> Path:
        """Write genome.fa (+ .fai) and bins.npz into `directory`; returns the FASTA path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fasta = directory / "genome.fa"
        line = 60
        index_lines = []
        with atomic_output(fasta, "wb") as stream:
            offset = 0
            for name, sequence in zip(self.names, self.sequences):
                header = f">{name}\n".encode()
                stream.write(header)
                offset += len(header)
                index_lines.append(f"{name}\t{sequence.size}\t{offset}\t{line}\t{line + 1}\n")
                n_full = sequence.size // line
                body = np.full((n_full, line + 1), ord("\n"), dtype=np.uint8)
                body[:, :line] = sequence[: n_full * line].reshape(n_full, line)
                stream.write(body.tobytes())
                rest = sequence[n_full * line :]
                if rest.size:
                    stream.write(rest.tobytes() + b"\n")
                offset += body.size + (rest.size + 1 if rest.size else 0)
        with atomic_output(str(fasta) + ".fai", "w") as stream:
            stream.writelines(index_lines)
        self.annotation().save(directory / "bins.npz")
        return fasta


def _random_bases(rng: np.random.Generator, gc: np.ndarray) -> np.ndarray:
    """One base per entry of `gc`, G/C with probability gc."""
    u = rng.random(gc.size)
    at = (1.0 - gc) / 2.0
    return np.where(
        u < at, ord("A"), np.where(u < 2 * at, ord("T"), np.where(u < 2 * at + gc / 2, ord("C"), ord("G")))
    ).astype(np.uint8)


def isochore_gc(rng: np.random.Generator, length: int, mean_gc: float, mean_segment: float) -> np.ndarray:
    """Per-base GC probability of a contig made of isochores around `mean_gc`, within 0.35-0.60."""
    gc = np.empty(length)
    position = 0
    while position < length:
        segment = max(1, int(rng.exponential(mean_segment)))
        gc[position : position + segment] = np.clip(rng.normal(mean_gc, 0.04), 0.35, 0.60)
        position += segment
    return gc


def make_genome(scale: float = 1 / 200, seed: int = 1, bin_size: int | None = None) -> SyntheticGenome:
    """Build the synthetic genome (deterministic for a seed); see the module docstring."""
    rng = np.random.default_rng(seed)
    bin_size = bin_size or max(1000, int(round(100_000 * scale / 1000)) * 1000)
    names, sequences, unique = [], [], []
    mean_segment = 400_000 * scale
    for name, full_length in HG38_LENGTHS.items():
        length = max(int(full_length * scale), 10 * bin_size)
        sequence = _random_bases(rng, isochore_gc(rng, length, HG38_MEAN_GC[name], mean_segment))
        is_unique = np.ones(length, dtype=bool)
        centromere = int(HG38_CENTROMERES[name] * scale)
        gap = max(int(3_000_000 * scale), 200)
        if name in ACROCENTRIC:
            sequence[: centromere + gap // 2] = ord("N")
        else:
            sequence[max(0, centromere - gap // 2) : centromere + gap // 2] = ord("N")
        # Telomeric N caps as in the real assembly.
        cap = max(int(10_000 * scale), 50)
        sequence[:cap] = ord("N")
        sequence[-cap:] = ord("N")
        names.append(name)
        sequences.append(sequence)
        unique.append(is_unique)
    # Repeat families copied across the genome: low-mappability stretches.
    for _family in range(12):
        unit_length = int(rng.integers(1500, 6000))
        unit = _random_bases(rng, np.full(unit_length, 0.42))
        for _copy in range(int(rng.integers(3, 9))):
            index = int(rng.integers(0, len(names)))
            sequence = sequences[index]
            start = int(rng.integers(0, sequence.size - unit_length))
            if (sequence[start : start + unit_length] == ord("N")).any():
                continue
            copy = unit.copy()
            mutate = rng.random(unit_length) < 0.005
            copy[mutate] = BASES[rng.integers(0, 4, mutate.sum())]
            sequence[start : start + unit_length] = copy
            unique[index][start : start + unit_length] = False
    # Pseudo-autosomal region 1: identical start of chrX and chrY.
    x, y = names.index("chrX"), names.index("chrY")
    par = max(int(2_700_000 * scale), 500)
    cap = max(int(10_000 * scale), 50)
    sequences[y][cap:par] = sequences[x][cap:par]
    unique[x][cap:par] = False
    unique[y][cap:par] = False
    # Mitochondrion and EBV.
    names.append("chrM")
    sequences.append(_random_bases(rng, np.full(MITOCHONDRION_LENGTH, 0.44)))
    unique.append(np.ones(MITOCHONDRION_LENGTH, dtype=bool))
    ebv = _random_bases(rng, np.full(EBV_LENGTH, 0.60))
    ebv_unique = np.ones(EBV_LENGTH, dtype=bool)
    unit = ebv[EBV_W_REPEAT_START : EBV_W_REPEAT_START + EBV_W_REPEAT_UNIT].copy()
    for repeat in range(1, EBV_W_REPEAT_COPIES):
        start = EBV_W_REPEAT_START + repeat * EBV_W_REPEAT_UNIT
        ebv[start : start + EBV_W_REPEAT_UNIT] = unit
    ebv_unique[EBV_W_REPEAT_START : EBV_W_REPEAT_START + EBV_W_REPEAT_COPIES * EBV_W_REPEAT_UNIT] = False
    names.append("chrEBV")
    sequences.append(ebv)
    unique.append(ebv_unique)
    for sequence, is_unique in zip(sequences, unique):
        is_unique &= sequence != ord("N")
    return SyntheticGenome(names, sequences, unique, scale, bin_size)
