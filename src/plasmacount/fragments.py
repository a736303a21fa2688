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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plasmacount import delfi
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.gc import fit_gc_curve
from plasmacount.genome import is_binned_chromosome, name_key
from plasmacount.motifs import DEFAULT_MOTIF_LENGTH, motif_names

if TYPE_CHECKING:
    from plasmacount.alignments import CountOptions, ScanFeatures
    from plasmacount.genome import Layout
    from plasmacount.intervals import Site
    from plasmacount.methylation import MethylationReference

MOTIFS = motif_names(DEFAULT_MOTIF_LENGTH)


def size_statistics(histogram: np.ndarray) -> dict:
    """Summary of a fragment-length histogram (index = length in bp, last entry = longer)."""
    total = int(histogram.sum())
    keys = (
        "fragments",
        "mode",
        "median",
        "mean",
        "share_below_150",
        "share_above_250",
        "share_above_500",
        "share_above_1000",
        "periodicity_amplitude",
        "periodicity_period",
    )
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
            raise UsageError(
                f"the annotation has {annotation.bin_size:,} bp bins but {counts.sample} {layout.bin_size:,} bp"
            )
        gc = counts.on_layout(annotation.layout) if annotation.layout != layout else counts
        layout = gc.layout
        short_bins, long_bins, gc_bins = gc.short, gc.long, annotation.gc
    else:
        short_bins, long_bins, gc_bins = counts.short, counts.long, np.full(layout.n_bins, np.nan)
    rows: list[dict] = []
    for contig in layout.contigs:
        if not is_binned_chromosome(contig.name):
            continue
        for first in range(0, contig.n_bins, per_window):
            span = slice(contig.first_bin + first, contig.first_bin + min(first + per_window, contig.n_bins))
            known = np.isfinite(gc_bins[span])
            rows.append(
                {
                    "chrom": contig.name,
                    "start": first * layout.bin_size,
                    "end": min((first + per_window) * layout.bin_size, contig.length),
                    "short": int(short_bins[span].sum()),
                    "long": int(long_bins[span].sum()),
                    "gc": float(np.mean(gc_bins[span][known])) if known.any() else float("nan"),
                }
            )
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
    for row, short_count, long_count, short_corrected, long_corrected in zip(
        rows, short, long_, corrected_short, corrected_long
    ):
        row["ratio"] = float(short_count / long_count) if long_count > 0 else None
        row["ratio_gc_corrected"] = (
            float(short_corrected / long_corrected)
            if np.isfinite(short_corrected) and np.isfinite(long_corrected) and long_corrected > 0
            else None
        )
        if not np.isfinite(row["gc"]):
            row["gc"] = None
    return rows


@dataclass
class EndMotifs:
    """Counts of the 4^k k-mers at fragment 5' ends (reference sequence), and what was skipped."""

    counts: np.ndarray
    ends: int
    skipped: int

    @property
    def k(self) -> int:
        return int(round(math.log(self.counts.size, 4)))

    @property
    def names(self) -> list[str]:
        return motif_names(self.k)

    @property
    def frequencies(self) -> np.ndarray:
        return self.counts / max(self.counts.sum(), 1)

    @property
    def diversity(self) -> float | None:
        """Motif diversity score: Shannon entropy of the frequencies over log(4^k), in [0, 1]."""
        if self.counts.sum() == 0:
            return None
        p = self.frequencies[self.frequencies > 0]
        return float(-(p * np.log(p)).sum() / math.log(self.counts.size))

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
        plug_in = self.diversity
        assert plug_in is not None  # None only without ends, returned above
        return float(plug_in + (seen - 1) / (2 * total) / math.log(self.counts.size))


def end_motifs(
    path: str | os.PathLike,
    fasta: str | os.PathLike,
    options: CountOptions | None = None,
    k: int = DEFAULT_MOTIF_LENGTH,
) -> EndMotifs:
    """k-mer end motifs of the fragments the counting rules keep (both ends of a pair), from the
    same pass that counts them (see `motifs` for the definitions)."""
    from plasmacount.alignments import CountOptions, ScanRequest, scan_alignments

    _, features = scan_alignments(
        path, options=options or CountOptions(), reference=fasta, request=ScanRequest(motif_k=k, fasta=fasta)
    )
    return _end_motifs_of(features)


def _end_motifs_of(features: ScanFeatures) -> EndMotifs:
    """The end motifs a scan counted because its request asked for them (motif_k and a FASTA)."""
    assert features.motif_counts is not None, "the scan was not asked for end motifs"
    return EndMotifs(features.motif_counts, features.ends_counted, features.ends_skipped)


SCHEMA_VERSION = "1.2"  # 1.1: mitochondrial, end_motifs.diversity_miller_madow; 1.2: end_motifs.k, long_molecules, methylation, delfi


# Molecule size classes for methylation (bp, lower edges; the last is open).
METHYLATION_SIZE_CLASSES = (0, 150, 500, 1000, 5000, 10_000)
# A CpG call is methylated when its ML probability is at least this (of 255): 50 %.
METHYLATED_PROBABILITY = 128


def long_molecule_shares(counts: SampleCounts) -> dict:
    """Shares of molecules above 1, 5 and 10 kb among all with a length, and the longest class seen."""
    total = int(counts.fragment_lengths.sum())
    edges, classes = counts.long_molecule_edges, counts.long_molecule_lengths
    if total == 0:
        return {"share_above_1000": None, "share_above_5000": None, "share_above_10000": None, "longest_class_bp": None}
    exact = counts.fragment_lengths
    above = lambda bp: int(exact[bp + 1 :].sum()) if bp + 1 < exact.size - 1 else int(classes[edges > bp].sum())  # noqa: E731
    seen = np.flatnonzero(classes)
    return {
        "share_above_1000": above(1000) / total,
        "share_above_5000": above(5000) / total,
        "share_above_10000": above(10_000) / total,
        "longest_class_bp": int(edges[seen[-1]]) if seen.size else None,
    }


def methylation_summary(molecules: np.ndarray, layout: Layout) -> tuple[dict, list[dict]]:
    """Genome-wide, per size class and per bin CpG methylation of molecules (rows: bin, length,
    calls, methylated); (summary, per-bin rows with calls)."""
    calls, methylated = molecules[:, 2], molecules[:, 3]
    total = int(calls.sum())
    by_size: list[dict] = []
    summary = {
        "molecules": int(molecules.shape[0]),
        "cpg_calls": total,
        "cpg_methylated_fraction": float(methylated.sum() / total) if total else None,
        "methylated_at_probability": METHYLATED_PROBABILITY,
        "by_size": by_size,
    }
    lengths = molecules[:, 1]
    for i, low in enumerate(METHYLATION_SIZE_CLASSES):
        high = METHYLATION_SIZE_CLASSES[i + 1] if i + 1 < len(METHYLATION_SIZE_CLASSES) else None
        chosen = (lengths >= low) & ((lengths < high) if high else True)
        n = int(calls[chosen].sum())
        by_size.append(
            {
                "from_bp": low,
                "below_bp": high,
                "molecules": int(chosen.sum()),
                "cpg_calls": n,
                "cpg_methylated_fraction": float(methylated[chosen].sum() / n) if n else None,
            }
        )
    binned = molecules[:, 0] >= 0
    per_bin_calls = np.bincount(molecules[binned, 0], weights=calls[binned], minlength=layout.n_bins)
    per_bin_methylated = np.bincount(molecules[binned, 0], weights=methylated[binned], minlength=layout.n_bins)
    index, start, end = layout.bin_table()
    rows = [
        {
            "chrom": layout.names[index[b]],
            "start": int(start[b]),
            "end": int(end[b]),
            "cpg_calls": int(per_bin_calls[b]),
            "cpg_methylated": int(per_bin_methylated[b]),
            "fraction": float(per_bin_methylated[b] / per_bin_calls[b]),
        }
        for b in np.flatnonzero(per_bin_calls)
    ]
    return summary, rows


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def analyse(
    source: str | os.PathLike,
    fasta: str | os.PathLike | None = None,
    annotation: BinAnnotation | None = None,
    annotation_path: str | None = None,
    window: int = 5_000_000,
    bin_size: int = 100_000,
    options: CountOptions | None = None,
    motif_length: int = DEFAULT_MOTIF_LENGTH,
    fragment_file: str | os.PathLike | None = None,
    delfi_panel: dict | None = None,
    delfi_window_ratio: str = "sum",
    sites: list[Site] | None = None,
    delfi_gc_smoother: str = "delfi",
    interval_features: str = "all",
) -> tuple[dict, dict]:
    """Fragmentomics of one sample (counts file, WIG/TSV, BAM, CRAM or fragment file): (result, tables).
    Alignments are read once: counts, sizes, end motifs (with `fasta`), CpG methylation (MM/ML
    tags) and, with `fragment_file`, the fragment file all come from the same pass."""
    from plasmacount.alignments import CountOptions, ScanRequest, scan_alignments
    from plasmacount.counts import input_kind, load_counts
    from plasmacount.fragment_files import count_fragment_file

    options = options or CountOptions()
    kind = input_kind(source)
    notes = []
    motifs = features = None
    if kind in ("bam", "cram", "fragments"):
        request = ScanRequest(
            motif_k=motif_length if fasta is not None else 0,
            fasta=fasta,
            fragment_file=fragment_file,
            methylation=kind != "fragments",
            keep_fragments=bool(sites),
        )
        if kind == "fragments":
            if fragment_file is not None:
                raise UsageError(f"{source} is a fragment file already; --fragments-out writes one from BAM/CRAM")
            counts, features = count_fragment_file(
                source, bin_size, annotation, annotation_path, options, fasta, request=request
            )
        else:
            counts, features = scan_alignments(
                source, bin_size, annotation, annotation_path, options, fasta, request=request
            )
        if fasta is not None:
            motifs = _end_motifs_of(features)
        else:
            notes.append("end motifs need the reference FASTA (--fasta)")
    else:
        if fragment_file is not None:
            raise UsageError(f"{source}: --fragments-out needs alignments (BAM/CRAM), not counts")
        counts = load_counts(source)
        notes.append("end motifs need alignments (BAM/CRAM) or a fragment file, and the reference FASTA")
        if sites:
            raise UsageError(f"{source}: --intervals needs alignments (BAM/CRAM) or a fragment file, not counts")
    windows = None
    if counts.paired:
        windows = window_ratios(counts, window, annotation)
    else:
        notes.append("single-end data: no fragment lengths, so no size statistics or short/long ratios")
    statistics = (
        size_statistics(counts.fragment_lengths) if counts.paired else size_statistics(np.zeros(2, dtype=np.int64))
    )
    ratios = [w["ratio"] for w in windows or [] if w["ratio"] is not None]
    corrected = [w["ratio_gc_corrected"] for w in windows or [] if w["ratio_gc_corrected"] is not None]
    others = {}
    for row, contig in enumerate(counts.other_contigs):
        if counts.other_counts[row]:
            others[contig["name"]] = {
                "fragments": int(counts.other_counts[row]),
                "size": size_statistics(counts.other_fragment_lengths[row]) if counts.paired else None,
            }
    # Mitochondrial DNA share: a feature of fragmentomic classifiers (cancer plasma carries more).
    mitochondrial = sum(
        int(counts.other_counts[row])
        for row, contig in enumerate(counts.other_contigs)
        if name_key(contig["name"]) == "M"
    )
    nuclear = int(counts.counts.sum())
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "sample": counts.sample,
        "source": counts.source,
        "paired": counts.paired,
        "size": statistics,
        "mitochondrial": {
            "fragments": mitochondrial,
            "fraction": mitochondrial / (mitochondrial + nuclear) if mitochondrial + nuclear else None,
        },
        "short_range": list(counts.short_range),
        "long_range": list(counts.long_range),
        "short_long_ratio": {
            "genome": float(counts.short.sum() / counts.long.sum()) if counts.long.sum() else None,
            "windows": len(windows) if windows else 0,
            "window_bp": window,
            "median_window_ratio": float(np.median(ratios)) if ratios else None,
            "median_window_ratio_gc_corrected": float(np.median(corrected)) if corrected else None,
            "gc_corrected": bool(corrected),
        },
        "long_molecules": long_molecule_shares(counts),
        "methylation": None,
        "end_motifs": {
            "k": motifs.k if motifs else None,
            "diversity": motifs.diversity if motifs else None,
            "diversity_miller_madow": motifs.diversity_miller_madow if motifs else None,
            "ends": motifs.ends if motifs else None,
            "top": [
                {"motif": motifs.names[i], "frequency": float(motifs.frequencies[i])}
                for i in np.argsort(-motifs.counts, kind="stable")[:10]
            ]
            if motifs and motifs.ends
            else None,
        },
        "other_contigs": others,
        "notes": notes,
    }
    site_rows = site_tracks = None
    result["intervals"] = None
    if sites:
        assert features is not None  # sites were refused above for counts, which carry no fragments
        total = int(counts.counts.sum() + counts.other_counts.sum())
        result["intervals"], site_rows, site_tracks = _interval_features(
            features, _contig_lengths(counts), total, sites, fasta, motif_length, interval_features
        )
    delfi_profile = None
    result["delfi"] = None
    if (
        counts.paired
        and annotation is not None
        and annotation.bin_size == delfi.BIN_SIZE
        and tuple(counts.short_range) == delfi.SHORT_RANGE
        and tuple(counts.long_range) == delfi.LONG_RANGE
    ):
        delfi_profile = delfi.profile(counts, annotation, delfi_window_ratio, delfi_gc_smoother)
        result["delfi"] = delfi.summary(delfi_profile, delfi_panel)
    elif counts.paired:
        notes.append("DELFI profile: needs a 100 kb bin annotation (--bins) and the default short/long ranges")
    methylation_rows = None
    if features is not None and features.molecules is not None and features.molecules.shape[0]:
        result["methylation"], methylation_rows = methylation_summary(features.molecules, counts.layout)
        result["methylation"]["unreadable_records"] = features.methylation_unreadable
    tables = {
        "histogram": counts.fragment_lengths if counts.paired else None,
        "windows": windows,
        "motifs": motifs,
        "long_molecules": (counts.long_molecule_edges, counts.long_molecule_lengths)
        if counts.long_molecule_lengths.any()
        else None,
        "methylation": methylation_rows,
        "molecules": features.molecules if features is not None else None,
        "layout": counts.layout,
        "delfi": delfi_profile,
        "sites": site_rows,
        "site_tracks": site_tracks,
        "contig_lengths": _contig_lengths(counts),
        "delfi_features": delfi.feature_table(delfi_profile, result["mitochondrial"]["fraction"], delfi_panel)
        if delfi_profile
        else None,
    }
    return result, tables


def _contig_lengths(counts: SampleCounts) -> dict[str, int]:
    return {c.name: c.length for c in counts.layout.contigs} | {o["name"]: o["length"] for o in counts.other_contigs}


def _interval_features(
    features: ScanFeatures,
    lengths: dict[str, int],
    total: int,
    sites: list[Site],
    fasta: str | os.PathLike | None,
    motif_length: int,
    interval_features: str,
) -> tuple[dict, list[dict], dict]:
    """The per-site rows, tracks and their summary from the fragments a pass kept."""
    from plasmacount import intervals

    # The scan keeps every fragment (and the names of its contigs) whenever sites are asked for.
    assert features.fragments is not None and features.reference_names is not None
    grouped: dict[str, intervals.ContigFragments] | dict[str, intervals.SortedMidpoints]
    if interval_features == "coverage" and fasta is None:
        grouped = intervals.midpoints_by_contig(features.fragments, features.reference_names)
    else:
        grouped = with_ends = intervals.by_contig(features.fragments, features.reference_names)
    site_rows, site_tracks = intervals.site_features(grouped, sites, lengths, total, features=interval_features)
    if fasta is not None:
        for row, site_counts in zip(site_rows, intervals.site_end_motifs(with_ends, sites, fasta, motif_length)):
            site_motifs = EndMotifs(site_counts, int(site_counts.sum()), 0)
            row.update(
                motif_ends=site_motifs.ends,
                motif_diversity=site_motifs.diversity,
                motif_diversity_miller_madow=site_motifs.diversity_miller_madow,
                motif_counts=site_counts,
            )
    summary = {
        "sites": len(site_rows),
        "features": interval_features,
        "interval_bp": intervals.INTERVAL_SIZE,
        "reads_without_fragment_length": int((features.fragments[:, 2] < 0).sum()),
        "long_wps": intervals.LONG_WPS,
        "short_wps": intervals.SHORT_WPS,
        "mean_wps_long_centre": _mean([r["wps_long_centre"] for r in site_rows]),
        "mean_wps_long_adjusted_centre": _mean([r["wps_long_adjusted_centre"] for r in site_rows]),
    }
    return summary, site_rows, site_tracks


# Reading by index (`analyse_intervals`), a pair is only seen if its representative read lies
# near a site: fragments are taken up to this length when the rules set no bound of their own.
INTERVALS_ONLY_LONGEST = 5000
UNBOUNDED_CONTIG = 1 << 62


def analyse_intervals(
    source: str | os.PathLike,
    sites: list[Site],
    fasta: str | os.PathLike | None = None,
    options: CountOptions | None = None,
    motif_length: int = DEFAULT_MOTIF_LENGTH,
    interval_features: str = "all",
) -> tuple[dict, dict]:
    """The interval features of one indexed BAM/CRAM, reading only the reads near the sites
    through the index: (result, tables) with the interval tables alone. The same rows as
    `analyse` gives, except the coverage per million (it needs every fragment: None here).

    The read that stands for a pair lies inside its fragment. A fragment counts in a site's
    coverage when its midpoint lies in the site, so that read lies within half the fragment's
    length of the site; it counts in the WPS and cleavage of the 5 kb window when it overlaps the
    window, so within its length. The reads are taken from each site (or window) widened by that
    much for the longest fragment counted: `options.fragment_lengths`' upper bound, else the
    pair-geometry limit (`--max-length`), else INTERVALS_ONLY_LONGEST.
    Pairs longer than that are not counted here (in a whole pass a proper pair of any length is),
    which the result notes. Long-read molecules are reads of their own and are found whole."""
    import dataclasses

    from plasmacount import intervals
    from plasmacount.alignments import CountOptions, ScanRequest, scan_alignments
    from plasmacount.counts import input_kind

    options = options or CountOptions()
    kind = input_kind(source)
    if kind not in ("bam", "cram"):
        raise UsageError(f"{source}: --intervals-only reads an indexed BAM or CRAM; for {kind} input run without it")
    longest = (
        options.fragment_lengths[1]
        if options.fragment_lengths is not None
        else options.max_pair_length or INTERVALS_ONLY_LONGEST
    )
    notes = [f"read through the index: only reads near the sites; pairs up to {longest} bp; no coverage per million"]
    if not options.long_reads:
        shortest = options.fragment_lengths[0] if options.fragment_lengths is not None else 0
        options = dataclasses.replace(options, fragment_lengths=(shortest, longest))
    regions = []
    for site in sites:
        if interval_features == "all":
            # The window unclipped (scan_alignments clips the regions to their contig).
            window_first, window_last = intervals.site_window(site, UNBOUNDED_CONTIG)
            first, last = min(site.start, window_first), max(site.end, window_last)
            regions.append((site.chrom, first - longest - 1, last + longest + 1))
        else:
            regions.append((site.chrom, site.start - longest // 2 - 1, site.end + longest // 2 + 1))
    request = ScanRequest(motif_k=0, keep_fragments=True, regions=tuple(regions))
    counts, features = scan_alignments(source, options=options, reference=fasta, request=request)
    lengths = _contig_lengths(counts)
    assert features.fragments is not None  # asked for with keep_fragments
    summary, site_rows, site_tracks = _interval_features(
        features, lengths, 0, sites, fasta, motif_length, interval_features
    )
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "scope": "intervals",
        "sample": counts.sample,
        "source": counts.source,
        "paired": counts.paired,
        "reads_read": counts.qc["total"],
        "fragments_kept": int(features.fragments.shape[0]),
        "intervals": summary,
        "notes": notes,
    }
    tables = {"sites": site_rows, "site_tracks": site_tracks, "contig_lengths": lengths}
    return result, tables


@dataclass(frozen=True)
class FragmentOptions:
    """What is measured on every input of a batch (the parameters of `analyse`); with
    `fragment_files`, each BAM/CRAM's fragment file is written beside the outputs as
    `<input name>.frag.gz`; with `intervals_only`, only the reads near `sites` are read
    (`analyse_intervals`)."""

    fasta: str | os.PathLike | None = None
    annotation_path: str | None = None
    window: int = 5_000_000
    bin_size: int = 100_000
    counting: CountOptions | None = None
    motif_length: int = DEFAULT_MOTIF_LENGTH
    fragment_files: bool = False
    delfi_window_ratio: str = "sum"
    delfi_gc_smoother: str = "delfi"
    sites: tuple[Site, ...] | None = None
    interval_features: str = "all"
    intervals_only: bool = False


def _input_name(source: str | os.PathLike) -> str:
    """The sample name `analyse` will give an input."""
    from plasmacount import alignments, fragment_files
    from plasmacount.counts import input_kind, load_counts

    kind = input_kind(source)
    if kind in ("bam", "cram"):
        return alignments.sample_name(source)
    if kind == "fragments":
        return fragment_files.sample_name(source)
    return load_counts(source).sample


def analyse_batch(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    annotation: BinAnnotation | None = None,
    options: FragmentOptions = FragmentOptions(),
    delfi_panel: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[dict, dict]]:
    """Every input analysed, (result, tables) each, not yet written; refused before any reading
    when two inputs share a sample name (or, writing fragment files, a file name)."""
    from plasmacount.counts import input_kind, sample_name_from_path
    from plasmacount.files import check_unique_inputs, check_unique_samples, sample_file_stem

    check_unique_inputs([(_input_name(source), source) for source in sources])
    if options.fragment_files:  # named by input file: two inputs of one name would overwrite each other's
        check_unique_samples([sample_name_from_path(source) for source in sources])
        Path(output).mkdir(parents=True, exist_ok=True)
    sites = list(options.sites) if options.sites is not None else None
    if options.intervals_only and not sites:
        raise UsageError("reading the sites alone needs sites (--intervals BED)")
    results = []
    for i, source in enumerate(sources):
        if options.intervals_only:
            assert sites  # checked above, before any input is read
            results.append(
                analyse_intervals(
                    source, sites, options.fasta, options.counting, options.motif_length, options.interval_features
                )
            )
        else:
            fragment_file = None
            if options.fragment_files and input_kind(source) in ("bam", "cram"):
                fragment_file = Path(output) / f"{sample_file_stem(sample_name_from_path(source))}.frag.gz"
            results.append(
                analyse(
                    source,
                    options.fasta,
                    annotation,
                    options.annotation_path,
                    options.window,
                    options.bin_size,
                    options.counting,
                    motif_length=options.motif_length,
                    fragment_file=fragment_file,
                    delfi_panel=delfi_panel,
                    delfi_window_ratio=options.delfi_window_ratio,
                    delfi_gc_smoother=options.delfi_gc_smoother,
                    sites=sites,
                    interval_features=options.interval_features,
                )
            )
        if progress:
            progress(i + 1, len(sources))
    return results


def add_methylation_fetal_fractions(results: list[tuple[dict, dict]], reference: MethylationReference) -> None:
    """Each result's fetal fraction from its molecules' CpG methylation (under `methylation`)."""
    from plasmacount.methylation import fetal_fraction

    for result, tables in results:
        if result["methylation"] is None:
            raise DataError(
                f"{result['sample']}: no CpG methylation calls (MM/ML tags) to estimate the fetal fraction from"
            )
        result["methylation"]["fetal_fraction"] = fetal_fraction(tables["molecules"], reference, tables["layout"])


def make_delfi_panel(results: list[tuple[dict, dict]], output: str | os.PathLike) -> int:
    """A DELFI panel (the median profile) of the results' DELFI profiles, written to `output`;
    returns how many profiles it has."""
    profiles = [tables["delfi"] for _, tables in results if tables.get("delfi") is not None]
    if len(profiles) < 2:
        raise UsageError("a DELFI panel needs at least 2 paired-end samples counted on a 100 kb annotation (--bins)")
    delfi.save_panel(delfi.panel_median(profiles), output)
    return len(profiles)


def read_known_fetal_fractions(path: str | os.PathLike) -> dict[str, float]:
    """A TSV of `sample  fetal_fraction` (0 for a woman who is not pregnant; a header line allowed)."""
    fractions = {}
    with open(path) as stream:
        for line_number, line in enumerate(stream, 1):
            fields = line.rstrip("\n").split("\t")
            if line_number == 1 and fields[:2] == ["sample", "fetal_fraction"] or not line.strip():
                continue
            try:
                fractions[fields[0]] = float(fields[1])
            except (IndexError, ValueError):
                raise DataError(f"{path}: line {line_number} is not `sample<TAB>fetal_fraction`") from None
    return fractions


def learn_methylation_reference(
    results: list[tuple[dict, dict]], fractions: Mapping[str, float], output: str | os.PathLike, source: str
) -> int:
    """A methylation reference learnt from the results' molecules and their known fetal
    fractions, written to `output`; returns how many samples it has."""
    from plasmacount.methylation import learn_reference

    panel = []
    for result, tables in results:
        if result["sample"] not in fractions:
            raise DataError(
                f"{source}: no fetal fraction for sample {result['sample']}; list every input (0 if not pregnant)"
            )
        if tables["molecules"] is None or not tables["molecules"].shape[0]:
            raise DataError(f"{result['sample']}: no CpG methylation calls (MM/ML tags) to learn from")
        panel.append((tables["molecules"], fractions[result["sample"]]))
    layouts = {tables["layout"] for _, tables in results}
    if len(layouts) != 1:
        raise UsageError("the samples were counted on different bins; pass one --bins ANNOTATION")
    learn_reference(layouts.pop(), panel, source=f"{len(panel)} samples of {source}").save(output)
    return len(panel)


def run_batch(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    annotation: BinAnnotation | None = None,
    options: FragmentOptions = FragmentOptions(),
    delfi_panel: dict | None = None,
    methylation_reference: MethylationReference | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[dict, dict]]:
    """Analyse every input (`analyse_batch`), with the methylation fetal fraction against
    `methylation_reference` when given, and write the outputs."""
    results = analyse_batch(sources, output, annotation, options, delfi_panel, progress)
    if methylation_reference is not None:
        add_methylation_fetal_fractions(results, methylation_reference)
    write_outputs(results, output)
    return results


def write_outputs(results: list[tuple[dict, dict]], output: str | os.PathLike) -> list[Path]:
    """Per sample JSON, size histogram, windows and end motifs; a batch TSV. A result of
    `analyse_intervals` gets `<sample>.intervals.json` and its interval tables alone."""
    from plasmacount.files import atomic_output, check_unique_samples, sample_file_stem, table_cell, write_json

    check_unique_samples([r["sample"] for r, _ in results])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for result, tables in results:
        name = sample_file_stem(result["sample"])
        whole = result.get("scope") != "intervals"
        written.append(write_json(output / f"{name}.{'fragments' if whole else 'intervals'}.json", result))
        if tables.get("histogram") is not None:
            path = output / f"{name}.size_histogram.tsv"
            histogram = tables["histogram"]
            with atomic_output(path, "w") as stream:
                stream.write("length\tcount\n")
                stream.writelines(f"{length}\t{int(n)}\n" for length, n in enumerate(histogram[:-1]))
                stream.write(f">{histogram.size - 2}\t{int(histogram[-1])}\n")
            written.append(path)
        if tables.get("windows"):
            path = output / f"{name}.windows.tsv"
            with atomic_output(path, "w") as stream:
                stream.write("chrom\tstart\tend\tshort\tlong\tratio\tratio_gc_corrected\tgc\n")
                for w in tables["windows"]:
                    cells = [
                        w["chrom"],
                        w["start"],
                        w["end"],
                        w["short"],
                        w["long"],
                        w["ratio"],
                        w["ratio_gc_corrected"],
                        w["gc"],
                    ]
                    stream.write("\t".join(table_cell(c, ".5f") for c in cells) + "\n")
            written.append(path)
        if tables.get("motifs") is not None:
            path = output / f"{name}.end_motifs.tsv"
            motifs = tables["motifs"]
            with atomic_output(path, "w") as stream:
                stream.write("motif\tcount\tfrequency\n")
                stream.writelines(
                    f"{m}\t{int(c)}\t{f:.6f}\n" for m, c, f in zip(motifs.names, motifs.counts, motifs.frequencies)
                )
            written.append(path)
        if tables.get("sites"):
            from plasmacount import intervals

            columns = [
                "chrom",
                "start",
                "end",
                "name",
                "strand",
                "coverage",
                "coverage_per_million",
                "wps_long_centre",
                "wps_short_centre",
                "wps_long_adjusted_centre",
            ]
            if "motif_counts" in tables["sites"][0]:
                columns += ["motif_ends", "motif_diversity", "motif_diversity_miller_madow"]
                path = output / f"{name}.interval_end_motifs.tsv"
                k = int(round(math.log(tables["sites"][0]["motif_counts"].size, 4)))
                with atomic_output(path, "w") as stream:
                    stream.write("\t".join(["chrom", "start", "end", "name"] + motif_names(k)) + "\n")
                    stream.writelines(
                        "\t".join(
                            [r["chrom"], str(r["start"]), str(r["end"]), r["name"]]
                            + [str(int(c)) for c in r["motif_counts"]]
                        )
                        + "\n"
                        for r in tables["sites"]
                    )
                written.append(path)
            for suffix, rows, names in (
                (".intervals.tsv", tables["sites"], columns),
                (
                    ".genes.tsv",
                    intervals.gene_table(tables["sites"]),
                    [
                        "name",
                        "sites",
                        "coverage",
                        "coverage_per_million",
                        "wps_long_centre",
                        "wps_short_centre",
                        "wps_long_adjusted_centre",
                    ],
                ),
            ):
                path = output / f"{name}{suffix}"
                with atomic_output(path, "w") as stream:
                    stream.write("\t".join(names) + "\n")
                    stream.writelines("\t".join(table_cell(row[c], ".5f") for c in names) + "\n" for row in rows)
                written.append(path)
            for track, pieces in tables["site_tracks"].items():
                if pieces:
                    written.append(
                        intervals.write_track(output / f"{name}.{track}.bw", pieces, tables["contig_lengths"])
                    )
        if tables.get("delfi") is not None:
            path = output / f"{name}.delfi.tsv"
            with atomic_output(path, "w") as stream:
                stream.write("chrom\tarm\tstart\tend\tbins\tshort_corrected\tlong_corrected\tratio\n")
                for w in tables["delfi"].windows:
                    cells = [w["chrom"], w["arm"], w["start"], w["end"], w["bins"], w["short"], w["long"], w["ratio"]]
                    stream.write("\t".join(table_cell(c, ".6f") for c in cells) + "\n")
            written.append(path)
            path = output / f"{name}.delfi_bins.tsv"
            delfi_columns = (
                "chrom",
                "start",
                "end",
                "arm",
                "gc",
                "short",
                "long",
                "ratio",
                "short_corrected",
                "long_corrected",
                "ratio_corrected",
            )
            bins = tables["delfi"].bins
            with atomic_output(path, "w") as stream:
                stream.write("\t".join(delfi_columns) + "\n")
                for i in range(bins["start"].size):
                    stream.write("\t".join(table_cell(bins[c][i], ".6f") for c in delfi_columns) + "\n")
            written.append(path)
        if tables.get("long_molecules") is not None:
            path = output / f"{name}.long_molecules.tsv"
            edges, classes = tables["long_molecules"]
            with atomic_output(path, "w") as stream:
                stream.write("from_bp\tbelow_bp\tcount\n")
                for i, (low, n) in enumerate(zip(edges, classes)):
                    stream.write(f"{low}\t{edges[i + 1] if i + 1 < edges.size else '.'}\t{int(n)}\n")
            written.append(path)
        if tables.get("methylation"):
            path = output / f"{name}.methylation.tsv"
            with atomic_output(path, "w") as stream:
                stream.write("chrom\tstart\tend\tcpg_calls\tcpg_methylated\tfraction\n")
                stream.writelines(
                    f"{r['chrom']}\t{r['start']}\t{r['end']}\t{r['cpg_calls']}\t{r['cpg_methylated']}\t{r['fraction']:.5f}\n"
                    for r in tables["methylation"]
                )
            written.append(path)
    with_features = [(result, tables) for result, tables in results if tables.get("delfi_features")]
    if with_features:
        path = output / "delfi_features.tsv"
        names = list(with_features[0][1]["delfi_features"])
        with atomic_output(path, "w") as stream:
            stream.write("\t".join(["sample"] + names) + "\n")
            for result, tables in with_features:
                row = tables["delfi_features"]
                if list(row) != names:
                    raise DataError(
                        f"{result['sample']}: its DELFI windows differ from {with_features[0][0]['sample']}'s; "
                        "count every sample on one annotation"
                    )
                stream.write("\t".join([result["sample"]] + [table_cell(row[n], ".6f") for n in names]) + "\n")
        written.append(path)
    results = [(result, tables) for result, tables in results if result.get("scope") != "intervals"]
    if not results:
        return written
    path = output / "fragments.tsv"
    columns = [
        "sample",
        "paired",
        "fragments",
        "mode",
        "median",
        "mean",
        "share_below_150",
        "share_above_250",
        "share_above_500",
        "share_above_1000",
        "periodicity_amplitude",
        "periodicity_period",
        "short_long_ratio",
        "motif_diversity",
        "motif_diversity_miller_madow",
        "mitochondrial_fraction",
    ]
    with atomic_output(path, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for result, _ in results:
            size = result["size"]
            values = (
                [result["sample"], str(result["paired"]).lower()]
                + [size[k] for k in columns[2:12]]
                + [
                    result["short_long_ratio"]["genome"],
                    result["end_motifs"]["diversity"],
                    result["end_motifs"]["diversity_miller_madow"],
                    result["mitochondrial"]["fraction"],
                ]
            )
            stream.write("\t".join(table_cell(v, ".5f") for v in values) + "\n")
    written.append(path)
    return written
