"""A sample's counts: cfDNA fragments per genomic bin, fragment sizes, and counting QC.

This is what every analysis reads. Counts come from alignments (`alignments.count_alignments`)
or from counts made elsewhere (an HMMcopy readCounter WIG or a `chrom start end count` TSV).

File format ("plasmacount-counts", version 1): an archive (see `files`) with `metadata.json`
and int64 arrays:
- `counts`: fragments per bin, bins laid contig after contig (`metadata.layout`);
- `short`, `long`: per bin, fragments whose length is in `metadata.short_range` /
  `metadata.long_range` (inclusive; zeros for single-end data);
- `fragment_lengths`: genome-wide histogram of fragment lengths over the binned contigs,
  index = length in bp, the last entry counts every longer fragment;
- `other_counts`, `other_fragment_lengths`: the same for each contig outside the bins
  (`metadata.other_contigs`: chrEBV, chrM, decoys), one row per contig;
- `long_molecule_edges`, `long_molecule_lengths` (1.1): molecules longer than the exact
  histogram on the binned contigs, in log-spaced classes: class i holds lengths from edge i up
  to edge i + 1 (the last, everything from the last edge on).
`metadata.qc` holds the read tallies; `metadata.per_contig_counts` the counted fragments by contig.
Minor versions add keys; a major version change means older readers must refuse the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plasmacount import __version__
from plasmacount.errors import DataError
from plasmacount.files import atomic_output, check_unique_inputs, read_archive, write_archive
from plasmacount.genome import Layout, contiguous_bin_size

FORMAT = "plasmacount-counts"
FORMAT_VERSION = "1.1"  # 1.1: long_molecule_edges, long_molecule_lengths
DEFAULT_SHORT_RANGE = (100, 150)
DEFAULT_LONG_RANGE = (151, 220)
DEFAULT_LONGEST_LENGTH = 5000  # histogram covers 0..5000 bp, then one overflow bucket
LONGEST_MOLECULE_CLASS = 100_000  # long molecules are classed up to 100 kb, then one open class
LONG_CLASSES_PER_DECADE = 20  # 12 % wide classes, with edges at 10, 20, 50 (about) and 100 kb


def long_molecule_edges(longest_length: int = DEFAULT_LONGEST_LENGTH) -> np.ndarray:
    """Lower edges of the log-spaced length classes above the exact histogram (see the module
    docstring): the first just above the exact range, then just above 1 kb x 10^(i/20) (so the
    classes from 10,001 bp on hold the molecules above 10 kb), up to the open class above 100 kb."""
    low = longest_length + 1
    grid = 1 + np.round(1000 * 10 ** (np.arange(0, 2 * LONG_CLASSES_PER_DECADE + 1) / LONG_CLASSES_PER_DECADE)).astype(
        np.int64
    )
    return np.concatenate([[low], grid[(grid > 1.05 * low) & (grid <= LONGEST_MOLECULE_CLASS + 1)]]).astype(np.int64)


LONG_MOLECULE_EDGES = long_molecule_edges()


@dataclass
class SampleCounts:
    """Counts of one sample over a binned layout, with fragment-size summaries."""

    sample: str
    layout: Layout
    counts: np.ndarray
    paired: bool = False
    # The arrays left out (None) are made in __post_init__ (zeros of the layout's and contigs' shapes),
    # so every SampleCounts holds them all: typed as arrays for the code that reads them.
    short: np.ndarray = None  # type: ignore[assignment]
    long: np.ndarray = None  # type: ignore[assignment]
    fragment_lengths: np.ndarray = None  # type: ignore[assignment]
    other_contigs: list[dict] = field(default_factory=list)
    other_counts: np.ndarray = None  # type: ignore[assignment]
    other_fragment_lengths: np.ndarray = None  # type: ignore[assignment]
    short_range: tuple[int, int] = DEFAULT_SHORT_RANGE
    long_range: tuple[int, int] = DEFAULT_LONG_RANGE
    qc: dict = field(default_factory=dict)
    per_contig_counts: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    filters: dict = field(default_factory=dict)
    long_molecule_edges: np.ndarray = None  # type: ignore[assignment]
    long_molecule_lengths: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = self.layout.n_bins
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.short is None:
            self.short = np.zeros(n, dtype=np.int64)
        if self.long is None:
            self.long = np.zeros(n, dtype=np.int64)
        if self.fragment_lengths is None:
            self.fragment_lengths = np.zeros(DEFAULT_LONGEST_LENGTH + 2, dtype=np.int64)
        if self.other_counts is None:
            self.other_counts = np.zeros(len(self.other_contigs), dtype=np.int64)
        if self.other_fragment_lengths is None:
            self.other_fragment_lengths = np.zeros(
                (len(self.other_contigs), self.fragment_lengths.size), dtype=np.int64
            )
        if self.long_molecule_edges is None or self.long_molecule_lengths is None:
            self.long_molecule_edges = long_molecule_edges(self.fragment_lengths.size - 2)
            self.long_molecule_lengths = np.zeros(self.long_molecule_edges.size, dtype=np.int64)

    @property
    def bin_size(self) -> int:
        return self.layout.bin_size

    def merged(self, factor: int) -> SampleCounts:
        """The same sample counted in bins `factor` times as large."""
        layout = self.layout
        as_int = lambda values: np.rint(layout.merge(values, factor)).astype(np.int64)  # noqa: E731
        return dataclasses.replace(
            self,
            layout=layout.coarser(factor),
            counts=as_int(self.counts),
            short=as_int(self.short),
            long=as_int(self.long),
            per_contig_counts=dict(self.per_contig_counts),
        )

    def chromosome_counts(self) -> dict[str, int]:
        """Counted fragments per binned contig."""
        return {c.name: int(self.counts[c.first_bin : c.first_bin + c.n_bins].sum()) for c in self.layout.contigs}

    def on_layout(self, layout: Layout) -> SampleCounts:
        """The same counts laid over another layout of the same bin size (contigs matched by
        name key, so `1` fills `chr1`); bins of contigs this sample lacks are zero."""
        if layout.bin_size != self.layout.bin_size:
            raise DataError(
                f"{self.sample}: counted in {self.bin_size:,} bp bins, not {layout.bin_size:,} bp; recount with matching bins"
            )
        arrays = {name: np.zeros(layout.n_bins, dtype=np.int64) for name in ("counts", "short", "long")}
        for contig in layout.contigs:
            if not self.layout.has(contig.name):
                continue
            mine = self.layout.contig(contig.name)
            n = min(mine.n_bins, contig.n_bins)
            for name, target in arrays.items():
                target[contig.first_bin : contig.first_bin + n] = getattr(self, name)[
                    mine.first_bin : mine.first_bin + n
                ]
        return SampleCounts(
            sample=self.sample,
            layout=layout,
            counts=arrays["counts"],
            paired=self.paired,
            short=arrays["short"],
            long=arrays["long"],
            fragment_lengths=self.fragment_lengths,
            other_contigs=self.other_contigs,
            other_counts=self.other_counts,
            other_fragment_lengths=self.other_fragment_lengths,
            short_range=self.short_range,
            long_range=self.long_range,
            qc=dict(self.qc),
            per_contig_counts=dict(self.per_contig_counts),
            source=dict(self.source),
            filters=dict(self.filters),
            long_molecule_edges=self.long_molecule_edges,
            long_molecule_lengths=self.long_molecule_lengths,
        )

    def save(self, path: str | os.PathLike) -> None:
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "plasmacount_version": __version__,
            "sample": self.sample,
            "source": self.source,
            "build": self.layout.build,
            "layout": self.layout.to_json(),
            "paired": bool(self.paired),
            "short_range": list(self.short_range),
            "long_range": list(self.long_range),
            "longest_length": int(self.fragment_lengths.size - 2),
            "other_contigs": self.other_contigs,
            "filters": self.filters,
            "qc": self.qc,
            "per_contig_counts": self.per_contig_counts or self.chromosome_counts(),
        }
        arrays = {
            "counts": self.counts,
            "short": self.short,
            "long": self.long,
            "fragment_lengths": self.fragment_lengths,
            "other_counts": self.other_counts,
            "other_fragment_lengths": self.other_fragment_lengths,
            "long_molecule_edges": self.long_molecule_edges,
            "long_molecule_lengths": self.long_molecule_lengths,
        }
        write_archive(path, metadata, {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SampleCounts:
        metadata, arrays = read_archive(path, FORMAT, 1)
        layout = Layout.from_json(metadata["layout"])
        if "counts" not in arrays or arrays["counts"].shape != (layout.n_bins,):
            raise DataError(f"{path}: counts array missing or of the wrong length; recount the sample")
        # Arrays an older or a single-end file lacks come back None, which __post_init__ fills.
        stored: Any = arrays
        return cls(
            sample=metadata["sample"],
            layout=layout,
            counts=arrays["counts"],
            paired=bool(metadata.get("paired", False)),
            short=stored.get("short"),
            long=stored.get("long"),
            fragment_lengths=stored.get("fragment_lengths"),
            other_contigs=list(metadata.get("other_contigs", [])),
            other_counts=stored.get("other_counts"),
            other_fragment_lengths=stored.get("other_fragment_lengths"),
            short_range=tuple(metadata.get("short_range", DEFAULT_SHORT_RANGE)),
            long_range=tuple(metadata.get("long_range", DEFAULT_LONG_RANGE)),
            qc=dict(metadata.get("qc", {})),
            per_contig_counts=dict(metadata.get("per_contig_counts", {})),
            source=dict(metadata.get("source", {})),
            filters=dict(metadata.get("filters", {})),
            long_molecule_edges=stored.get("long_molecule_edges"),
            long_molecule_lengths=stored.get("long_molecule_lengths"),
        )

    def write_tsv(self, path: str | os.PathLike) -> None:
        """Per-bin table `chrom start end count` (plus `short long` for paired-end data), 0-based starts."""
        index, start, end = self.layout.bin_table()
        names = self.layout.names
        with atomic_output(path, "w") as stream:
            stream.write("chrom\tstart\tend\tcount" + ("\tshort\tlong" if self.paired else "") + "\n")
            columns = [start, end, self.counts] + ([self.short, self.long] if self.paired else [])
            rows = np.column_stack(columns)
            for contig_index, name in enumerate(names):
                block = rows[index == contig_index]
                if block.size:
                    stream.write("".join(name + "\t" + "\t".join(map(str, row)) + "\n" for row in block.tolist()))


def sample_name_from_path(path: str | os.PathLike) -> str:
    """The file name without directory and without known extensions."""
    name = Path(path).name
    for suffix in (".gz", ".wig", ".tsv", ".txt", ".bam", ".cram", ".npz", ".counts", ".reads"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or Path(path).name


def import_wig(path: str | os.PathLike, sample: str | None = None) -> SampleCounts:
    """Counts from an HMMcopy readCounter fixedStep WIG (as used by ichorCNA)."""
    from plasmacount.bins import read_fixed_step_wig

    layout, values = read_fixed_step_wig(path)
    if np.any(values < 0) or np.any(values != np.round(values)):
        raise DataError(f"{path}: WIG holds negative or non-integer values, not read counts; pass a readCounter WIG")
    counts = values.astype(np.int64)
    return SampleCounts(
        sample=sample or sample_name_from_path(path),
        layout=layout,
        counts=counts,
        qc={"counted": int(counts.sum())},
        source={"path": str(path), "type": "wig"},
    )


def import_tsv(path: str | os.PathLike, sample: str | None = None) -> SampleCounts:
    """Counts from a TSV with columns chrom, start (0-based), end, count (and optional short, long).

    Bins must be of one size and contiguous from 0 within each contig, as `count --tsv` writes them.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    per_contig: dict[str, list[tuple[int, int, int, int, int]]] = {}
    has_sizes = False
    try:
        with opener(path, "rt") as stream:
            header = stream.readline().rstrip("\n").split("\t")
            if header[:4] != ["chrom", "start", "end", "count"]:
                raise DataError(f"{path}: first line must be the header 'chrom start end count' (tab-separated)")
            has_sizes = header[4:6] == ["short", "long"]
            for number, line in enumerate(stream, 2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) < len(header):
                    raise DataError(
                        f"{path}: line {number} has {len(fields)} columns, expected {len(header)}; the TSV is corrupt, re-create it"
                    )
                try:
                    values = [int(x) for x in fields[1:4]] + ([int(fields[4]), int(fields[5])] if has_sizes else [0, 0])
                except ValueError:
                    raise DataError(
                        f"{path}: line {number} has a non-integer value; the TSV is corrupt, re-create it"
                    ) from None
                if values[2] < 0 or values[1] <= values[0]:
                    raise DataError(
                        f"{path}: line {number} has a negative count or an empty interval; the TSV is corrupt, re-create it"
                    )
                per_contig.setdefault(fields[0], []).append((values[0], values[1], values[2], values[3], values[4]))
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error}); check the file") from error
    if not per_contig:
        raise DataError(f"{path}: no bins found")
    bin_size = contiguous_bin_size(per_contig, path, "TSV")
    layout = Layout.from_lengths(((chrom, rows[-1][1]) for chrom, rows in per_contig.items()), bin_size)
    table = np.array([row for rows in per_contig.values() for row in rows], dtype=np.int64)
    return SampleCounts(
        sample=sample or sample_name_from_path(path),
        layout=layout,
        counts=table[:, 2],
        paired=has_sizes,
        short=table[:, 3],
        long=table[:, 4],
        qc={"counted": int(table[:, 2].sum())},
        source={"path": str(path), "type": "tsv"},
    )


def input_kind(path: str | os.PathLike) -> str:
    """What a sample input is, from its content: 'bam', 'cram', 'counts', 'wig' or 'tsv'."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a BAM, CRAM, counts, WIG or TSV file")
    with open(path, "rb") as stream:
        head = stream.read(4)
    if not head:
        raise DataError(f"{path}: the file is empty; re-create it")
    if head == b"CRAM":
        return "cram"
    if head[:2] == b"PK":
        return "counts"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as stream:
                head = stream.read(4)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: cannot decompress ({error}); the file is corrupt") from error
        if head == b"BAM\x01":
            return "bam"
        from plasmacount.fragment_files import is_fragment_file

        if is_fragment_file(path):
            return "fragments"
    if head.startswith((b"fixe", b"trac", b"vari")) or path.name.endswith((".wig", ".wig.gz")):
        return "wig"
    return "tsv"


def load_batch(paths: Sequence[str | os.PathLike]) -> list[tuple[SampleCounts, str]]:
    """Every counts input of one batch with its path, refused before any analysis when two share a
    sample name: their outputs would overwrite each other."""
    batch = [(load_counts(path), str(path)) for path in paths]
    check_unique_inputs([(sample.sample, path) for sample, path in batch])
    return batch


def load_counts(path: str | os.PathLike) -> SampleCounts:
    """Any counts input: a plasmacount counts file, a readCounter WIG, or a counts TSV."""
    kind = input_kind(path)
    if kind in ("bam", "cram", "fragments"):
        what = "a fragment file" if kind == "fragments" else f"a {kind.upper()}"
        raise DataError(f"{path}: is {what}; count it first with `plasmacount count {path} -o COUNTS`")
    if kind == "counts":
        return SampleCounts.load(path)
    if kind == "wig":
        return import_wig(path)
    return import_tsv(path)
