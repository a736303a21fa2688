"""Counting aligned cfDNA fragments into bins: BAM through the compiled kernel, CRAM through htslib.

Counting rules (the same for BAM and CRAM, and documented in `docs/counts-format.md`):
- unmapped, secondary and supplementary records are never counted; QC-fail and
  duplicate-flagged records are skipped by default; records with MAPQ < `min_mapq` are skipped;
- a single-end read counts once, in the bin holding its leftmost aligned position (BAM POS);
- a paired read counts only if its mate is on the same contig and the pair is a fragment: marked
  proper by the aligner, or facing each other within `max_pair_length` (`pair_is_fragment`); the
  fragment counts once, through one mate that stands for it (`representative`), whose filters
  (MAPQ) apply, in the bin of the fragment's start:
  - "forward" (default): the forward mate; the fragment runs |TLEN| from its 5' end. This is the
    fragment also when the reverse mate starts before it (a dovetailed pair, its adapter end
    clipped), and it is the rule of the FinaleDB fragment files (identical on the real CRAM);
    pairs with both mates on one strand fall back to "leftmost";
  - "leftmost": the mate with the smaller POS (read 1 on a tie); the fragment runs |TLEN| from it;
  - "read1": read 1 wherever it lies, the fragment from its start (TLEN > 0) or back from its
    end (TLEN < 0): FinaleToolkit's frag_generator;
- with `long_reads`, a read without the paired flag is a whole molecule (nanopore, PacBio): its
  length is its reference span (CIGAR M/D/N/=/X), and both its ends are fragment ends;
- with `remove_unmarked_duplicates`, a fragment with the same contig, position, strand (and,
  for pairs, length) as one already counted is skipped, for data without duplicate marking.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import os
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from plasmacount.bins import BinAnnotation
from plasmacount.counts import (
    DEFAULT_LONG_RANGE,
    DEFAULT_LONGEST_LENGTH,
    DEFAULT_SHORT_RANGE,
    SampleCounts,
    long_molecule_edges,
    sample_name_from_path,
)
from plasmacount.errors import DataError, UsageError
from plasmacount.files import atomic_path
from plasmacount.fragment_files import fragment_file_header, index_fragment_file
from plasmacount.genome import Layout, check_compatible, is_binned_chromosome
from plasmacount.motifs import FastaIndex, base_codes, check_motif_length, count_end_kmers

if TYPE_CHECKING:
    import pysam

QC_FIELDS = (
    "total",
    "unmapped",
    "secondary",
    "supplementary",
    "mapped",
    "qc_fail",
    "duplicates",
    "low_mapq",
    "paired_reads",
    "improper_pairs",
    "second_mates",
    "unmarked_duplicates",
    "counted",
    "counted_pairs",
    "counted_single",
    "outside_bins",
    "pairs_by_geometry",
    "outside_lengths",
)

# Pairs the aligner did not mark proper still count when they face each other on one contig
# within this span: an aligner's proper-pair limit (set from the library's own insert sizes: 288
# bp on the real FinaleToolkit CRAM) would otherwise drop exactly the long molecules. 0 keeps
# the aligner's proper pairs only (FinaleToolkit's and DELFI's convention).
DEFAULT_MAX_PAIR_LENGTH = 5000


def pair_is_fragment(
    flag: int, position: int, mate_position: int, same_contig: bool, template_length: int, max_pair_length: int
) -> tuple[bool, bool]:
    """(counts as a fragment, only by its geometry) for a paired read: its mate mapped on the same
    contig, and the aligner marked the pair proper or the reads face each other (the leftmost
    forward, the other reverse) with 0 < |TLEN| <= max_pair_length. Both mates of a pair get the
    same answer. The BAM kernel applies the same rule in C."""
    if flag & 0x8 or not same_contig:
        return False, False
    if flag & 0x2:
        return True, False
    reverse, mate_reverse = bool(flag & 0x10), bool(flag & 0x20)
    facing = reverse != mate_reverse and (position == mate_position or (position < mate_position) == (not reverse))
    fragment = facing and 0 < abs(template_length) <= max_pair_length
    return fragment, fragment


def stands_for_pair(flag: int, position: int, mate_position: int, representative: str = "forward") -> bool:
    """Whether this mate of a fragment pair is the one it is counted through (see the module
    docstring for the three rules). Exactly one mate of a pair answers yes."""
    if representative == "read1":
        return bool(flag & 0x40)
    if representative == "forward" and bool(flag & 0x10) != bool(flag & 0x20):
        return not flag & 0x10
    return position < mate_position or (position == mate_position and bool(flag & 0x40))


@dataclass(frozen=True)
class CountOptions:
    """Which records count, and how fragment sizes are summarised."""

    min_mapq: int = 20
    skip_duplicates: bool = True
    skip_qc_fail: bool = True
    remove_unmarked_duplicates: bool = False
    short_range: tuple[int, int] = DEFAULT_SHORT_RANGE
    long_range: tuple[int, int] = DEFAULT_LONG_RANGE
    longest_length: int = DEFAULT_LONGEST_LENGTH
    max_pair_length: int = DEFAULT_MAX_PAIR_LENGTH
    representative: str = "forward"
    long_reads: bool = False
    fragment_lengths: tuple[int, int] | None = None  # count only fragments of known length in [low, high]
    size_class_placement: str = (
        "start"  # a fragment's short/long tally goes to the bin of its start, or of its midpoint (DELFI)
    )
    threads: int = 2

    def validate(self) -> None:
        if not 0 <= self.min_mapq <= 255:
            raise UsageError(f"--min-mapq must be between 0 and 255, not {self.min_mapq}")
        for name, (low, high) in (("--short-range", self.short_range), ("--long-range", self.long_range)):
            if low < 0 or high < low:
                raise UsageError(f"{name} must be LOW-HIGH with 0 <= LOW <= HIGH, not {low}-{high}")
        if self.longest_length < 1000:
            raise UsageError("the fragment-length histogram must reach at least 1000 bp")
        if self.max_pair_length < 0:
            raise UsageError(
                f"--max-length must be 0 (the aligner's proper pairs only) or more, not {self.max_pair_length}"
            )
        if self.threads < 1:
            raise UsageError(f"--threads must be at least 1, not {self.threads}")
        if self.fragment_lengths is not None and not 0 <= self.fragment_lengths[0] <= self.fragment_lengths[1]:
            raise UsageError(f"--fragment-lengths must be LOW-HIGH with 0 <= LOW <= HIGH, not {self.fragment_lengths}")
        if self.representative not in REPRESENTATIVES:
            raise UsageError(
                f"the mate that stands for a pair is one of {', '.join(REPRESENTATIVES)}, not {self.representative!r}"
            )
        if self.size_class_placement not in SIZE_CLASS_PLACEMENTS:
            raise UsageError(
                f"a fragment's size class is placed by one of {', '.join(SIZE_CLASS_PLACEMENTS)}, not {self.size_class_placement!r}"
            )


def kernel_rules(options: CountOptions) -> dict:
    """The kernel's min_length/max_length for `options.fragment_lengths` (max -1: none) and where
    the short/long tallies go."""
    low, high = options.fragment_lengths or (0, -1)
    return {
        "min_length": low,
        "max_length": high,
        "size_classes_by_midpoint": int(options.size_class_placement == "midpoint"),
    }


# Reading by region, chunks are cut where reads of at most this span can no longer reach back
# into the region (checked at each cut; see bam_index.region_chunks).
LONGEST_SHORT_READ = 1000
# Which mate stands for a pair: its filters (MAPQ) apply, and it places the fragment.
REPRESENTATIVES = ("forward", "leftmost", "read1")
# Where a fragment's short/long tally goes: the counts always go by start; DELFI and FinaleToolkit
# place size classes by the fragment's midpoint.
SIZE_CLASS_PLACEMENTS = ("start", "midpoint")


@dataclass(frozen=True)
class ScanRequest:
    """What a pass over the alignments gathers beside the counts."""

    motif_k: int = 0  # end motifs of this length (0: none); needs `fasta`
    fasta: str | os.PathLike | None = None
    fragment_file: str | os.PathLike | None = None  # write the counted fragments here (BGZF + tabix)
    methylation: bool = False  # CpG calls from MM/ML tags, per molecule
    keep_fragments: bool = False  # every counted fragment (for interval features)
    # Read only the reads overlapping these (contig, begin, end) regions, through the index: the
    # tallies then cover those reads alone (each read once, and possibly a few more nearby).
    regions: tuple[tuple[str, int, int], ...] | None = None


@dataclass
class ScanFeatures:
    """What a pass gathered beside the counts (see `ScanRequest`)."""

    motif_k: int = 0
    motif_counts: np.ndarray | None = None  # 4^k counts, index sum(code * 4^(k-1-i)), A=0 C=1 G=2 T=3
    ends_counted: int = 0
    ends_skipped: int = 0  # k-mer off the contig or with a base other than ACGT
    molecules: np.ndarray | None = None  # rows (global bin or -1, length or -1, calls, methylated)
    methylation_unreadable: int = 0  # records whose MM/ML tags do not fit together
    fragments: np.ndarray | None = None  # rows (reference index, start, end, 2 MAPQ + read 1 reverse)
    reference_names: list[str] | None = None  # the names of those reference indices


_kernel = None


def _load_kernel():
    """The compiled kernel, wired to the libdeflate inside the `deflate` wheel."""
    global _kernel
    if _kernel is None:
        import deflate._deflate

        from plasmacount import _bamkernel

        library = ctypes.CDLL(deflate._deflate.__file__)
        address = lambda name: ctypes.cast(getattr(library, name), ctypes.c_void_p).value  # noqa: E731
        _bamkernel.set_libdeflate(
            address("libdeflate_alloc_decompressor"),
            address("libdeflate_free_decompressor"),
            address("libdeflate_deflate_decompress"),
            address("libdeflate_crc32"),
            address("libdeflate_alloc_compressor"),
            address("libdeflate_free_compressor"),
            address("libdeflate_deflate_compress"),
        )
        _kernel = _bamkernel
    return _kernel


@dataclass(frozen=True)
class BamHeader:
    """What the counter needs from a BAM header: contigs, sort order, and the header's size."""

    contigs: list[tuple[str, int]]
    sort_order: str | None
    text: str
    size: int


def read_bam_header(path: Path) -> BamHeader:
    """Parse the header at the start of a BAM's decompressed stream."""
    try:
        with gzip.open(path, "rb") as stream:

            def take(n: int) -> bytes:
                data = stream.read(n)
                if len(data) != n:
                    raise DataError(
                        f"{path}: the file ends inside the BAM header (truncated); re-create or re-download it"
                    )
                return data

            if take(4) != b"BAM\x01":
                raise DataError(f"{path}: not a BAM file (no BAM magic); pass a BAM, a CRAM, a WIG or a counts TSV")
            (text_length,) = struct.unpack("<i", take(4))
            text = take(text_length).split(b"\0", 1)[0].decode("ascii", "replace")
            (n_refs,) = struct.unpack("<i", take(4))
            contigs = []
            size = 12 + text_length
            for _ in range(n_refs):
                (name_length,) = struct.unpack("<i", take(4))
                name = take(name_length)[:-1].decode("ascii", "replace")
                (length,) = struct.unpack("<i", take(4))
                contigs.append((name, length))
                size += 8 + name_length
    except (gzip.BadGzipFile, zlib.error, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise DataError(f"{path}: file not found; check the path") from error
        raise DataError(f"{path}: cannot read the BAM header ({error}); the file is corrupt or not a BAM") from error
    sort_order = None
    for line in text.splitlines():
        if line.startswith("@HD"):
            for item in line.split("\t")[1:]:
                if item.startswith("SO:"):
                    sort_order = item[3:]
    return BamHeader(contigs, sort_order, text, size)


def _index_path(path: Path, kind: str) -> Path | None:
    suffixes = (".bai", ".csi") if kind == "bam" else (".crai",)
    for suffix in suffixes:
        for candidate in (Path(str(path) + suffix), path.with_suffix(suffix)):
            if candidate.exists():
                return candidate
    return None


def alignment_kind(path: Path) -> str:
    """'bam' or 'cram' from the file's magic bytes."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except OSError as error:
        raise DataError(f"{path}: cannot open ({error.strerror})") from None
    if head == b"CRAM":
        return "cram"
    if head[:2] == b"\x1f\x8b":
        return "bam"
    if not head:
        raise DataError(f"{path}: the file is empty; re-create it")
    raise DataError(f"{path}: not a BAM or CRAM file; pass alignments, or counts as WIG or TSV")


@dataclass
class _Plan:
    """How header contigs map onto bins and other-contig rows."""

    layout: Layout
    ref_bin_offset: np.ndarray
    ref_bin_count: np.ndarray
    ref_other_index: np.ndarray
    other_contigs: list[dict]


def _plan(
    path: Path,
    contigs: list[tuple[str, int]],
    bin_size: int,
    annotation: BinAnnotation | None,
    annotation_path: str | None,
) -> _Plan:
    if not contigs:
        raise DataError(f"{path}: the header lists no reference sequences; the file was not aligned")
    if annotation is not None:
        check_compatible(annotation.layout, contigs, str(path), annotation_path or "the bin annotation")
        layout = annotation.layout
    else:
        binned = [(name, length) for name, length in contigs if is_binned_chromosome(name)]
        if not binned:
            names = ", ".join(name for name, _ in contigs[:8])
            raise DataError(
                f"{path}: no chromosomes named chr1..chr22/X/Y or 1..22/X/Y among its contigs ({names}); pass --bins ANNOTATION"
            )
        layout = Layout.from_lengths(binned, bin_size)
    offsets = np.full(len(contigs), -1, dtype=np.int64)
    bin_counts = np.zeros(len(contigs), dtype=np.int64)
    other_index = np.full(len(contigs), -1, dtype=np.int64)
    other: list[dict] = []
    for i, (name, length) in enumerate(contigs):
        if layout.has(name):
            contig = layout.contig(name)
            offsets[i], bin_counts[i] = contig.first_bin, contig.n_bins
        else:
            other_index[i] = len(other)
            other.append({"name": name, "length": int(length)})
    return _Plan(layout, offsets, bin_counts, other_index, other)


class _ProgressWatcher:
    """Reports the kernel's running record count (it updates the QC tallies in place while the
    GIL is released) against the record total of the index."""

    def __init__(self, path: Path, qc: np.ndarray, progress: Callable[[int, int], None]):
        import pysam

        try:
            with pysam.AlignmentFile(str(path)) as handle:
                self.total = int(sum(s.total for s in handle.get_index_statistics())) + handle.nocoordinate
        except (ValueError, OSError):
            self.total = 0
        self.qc, self.progress = qc, progress
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.25):
            if self.total:
                self.progress(min(int(self.qc[0]), self.total - 1), self.total)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def finish(self) -> None:
        if self.total:
            self.progress(self.total, self.total)


def count_alignments(
    path: str | os.PathLike,
    bin_size: int = 100_000,
    annotation: BinAnnotation | None = None,
    annotation_path: str | None = None,
    options: CountOptions = CountOptions(),
    reference: str | os.PathLike | None = None,
    sample: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleCounts:
    """Count a coordinate-sorted, indexed BAM or CRAM into bins (see the module docstring for rules).
    `progress(records read, records in the index)` is called a few times a second from a watcher thread."""
    counts, _ = scan_alignments(path, bin_size, annotation, annotation_path, options, reference, sample, progress)
    return counts


def _new_tallies(plan: _Plan, n_contigs: int, options: CountOptions) -> dict:
    n_length = options.longest_length + 2
    edges = long_molecule_edges(options.longest_length)
    return {
        "counts": np.zeros(plan.layout.n_bins, dtype=np.int64),
        "short": np.zeros(plan.layout.n_bins, dtype=np.int64),
        "long": np.zeros(plan.layout.n_bins, dtype=np.int64),
        "histogram": np.zeros(n_length, dtype=np.int64),
        "other_counts": np.zeros(len(plan.other_contigs), dtype=np.int64),
        "other_histogram": np.zeros((len(plan.other_contigs), n_length), dtype=np.int64),
        "per_ref": np.zeros(n_contigs, dtype=np.int64),
        "qc": np.zeros(len(QC_FIELDS), dtype=np.int64),
        "long_edges": edges,
        "long_histogram": np.zeros(edges.size, dtype=np.int64),
    }


def scan_alignments(
    path: str | os.PathLike,
    bin_size: int = 100_000,
    annotation: BinAnnotation | None = None,
    annotation_path: str | None = None,
    options: CountOptions = CountOptions(),
    reference: str | os.PathLike | None = None,
    sample: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    request: ScanRequest = ScanRequest(),
) -> tuple[SampleCounts, ScanFeatures]:
    """Count a BAM or CRAM as `count_alignments` does and, in the same pass, gather what
    `request` asks for: end motifs, per-molecule CpG methylation, a fragment file."""
    options.validate()
    if bin_size <= 0:
        raise UsageError(f"--bin-size must be a positive number of bases, not {bin_size}")
    path = Path(path)
    kind = alignment_kind(path)
    if _index_path(path, kind) is None:
        tool = "samtools index"
        raise DataError(
            f"{path}: no index ({'.bai/.csi' if kind == 'bam' else '.crai'}) beside the file; run `{tool} {path}`"
        )
    fasta_index = None
    if request.motif_k:
        check_motif_length(request.motif_k)
        if request.fasta is None:
            raise UsageError("end motifs need the reference FASTA (--fasta)")
        fasta_index = FastaIndex.load(request.fasta)
    if kind == "bam":
        header = read_bam_header(path)
        contigs, sort_order = header.contigs, header.sort_order
    else:
        contigs, sort_order = _cram_header(path, reference)
    if sort_order is not None and sort_order != "coordinate":
        raise DataError(
            f"{path}: sorted by {sort_order}, not by coordinate; run `samtools sort -o sorted.bam {path}` and index it"
        )
    plan = _plan(path, contigs, bin_size, annotation, annotation_path)
    regions = _region_indices(path, request.regions, contigs) if request.regions is not None else None
    result = _new_tallies(plan, len(contigs), options)
    features = ScanFeatures(motif_k=request.motif_k)
    if request.motif_k:
        features.motif_counts = np.zeros(4**request.motif_k, dtype=np.int64)
    fragment_header = (
        fragment_file_header(contigs, options, _fragment_ends(path, kind, reference, options))
        if request.fragment_file
        else ""
    )
    fragment_index = None
    watcher = _ProgressWatcher(path, result["qc"], progress) if progress else None
    with contextlib.ExitStack() as stack:
        fragment_temporary = stack.enter_context(atomic_path(request.fragment_file)) if request.fragment_file else None
        if kind == "bam" and not (fasta_index and fasta_index.compressed):
            kernel = _load_kernel()
            motif_tallies = np.zeros(2, dtype=np.int64)
            methylation_tallies = np.zeros(4, dtype=np.int64)
            extras: dict = {}
            if request.motif_k:
                assert fasta_index is not None  # end motifs were checked to come with a FASTA
                extras.update(
                    motif_k=request.motif_k,
                    fasta=str(fasta_index.path),
                    fai=fasta_index.table([c for c, _ in contigs]),
                    motif_counts=features.motif_counts,
                    motif_tallies=motif_tallies,
                )
            if fragment_temporary is not None:
                extras.update(fragment_file=str(fragment_temporary), fragment_header=fragment_header.encode())
            if regions is not None:
                extras.update(chunks=_region_chunks(path, regions, len(contigs)))
            try:
                if watcher:
                    watcher.start()
                molecules, fragments = kernel.count_bam(
                    str(path),
                    header.size,
                    options.threads,
                    plan.ref_bin_offset,
                    plan.ref_bin_count,
                    plan.ref_other_index,
                    plan.layout.bin_size,
                    options.min_mapq,
                    int(options.skip_duplicates),
                    int(options.skip_qc_fail),
                    int(options.remove_unmarked_duplicates),
                    options.short_range[0],
                    options.short_range[1],
                    options.long_range[0],
                    options.long_range[1],
                    options.longest_length + 1,
                    options.max_pair_length,
                    result["counts"],
                    result["short"],
                    result["long"],
                    result["histogram"],
                    result["other_counts"],
                    result["other_histogram"],
                    result["per_ref"],
                    result["qc"],
                    ref_names=tuple(name for name, _ in contigs),
                    read1_represents=int(options.representative == "read1"),
                    forward_represents=int(options.representative == "forward"),
                    long_reads=int(options.long_reads),
                    long_edges=result["long_edges"],
                    long_histogram=result["long_histogram"],
                    methylation=int(request.methylation),
                    methylation_tallies=methylation_tallies,
                    **kernel_rules(options),
                    keep_fragments=int(request.keep_fragments),
                    **extras,
                )
            except ValueError as error:
                message = str(error)
                fix = (
                    "run `samtools sort` and `samtools index`"
                    if "sorted" in message
                    else "re-create or re-download the file"
                )
                raise DataError(f"{path}: {message}; {fix}") from None
            finally:
                if watcher:
                    watcher.stop()
            if watcher:
                watcher.finish()
            features.ends_counted, features.ends_skipped = int(motif_tallies[0]), int(motif_tallies[1])
            if request.methylation:
                features.molecules = np.frombuffer(molecules, dtype=np.int64).reshape(-1, 4).copy()
                features.methylation_unreadable = int(methylation_tallies[3])
            if request.keep_fragments:
                features.fragments = np.frombuffer(fragments, dtype=np.int64).reshape(
                    -1, 4
                )  # read-only: never changed in place
        else:
            _count_with_pysam(
                path,
                kind,
                reference,
                plan,
                contigs,
                options,
                request,
                fasta_index,
                result,
                features,
                fragment_temporary,
                fragment_header,
                regions,
            )
            if progress:
                progress(1, 1)
        qc = {name: int(value) for name, value in zip(QC_FIELDS, result["qc"])}
        if qc["total"] == 0 and regions is None:
            raise DataError(f"{path}: contains no reads; check that the sequencing and alignment produced output")
        if fragment_temporary is not None:
            fragment_index = index_fragment_file(fragment_temporary)
    if fragment_index is not None:
        os.replace(fragment_index, str(request.fragment_file) + ".tbi")
    features.reference_names = [name for name, _ in contigs]
    counts = SampleCounts(
        sample=sample
        or _sample_from_header(path, header.text if kind == "bam" else None)
        or sample_name_from_path(path),
        layout=plan.layout,
        counts=result["counts"],
        paired=qc["counted_pairs"] > 0,
        short=result["short"],
        long=result["long"],
        fragment_lengths=result["histogram"],
        other_contigs=plan.other_contigs,
        other_counts=result["other_counts"],
        other_fragment_lengths=result["other_histogram"],
        short_range=(options.short_range[0], options.short_range[1]),
        long_range=(options.long_range[0], options.long_range[1]),
        qc=qc,
        per_contig_counts={name: int(n) for (name, _), n in zip(contigs, result["per_ref"]) if n > 0},
        source={"path": str(path), "type": kind},
        filters={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items() if k != "threads"},
        long_molecule_edges=result["long_edges"],
        long_molecule_lengths=result["long_histogram"],
    )
    return counts, features


def _region_indices(
    path: Path, regions: Sequence[tuple[str, int, int]], contigs: list[tuple[str, int]]
) -> list[tuple[int, int, int]]:
    """Regions as (reference index, begin, end), clipped to their contig, sorted and merged."""
    from plasmacount.bam_index import merge_regions

    index_of = {name: i for i, (name, _) in enumerate(contigs)}
    indexed = []
    for contig, begin, end in regions:
        if contig not in index_of:
            raise DataError(f"{path}: has no contig {contig}; the regions must use the alignments' contig names")
        indexed.append((index_of[contig], max(0, int(begin)), min(int(end), contigs[index_of[contig]][1])))
    return merge_regions([r for r in indexed if r[2] > r[1]])


def _region_chunks(path: Path, regions: list[tuple[int, int, int]], n_contigs: int) -> np.ndarray:
    """The BAI chunks of the regions, for the kernel: a flat array of (begin, end) virtual offsets."""
    from plasmacount.bam_index import cuts_hold, read_index, region_chunks

    index_path = _index_path(path, "bam")
    if index_path is None or index_path.suffix != ".bai":
        raise DataError(
            f"{path}: reading by region needs a .bai index beside it (found {index_path}); run `samtools index {path}`"
        )
    index = read_index(index_path)
    if len(index) != n_contigs:
        raise DataError(
            f"{index_path}: indexes {len(index)} references, the BAM has {n_contigs}; re-create it with `samtools index {path}`"
        )
    chunks, cuts = region_chunks(index, regions, longest_read=LONGEST_SHORT_READ)
    if cuts and not cuts_hold(path, cuts):  # a read longer than assumed: the chunks uncut are exact
        chunks, _ = region_chunks(index, regions)
    return np.ascontiguousarray(chunks.reshape(-1))


def _fragment_ends(path: Path, kind: str, reference: str | os.PathLike | None, options: CountOptions) -> str:
    """What the lines of a fragment file written from these alignments are: 'molecules' (long
    reads), 'pairs' (fragments of paired reads), or 'single' (single-end reads, whose lengths are
    not the fragments'), judged from the first mapped records."""
    import pysam

    if options.long_reads:
        return "molecules"
    with (
        _htslib_silenced(),
        (
            _open_cram(path, reference, _CRAM_REQUIRED_FIELDS)
            if kind == "cram"
            else pysam.AlignmentFile(str(path), "rb")
        ) as alignments,
    ):
        for n, read in enumerate(alignments.fetch(until_eof=True)):
            if read.is_paired:
                return "pairs"
            if n >= 1000:
                break
    return "single"


def sample_name(path: str | os.PathLike) -> str:
    """The sample name `count_alignments` gives an alignment file when none is given: the SM of a
    BAM's first read group, else the file name."""
    path = Path(path)
    text = read_bam_header(path).text if alignment_kind(path) == "bam" else None
    return _sample_from_header(path, text) or sample_name_from_path(path)


def _sample_from_header(path: Path, text: str | None) -> str | None:
    """The SM of the first read group, if any."""
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("@RG"):
            for item in line.split("\t")[1:]:
                if item.startswith("SM:") and item[3:]:
                    return item[3:]
    return None


def prepare_cram_environment() -> None:
    # htslib would otherwise try to download missing references from the EBI server.
    os.environ.setdefault("REF_PATH", "/nonexistent-plasmacount-ref-path/%s")


def _open_cram(
    path: Path, reference: str | os.PathLike | None, required_fields: int | None = None
) -> pysam.AlignmentFile:
    import pysam

    prepare_cram_environment()
    options = [f"required_fields={required_fields:#x}".encode()] if required_fields else []
    if reference is not None and not Path(reference).exists():
        raise DataError(f"{reference}: reference FASTA not found; check --fasta")
    try:
        return pysam.AlignmentFile(
            # pysam's stubs say str; htslib is handed bytes, which it takes as they are.
            str(path),
            "rc",
            reference_filename=str(reference) if reference else None,
            format_options=options,  # type: ignore[arg-type]
        )
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot open as CRAM ({error}); check the file and --fasta") from error


@contextlib.contextmanager
def _htslib_silenced():
    """htslib's messages off for a probe whose failure plasmacount explains in its own words:
    its log level to 0, and the C stderr to /dev/null (the CRAM reference loader prints some
    lines with perror, whatever the log level)."""
    import pysam

    level = pysam.set_verbosity(0)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        pysam.set_verbosity(level)


def _cram_header(path: Path, reference: str | os.PathLike | None) -> tuple[list[tuple[str, int]], str | None]:
    """The CRAM's contigs and sort order, after decoding one record with its sequence: this is
    where a missing or wrong reference shows, told in one line instead of htslib's six."""
    with _htslib_silenced(), _open_cram(path, reference) as cram:
        contigs = list(zip(cram.references, cram.lengths))
        header = cram.header.to_dict()
        try:
            for read in cram.fetch(until_eof=True):
                _ = read.query_sequence
                break
        except (OSError, ValueError) as error:
            named = next((item["UR"] for item in header.get("SQ", []) if item.get("UR")), None)
            hint = f" (its header names {named})" if named else ""
            given = (
                f"{reference} is not the FASTA it was written against"
                if reference
                else "it needs the FASTA it was written against"
            )
            raise DataError(
                f"{path}: cannot decode the CRAM: {given}{hint}; pass that FASTA with --fasta FASTA"
            ) from error
    return contigs, header.get("HD", {}).get("SO")


# FLAG | RNAME | POS | CIGAR | MAPQ | RNEXT | PNEXT | TLEN: the fields the counting rules read.
_CRAM_REQUIRED_FIELDS = 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100


def counted_fragments(
    alignments: pysam.AlignmentFile,
    path: Path,
    options: CountOptions,
    qc: dict,
    regions: list[tuple[int, int, int]] | None = None,
):
    """The fragments the counting rules keep, one per counted read or pair, from a pysam file.

    Yields (read, start, end, length or -1 when unknown, read 1 on the reverse strand); tallies
    every decision into `qc`. The BAM kernel applies the same rules in C; tests check that both agree.
    """
    previous = (-1, -1)
    seen_position, seen_keys = (-2, -2), set[tuple]()
    read1 = options.representative == "read1"
    try:
        for read in _region_reads(alignments, regions) if regions is not None else alignments.fetch(until_eof=True):
            ref, pos, flag = read.reference_id, read.reference_start, read.flag
            order = (ref if ref >= 0 else 1 << 62, pos)
            if order < previous:
                raise DataError(
                    f"{path}: records are not coordinate-sorted (record {qc['total'] + 1}); run `samtools sort` and index"
                )
            previous = order
            qc["total"] += 1
            if flag & 0x4 or ref < 0:
                qc["unmapped"] += 1
                continue
            if flag & 0x100:
                qc["secondary"] += 1
                continue
            if flag & 0x800:
                qc["supplementary"] += 1
                continue
            qc["mapped"] += 1
            if flag & 0x200:
                qc["qc_fail"] += 1
                if options.skip_qc_fail:
                    continue
            if flag & 0x400:
                qc["duplicates"] += 1
                if options.skip_duplicates:
                    continue
            if read.mapping_quality < options.min_mapq:
                qc["low_mapq"] += 1
                continue
            # A record without a CIGAR covers no reference bases (pysam says None): as the kernel counts it.
            end = read.reference_end if read.reference_end is not None else pos
            length, start = -1, pos
            read1_reverse = bool(flag & 0x10)
            if flag & 0x1:
                qc["paired_reads"] += 1
                mate = read.next_reference_start
                tlen = read.template_length
                fragment, by_geometry = pair_is_fragment(
                    flag, pos, mate, read.next_reference_id == ref, tlen, options.max_pair_length
                )
                if not fragment:
                    qc["improper_pairs"] += 1
                    continue
                if not stands_for_pair(flag, pos, mate, options.representative) or (read1 and tlen == 0):
                    qc["second_mates"] += 1
                    continue
                if read1:
                    start, end = (pos, pos + tlen) if tlen > 0 else (max(end + tlen, 0), end)
                else:
                    start, end = pos, pos + abs(tlen)
                qc["pairs_by_geometry"] += by_geometry
                length = end - start
                if not flag & 0x40:
                    read1_reverse = bool(flag & 0x20)
            elif options.long_reads:
                length = end - pos
            if (
                length >= 0
                and options.fragment_lengths
                and not options.fragment_lengths[0] <= length <= options.fragment_lengths[1]
            ):
                qc["outside_lengths"] += 1
                continue
            if options.remove_unmarked_duplicates:
                if (ref, pos) != seen_position:
                    seen_position, seen_keys = (ref, pos), set()
                key = (length, bool(flag & 0x10))
                if key in seen_keys:
                    qc["unmarked_duplicates"] += 1
                    continue
                seen_keys.add(key)
            yield read, start, end, length, read1_reverse
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot decode ({error}); the file is truncated or a CRAM needs --fasta") from error


def methylation_calls(read: pysam.AlignedSegment) -> tuple[int, int]:
    """(5mC calls on forward-strand C, calls with ML >= 128) of a pysam read, from MM/ML."""
    calls = methylated = 0
    # pysam gives the strand against the reference: MM's "C+" is strand 1 on a reverse read.
    for (base, strand, code), sites in (read.modified_bases or {}).items():
        if base == "C" and strand == int(read.is_reverse) and code == "m":
            calls += len(sites)
            methylated += sum(1 for _, probability in sites if probability >= 128)
    return calls, methylated


def _region_reads(
    alignments: pysam.AlignmentFile, regions: list[tuple[int, int, int]]
) -> Iterator[pysam.AlignedSegment]:
    """The reads overlapping sorted, disjoint regions, each once: a read the previous region of its
    contig returned already (it starts before that region's end) is not returned again."""
    previous_end: dict[int, int] = {}
    for reference, begin, end in regions:
        skip_before = previous_end.get(reference, -1)
        for read in alignments.fetch(reference=alignments.get_reference_name(reference), start=begin, end=end):
            if read.reference_start >= skip_before:
                yield read
        previous_end[reference] = end


def _count_with_pysam(
    path: Path,
    kind: str,
    reference: str | os.PathLike | None,
    plan: _Plan,
    contigs: list[tuple[str, int]],
    options: CountOptions,
    request: ScanRequest,
    fasta_index: FastaIndex | None,
    result: dict,
    features: ScanFeatures,
    fragment_temporary: Path | None,
    fragment_header: str,
    regions: list[tuple[int, int, int]] | None = None,
) -> None:
    """The counting pass through htslib (CRAM, or a BAM whose motifs come from a compressed FASTA)."""
    import pysam

    qc = dict.fromkeys(QC_FIELDS, 0)
    counts, short, long_, histogram = result["counts"], result["short"], result["long"], result["histogram"]
    other_counts, other_histogram, per_ref = result["other_counts"], result["other_histogram"], result["per_ref"]
    edges, long_histogram = result["long_edges"], result["long_histogram"]
    overflow = options.longest_length + 1
    bin_size = plan.layout.bin_size
    offsets, n_bins, other_index = (
        plan.ref_bin_offset.tolist(),
        plan.ref_bin_count.tolist(),
        plan.ref_other_index.tolist(),
    )
    k = request.motif_k
    assert not k or fasta_index is not None, "end motifs need the FASTA's index"
    fasta = pysam.FastaFile(str(fasta_index.path)) if k and fasta_index is not None else None
    forward: list[int] = []
    reverse: list[int] = []
    motif_contig, codes = None, None
    molecules: list[tuple[int, int, int, int]] = []
    kept: list[tuple[int, int, int, int]] = []
    # One contig's fragments are held and sorted before they are written: under the read-1 rule
    # a fragment can start before the record that stands for it.
    held: list[tuple[int, int, int, bool]] = []
    line_contig = None
    text = None
    if fragment_temporary is not None:
        text = tempfile.NamedTemporaryFile("w", suffix=".bed", dir=fragment_temporary.parent, delete=False)
        text.write(fragment_header)

    def write_held_lines() -> None:
        if held:
            assert text is not None and line_contig is not None  # held only while a fragment file is written
            name = contigs[line_contig][0]
            held.sort()
            text.writelines(
                f"{name}\t{start}\t{end}\t{mapq}\t{'-' if reverse else '+'}\n" for start, end, mapq, reverse in held
            )
            held.clear()

    def flush_motifs() -> None:
        if codes is not None:
            found, skipped = count_end_kmers(
                codes, np.array(forward, dtype=np.int64), np.array(reverse, dtype=np.int64), k, features.motif_counts
            )
            features.ends_counted += found
            features.ends_skipped += skipped
        else:
            features.ends_skipped += len(forward) + len(reverse)
        forward.clear()
        reverse.clear()

    by_midpoint = options.size_class_placement == "midpoint"
    alignments = (
        _open_cram(path, reference, None if (k or request.methylation) else _CRAM_REQUIRED_FIELDS)
        if kind == "cram"
        else pysam.AlignmentFile(str(path), "rb")
    )
    try:
        with alignments:
            for read, start, end, length, read1_reverse in counted_fragments(alignments, path, options, qc, regions):
                ref = read.reference_id
                per_ref[ref] += 1
                if k:
                    if ref != motif_contig:
                        flush_motifs()
                        motif_contig = ref
                        name = contigs[ref][0]
                        assert fasta is not None and fasta_index is not None  # opened when motifs are asked for
                        codes = base_codes(fasta.fetch(name)) if name in fasta_index.contigs else None
                    if length >= 0:
                        forward.append(start)
                        reverse.append(end)
                    elif read.is_reverse:
                        reverse.append(end)
                    else:
                        forward.append(start)
                if text is not None:
                    if ref != line_contig:
                        write_held_lines()
                        line_contig = ref
                    held.append((start, end, read.mapping_quality, read1_reverse))
                if request.keep_fragments:
                    kept.append((ref, start, end, 2 * read.mapping_quality + int(read1_reverse)))
                calls = methylated = 0
                if request.methylation:
                    calls, methylated = methylation_calls(read)
                global_bin = -1
                if length > overflow - 1 and offsets[ref] >= 0 and length >= edges[0]:
                    long_histogram[np.searchsorted(edges, length, side="right") - 1] += 1
                if offsets[ref] >= 0:
                    b = start // bin_size
                    if b >= n_bins[ref]:
                        qc["outside_bins"] += 1
                        continue
                    b += offsets[ref]
                    global_bin = b
                    counts[b] += 1
                    qc["counted"] += 1
                    if length >= 0:
                        qc["counted_pairs"] += 1
                        histogram[min(length, overflow)] += 1
                        size_bin = b
                        if by_midpoint:
                            size_bin = min((start + end) // 2 // bin_size, n_bins[ref] - 1) + offsets[ref]
                        if options.short_range[0] <= length <= options.short_range[1]:
                            short[size_bin] += 1
                        if options.long_range[0] <= length <= options.long_range[1]:
                            long_[size_bin] += 1
                    else:
                        qc["counted_single"] += 1
                elif other_index[ref] >= 0:
                    other_counts[other_index[ref]] += 1
                    if length >= 0:
                        other_histogram[other_index[ref], min(length, overflow)] += 1
                else:
                    qc["outside_bins"] += 1
                    continue
                if calls:
                    molecules.append((global_bin, length, calls, methylated))
            if k:
                flush_motifs()
        if text is not None:
            write_held_lines()
            text.close()
            pysam.tabix_compress(text.name, str(fragment_temporary), force=True)
    finally:
        if fasta is not None:
            fasta.close()
        if text is not None:
            text.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(text.name)
    result["qc"][:] = [qc[name] for name in QC_FIELDS]
    if request.methylation:
        features.molecules = np.array(molecules, dtype=np.int64).reshape(-1, 4)
    if request.keep_fragments:
        features.fragments = np.array(kept, dtype=np.int64).reshape(-1, 4)
