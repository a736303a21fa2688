"""Genomes as lists of named contigs: naming conventions, known builds, and the binned layout.

A *layout* is the ordered list of contigs that carry bins (the autosomes and sex chromosomes)
together with a bin size; every count vector in plasmacount is laid out contig after contig in
that order. Contigs outside the layout (chrM, chrEBV and other viral or decoy sequences,
unplaced scaffolds) are counted separately.

Chromosome names differ between builds and providers (`chr1` in UCSC/GRCh38 analysis sets,
`1` in Ensembl/1000 Genomes): names are matched through a key that ignores a `chr` prefix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from plasmacount.errors import DataError

# Lengths of GRCh38 (UCSC names); public facts used by the simulator and for build detection.
HG38_LENGTHS: dict[str, int] = {
    "chr1": 248956422,
    "chr2": 242193529,
    "chr3": 198295559,
    "chr4": 190214555,
    "chr5": 181538259,
    "chr6": 170805979,
    "chr7": 159345973,
    "chr8": 145138636,
    "chr9": 138394717,
    "chr10": 133797422,
    "chr11": 135086622,
    "chr12": 133275309,
    "chr13": 114364328,
    "chr14": 107043718,
    "chr15": 101991189,
    "chr16": 90338345,
    "chr17": 83257441,
    "chr18": 80373285,
    "chr19": 58617616,
    "chr20": 64444167,
    "chr21": 46709983,
    "chr22": 50818468,
    "chrX": 156040895,
    "chrY": 57227415,
}
EBV_LENGTH = 171823  # NC_007605, named chrEBV in the GRCh38 analysis set
MITOCHONDRION_LENGTH = 16569

# Approximate GRCh38 centromere midpoints (bp), for chromosome arms and the simulator.
HG38_CENTROMERES: dict[str, int] = {
    "chr1": 123_400_000,
    "chr2": 93_900_000,
    "chr3": 90_900_000,
    "chr4": 50_000_000,
    "chr5": 48_800_000,
    "chr6": 59_800_000,
    "chr7": 60_100_000,
    "chr8": 45_200_000,
    "chr9": 43_000_000,
    "chr10": 39_800_000,
    "chr11": 53_400_000,
    "chr12": 35_500_000,
    "chr13": 17_700_000,
    "chr14": 17_200_000,
    "chr15": 19_000_000,
    "chr16": 36_800_000,
    "chr17": 25_100_000,
    "chr18": 18_500_000,
    "chr19": 26_200_000,
    "chr20": 28_100_000,
    "chr21": 12_000_000,
    "chr22": 15_000_000,
    "chrX": 60_600_000,
    "chrY": 10_400_000,
}
# Centromeres per build (bp, 0-based half-open, keys as `name_key`): GRCh37 from the UCSC gap
# table's "centromere" rows, GRCh38 from the UCSC cytoband "acen" bands. Bins there count
# satellite repeats, not copy number, and are left out of copy-number fits.
CENTROMERE_REGIONS: dict[str, dict[str, tuple[int, int]]] = {
    "GRCh37": {
        "1": (121535434, 124535434),
        "2": (92326171, 95326171),
        "3": (90504854, 93504854),
        "4": (49660117, 52660117),
        "5": (46405641, 49405641),
        "6": (58830166, 61830166),
        "7": (58054331, 61054331),
        "8": (43838887, 46838887),
        "9": (47367679, 50367679),
        "10": (39254935, 42254935),
        "11": (51644205, 54644205),
        "12": (34856694, 37856694),
        "13": (16000000, 19000000),
        "14": (16000000, 19000000),
        "15": (17000000, 20000000),
        "16": (35335801, 38335801),
        "17": (22263006, 25263006),
        "18": (15460898, 18460898),
        "19": (24681782, 27681782),
        "20": (26369569, 29369569),
        "21": (11288129, 14288129),
        "22": (13000000, 16000000),
        "X": (58632012, 61632012),
        "Y": (10104553, 13104553),
    },
    "GRCh38": {
        "1": (121700000, 125100000),
        "2": (91800000, 96000000),
        "3": (87800000, 94000000),
        "4": (48200000, 51800000),
        "5": (46100000, 51400000),
        "6": (58500000, 62600000),
        "7": (58100000, 62100000),
        "8": (43200000, 47200000),
        "9": (42200000, 45500000),
        "10": (38000000, 41600000),
        "11": (51000000, 55800000),
        "12": (33200000, 37800000),
        "13": (16500000, 18900000),
        "14": (16100000, 18200000),
        "15": (17500000, 20500000),
        "16": (35300000, 38400000),
        "17": (22700000, 27400000),
        "18": (15400000, 21500000),
        "19": (24200000, 28100000),
        "20": (25700000, 30400000),
        "21": (10900000, 13000000),
        "22": (13700000, 17400000),
        "X": (58100000, 63800000),
        "Y": (10300000, 10600000),
    },
}
ACROCENTRIC = ("chr13", "chr14", "chr15", "chr21", "chr22")

# Approximate mean GC fraction of each chromosome in GRCh38; GC-rich chr19/17/22/16 and GC-poor
# chr4/13/5/18/X are what makes GC bias move chromosome fractions between samples.
HG38_MEAN_GC: dict[str, float] = {
    "chr1": 0.417,
    "chr2": 0.402,
    "chr3": 0.397,
    "chr4": 0.382,
    "chr5": 0.395,
    "chr6": 0.396,
    "chr7": 0.407,
    "chr8": 0.401,
    "chr9": 0.413,
    "chr10": 0.416,
    "chr11": 0.416,
    "chr12": 0.408,
    "chr13": 0.385,
    "chr14": 0.409,
    "chr15": 0.422,
    "chr16": 0.448,
    "chr17": 0.455,
    "chr18": 0.398,
    "chr19": 0.483,
    "chr20": 0.441,
    "chr21": 0.409,
    "chr22": 0.480,
    "chrX": 0.395,
    "chrY": 0.400,
}

# Microdeletion/duplication syndrome regions (approximate GRCh38 spans, bp).
SYNDROME_REGIONS: dict[str, tuple[str, int, int]] = {
    "1p36 deletion": ("chr1", 0, 5_000_000),
    "Wolf-Hirschhorn (4p16.3)": ("chr4", 0, 4_000_000),
    "Cri-du-chat (5p15)": ("chr5", 0, 12_000_000),
    "Prader-Willi/Angelman (15q11-q13)": ("chr15", 22_800_000, 28_500_000),
    "DiGeorge (22q11.2)": ("chr22", 18_900_000, 21_500_000),
}

# chr1 length identifies the common builds.
_BUILD_BY_CHR1_LENGTH = {248956422: "GRCh38", 249250621: "GRCh37", 248387328: "T2T-CHM13"}

_BINNED_NAME = re.compile(r"^(chr)?([1-9][0-9]?|X|Y)$", re.IGNORECASE)


AUTOSOME_KEYS = [str(i) for i in range(1, 23)]  # name keys (see name_key) of the human autosomes


def name_key(name: str) -> str:
    """The build-independent key of a contig name: `chr1` and `1` give `1`; `chrM`/`MT` give `M`."""
    key = name[3:] if name.lower().startswith("chr") else name
    if key.upper() in ("M", "MT"):
        return "M"
    return key.upper() if key.upper() in ("X", "Y") else key


def is_binned_chromosome(name: str) -> bool:
    """True for autosomes and sex chromosomes (`chr1`..`chr22`, `X`, `Y`, with or without `chr`)."""
    return bool(_BINNED_NAME.match(name))


def guess_build(contigs: dict[str, int], bin_size: int | None = None) -> str:
    """Name the build from chr1's length, or else (with `bin_size`) from chr1's number of bins."""
    for name, length in contigs.items():
        if name_key(name) == "1":
            if length in _BUILD_BY_CHR1_LENGTH:
                return _BUILD_BY_CHR1_LENGTH[length]
            if bin_size:
                matches = [
                    build
                    for known, build in _BUILD_BY_CHR1_LENGTH.items()
                    if -(-known // bin_size) == -(-length // bin_size)
                ]
                if len(matches) == 1:
                    return matches[0]
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
    def from_lengths(
        cls, names_and_lengths: Iterable[tuple[str, int]], bin_size: int, length_exact: bool = True
    ) -> Layout:
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

    def coarser(self, factor: int) -> Layout:
        """The same contigs in bins `factor` times as large."""
        return Layout.from_lengths(
            [(c.name, c.length) for c in self.contigs],
            self.bin_size * factor,
            all(c.length_exact for c in self.contigs),
        )

    def merge(self, values: np.ndarray, factor: int, how: str = "sum") -> np.ndarray:
        """Per-bin values of this layout combined over runs of `factor` bins within each contig
        (the bins of `coarser(factor)`): summed, or averaged over the finite ones ("mean")."""
        coarse = self.coarser(factor)
        values = np.asarray(values, dtype=float)
        result = np.full(coarse.n_bins, np.nan if how == "mean" else 0.0)
        for mine, theirs in zip(self.contigs, coarse.contigs):
            groups = np.arange(mine.n_bins) // factor
            chunk = values[mine.first_bin : mine.first_bin + mine.n_bins]
            if how == "sum":
                result[theirs.first_bin : theirs.first_bin + theirs.n_bins] = np.bincount(
                    groups, np.nan_to_num(chunk), theirs.n_bins
                )
            else:
                finite = np.isfinite(chunk)
                total = np.bincount(groups[finite], chunk[finite], theirs.n_bins)
                seen = np.bincount(groups[finite], minlength=theirs.n_bins)
                with np.errstate(invalid="ignore", divide="ignore"):
                    result[theirs.first_bin : theirs.first_bin + theirs.n_bins] = np.where(
                        seen > 0, total / np.maximum(seen, 1), np.nan
                    )
        return result

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
        index = (
            np.concatenate([np.full(c.n_bins, i, dtype=np.int32) for i, c in enumerate(self.contigs)])
            if self.contigs
            else np.zeros(0, np.int32)
        )
        start = (
            np.concatenate([np.arange(c.n_bins, dtype=np.int64) * self.bin_size for c in self.contigs])
            if self.contigs
            else np.zeros(0, np.int64)
        )
        lengths = np.array([c.length for c in self.contigs], dtype=np.int64)
        end = np.minimum(start + self.bin_size, lengths[index]) if self.contigs else np.zeros(0, np.int64)
        return index, start, end

    def bin_keys(self) -> np.ndarray:
        """Per bin, the name key of its contig ('1'..'22', 'X', 'Y'; see name_key)."""
        return np.array([name_key(c.name) for c in self.contigs])[self.bin_table()[0]]

    def to_json(self) -> dict:
        return {
            "bin_size": self.bin_size,
            "contigs": [
                {
                    "name": c.name,
                    "length": c.length,
                    "n_bins": c.n_bins,
                    "first_bin": c.first_bin,
                    "length_exact": c.length_exact,
                }
                for c in self.contigs
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> Layout:
        return cls(
            int(data["bin_size"]),
            tuple(
                Contig(
                    c["name"],
                    int(c["length"]),
                    int(c["n_bins"]),
                    int(c["first_bin"]),
                    bool(c.get("length_exact", True)),
                )
                for c in data["contigs"]
            ),
        )

    @property
    def build(self) -> str:
        exact = all(c.length_exact for c in self.contigs)
        return guess_build({c.name: c.length for c in self.contigs}, None if exact else self.bin_size)


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
            build_here = guess_build(dict(contigs), layout.bin_size)
            expected = (
                f"{contig.length:,} bp" if contig.length_exact else f"{contig.n_bins:,} bins of {layout.bin_size:,} bp"
            )
            raise DataError(
                f"{what}: contig {name} is {length:,} bp ({n_bins:,} bins) but {against} expects {expected} "
                f"({build_here} vs {layout.build}): genome builds differ; use bins of the same build"
            )


def contiguous_bin_size(rows: dict[str, list[tuple]], path: str | os.PathLike, what: str) -> int:
    """The bin size of a per-bin table whose rows per contig start with (start, end): every bin
    of one size, contiguous from 0 (the last of a contig may be shorter). DataError otherwise."""
    first = next(iter(rows.values()))
    bin_size = first[0][1] - first[0][0]
    for chrom, values in rows.items():
        for i, (start, end, *_rest) in enumerate(values):
            if start != i * bin_size or (end - start != bin_size and i != len(values) - 1):
                raise DataError(
                    f"{path}: bins of {chrom} are not contiguous {bin_size:,} bp bins from 0 (bin {i}); the {what} is corrupt, re-create it"
                )
    return bin_size


def centromere_regions(layout: Layout) -> dict[str, tuple[int, int]]:
    """Centromere of each chromosome (by `name_key`) of the layout's build; for an unknown build
    (a scaled test genome) the GRCh38 ones, scaled by chr1's length."""
    chr1 = next((c.length for c in layout.contigs if name_key(c.name) == "1"), None)
    build = guess_build({"1": chr1}, layout.bin_size) if chr1 else "unknown"
    if build in CENTROMERE_REGIONS:
        return CENTROMERE_REGIONS[build]
    scale = chr1 / HG38_LENGTHS["chr1"] if chr1 else 1.0
    return {key: (int(start * scale), int(end * scale)) for key, (start, end) in CENTROMERE_REGIONS["GRCh38"].items()}


def centromere_bins(layout: Layout, flank: int = 100_000) -> np.ndarray:
    """True for bins that overlap a centromere or its `flank` (ichorCNA leaves out 100 kb on each side)."""
    regions = centromere_regions(layout)
    _, start, end = layout.bin_table()
    keys = layout.bin_keys()
    mask = np.zeros(layout.n_bins, dtype=bool)
    for key, (first, last) in regions.items():
        mask |= (keys == key) & (end > first - flank) & (start < last + flank)
    return mask
