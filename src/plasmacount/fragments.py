"""Fragmentomics: what the lengths and ends of cell-free DNA molecules say about where they came from.

Plasma DNA is cut by nucleases around nucleosomes: most fragments are ~167 bp (one nucleosome
plus linker) with a 10 bp ripple below 150 bp (the DNA helix turn), and tumour, placental and
some viral DNA is shorter. From a sample's counts (or alignments) this module reports:
- size statistics: mode, median, mean, share below 150 bp, the amplitude and period of the
  10 bp periodicity, and the shares of long molecules (> 250, > 500, > 1,000 bp);
- short/long ratios per bin and in 5 Mb windows (DELFI-style), GC-corrected when a bin
  annotation is given (short and long counts are each divided by their own fitted GC curve);
- 4-mer end motifs of fragment 5' ends (from the reference sequence) and the motif diversity
  score (normalised Shannon entropy of the 256 motif frequencies; plug-in, and with the
  Miller-Madow bias correction), which needs alignments and the reference FASTA.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.gc import fit_gc_curve
from plasmacount.genome import is_binned_chromosome, name_key

MOTIFS = [a + b + c + d for a in "ACGT" for b in "ACGT" for c in "ACGT" for d in "ACGT"]


def size_statistics(histogram: np.ndarray) -> dict:
    """Summary of a fragment-length histogram (index = length in bp, last entry = longer)."""
    total = int(histogram.sum())
    keys = ("fragments", "mode", "median", "mean", "share_below_150", "share_above_250", "share_above_500",
            "share_above_1000", "periodicity_amplitude", "periodicity_period")
    if total == 0:
        return dict.fromkeys(keys) | {"fragments": 0}
    lengths = np.arange(histogram.size)
    cumulative = np.cumsum(histogram)
    periodicity = ten_bp_periodicity(histogram)
    return {
        "fragments": total,
        "mode": int(np.argmax(histogram[:-1])),
        "median": int(np.searchsorted(cumulative, total / 2)),
        "mean": float((lengths[:-1] * histogram[:-1]).sum() / max(histogram[:-1].sum(), 1)),
        "share_below_150": float(histogram[:150].sum() / total),
        "share_above_250": float(histogram[251:].sum() / total),
        "share_above_500": float(histogram[501:].sum() / total),
        "share_above_1000": float(histogram[1001:].sum() / total),
        "periodicity_amplitude": periodicity[0],
        "periodicity_period": periodicity[1],
    }


def ten_bp_periodicity(histogram: np.ndarray, low: int = 60, high: int = 160) -> tuple[float | None, float | None]:
    """Amplitude (relative to the local level) and period (bp) of the ripple below the nucleosome peak.

    The histogram between `low` and `high` bp is divided by its 11 bp moving average; the
    strongest Fourier component with a period of 8-13 bp gives the amplitude and period.
    """
    window = histogram[low - 5 : high + 6].astype(float)
    if window.sum() < 1000:
        return None, None
    smooth = np.convolve(window, np.ones(11) / 11, mode="valid")
    relative = window[5:-5] / np.maximum(smooth, 1e-9) - 1
    spectrum = np.fft.rfft(relative * np.hanning(relative.size))
    frequencies = np.fft.rfftfreq(relative.size)
    band = (frequencies >= 1 / 13) & (frequencies <= 1 / 8)
    if not band.any():
        return None, None
    index = np.flatnonzero(band)[np.argmax(np.abs(spectrum[band]))]
    amplitude = 2 * np.abs(spectrum[index]) / np.hanning(relative.size).sum()
    return float(amplitude), float(1 / frequencies[index])


def window_ratios(counts: SampleCounts, window: int = 5_000_000, annotation: BinAnnotation | None = None) -> list[dict]:
    """Short/long fragments in windows of `window` bp, GC-corrected when an annotation is given."""
    if not counts.paired:
        raise UsageError(f"{counts.sample}: short/long ratios need paired-end data (fragment lengths)")
    layout = counts.layout
    per_window = max(1, window // layout.bin_size)
    gc = None
    if annotation is not None:
        if annotation.bin_size != layout.bin_size:
            raise UsageError(f"the annotation has {annotation.bin_size:,} bp bins but {counts.sample} {layout.bin_size:,} bp")
        gc = counts.on_layout(annotation.layout) if annotation.layout != layout else counts
        layout = gc.layout
        short_bins, long_bins, gc_bins = gc.short, gc.long, annotation.gc
    else:
        short_bins, long_bins, gc_bins = counts.short, counts.long, np.full(layout.n_bins, np.nan)
    rows = []
    for contig in layout.contigs:
        if not is_binned_chromosome(contig.name):
            continue
        for first in range(0, contig.n_bins, per_window):
            span = slice(contig.first_bin + first, contig.first_bin + min(first + per_window, contig.n_bins))
            known = np.isfinite(gc_bins[span])
            rows.append({"chrom": contig.name, "start": first * layout.bin_size,
                         "end": min((first + per_window) * layout.bin_size, contig.length),
                         "short": int(short_bins[span].sum()), "long": int(long_bins[span].sum()),
                         "gc": float(np.mean(gc_bins[span][known])) if known.any() else float("nan")})
    short = np.array([r["short"] for r in rows], dtype=float)
    long_ = np.array([r["long"] for r in rows], dtype=float)
    window_gc = np.array([r["gc"] for r in rows])
    usable = (short + long_ > 0) & np.isfinite(window_gc)
    corrected_short, corrected_long = np.full(short.size, np.nan), np.full(long_.size, np.nan)
    if usable.sum() >= 20:
        for values, corrected in ((short, corrected_short), (long_, corrected_long)):
            curve = fit_gc_curve(values, window_gc, usable, n_strata=20, span=0.5)
            with np.errstate(divide="ignore", invalid="ignore"):
                corrected[:] = np.where(np.isfinite(curve.factors), values / curve.factors, np.nan)
    for row, s, l, cs, cl in zip(rows, short, long_, corrected_short, corrected_long):
        row["ratio"] = float(s / l) if l > 0 else None
        row["ratio_gc_corrected"] = float(cs / cl) if np.isfinite(cs) and np.isfinite(cl) and cl > 0 else None
        if not np.isfinite(row["gc"]):
            row["gc"] = None
    return rows


@dataclass
class EndMotifs:
    """Counts of the 256 4-mers at fragment 5' ends (reference sequence), and what was skipped."""

    counts: np.ndarray
    ends: int
    skipped: int

    @property
    def frequencies(self) -> np.ndarray:
        return self.counts / max(self.counts.sum(), 1)

    @property
    def diversity(self) -> float | None:
        """Motif diversity score: Shannon entropy of the frequencies over log(256), in [0, 1]."""
        if self.counts.sum() == 0:
            return None
        p = self.frequencies[self.frequencies > 0]
        return float(-(p * np.log(p)).sum() / math.log(256))

    @property
    def diversity_miller_madow(self) -> float | None:
        """The motif diversity with the Miller-Madow correction: the plug-in entropy falls short of
        the true one by about (m - 1) / 2N (m motifs seen, N ends): about 0.025 of the score at
        1,000 ends, enough to rank a shallower library as less diverse (asked for in
        FinaleToolkit's issue #183). Can exceed 1 slightly for near-uniform motifs."""
        total = int(self.counts.sum())
        if total == 0:
            return None
        seen = int((self.counts > 0).sum())
        return float(self.diversity + (seen - 1) / (2 * total) / math.log(256))


_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _code, _base in enumerate(b"ACGT"):
    _BASE_CODE[_base] = _BASE_CODE[_base + 32] = _code  # upper and lower case


def _base_codes(sequence: str) -> np.ndarray:
    """A=0, C=1, G=2, T=3, anything else 4, per base."""
    return _BASE_CODE[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]


def _count_motifs(codes: np.ndarray, forward: np.ndarray, reverse: np.ndarray, counts: np.ndarray) -> tuple[int, int]:
    """Add the 4-mers at forward-strand starts and (reverse-complemented) before reverse-strand
    ends to `counts` (index 64a + 16b + 4c + d); returns (motifs counted, ends skipped)."""
    weights = np.array([64, 16, 4, 1])
    found = skipped = 0
    for positions, offsets, complement in ((forward, np.arange(4), False), (reverse, -1 - np.arange(4), True)):
        if positions.size == 0:
            continue
        inside = (positions + offsets.min() >= 0) & (positions + offsets.max() < codes.size)
        window = codes[positions[inside, None] + offsets[None, :]]
        valid = np.all(window < 4, axis=1)
        window = window[valid]
        if complement:
            window = 3 - window  # A<->T, C<->G
        np.add.at(counts, window.astype(np.int64) @ weights, 1)
        found += int(valid.sum())
        skipped += int(positions.size - valid.sum())
    return found, skipped


def end_motifs(path: str | os.PathLike, fasta: str | os.PathLike, options=None) -> EndMotifs:
    """4-mer end motifs of the fragments the counting rules keep (both ends of a pair)."""
    import pysam

    from plasmacount.alignments import QC_FIELDS, CountOptions, prepare_cram_environment, alignment_kind, counted_fragments

    options = options or CountOptions()
    path = Path(path)
    if not Path(fasta).exists():
        raise DataError(f"{fasta}: reference FASTA not found; check --fasta")
    kind = alignment_kind(path)
    prepare_cram_environment()
    counts = np.zeros(256, dtype=np.int64)
    ends = skipped = 0
    qc = dict.fromkeys(QC_FIELDS, 0)
    try:
        reference = pysam.FastaFile(str(fasta))
    except (OSError, ValueError) as error:
        raise DataError(f"{fasta}: cannot read the FASTA ({error}); index it with `samtools faidx`") from error
    # Fragment 5' ends are gathered per contig and their motifs read from the contig's sequence
    # all at once (numpy), which is several times faster than slicing strings read by read.
    forward: list[int] = []   # first base of a 5' end on the forward strand
    reverse: list[int] = []   # one past the last base of a 5' end on the reverse strand
    contig_name, codes = None, np.zeros(0, dtype=np.uint8)

    def flush() -> tuple[int, int]:
        found = _count_motifs(codes, np.array(forward, dtype=np.int64), np.array(reverse, dtype=np.int64), counts)
        forward.clear()
        reverse.clear()
        return found

    with reference, pysam.AlignmentFile(str(path), "rc" if kind == "cram" else "rb", reference_filename=str(fasta)) as alignments:
        for read, length in counted_fragments(alignments, path, options, qc):
            name = read.reference_name
            if name != contig_name:
                found, bad = flush()
                ends, skipped = ends + found, skipped + bad
                contig_name = name
                codes = _base_codes(reference.fetch(name)) if name in reference.references else None
            if codes is None:
                skipped += 1
                continue
            if length >= 0:  # a pair: the fragment spans [start, start + length)
                forward.append(read.reference_start)
                reverse.append(read.reference_start + length)
            elif read.is_reverse:  # single-end: the read's own 5' end
                reverse.append(read.reference_end)
            else:
                forward.append(read.reference_start)
        if codes is not None:
            found, bad = flush()
            ends, skipped = ends + found, skipped + bad
    return EndMotifs(counts, ends, skipped)


SCHEMA_VERSION = "1.1"  # 1.1: mitochondrial, end_motifs.diversity_miller_madow


def analyse(source: str | os.PathLike, fasta: str | os.PathLike | None = None, annotation: BinAnnotation | None = None,
            annotation_path: str | None = None, window: int = 5_000_000, bin_size: int = 100_000, options=None) -> tuple[dict, dict]:
    """Fragmentomics of one sample (counts file, WIG/TSV, BAM or CRAM): (result, tables)."""
    from plasmacount.alignments import CountOptions, count_alignments
    from plasmacount.counts import input_kind, load_counts

    options = options or CountOptions()
    kind = input_kind(source)
    notes = []
    if kind in ("bam", "cram"):
        counts = count_alignments(source, bin_size=bin_size, annotation=annotation, annotation_path=annotation_path,
                                  options=options, reference=fasta)
    else:
        counts = load_counts(source)
    motifs = None
    if kind in ("bam", "cram") and fasta is not None:
        motifs = end_motifs(source, fasta, options)
    elif kind in ("bam", "cram"):
        notes.append("end motifs need the reference FASTA (--fasta)")
    else:
        notes.append("end motifs need alignments (BAM/CRAM) and the reference FASTA")
    windows = None
    if counts.paired:
        windows = window_ratios(counts, window, annotation)
    else:
        notes.append("single-end data: no fragment lengths, so no size statistics or short/long ratios")
    statistics = size_statistics(counts.fragment_lengths) if counts.paired else size_statistics(np.zeros(2, dtype=np.int64))
    ratios = [w["ratio"] for w in windows or [] if w["ratio"] is not None]
    corrected = [w["ratio_gc_corrected"] for w in windows or [] if w["ratio_gc_corrected"] is not None]
    others = {}
    for row, contig in enumerate(counts.other_contigs):
        if counts.other_counts[row]:
            others[contig["name"]] = {"fragments": int(counts.other_counts[row]),
                                      "size": size_statistics(counts.other_fragment_lengths[row]) if counts.paired else None}
    # Mitochondrial DNA share: a feature of fragmentomic classifiers (cancer plasma carries more).
    mitochondrial = sum(int(counts.other_counts[row]) for row, contig in enumerate(counts.other_contigs) if name_key(contig["name"]) == "M")
    nuclear = int(counts.counts.sum())
    result = {
        "schema_version": SCHEMA_VERSION, "sample": counts.sample, "source": counts.source, "paired": counts.paired,
        "size": statistics,
        "mitochondrial": {"fragments": mitochondrial,
                          "fraction": mitochondrial / (mitochondrial + nuclear) if mitochondrial + nuclear else None},
        "short_range": list(counts.short_range), "long_range": list(counts.long_range),
        "short_long_ratio": {"genome": float(counts.short.sum() / counts.long.sum()) if counts.long.sum() else None,
                             "windows": len(windows) if windows else 0, "window_bp": window,
                             "median_window_ratio": float(np.median(ratios)) if ratios else None,
                             "median_window_ratio_gc_corrected": float(np.median(corrected)) if corrected else None,
                             "gc_corrected": bool(corrected)},
        "end_motifs": {"diversity": motifs.diversity if motifs else None,
                       "diversity_miller_madow": motifs.diversity_miller_madow if motifs else None, "ends": motifs.ends if motifs else None,
                       "top": [{"motif": MOTIFS[i], "frequency": float(motifs.frequencies[i])} for i in np.argsort(-motifs.counts, kind="stable")[:10]]
                       if motifs and motifs.ends else None},
        "other_contigs": others,
        "notes": notes,
    }
    tables = {"histogram": counts.fragment_lengths if counts.paired else None, "windows": windows, "motifs": motifs}
    return result, tables


def write_outputs(results: list[tuple[dict, dict]], output: str | os.PathLike) -> list[Path]:
    """Per sample JSON, size histogram, windows and end motifs; a batch TSV."""
    from plasmacount.files import atomic_output, check_unique_samples, sample_file_stem, table_cell, write_json

    check_unique_samples([r["sample"] for r, _ in results])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for result, tables in results:
        name = sample_file_stem(result["sample"])
        written.append(write_json(output / f"{name}.fragments.json", result))
        if tables["histogram"] is not None:
            path = output / f"{name}.size_histogram.tsv"
            histogram = tables["histogram"]
            with atomic_output(path, "w") as stream:
                stream.write("length\tcount\n")
                stream.writelines(f"{length}\t{int(n)}\n" for length, n in enumerate(histogram[:-1]))
                stream.write(f">{histogram.size - 2}\t{int(histogram[-1])}\n")
            written.append(path)
        if tables["windows"]:
            path = output / f"{name}.windows.tsv"
            with atomic_output(path, "w") as stream:
                stream.write("chrom\tstart\tend\tshort\tlong\tratio\tratio_gc_corrected\tgc\n")
                for w in tables["windows"]:
                    cells = [w["chrom"], w["start"], w["end"], w["short"], w["long"], w["ratio"], w["ratio_gc_corrected"], w["gc"]]
                    stream.write("\t".join(table_cell(c, ".5f") for c in cells) + "\n")
            written.append(path)
        if tables["motifs"] is not None:
            path = output / f"{name}.end_motifs.tsv"
            motifs = tables["motifs"]
            with atomic_output(path, "w") as stream:
                stream.write("motif\tcount\tfrequency\n")
                stream.writelines(f"{m}\t{int(c)}\t{f:.6f}\n" for m, c, f in zip(MOTIFS, motifs.counts, motifs.frequencies))
            written.append(path)
    path = output / "fragments.tsv"
    columns = ["sample", "paired", "fragments", "mode", "median", "mean", "share_below_150", "share_above_250", "share_above_500",
               "share_above_1000", "periodicity_amplitude", "periodicity_period", "short_long_ratio", "motif_diversity",
               "motif_diversity_miller_madow", "mitochondrial_fraction"]
    with atomic_output(path, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for result, _ in results:
            size = result["size"]
            values = [result["sample"], str(result["paired"]).lower()] + [size[k] for k in columns[2:12]] + [
                result["short_long_ratio"]["genome"], result["end_motifs"]["diversity"], result["end_motifs"]["diversity_miller_madow"],
                result["mitochondrial"]["fraction"]]
            stream.write("\t".join(table_cell(v, ".5f") for v in values) + "\n")
    written.append(path)
    return written
