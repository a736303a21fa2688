"""Counting aligned cfDNA fragments into bins: BAM through the compiled kernel, CRAM through htslib.

Counting rules (the same for BAM and CRAM, and documented in `docs/counts-format.md`):
- unmapped, secondary and supplementary records are never counted; QC-fail and
  duplicate-flagged records are skipped by default; records with MAPQ < `min_mapq` are skipped;
- a single-end read counts once, in the bin holding its leftmost aligned position (BAM POS);
- a paired read counts only if its mate is on the same contig and the pair is a fragment: marked
  proper by the aligner, or facing each other within `max_pair_length` (`pair_is_fragment`); the
  fragment counts once, through the leftmost mate (the one with the smaller POS; read 1 on a
  tie), at that mate's position, with length |TLEN|; the filters apply to that mate;
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
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from plasmacount.bins import BinAnnotation
from plasmacount.counts import DEFAULT_LONG_RANGE, DEFAULT_LONGEST_LENGTH, DEFAULT_SHORT_RANGE, SampleCounts, sample_name_from_path
from plasmacount.errors import DataError, UsageError
from plasmacount.genome import Layout, check_compatible, is_binned_chromosome

QC_FIELDS = (
    "total", "unmapped", "secondary", "supplementary", "mapped", "qc_fail", "duplicates",
    "low_mapq", "paired_reads", "improper_pairs", "second_mates", "unmarked_duplicates",
    "counted", "counted_pairs", "counted_single", "outside_bins", "pairs_by_geometry",
)

# Pairs the aligner did not mark proper still count when they face each other on one contig
# within this span: an aligner's proper-pair limit (set from the library's own insert sizes: 288
# bp on the real FinaleToolkit CRAM) would otherwise drop exactly the long molecules. 0 keeps
# the aligner's proper pairs only (FinaleToolkit's and DELFI's convention).
DEFAULT_MAX_PAIR_LENGTH = 5000


def pair_is_fragment(flag: int, position: int, mate_position: int, same_contig: bool, template_length: int,
                     max_pair_length: int) -> tuple[bool, bool]:
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
            raise UsageError(f"--max-length must be 0 (the aligner's proper pairs only) or more, not {self.max_pair_length}")
        if self.threads < 1:
            raise UsageError(f"--threads must be at least 1, not {self.threads}")


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
                    raise DataError(f"{path}: the file ends inside the BAM header (truncated); re-create or re-download it")
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


def _plan(path: Path, contigs: list[tuple[str, int]], bin_size: int, annotation: BinAnnotation | None, annotation_path: str | None) -> _Plan:
    if not contigs:
        raise DataError(f"{path}: the header lists no reference sequences; the file was not aligned")
    if annotation is not None:
        check_compatible(annotation.layout, contigs, str(path), annotation_path or "the bin annotation")
        layout = annotation.layout
    else:
        binned = [(name, length) for name, length in contigs if is_binned_chromosome(name)]
        if not binned:
            names = ", ".join(name for name, _ in contigs[:8])
            raise DataError(f"{path}: no chromosomes named chr1..chr22/X/Y or 1..22/X/Y among its contigs ({names}); pass --bins ANNOTATION")
        layout = Layout.from_lengths(binned, bin_size)
    offsets = np.full(len(contigs), -1, dtype=np.int64)
    bin_counts = np.zeros(len(contigs), dtype=np.int64)
    other_index = np.full(len(contigs), -1, dtype=np.int64)
    other = []
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
    options.validate()
    if bin_size <= 0:
        raise UsageError(f"--bin-size must be a positive number of bases, not {bin_size}")
    path = Path(path)
    kind = alignment_kind(path)
    if _index_path(path, kind) is None:
        tool = "samtools index"
        raise DataError(f"{path}: no index ({'.bai/.csi' if kind == 'bam' else '.crai'}) beside the file; run `{tool} {path}`")
    if kind == "bam":
        header = read_bam_header(path)
        contigs, sort_order = header.contigs, header.sort_order
    else:
        contigs, sort_order = _cram_header(path, reference)
    if sort_order is not None and sort_order != "coordinate":
        raise DataError(f"{path}: sorted by {sort_order}, not by coordinate; run `samtools sort -o sorted.bam {path}` and index it")
    plan = _plan(path, contigs, bin_size, annotation, annotation_path)
    n_length = options.longest_length + 2
    result = {
        "counts": np.zeros(plan.layout.n_bins, dtype=np.int64),
        "short": np.zeros(plan.layout.n_bins, dtype=np.int64),
        "long": np.zeros(plan.layout.n_bins, dtype=np.int64),
        "histogram": np.zeros(n_length, dtype=np.int64),
        "other_counts": np.zeros(len(plan.other_contigs), dtype=np.int64),
        "other_histogram": np.zeros((len(plan.other_contigs), n_length), dtype=np.int64),
        "per_ref": np.zeros(len(contigs), dtype=np.int64),
        "qc": np.zeros(len(QC_FIELDS), dtype=np.int64),
    }
    watcher = _ProgressWatcher(path, result["qc"], progress) if progress else None
    if kind == "bam":
        kernel = _load_kernel()
        try:
            if watcher:
                watcher.start()
            kernel.count_bam(
                str(path), header.size, options.threads, plan.ref_bin_offset, plan.ref_bin_count, plan.ref_other_index,
                plan.layout.bin_size, options.min_mapq, int(options.skip_duplicates), int(options.skip_qc_fail),
                int(options.remove_unmarked_duplicates), options.short_range[0], options.short_range[1],
                options.long_range[0], options.long_range[1], options.longest_length + 1, options.max_pair_length,
                result["counts"], result["short"], result["long"], result["histogram"], result["other_counts"],
                result["other_histogram"], result["per_ref"], result["qc"],
            )
        except ValueError as error:
            message = str(error)
            fix = "run `samtools sort` and `samtools index`" if "sorted" in message else "re-create or re-download the file"
            raise DataError(f"{path}: {message}; {fix}") from None
        finally:
            if watcher:
                watcher.stop()
        if watcher:
            watcher.finish()
    else:
        _count_cram(path, reference, plan, options, result)
        if progress:
            progress(1, 1)
    qc = {name: int(value) for name, value in zip(QC_FIELDS, result["qc"])}
    if qc["total"] == 0:
        raise DataError(f"{path}: contains no reads; check that the sequencing and alignment produced output")
    return SampleCounts(
        sample=sample or _sample_from_header(path, header.text if kind == "bam" else None) or sample_name_from_path(path),
        layout=plan.layout,
        counts=result["counts"],
        paired=qc["counted_pairs"] > 0,
        short=result["short"],
        long=result["long"],
        fragment_lengths=result["histogram"],
        other_contigs=plan.other_contigs,
        other_counts=result["other_counts"],
        other_fragment_lengths=result["other_histogram"],
        short_range=tuple(options.short_range),
        long_range=tuple(options.long_range),
        qc=qc,
        per_contig_counts={name: int(n) for (name, _), n in zip(contigs, result["per_ref"]) if n > 0},
        source={"path": str(path), "type": kind},
        filters={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items() if k != "threads"},
    )


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


def _open_cram(path: Path, reference, required_fields: int | None = None):
    import pysam

    prepare_cram_environment()
    options = [f"required_fields={required_fields:#x}".encode()] if required_fields else []
    if reference is not None and not Path(reference).exists():
        raise DataError(f"{reference}: reference FASTA not found; check --fasta")
    try:
        return pysam.AlignmentFile(str(path), "rc", reference_filename=str(reference) if reference else None, format_options=options)
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


def _cram_header(path: Path, reference) -> tuple[list[tuple[str, int]], str | None]:
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
            given = f"{reference} is not the FASTA it was written against" if reference else "it needs the FASTA it was written against"
            raise DataError(f"{path}: cannot decode the CRAM: {given}{hint}; pass that FASTA with --fasta FASTA") from error
    return contigs, header.get("HD", {}).get("SO")


# FLAG | RNAME | POS | MAPQ | RNEXT | PNEXT | TLEN: the fields the counting rules read.
_CRAM_REQUIRED_FIELDS = 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100


def counted_fragments(alignments, path: Path, options: CountOptions, qc: dict):
    """The fragments the counting rules keep, one per counted read or pair, from a pysam file.

    Yields (read, fragment length or -1 for single-end); tallies every decision into `qc`.
    The BAM kernel applies the same rules in C; tests check that both agree.
    """
    previous = (-1, -1)
    seen_position, seen_keys = (-2, -2), set()
    try:
        for read in alignments.fetch(until_eof=True):
            ref, pos, flag = read.reference_id, read.reference_start, read.flag
            order = (ref if ref >= 0 else 1 << 62, pos)
            if order < previous:
                raise DataError(f"{path}: records are not coordinate-sorted (record {qc['total'] + 1}); run `samtools sort` and index")
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
            length = -1
            if flag & 0x1:
                qc["paired_reads"] += 1
                mate = read.next_reference_start
                fragment, by_geometry = pair_is_fragment(flag, pos, mate, read.next_reference_id == ref, read.template_length,
                                                         options.max_pair_length)
                if not fragment:
                    qc["improper_pairs"] += 1
                    continue
                if not (pos < mate or (pos == mate and flag & 0x40)):
                    qc["second_mates"] += 1
                    continue
                qc["pairs_by_geometry"] += by_geometry
                length = abs(read.template_length)
            if options.remove_unmarked_duplicates:
                if (ref, pos) != seen_position:
                    seen_position, seen_keys = (ref, pos), set()
                key = (length, bool(flag & 0x10))
                if key in seen_keys:
                    qc["unmarked_duplicates"] += 1
                    continue
                seen_keys.add(key)
            yield read, length
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot decode ({error}); the file is truncated or a CRAM needs --fasta") from error


def _count_cram(path: Path, reference, plan: _Plan, options: CountOptions, result: dict) -> None:
    qc = dict.fromkeys(QC_FIELDS, 0)
    counts, short, long_, histogram = result["counts"], result["short"], result["long"], result["histogram"]
    other_counts, other_histogram, per_ref = result["other_counts"], result["other_histogram"], result["per_ref"]
    overflow = options.longest_length + 1
    bin_size = plan.layout.bin_size
    offsets, n_bins, other_index = plan.ref_bin_offset.tolist(), plan.ref_bin_count.tolist(), plan.ref_other_index.tolist()
    with _open_cram(path, reference, _CRAM_REQUIRED_FIELDS) as cram:
        for read, length in counted_fragments(cram, path, options, qc):
            ref, pos = read.reference_id, read.reference_start
            per_ref[ref] += 1
            if offsets[ref] >= 0:
                b = pos // bin_size
                if b >= n_bins[ref]:
                    qc["outside_bins"] += 1
                    continue
                b += offsets[ref]
                counts[b] += 1
                qc["counted"] += 1
                if length >= 0:
                    qc["counted_pairs"] += 1
                    histogram[min(length, overflow)] += 1
                    if options.short_range[0] <= length <= options.short_range[1]:
                        short[b] += 1
                    if options.long_range[0] <= length <= options.long_range[1]:
                        long_[b] += 1
                else:
                    qc["counted_single"] += 1
            elif other_index[ref] >= 0:
                other_counts[other_index[ref]] += 1
                if length >= 0:
                    other_histogram[other_index[ref], min(length, overflow)] += 1
            else:
                qc["outside_bins"] += 1
    result["qc"][:] = [qc[name] for name in QC_FIELDS]
