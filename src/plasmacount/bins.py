"""Bin annotations: what each genomic bin is made of (GC, N content, mappability, blacklist).

Counting noise is the signal floor of every plasma DNA test, and a bin's GC content, its share
of unknown bases, its mappability and its overlap with problem regions decide how far its
count can be trusted. An annotation holds these per bin for one genome build and bin size. It
is built from a reference FASTA (GC and N content exactly; blacklist from a BED) or imported
from the annotations the field already ships: QDNAseq bin tables and ichorCNA's GC/mappability
WIG files. Values unknown for a source are stored as NaN.

File format ("plasmacount-bins", version 1): an archive (see `files`) with `metadata.json`
(bin size, contigs, build, sources) and float64 arrays `gc`, `n_fraction`, `mappability`,
`blacklist`, each one value per bin in layout order, fractions between 0 and 1.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plasmacount import __version__
from plasmacount.errors import DataError, UsageError
from plasmacount.files import read_archive, write_archive
from plasmacount.genome import Layout, contiguous_bin_size, is_binned_chromosome, name_key

FORMAT = "plasmacount-bins"
FORMAT_VERSION = "1.0"
FIELDS = ("gc", "n_fraction", "mappability", "blacklist")


@dataclass
class BinAnnotation:
    """Per-bin properties of one genome at one bin size."""

    layout: Layout
    gc: np.ndarray
    n_fraction: np.ndarray
    mappability: np.ndarray
    blacklist: np.ndarray
    sources: list[str] = field(default_factory=list)

    @property
    def bin_size(self) -> int:
        return self.layout.bin_size

    @classmethod
    def from_fields(cls, layout: Layout, values: Mapping[str, np.ndarray], sources: list[str]) -> BinAnnotation:
        """The annotation from its FIELDS by name."""
        return cls(layout, values["gc"], values["n_fraction"], values["mappability"], values["blacklist"], sources)

    def merged(self, factor: int) -> BinAnnotation:
        """The annotation of bins `factor` times as large (each property averaged over its bins)."""
        return BinAnnotation.from_fields(
            self.layout.coarser(factor),
            {name: self.layout.merge(getattr(self, name), factor, "mean") for name in FIELDS},
            self.sources + [f"merged x{factor}"],
        )

    def on_layout(self, layout: Layout) -> BinAnnotation:
        """The annotation's values in `layout`'s bin order (contigs matched by name key; NaN where absent)."""
        if self.layout == layout:
            return self
        values = {name: np.full(layout.n_bins, np.nan) for name in FIELDS}
        for contig in layout.contigs:
            if self.layout.has(contig.name):
                source = self.layout.contig(contig.name)
                n = min(source.n_bins, contig.n_bins)
                for name, target in values.items():
                    target[contig.first_bin : contig.first_bin + n] = getattr(self, name)[
                        source.first_bin : source.first_bin + n
                    ]
        return BinAnnotation.from_fields(layout, values, self.sources)

    def save(self, path: str | os.PathLike) -> None:
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "plasmacount_version": __version__,
            "build": self.layout.build,
            "sources": self.sources,
            "layout": self.layout.to_json(),
        }
        write_archive(path, metadata, {name: np.asarray(getattr(self, name), dtype=np.float64) for name in FIELDS})

    @classmethod
    def load(cls, path: str | os.PathLike) -> BinAnnotation:
        metadata, arrays = read_archive(path, FORMAT, 1)
        layout = Layout.from_json(metadata["layout"])
        for name in FIELDS:
            if name not in arrays or arrays[name].shape != (layout.n_bins,):
                raise DataError(
                    f"{path}: bin annotation lacks a valid {name!r} array; recreate it with `plasmacount bins`"
                )
        return cls.from_fields(layout, arrays, list(metadata.get("sources", [])))


def annotate_fasta(
    fasta: str | os.PathLike,
    bin_size: int = 100_000,
    blacklist: str | os.PathLike | None = None,
    all_contigs: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BinAnnotation:
    """GC fraction of non-N bases, N fraction and blacklist overlap per bin of a reference FASTA.

    Only autosomes and sex chromosomes are binned unless `all_contigs`; mappability is left
    unknown (NaN): it needs an aligner, import it from a WIG or QDNAseq table instead.
    """
    import pysam

    if bin_size <= 0:
        raise UsageError(f"--bin-size must be a positive number of bases, not {bin_size}")
    path = Path(fasta)
    if not path.exists():
        raise DataError(f"{path}: reference FASTA not found; check the path")
    try:
        reference = pysam.FastaFile(str(path))
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot read as FASTA ({error}); index it with `samtools faidx {path}` or fix the file"
        ) from error
    with reference:
        names = [n for n in reference.references if all_contigs or is_binned_chromosome(n)]
        if not names:
            raise DataError(
                f"{path}: no chromosomes named like chr1..chr22/X/Y (or 1..22/X/Y); pass --all-contigs to bin every contig"
            )
        lengths = [reference.get_reference_length(n) for n in names]
        layout = Layout.from_lengths(zip(names, lengths), bin_size)
        gc = np.full(layout.n_bins, np.nan)
        n_fraction = np.ones(layout.n_bins)
        # Upper-case A C G T and everything else; lower case (soft-masked) counts as its base.
        lookup = np.full(256, 4, dtype=np.uint8)
        for code, letters in enumerate(("Aa", "Cc", "Gg", "Tt")):
            for letter in letters:
                lookup[ord(letter)] = code
        total = sum(lengths)
        done = 0
        for contig in layout.contigs:
            sequence = np.frombuffer(reference.fetch(contig.name).encode("ascii"), dtype=np.uint8)
            codes = lookup[sequence]
            per_code = np.zeros((contig.n_bins, 5), dtype=np.int64)
            _count_codes(per_code, codes, bin_size)
            bin_lengths = per_code.sum(axis=1)
            known = per_code[:, :4].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                gc_here = (per_code[:, 1] + per_code[:, 2]) / known
            gc_here[known == 0] = np.nan
            span = slice(contig.first_bin, contig.first_bin + contig.n_bins)
            gc[span] = gc_here
            n_fraction[span] = per_code[:, 4] / np.maximum(bin_lengths, 1)
            done += contig.length
            if progress:
                progress(done, total)
    overlap = blacklist_overlap(layout, blacklist) if blacklist else np.zeros(layout.n_bins)
    sources = [f"fasta:{path.name}"] + ([f"blacklist:{Path(blacklist).name}"] if blacklist else [])
    return BinAnnotation(layout, gc, n_fraction, np.full(layout.n_bins, np.nan), overlap, sources)


def _count_codes(per_code: np.ndarray, codes: np.ndarray, bin_size: int) -> None:
    """Base counts per bin and code, by bin-sized slices (fast for whole chromosomes)."""
    n_full = codes.size // bin_size
    if n_full:
        full = codes[: n_full * bin_size].reshape(n_full, bin_size)
        for code in range(5):
            per_code[:n_full, code] = (full == code).sum(axis=1)
    if codes.size > n_full * bin_size:
        rest = codes[n_full * bin_size :]
        per_code[n_full] = np.bincount(rest, minlength=5)


def read_bed(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """Intervals of a BED file (chrom, 0-based start, end); header and track lines skipped."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: BED file not found; check the path")
    intervals = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split("\t")
            try:
                start, end = int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise DataError(
                    f"{path}: line {number} is not BED (chrom, start, end separated by tabs); fix or remove it"
                ) from None
            if end < start or start < 0:
                raise DataError(f"{path}: line {number} has end before start; fix the interval")
            intervals.append((fields[0], start, end))
    return intervals


def blacklist_overlap(layout: Layout, bed: str | os.PathLike) -> np.ndarray:
    """Fraction of each bin covered by the intervals of a BED file (overlaps merged)."""
    covered = np.zeros(layout.n_bins)
    by_contig: dict[str, list[tuple[int, int]]] = {}
    for chrom, start, end in read_bed(bed):
        by_contig.setdefault(name_key(chrom), []).append((start, end))
    _, bin_start, bin_end = layout.bin_table()
    for contig in layout.contigs:
        intervals = sorted(by_contig.get(name_key(contig.name), []))
        merged: list[list[int]] = []
        for start, end in intervals:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            end = min(end, contig.length)
            first, last = start // layout.bin_size, (max(end, start + 1) - 1) // layout.bin_size
            for b in range(first, min(last, contig.n_bins - 1) + 1):
                lo, hi = max(start, b * layout.bin_size), min(end, (b + 1) * layout.bin_size)
                if hi > lo:
                    covered[contig.first_bin + b] += hi - lo
    return covered / np.maximum(bin_end - bin_start, 1)


def import_annotations(paths: Sequence[str | os.PathLike]) -> BinAnnotation:
    """Combine ready-made annotations: QDNAseq bin tables (TSV), plain GC tables (`chrom start end
    gc_percent`, 0-based starts, as NIPTeR's) and ichorCNA GC/mappability WIGs.

    All files must share one bin size and genome; a WIG's kind (GC or mappability) is taken from
    its file name (`gc` or `map` in it). Later files fill in the fields earlier ones left unknown.
    """
    if not paths:
        raise UsageError("--import needs at least one QDNAseq TSV or GC/mappability WIG file")
    tables = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: annotation file not found; check the path")
        if _looks_like_wig(path):
            kind = _wig_kind(path)
            layout, values = read_fixed_step_wig(path)
            values = values.astype(np.float64)
            values[values < 0] = np.nan  # ichorCNA writes -1 where GC is unknown
            tables.append((path, layout, {kind: values}))
        elif _looks_like_gc_table(path):
            layout, fields = read_gc_table(path)
            tables.append((path, layout, fields))
        else:
            layout, fields = read_qdnaseq_bins(path)
            tables.append((path, layout, fields))
    base_path, layout, _ = tables[0]
    combined = {name: np.full(layout.n_bins, np.nan) for name in FIELDS}
    for path, other, fields in tables:
        if other.bin_size != layout.bin_size:
            raise DataError(
                f"{path}: bin size {other.bin_size:,} differs from {layout.bin_size:,} in {base_path}; import files of one bin size"
            )
        index = _bin_index_into(layout, other, path, base_path)
        for name, values in fields.items():
            target = combined[name]
            keep = ~np.isnan(values)
            unknown = np.isnan(target[index[keep]])
            target[index[keep][unknown]] = values[keep][unknown]
    return BinAnnotation(
        layout,
        combined["gc"],
        combined["n_fraction"],
        combined["mappability"],
        combined["blacklist"],
        sources=[f"import:{Path(p).name}" for p in paths],
    )


def _bin_index_into(layout: Layout, other: Layout, path: str | os.PathLike, base_path: str | os.PathLike) -> np.ndarray:
    """Positions in `layout` of each bin of `other` (contigs matched by name key)."""
    pieces = []
    for contig in other.contigs:
        if not layout.has(contig.name):
            raise DataError(f"{path}: contig {contig.name} is not in {base_path}; import annotations of one genome")
        target = layout.contig(contig.name)
        if target.n_bins != contig.n_bins:
            raise DataError(
                f"{path}: contig {contig.name} has {contig.n_bins} bins but {target.n_bins} in {base_path}: "
                "genome builds differ; import annotations of one build"
            )
        pieces.append(np.arange(target.first_bin, target.first_bin + target.n_bins))
    return np.concatenate(pieces)


GC_TABLE_HEADERS = (["chrom", "start", "end", "gc_percent"], ["chrom", "start", "end", "gc"])


def _looks_like_gc_table(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as stream:
            return stream.readline().rstrip("\n").split("\t")[:4] in GC_TABLE_HEADERS
    except (OSError, UnicodeDecodeError, EOFError):
        return False


def read_gc_table(path: str | os.PathLike) -> tuple[Layout, dict[str, np.ndarray]]:
    """A plain GC table: chrom, 0-based start, end, GC (percent for `gc_percent`, a fraction for
    `gc`; NA where unknown), one row per bin, bins contiguous from 0 within each contig."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows: dict[str, list[tuple[int, int, float]]] = {}
    try:
        with opener(path, "rt") as stream:
            header = stream.readline().rstrip("\n").split("\t")
            percent = header[3] == "gc_percent"
            for number, line in enumerate(stream, 2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 4:
                    raise DataError(
                        f"{path}: line {number} has {len(fields)} columns, expected 4; the table is corrupt, re-create it"
                    )
                try:
                    start, end = int(fields[1]), int(fields[2])
                    bin_gc = (
                        float("nan")
                        if fields[3] in ("NA", "", "nan")
                        else float(fields[3]) / (100.0 if percent else 1.0)
                    )
                except ValueError:
                    raise DataError(
                        f"{path}: line {number} has a non-numeric value; the table is corrupt, re-create it"
                    ) from None
                if not (np.isnan(bin_gc) or 0.0 <= bin_gc <= 1.0):
                    raise DataError(
                        f"{path}: line {number}: GC {fields[3]} is outside 0-{100 if percent else 1}; check the column's unit"
                    )
                rows.setdefault(fields[0], []).append((start, end, bin_gc))
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error}); check the file") from error
    if not rows:
        raise DataError(f"{path}: GC table has no rows")
    bin_size = contiguous_bin_size(rows, path, "table")
    layout = Layout.from_lengths(
        ((chrom, values[-1][1]) for chrom, values in rows.items()), bin_size, length_exact=False
    )
    gc = np.array([g for values in rows.values() for _, _, g in values])
    return layout, {"gc": gc, "n_fraction": np.where(np.isnan(gc), 1.0, 0.0)}


def _looks_like_wig(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as stream:
            for line in stream:
                if line.strip() and not line.startswith(("#", "track")):
                    return line.startswith(("fixedStep", "variableStep"))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error}); check the file") from error
    return False


def _wig_kind(path: Path) -> str:
    name = path.name.lower()
    if "map" in name:
        return "mappability"
    if "gc" in name:
        return "gc"
    raise UsageError(
        f"{path}: cannot tell whether this WIG holds GC or mappability; put 'gc' or 'map' in its file name"
    )


def read_fixed_step_wig(path: str | os.PathLike) -> tuple[Layout, np.ndarray]:
    """Values of a fixedStep WIG with step = span = bin size starting at 1 (HMMcopy/ichorCNA style).

    Contig lengths are known only to the bin; the layout records them as bin-rounded.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    contigs: list[tuple[str, list[float]]] = []
    step = None
    try:
        with opener(path, "rt") as stream:
            for number, line in enumerate(stream, 1):
                line = line.strip()
                if not line or line.startswith(("#", "track", "browser")):
                    continue
                if line.startswith("variableStep"):
                    raise DataError(f"{path}: line {number}: variableStep WIG is not supported; write fixedStep bins")
                if line.startswith("fixedStep"):
                    fields = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
                    try:
                        chrom, start, this_step = fields["chrom"], int(fields["start"]), int(fields["step"])
                        span = int(fields.get("span", this_step))
                    except (KeyError, ValueError):
                        raise DataError(
                            f"{path}: line {number}: fixedStep line needs chrom=, start= and step="
                        ) from None
                    if start != 1 or span != this_step or (step is not None and this_step != step):
                        raise DataError(
                            f"{path}: line {number}: bins must start at 1 with one step and span throughout"
                        )
                    step = this_step
                    if any(name_key(c) == name_key(chrom) for c, _ in contigs):
                        raise DataError(f"{path}: line {number}: contig {chrom} appears twice")
                    contigs.append((chrom, []))
                    continue
                if not contigs:
                    raise DataError(
                        f"{path}: line {number}: value before any fixedStep line; the WIG is corrupt, re-create it"
                    )
                try:
                    contigs[-1][1].append(float(line))
                except ValueError:
                    raise DataError(
                        f"{path}: line {number}: {line[:30]!r} is not a number; the WIG is corrupt, re-create it"
                    ) from None
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error}); check the file") from error
    if not contigs or step is None:
        raise DataError(f"{path}: no fixedStep sections found; is this a WIG file?")
    layout = Layout.from_lengths(((c, len(v) * step) for c, v in contigs), step, length_exact=False)
    return layout, np.array([x for _, v in contigs for x in v])


def read_qdnaseq_bins(path: str | os.PathLike) -> tuple[Layout, dict[str, np.ndarray]]:
    """A QDNAseq bin annotation table: chromosome, 1-based start, end, bases, gc, mappability,
    blacklist (percentages) per bin."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows: dict[str, list[list[float]]] = {}
    try:
        with opener(path, "rt") as stream:
            header = stream.readline().rstrip("\n").split("\t")
            header = [h.strip('"') for h in header]
            required = ["chromosome", "start", "end", "bases", "gc", "mappability", "blacklist"]
            missing = [name for name in required if name not in header]
            if missing:
                raise DataError(f"{path}: not a QDNAseq bin table (columns {', '.join(missing)} missing)")
            column = {name: header.index(name) for name in required}
            for number, line in enumerate(stream, 2):
                fields = [f.strip('"') for f in line.rstrip("\n").split("\t")]
                if len(fields) < len(header):
                    raise DataError(
                        f"{path}: line {number} has {len(fields)} columns, expected {len(header)}; the table is corrupt, re-create it"
                    )
                try:
                    values = [
                        float(fields[column[name]]) if fields[column[name]] != "NA" else np.nan for name in required[1:]
                    ]
                except ValueError:
                    raise DataError(
                        f"{path}: line {number} has a non-numeric value; the table is corrupt, re-create it"
                    ) from None
                rows.setdefault(fields[column["chromosome"]], []).append(values)
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error}); check the file") from error
    if not rows:
        raise DataError(f"{path}: QDNAseq bin table has no rows")
    first = next(iter(rows.values()))
    bin_size = int(first[0][1] - first[0][0] + 1)
    layout = Layout.from_lengths(
        ((chrom, int(values[-1][1])) for chrom, values in rows.items()), bin_size, length_exact=False
    )
    table = np.array([v for values in rows.values() for v in values])
    for contig in layout.contigs:
        if contig.n_bins != len(rows[contig.name]):
            raise DataError(
                f"{path}: contig {contig.name} has gaps or uneven bins; expected {contig.n_bins} bins of {bin_size:,} bp"
            )
    properties = {
        "n_fraction": 1.0 - table[:, 2] / 100.0,
        "gc": table[:, 3] / 100.0,
        "mappability": table[:, 4] / 100.0,
        "blacklist": table[:, 5] / 100.0,
    }
    return layout, properties
