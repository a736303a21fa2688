"""Genomes as lists of named contigs: naming conventions, known builds, and the binned layout.

A *layout* is the ordered list of contigs that carry bins (the autosomes and sex chromosomes)
together with a bin size; every count vector in plasmacount is laid out contig after contig in
that order. Contigs outside the layout (chrM, chrEBV and other viral or decoy sequences,
unplaced scaffolds) are counted separately.

Chromosome names differ between builds and providers (`chr1` in UCSC/GRCh38 analysis sets,
`1` in Ensembl/1000 Genomes): names are matched through a key that ignores a `chr` prefix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from plasmacount.errors import DataError

# Lengths of GRCh38 (UCSC names); public facts used by the simulator and for build detection.
HG38_LENGTHS: dict[str, int] = {
    "chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555, "chr5": 181538259,
    "chr6": 170805979, "chr7": 159345973, "chr8": 145138636, "chr9": 138394717, "chr10": 133797422,
    "chr11": 135086622, "chr12": 133275309, "chr13": 114364328, "chr14": 107043718,
    "chr15": 101991189, "chr16": 90338345, "chr17": 83257441, "chr18": 80373285, "chr19": 58617616,
    "chr20": 64444167, "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415,
}
EBV_LENGTH = 171823  # NC_007605, named chrEBV in the GRCh38 analysis set

# chr1 length identifies the common builds.
_BUILD_BY_CHR1_LENGTH = {248956422: "GRCh38", 249250621: "GRCh37", 248387328: "T2T-CHM13"}

_BINNED_NAME = re.compile(r"^(chr)?([1-9][0-9]?|X|Y)$", re.IGNORECASE)


def name_key(name: str) -> str:
    """The build-independent key of a contig name: `chr1` and `1` give `1`; `chrM`/`MT` give `M`."""
    key = name[3:] if name.lower().startswith("chr") else name
    if key.upper() in ("M", "MT"):
        return "M"
    return key.upper() if key.upper() in ("X", "Y") else key


def is_binned_chromosome(name: str) -> bool:
    """True for autosomes and sex chromosomes (`chr1`..`chr22`, `X`, `Y`, with or without `chr`)."""
    return bool(_BINNED_NAME.match(name))


def guess_build(contigs: dict[str, int]) -> str:
    """Name the build from chr1's length, or 'unknown'."""
    for name, length in contigs.items():
        if name_key(name) == "1":
            return _BUILD_BY_CHR1_LENGTH.get(length, "unknown")
    return "unknown"


@dataclass(frozen=True)
class Contig:
    """One binned contig: its name, length, number of bins and first bin in the genome-wide vector."""

    name: str
    length: int
    n_bins: int
    first_bin: int
    length_exact: bool = True


@dataclass(frozen=True)
class Layout:
    """Bins of a fixed size laid contig after contig over a genome."""

    bin_size: int
    contigs: tuple[Contig, ...]

    @classmethod
    def from_lengths(cls, names_and_lengths: Iterable[tuple[str, int]], bin_size: int, length_exact: bool = True) -> "Layout":
        contigs = []
        first = 0
        for name, length in names_and_lengths:
            n_bins = -(-int(length) // bin_size)
            contigs.append(Contig(name, int(length), n_bins, first, length_exact))
            first += n_bins
        return cls(int(bin_size), tuple(contigs))

    @property
    def n_bins(self) -> int:
        return sum(contig.n_bins for contig in self.contigs)

    @property
    def names(self) -> list[str]:
        return [contig.name for contig in self.contigs]

    def contig(self, name: str) -> Contig:
        key = name_key(name)
        for contig in self.contigs:
            if name_key(contig.name) == key:
                return contig
        raise KeyError(name)

    def has(self, name: str) -> bool:
        key = name_key(name)
        return any(name_key(contig.name) == key for contig in self.contigs)

    def bin_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bin: contig index, 0-based start, end (clipped to the contig length)."""
        index = np.concatenate([np.full(c.n_bins, i, dtype=np.int32) for i, c in enumerate(self.contigs)]) if self.contigs else np.zeros(0, np.int32)
        start = np.concatenate([np.arange(c.n_bins, dtype=np.int64) * self.bin_size for c in self.contigs]) if self.contigs else np.zeros(0, np.int64)
        lengths = np.array([c.length for c in self.contigs], dtype=np.int64)
        end = np.minimum(start + self.bin_size, lengths[index]) if self.contigs else np.zeros(0, np.int64)
        return index, start, end

    def to_json(self) -> dict:
        return {
            "bin_size": self.bin_size,
            "contigs": [
                {"name": c.name, "length": c.length, "n_bins": c.n_bins, "first_bin": c.first_bin, "length_exact": c.length_exact}
                for c in self.contigs
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Layout":
        return cls(
            int(data["bin_size"]),
            tuple(Contig(c["name"], int(c["length"]), int(c["n_bins"]), int(c["first_bin"]), bool(c.get("length_exact", True))) for c in data["contigs"]),
        )

    @property
    def build(self) -> str:
        return guess_build({c.name: c.length for c in self.contigs if c.length_exact})


def check_compatible(layout: Layout, contigs: Sequence[tuple[str, int]], what: str, against: str) -> None:
    """Refuse to use `layout` (from `against`) for a file (`what`) with contigs `contigs`.

    Contigs are matched by name key; each shared contig must have the same length (or, where the
    layout's lengths are only known to the bin, the same number of bins). Raises DataError naming
    the first mismatch, which in practice means the two files come from different genome builds.
    """
    by_key = {name_key(name): (name, int(length)) for name, length in contigs}
    shared = [c for c in layout.contigs if name_key(c.name) in by_key]
    if not shared:
        present = ", ".join(name for name, _ in list(contigs)[:8]) or "none"
        raise DataError(
            f"{what}: none of its contigs ({present}) match the bins in {against}; "
            "use an annotation made for this genome build"
        )
    for contig in shared:
        name, length = by_key[name_key(contig.name)]
        n_bins = -(-length // layout.bin_size)
        if (contig.length_exact and contig.length != length) or n_bins != contig.n_bins:
            build_here = guess_build({n: l for n, l in contigs})
            build_there = layout.build
            raise DataError(
                f"{what}: contig {name} is {length:,} bp but {against} expects {contig.length:,} bp "
                f"({build_here} vs {build_there}): genome builds differ; use an annotation of the same build"
            )
