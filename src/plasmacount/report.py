"""Reports people read: one self-contained page per sample (HTML, and the same page printed to an
A4 PDF), one overview per batch, and MultiQC custom-content files.

A sample's report gathers whatever analyses ran on it (`nipt`, `tumor`, `viral`, `fragments`
JSON, found by file name in the folders given) and shows them, findings first, as plots with the
numbers behind each call, a QC table, a plain-language summary, the method and the limits this
sample's own numbers set, and a sign-off block. Pages are Jinja2 templates (`templates/`); the
PDF is the same HTML printed by WeasyPrint. Plots are matplotlib SVG inlined in the page, so a
report opens with no network; the data behind every plot is written beside it as TSV. Same
input, same bytes: SVG ids are salted with a fixed string and no date but the report date is
written.
"""

from __future__ import annotations

import datetime
import functools
import io
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from plasmacount import __version__
from plasmacount.aneuploidy import Z_POSITIVE
from plasmacount.errors import DataError, UsageError
from plasmacount.files import atomic_output, sample_file_stem, table_cell
from plasmacount.genome import name_key
from plasmacount.nipt import (
    BIN_VARIANCE_LIMITS,
    CHR21_CV_EXCESS_LIMITS,
    COUNTED_READS_LIMITS,
    FETAL_FRACTION_LIMITS,
    GC_RESIDUAL_LIMITS,
)
from plasmacount.progress import stage
from plasmacount.quality import FAIL, PASS, WARN
from plasmacount.results import (
    NEGATIVE,
    NO_CALL,
    POSITIVE,
    CopyNumberCall,
    FragmentSizes,
    FragmentsResult,
    NiptResult,
    TumorResult,
    TumorSegment,
    ViralResult,
    read_results,
)
from plasmacount.tracks import GenomeTrack, read_bedgraph
from plasmacount.tumor import CNA_ARM_Z, TUMOR_BINS_USED_LIMITS, TUMOR_NOISE_SCALE_LIMITS

if TYPE_CHECKING:
    import matplotlib.figure

ANALYSES = ("nipt", "tumor", "viral", "fragments")
TRISOMY_Z = Z_POSITIVE  # the prenatal calling threshold
COLOURS = {
    PASS: "#2e7d32",
    WARN: "#ef6c00",
    FAIL: "#c62828",
    "gain": "#c62828",
    "loss": "#1565c0",
    "neutral": "#757575",
}


@dataclass
class SampleResults:
    """Every analysis result found for one sample, with the per-bin profiles written beside them."""

    sample: str
    results: dict[str, dict] = field(default_factory=dict)
    profiles: dict[str, GenomeTrack] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    size_histogram: list[int] | None = None  # fragments per length 0-600 bp, from `fragments`


@dataclass
class Figure:
    """One plot: its SVG text, a caption, and the table of data drawn in it."""

    name: str
    title: str
    svg: str
    columns: list[str]
    rows: list[list]
    caption: str = ""
    figure: object = None  # the matplotlib figure, kept for the PDF


# ----------------------------------------------------------------------------- collecting results


def collect(paths: list[str | os.PathLike]) -> list[SampleResults]:
    """Result JSON files given directly or found (recursively) in folders, grouped by sample."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if _analysis_of(p)))
        elif path.is_file():
            if not _analysis_of(path):
                raise UsageError(
                    f"{path}: not a plasmacount result (expected <sample>.nipt.json, .tumor.json, .viral.json or .fragments.json)"
                )
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not found:
        raise UsageError(
            f"no plasmacount results (*.nipt.json, *.tumor.json, *.viral.json, *.fragments.json) in {', '.join(map(str, paths))}"
        )
    samples: dict[str, SampleResults] = {}
    for path in found:
        analysis = _analysis_of(path)
        assert analysis is not None  # found holds only files named as results
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not valid JSON ({error}); rerun the step that wrote it") from None
        if not isinstance(result, dict) or "sample" not in result:
            raise DataError(f"{path}: no 'sample' key; is it a plasmacount {analysis} result?")
        entry = samples.setdefault(str(result["sample"]), SampleResults(str(result["sample"])))
        if analysis in entry.results:
            raise DataError(
                f"{path}: a second {analysis} result for sample {result['sample']!r} (first: {entry.sources[-1]}); "
                "give one folder per batch"
            )
        entry.results[analysis] = result
        entry.sources.append(path)
        histogram = path.parent / f"{sample_file_stem(result['sample'])}.size_histogram.tsv"
        if analysis == "fragments" and histogram.is_file():
            entry.size_histogram = _read_size_histogram(histogram)
        files: dict = result["files"] if isinstance(result.get("files"), dict) else {}
        bedgraph = sibling_file(path, files.get("profile_bedgraph"))
        if bedgraph is not None:
            entry.profiles[analysis] = read_bedgraph(bedgraph)
    return [samples[name] for name in sorted(samples)]


LARGEST_SIBLING_FILE = 200 * 1024 * 1024


def sibling_file(result_path: Path, name: object) -> Path | None:
    """The file a result JSON names (e.g. its bedGraph), only when it is a plain file name of a
    regular file in the result's own folder (after symlinks) and not over 200 MiB; else None. A
    result may come from anyone (an upload to the review app): `/dev/zero`, `/etc/passwd` or
    `../../x` must never be opened."""
    if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
        return None
    folder = result_path.parent.resolve()
    try:
        target = (folder / name).resolve()
    except (OSError, RuntimeError):
        return None
    if target.parent != folder or not target.is_file() or target.stat().st_size > LARGEST_SIBLING_FILE:
        return None
    return target


def _read_size_histogram(path: Path, longest: int = 600) -> list[int]:
    counts = [0] * (longest + 1)
    with open(path) as stream:
        header = stream.readline().rstrip("\n").split("\t")
        length_column, count_column = header.index("length"), header.index("count")
        for line in stream:
            fields = line.rstrip("\n").split("\t")
            if fields[length_column].isdigit() and int(fields[length_column]) <= longest:
                counts[int(fields[length_column])] = int(fields[count_column])
    return counts


def _analysis_of(path: Path) -> str | None:
    for analysis in ANALYSES:
        if path.name.endswith(f".{analysis}.json"):
            return analysis
    return None


# ----------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # parse_math off: a '$' in a sample name or comment is text, not TeX to typeset (or fail on).
    plt.rcParams.update(
        {
            "text.parse_math": False,
            "svg.hashsalt": "plasmacount",
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 100,
        }
    )
    return plt


def _svg(figure: matplotlib.figure.Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight", dpi=200)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _genome_axis(profile: GenomeTrack):
    """Cumulative x positions (Mb) of each bin and the chromosome boundaries/labels."""
    offsets, ticks, labels, edges = {}, [], [], [0.0]
    position = 0.0
    for chrom in dict.fromkeys(profile.chrom):
        length = profile.contig_lengths.get(chrom, 0) / 1e6
        offsets[chrom] = position
        ticks.append(position + length / 2)
        labels.append(chrom.removeprefix("chr"))
        position += length
        edges.append(position)
    x = np.array([offsets[c] for c in profile.chrom]) + (profile.start + profile.end) / 2e6
    return x, offsets, ticks, labels, edges


def _windowed(profile: GenomeTrack, window: int) -> GenomeTrack:
    """Median of the profile in windows of `window` bp (for display: a genome of 100 kb bins is too dense to draw)."""
    profile = profile.finite()
    chrom, start, end, value = [], [], [], []
    names = np.array(profile.chrom)
    for name in dict.fromkeys(profile.chrom):
        rows = np.flatnonzero(names == name)
        groups = profile.start[rows] // window
        for group in np.unique(groups):
            chosen = rows[groups == group]
            chrom.append(name)
            start.append(int(group * window))
            end.append(int(min((group + 1) * window, profile.contig_lengths.get(name, (group + 1) * window))))
            value.append(float(np.median(profile.value[chosen])))
    return GenomeTrack(
        chrom, np.array(start, dtype=np.int64), np.array(end, dtype=np.int64), np.array(value), profile.contig_lengths
    )


@dataclass(frozen=True)
class Region:
    """A called region as the figures draw it: where, at what level, and of which kind (a COLOURS key)."""

    chrom: str
    start: int
    end: int
    log2_ratio: float
    kind: str
    bins: int = 0
    label: str | None = None
    syndrome: str | None = None

    @classmethod
    def of_copy_number_call(cls, call: CopyNumberCall) -> Region:
        return cls(
            call.chrom,
            call.start,
            call.end,
            call.log2_ratio,
            "gain" if call.kind == "duplication" else "loss",
            call.bins,
            call.kind.capitalize(),
            call.syndrome,
        )

    @classmethod
    def of_tumor_segment(cls, segment: TumorSegment) -> Region:
        return cls(
            segment.chrom,
            segment.start,
            segment.end,
            segment.log2_ratio,
            segment.event,
            segment.bins,
            f"Copy number {segment.copy_number:g}",
        )


def profile_figure(
    profile: GenomeTrack, regions: list[Region], title: str, name: str, caption: str, window: int = 1_000_000
) -> Figure:
    """Genome-wide log2 ratio (median per window) with called regions drawn over it."""
    plt = _pyplot()
    shown = _windowed(profile, window) if np.median(profile.end - profile.start) < window else profile.finite()
    x, offsets, ticks, labels, edges = _genome_axis(shown)
    figure, axis = plt.subplots(figsize=(11, 3.2))
    # Thousands of dots are drawn as one image inside the SVG (axes and text stay vector): the page
    # stays small and prints in a second, not ten.
    axis.scatter(x, np.clip(shown.value, -1.5, 1.5), s=3, color="#555555", linewidths=0, rasterized=True)
    for edge in edges[1:-1]:
        axis.axvline(edge, color="#dddddd", linewidth=0.6)
    axis.axhline(0, color="#999999", linewidth=0.8)
    for region in regions:
        if region.chrom not in offsets:
            continue
        colour = COLOURS.get(region.kind, "#757575")
        left, right = offsets[region.chrom] + region.start / 1e6, offsets[region.chrom] + region.end / 1e6
        axis.plot([left, right], [region.log2_ratio] * 2, color=colour, linewidth=2.5, solid_capstyle="butt")
    axis.set_xticks(ticks, labels, fontsize=7)
    axis.set_xlim(0, edges[-1])
    low = min(-0.3, float(np.nanquantile(shown.value, 0.001)) if shown.value.size else -0.3)
    high = max(0.3, float(np.nanquantile(shown.value, 0.999)) if shown.value.size else 0.3)
    axis.set_ylim(max(low, -1.5) - 0.05, min(high, 1.5) + 0.05)
    axis.set_ylabel("log2 ratio")
    axis.set_title(title, loc="left")
    rows = [
        [c, int(s), int(e), round(float(v), 5)] for c, s, e, v in zip(shown.chrom, shown.start, shown.end, shown.value)
    ]
    return Figure(name, title, _svg(figure), ["chrom", "start", "end", "log2_ratio"], rows, caption, figure)


SEX_CHROMOSOME_EVENTS = {"X": ("45,X", "47,XXX", "47,XXY"), "Y": ("47,XXY", "47,XYY")}


def region_figure(profile: GenomeTrack, region: Region, number: int, title: str, caption: str) -> Figure:
    """One chromosome at full bin resolution around a finding: its bins, the called region shaded with
    its own level, so that a 2 Mb deletion is seen as clearly as a trisomy."""
    plt = _pyplot()
    profile = profile.finite()
    rows = np.flatnonzero(np.asarray(profile.chrom, dtype=object) == region.chrom)
    middle = (profile.start[rows] + profile.end[rows]) / 2e6
    values = profile.value[rows]
    inside = (profile.end[rows] > region.start) & (profile.start[rows] < region.end)
    colour = COLOURS.get(region.kind, "#757575")
    figure, axis = plt.subplots(figsize=(9, 2.6))
    axis.axvspan(region.start / 1e6, region.end / 1e6, color=colour, alpha=0.12, linewidth=0)
    axis.scatter(
        middle[~inside], np.clip(values[~inside], -1.5, 1.5), s=4, color="#757575", linewidths=0, rasterized=True
    )
    axis.scatter(middle[inside], np.clip(values[inside], -1.5, 1.5), s=7, color=colour, linewidths=0, rasterized=True)
    axis.plot(
        [region.start / 1e6, region.end / 1e6],
        [region.log2_ratio] * 2,
        color=colour,
        linewidth=2.5,
        solid_capstyle="butt",
    )
    axis.axhline(0, color="#999999", linewidth=0.8)
    axis.set_xlim(0, profile.contig_lengths.get(region.chrom, float(profile.end[rows].max(initial=1))) / 1e6)
    spread = float(np.nanquantile(np.abs(values), 0.995)) if values.size else 0.3
    axis.set_ylim(
        -max(0.3, min(spread, 1.5), abs(region.log2_ratio) * 1.5),
        max(0.3, min(spread, 1.5), abs(region.log2_ratio) * 1.5),
    )
    axis.set_xlabel(f"{region.chrom} position (Mb)")
    axis.set_ylabel("log2 ratio")
    axis.set_title(title, loc="left")
    data = [
        [region.chrom, int(s), int(e), round(float(v), 5), str(bool(i)).lower()]
        for s, e, v, i in zip(profile.start[rows], profile.end[rows], values, inside)
    ]
    return Figure(
        f"region_{number}",
        title,
        _svg(figure),
        ["chrom", "start", "end", "log2_ratio", "in_region"],
        data,
        caption,
        figure,
    )


def _region_title(region: Region) -> str:
    size = (region.end - region.start) / 1e6
    what = {"gain": "gain", "loss": "loss"}.get(region.kind, region.kind)
    return (
        f"{region.label or what.capitalize()} of {size:.1f} Mb at {region.chrom}:{region.start:,}-{region.end:,}"
        + (f", {region.syndrome} region" if region.syndrome else "")
        + f", {region.bins} bins"
    )


def z_figure(result: dict) -> Figure:
    """Per-chromosome z-scores with the screening lines; chromosomes of positive calls in red. The
    axis is set by the autosomes: chrX and chrY of a boy lie tens of z from a reference of mostly
    girls' X doses by nature, so their bars are cut at the axis and labelled with their value."""
    plt = _pyplot()
    nipt = NiptResult(result)
    chromosomes = sorted(nipt.chromosomes.items(), key=lambda item: _chromosome_order(item[0]))
    positives = {c.event for c in nipt.calls_with(POSITIVE)}
    names = [name for name, _ in chromosomes]
    z = [0.0 if score.z is None else float(score.z) for _, score in chromosomes]

    def positive(name: str) -> bool:
        key = name_key(name)
        return f"T{key}" in positives or any(event in positives for event in SEX_CHROMOSOME_EVENTS.get(key, ()))

    colours = [COLOURS["fail"] if positive(n) else "#546e7a" for n in names]
    autosomal = [abs(v) for n, v in zip(names, z) if name_key(n) not in SEX_CHROMOSOME_EVENTS]
    limit = max(
        2 * TRISOMY_Z, 1.15 * max(autosomal, default=0.0), *(1.15 * abs(v) for n, v in zip(names, z) if positive(n))
    )
    drawn = [float(np.clip(v, -limit, limit)) for v in z]
    figure, axis = plt.subplots(figsize=(11, 2.8))
    axis.bar(range(len(z)), drawn, color=colours)
    for i, (value, shown) in enumerate(zip(z, drawn)):
        if value != shown:
            axis.annotate(
                f"{value:.0f}",
                (i, shown),
                textcoords="offset points",
                xytext=(0, 3 if value > 0 else -9),
                ha="center",
                fontsize=7,
            )
    for line in (-TRISOMY_Z, TRISOMY_Z):
        axis.axhline(line, color=COLOURS["warn"], linestyle="--", linewidth=1)
    axis.axhline(0, color="#999999", linewidth=0.8)
    axis.set_ylim(-1.12 * limit, 1.12 * limit)
    axis.set_xticks(range(len(z)), [n.removeprefix("chr") for n in names], fontsize=7)
    axis.set_ylabel("z-score")
    axis.set_title(
        f"Chromosome z-scores against the reference panel (dashed: |z| = {TRISOMY_Z:g}, the calling threshold)",
        loc="left",
    )
    rows = [
        [n, table_cell(v.z, ".6f"), table_cell(v.ratio, ".6f"), round(d, 6), str(positive(n)).lower()]
        for (n, v), d in zip(chromosomes, drawn)
    ]
    caption = (
        f"A trisomy needs z >= {TRISOMY_Z:g}; when the fetal fraction is known the counts must also favour a trisomy at that "
        "fetal fraction 100:1. Bins of segmental CNVs are left out of their chromosome's z. Red: chromosomes of a positive call "
        "(chrX for 45,X, 47,XXX and 47,XXY; chrY for 47,XXY and 47,XYY). Bars beyond the axis are cut and labelled with their "
        "z: in a male pregnancy chrX and chrY lie far from the reference by nature (one X, and a Y)."
    )
    return Figure(
        "z_scores",
        "Chromosome z-scores",
        _svg(figure),
        ["chromosome", "z", "ratio", "drawn_z", "positive"],
        rows,
        caption,
        figure,
    )


def arm_figure(result: Mapping[str, Any]) -> Figure:
    """Chromosome-arm z-scores (Lo's genome-wide approach); the CNA score counts arms beyond |z| CNA_ARM_Z."""
    plt = _pyplot()
    arms = sorted(TumorResult(result).arms.items(), key=lambda item: (_chromosome_order(item[0][:-1]), item[0][-1]))
    z = [0.0 if v.z is None else v.z for _, v in arms]
    figure, axis = plt.subplots(figsize=(11, 2.8))
    axis.bar(
        range(len(z)),
        z,
        color=[COLOURS["gain"] if v > CNA_ARM_Z else COLOURS["loss"] if v < -CNA_ARM_Z else "#9e9e9e" for v in z],
    )
    for line in (-CNA_ARM_Z, CNA_ARM_Z):
        axis.axhline(line, color=COLOURS["warn"], linestyle="--", linewidth=1)
    axis.set_xticks(range(len(z)), [name for name, _ in arms], fontsize=6, rotation=90)
    axis.set_ylabel("z-score")
    axis.set_title(
        f"Chromosome-arm z-scores (CNA score {result['cna_score']}: arms beyond |z| = {CNA_ARM_Z:g})", loc="left"
    )
    rows = [[name, v.bins, table_cell(v.mean_log2, ".6f"), table_cell(v.z, ".6f")] for name, v in arms]
    return Figure(
        "arm_z_scores",
        "Arm z-scores",
        _svg(figure),
        ["arm", "bins", "mean_log2", "z"],
        rows,
        f"z against {result.get('arm_reference', 'the panel')}.",
        figure,
    )


def fetal_fraction_figure(result: dict) -> Figure:
    """Each fetal-fraction estimate with its interval, and the combined one."""
    plt = _pyplot()
    ff = result["fetal_fraction"]
    entries = [
        (method.replace("_", " "), v["estimate"], v.get("low"), v.get("high"))
        for method, v in sorted(ff["methods"].items())
        if v and v.get("estimate") is not None
    ]
    sexes = result.get("sex_chromosomes") or {}
    # The chrY dose is drawn once: from the methods when they hold it, else from the sex-chromosome model.
    if (
        result.get("fetal_sex") == "male"
        and sexes.get("y_fetal_fraction") is not None
        and not (ff["methods"].get("chrY") or {}).get("estimate")
    ):
        y, sd = sexes["y_fetal_fraction"], sexes["y_sd"]
        entries.append(("chrY dose", y, y - 1.96 * sd, y + 1.96 * sd))
    if ff["estimate"] is not None:
        entries.append(("combined", ff["estimate"], ff["low"], ff["high"]))
    figure, axis = plt.subplots(figsize=(5.2, 0.5 + 0.45 * max(len(entries), 1)))
    for i, (label, estimate, low, high) in enumerate(entries):
        colour = "#000000" if label == "combined" else "#1565c0"
        axis.plot([100 * estimate], [i], "o", color=colour)
        if low is not None and high is not None:
            axis.plot([100 * low, 100 * high], [i, i], color=colour, linewidth=2)
    axis.set_yticks(range(len(entries)), [e[0] for e in entries])
    axis.set_xlabel("fetal fraction (%)")
    axis.set_xlim(left=0)
    axis.set_title("Fetal fraction by method (95 % intervals)", loc="left")
    rows = [[label, table_cell(e, ".6f"), table_cell(lo, ".6f"), table_cell(hi, ".6f")] for label, e, lo, hi in entries]
    return Figure(
        "fetal_fraction", "Fetal fraction", _svg(figure), ["method", "estimate", "low", "high"], rows, "", figure
    )


KARYOTYPE_UNITS = {
    "46,XX": (0.0, 0.0),
    "46,XY": (-0.5, 1.0),
    "45,X": (-0.5, 0.0),
    "47,XXX": (0.5, 0.0),
    "47,XXY": (0.0, 1.0),
    "47,XYY": (-0.5, 2.0),
}


def sex_chromosome_figure(result: Mapping[str, Any]) -> Figure | None:
    """The X-vs-Y dosage plane: the sample with its 95 % ellipse and where each karyotype falls at its fetal fraction."""
    nipt = NiptResult(result)
    sexes = nipt.sex_chromosome_doses
    ff = nipt.fetal_fraction
    if sexes is None:
        return None
    plt = _pyplot()
    from matplotlib.patches import Ellipse

    figure, axis = plt.subplots(figsize=(5.2, 4.2))
    rows = []
    for karyotype, (x_unit, y_unit) in KARYOTYPE_UNITS.items():
        if ff is None:
            break
        x, y = 100 * x_unit * ff, 100 * y_unit * ff
        axis.plot(x, y, "s", color="#9e9e9e", markersize=7)
        axis.annotate(karyotype, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8, color="#616161")
        rows.append([f"expected {karyotype}", round(x, 4), round(y, 4), "", ""])
    x, y = 100 * sexes.x_change, 100 * sexes.y_fetal_fraction
    axis.add_patch(
        Ellipse((x, y), 2 * 1.96 * 100 * sexes.x_sd, 2 * 1.96 * 100 * sexes.y_sd, fill=False, color="#c62828")
    )
    axis.plot(x, y, "o", color="#c62828")
    axis.annotate(nipt.sample, (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8, color="#c62828")
    rows.append(["sample", round(x, 4), round(y, 4), round(100 * sexes.x_sd, 4), round(100 * sexes.y_sd, 4)])
    axis.axhline(0, color="#dddddd", linewidth=0.8)
    axis.axvline(0, color="#dddddd", linewidth=0.8)
    axis.set_xlabel("chrX dosage change (%)")
    axis.set_ylabel("chrY dose (fetal-fraction units, %)")
    axis.set_title(f"Sex chromosomes: best fit {sexes.best_karyotype or 'none'}", loc="left")
    caption = "Grey squares: where each fetal karyotype falls at this sample's fetal fraction. Red: the sample with its 95 % ellipse."
    return Figure(
        "sex_chromosomes",
        "X-vs-Y dosage",
        _svg(figure),
        ["point", "x_change_percent", "y_dose_percent", "x_sd", "y_sd"],
        rows,
        caption,
        figure,
    )


def size_figure(
    histogram: list[int],
    title: str,
    name: str = "fragment_sizes",
    other: list[int] | None = None,
    other_label: str = "",
) -> Figure:
    """Fragment-size distribution (share of fragments per bp), optionally beside a second profile."""
    plt = _pyplot()
    counts = np.asarray(histogram, dtype=float)
    share = counts / max(counts.sum(), 1)
    figure, axis = plt.subplots(figsize=(5.6, 3.0))
    lengths = np.arange(counts.size)
    label = "viral" if other is not None else "all fragments"
    axis.plot(lengths, 100 * share, color="#1565c0", linewidth=1.2, label=label)
    other_share = None
    if other is not None:
        other_counts = np.asarray(other, dtype=float)
        other_share = other_counts / max(other_counts.sum(), 1)
        axis.plot(lengths, 100 * other_share, color="#9e9e9e", linewidth=1.0, label=other_label)
        axis.legend(frameon=False)
    axis.axvline(166, color="#bdbdbd", linestyle=":", linewidth=1)
    axis.axvline(150, color="#ef6c00", linestyle="--", linewidth=0.8)
    axis.set_xlabel("fragment length (bp)")
    axis.set_ylabel("% of fragments")
    axis.set_xlim(0, counts.size - 1)
    axis.set_title(title, loc="left")
    columns = ["length_bp", "fragments", "share"] + (["other_share"] if other is not None else [])
    rows = [
        [int(n), int(counts[n]), round(float(share[n]), 7)]
        + ([round(float(other_share[n]), 7)] if other_share is not None else [])
        for n in range(counts.size)
    ]
    caption = "Dotted: 166 bp (the nucleosome peak); dashed: 150 bp (short fragments lie left of it)."
    return Figure(name, title, _svg(figure), columns, rows, caption, figure)


def end_motif_figure(result: Mapping[str, Any]) -> Figure | None:
    """The commonest 4-mer fragment-end motifs and the motif diversity score."""
    fragments = FragmentsResult(result)
    motifs = fragments.top_motifs
    if not motifs:
        return None
    plt = _pyplot()
    shown = motifs[:20]
    figure, axis = plt.subplots(figsize=(6, 3.0))
    axis.bar(range(len(shown)), [100 * m.frequency for m in shown], color="#1565c0")
    axis.axhline(100 / 256, color="#9e9e9e", linestyle=":", linewidth=1)
    axis.set_xticks(range(len(shown)), [m.motif for m in shown], fontsize=7, rotation=90)
    axis.set_ylabel("% of fragment ends")
    diversity = fragments.motif_diversity
    axis.set_title(
        f"5' end motifs (diversity score {diversity:.3f})" if diversity is not None else "5' end motifs", loc="left"
    )
    rows = [[m.motif, round(m.frequency, 7)] for m in motifs]
    return Figure(
        "end_motifs",
        "End motifs",
        _svg(figure),
        ["motif", "frequency"],
        rows,
        "Dotted: the uniform share (1/256).",
        figure,
    )


def batch_strip_figure(samples: list[SampleResults]) -> Figure | None:
    """z-scores of chr13, chr18, chr21 and chrX across the batch; positive calls in red."""
    tested = [(s.sample, NiptResult(s.results["nipt"])) for s in samples if "nipt" in s.results]
    tested = [(sample, nipt) for sample, nipt in tested if nipt.chromosomes]
    if not tested:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 3.2))
    rows = []
    for column, key in enumerate(["13", "18", "21", "X"]):
        for i, (sample, nipt) in enumerate(tested):
            if key == "X" and nipt.fetal_sex != "female":
                continue  # a male pregnancy's chrX is low by design; its sex chromosomes are judged on the X-Y plane
            z = nipt.z_of(key)
            if z is None:
                continue
            event = "45,X" if key == "X" else f"T{key}"
            positive = nipt.is_positive(event) or (key == "X" and nipt.is_positive("47,XXX"))
            jitter = ((i * 0.618) % 1 - 0.5) * 0.5
            axis.plot(
                column + jitter, z, "o", color=COLOURS["fail"] if positive else "#546e7a", markersize=5, alpha=0.85
            )
            rows.append([sample, f"chr{key}", round(z, 4), str(positive).lower()])
    for line in (-TRISOMY_Z, TRISOMY_Z):
        axis.axhline(line, color=COLOURS["warn"], linestyle="--", linewidth=1)
    axis.set_xticks(range(4), ["chr13", "chr18", "chr21", "chrX"])
    axis.set_ylabel("z-score")
    axis.set_title("z-scores across the batch (red: positive call)", loc="left")
    return Figure(
        "batch_z_scores",
        "z-scores across the batch",
        _svg(figure),
        ["sample", "chromosome", "z", "positive"],
        rows,
        "chrX: female pregnancies only.",
        figure,
    )


def batch_fetal_fraction_figure(samples: list[SampleResults]) -> Figure | None:
    """Combined fetal fraction against the chrY-based one, for male pregnancies."""
    points = []
    for s in samples:
        result = s.results.get("nipt")
        nipt = NiptResult(result) if result else None
        if nipt is None or nipt.fetal_sex != "male" or nipt.fetal_fraction is None:
            continue
        y = (nipt.data.get("sex_chromosomes") or {}).get("y_fetal_fraction")
        if y is not None:
            points.append((s.sample, nipt.fetal_fraction, y))
    if not points:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.2))
    xs = [100 * p[1] for p in points]
    ys = [100 * p[2] for p in points]
    axis.plot(xs, ys, "o", color="#1565c0")
    top = max(xs + ys + [5]) * 1.1
    axis.plot([0, top], [0, top], color="#bdbdbd", linewidth=1)
    axis.set_xlim(0, top)
    axis.set_ylim(0, top)
    axis.set_xlabel("fetal fraction, combined (%)")
    axis.set_ylabel("fetal fraction, chrY (%)")
    axis.set_title("Fetal fraction vs chrY (male pregnancies)", loc="left")
    rows = [[name, round(ff, 5), round(y, 5)] for name, ff, y in points]
    return Figure(
        "batch_fetal_fraction",
        "Fetal fraction vs chrY",
        _svg(figure),
        ["sample", "fetal_fraction", "chrY_fetal_fraction"],
        rows,
        "Male pregnancies only; the line is equality.",
        figure,
    )


def batch_qc_figure(samples: list[SampleResults]) -> Figure | None:
    """Counted fragments per sample, coloured by QC status."""
    entries = []
    for s in samples:
        qc = NiptResult(s.results["nipt"]).qc if "nipt" in s.results else None
        if qc is not None and qc.counted_reads is not None:
            entries.append((s.sample, qc.counted_reads, qc.status, qc.bin_variance_ratio))
    if not entries:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 0.6 + 0.28 * len(entries)))
    for i, (_, reads, status, _) in enumerate(entries):
        axis.barh(i, reads / 1e6, color=COLOURS.get(status, "#757575"))
    axis.set_yticks(range(len(entries)), [e[0] for e in entries], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("counted fragments (millions)")
    axis.set_title("QC over the batch (green pass, orange warn, red fail)", loc="left")
    rows = [[name, reads, status, table_cell(variance)] for name, reads, status, variance in entries]
    return Figure(
        "batch_qc",
        "QC over the batch",
        _svg(figure),
        ["sample", "counted_reads", "qc_status", "bin_variance_ratio"],
        rows,
        "",
        figure,
    )


def batch_tumor_figure(samples: list[SampleResults]) -> Figure | None:
    """Tumour fraction with its interval for every sample."""
    entries = [(s.sample, TumorResult(s.results["tumor"])) for s in samples if "tumor" in s.results]
    if not entries:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 0.6 + 0.28 * len(entries)))
    for i, (_, r) in enumerate(entries):
        colour = COLOURS["fail"] if r.detected else "#546e7a"
        axis.plot([100 * r.interval[0], 100 * r.interval[1]], [i, i], color=colour, linewidth=2)
        axis.plot(100 * r.tumor_fraction, i, "o", color=colour)
    axis.set_yticks(range(len(entries)), [e[0] for e in entries], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("tumour fraction (%)")
    axis.set_xlim(left=0)
    axis.set_title("Tumour fraction (red: tumour DNA detected)", loc="left")
    rows = [
        [
            name,
            round(r.tumor_fraction, 5),
            round(r.interval[0], 5),
            round(r.interval[1], 5),
            str(r.detected).lower(),
            round(r.ploidy, 3),
        ]
        for name, r in entries
    ]
    return Figure(
        "batch_tumor_fraction",
        "Tumour fraction",
        _svg(figure),
        ["sample", "tumor_fraction", "low", "high", "detected", "ploidy"],
        rows,
        "Lines: 95 % intervals.",
        figure,
    )


def batch_viral_figure(samples: list[SampleResults]) -> Figure | None:
    """The EBV screen: viral fragments per million against the size ratio, with the model's class size ratios."""
    entries = [(s.sample, ViralResult(s.results["viral"])) for s in samples if "viral" in s.results]
    if not entries:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 4.2))
    rows = []
    floor = 0.01
    for name, r in entries:
        per_million = max(r.per_million, floor)
        ratio = r.size_ratio
        colour = COLOURS["fail"] if r.positive else "#546e7a"
        # Log axes cannot show zero: a ratio of 0 (no viral fragment at 80-110 bp) is drawn on the floor as a triangle.
        shown = 0.1 if ratio is None else max(ratio, 0.1)
        marker = "x" if ratio is None else "v" if ratio < 0.1 else "o"
        axis.plot(per_million, shown, marker, color=colour)
        evidence = r.log_likelihood_ratio
        rows.append(
            [
                name,
                round(r.per_million, 5),
                "" if ratio is None else round(ratio, 4),
                "" if evidence is None else round(evidence, 3),
                r.screen_result,
            ]
        )
    for ratio in entries[0][1].model_size_ratios:
        if ratio:
            axis.axhline(ratio, color=COLOURS["warn"], linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("viral fragments per million")
    axis.set_ylabel("size ratio (80-110 bp, viral / autosomal)")
    axis.set_title("EBV screen (red: positive; x: size not evaluable; v: ratio below 0.1)", loc="left")
    return Figure(
        "batch_viral_screen",
        "EBV screen",
        _svg(figure),
        ["sample", "per_million", "size_ratio", "log_likelihood_ratio", "screen"],
        rows,
        "Positive: the amount's and the size's log likelihood ratios (NPC : not NPC) add up to the model's line; "
        "dotted: the NPC-like and carrier-like size ratios of the model.",
        figure,
    )


def batch_sizes_figure(samples: list[SampleResults]) -> Figure | None:
    """Every sample's fragment-size profile on one plot."""
    entries = [
        (
            s.sample,
            s.size_histogram or ((s.results.get("nipt") or {}).get("fragment_sizes") or {}).get("histogram_0_600"),
        )
        for s in samples
    ]
    entries = [(name, h) for name, h in entries if h]
    if not entries:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.2))
    rows = []
    for name, histogram in entries:
        counts = np.asarray(histogram, dtype=float)
        share = counts / max(counts.sum(), 1)
        axis.plot(np.arange(counts.size), 100 * share, linewidth=0.9, label=name)
        rows.append([name, int(np.argmax(counts)), round(float(share[:150].sum()), 5)])
    if len(entries) <= 8:
        axis.legend(frameon=False, fontsize=7)
    axis.set_xlabel("fragment length (bp)")
    axis.set_ylabel("% of fragments")
    axis.set_title("Fragment sizes across the batch", loc="left")
    return Figure(
        "batch_fragment_sizes",
        "Fragment sizes",
        _svg(figure),
        ["sample", "mode_bp", "share_below_150"],
        rows,
        "",
        figure,
    )


def _chromosome_order(name: str) -> tuple[int, str]:
    key = name_key(name)
    return (int(key), "") if key.isdigit() else (100, key)


# ----------------------------------------------------------------------------- sample content


def sample_figures(entry: SampleResults) -> list[Figure]:
    figures: list[Figure] = []
    nipt, tumor, viral, fragments = (entry.results.get(a) for a in ANALYSES)
    _, tumor_view, viral_view = read_results(entry.results)
    if nipt and "nipt" in entry.profiles:
        # chrY is left out: in a female pregnancy it holds only mis-mapped reads, far below every other bin.
        profile = entry.profiles["nipt"]
        keep = np.array([name_key(c) != "Y" for c in profile.chrom], dtype=bool)
        profile = GenomeTrack(
            [c for c, k in zip(profile.chrom, keep) if k],
            profile.start[keep],
            profile.end[keep],
            profile.value[keep],
            {c: n for c, n in profile.contig_lengths.items() if name_key(c) != "Y"},
        )
        cnvs = NiptResult(nipt).copy_number_calls
        regions = [Region.of_copy_number_call(c) for c in cnvs]
        figures.append(
            profile_figure(
                profile,
                regions,
                "Genome-wide profile: log2 ratio to the reference (median per 1 Mb)",
                "nipt_profile",
                "Coloured bars: CNVs called (red duplication, blue deletion).",
            )
        )
        for number, (cnv, region) in enumerate(zip(cnvs, regions), 1):
            figures.append(
                region_figure(
                    entry.profiles["nipt"],
                    region,
                    number,
                    _region_title(region),
                    f"Every bin of {cnv.chrom}; shaded and coloured: the called region, most likely "
                    f"{cnv.origin} in origin (copy ratio {cnv.copy_ratio:.3f}, z {cnv.z:.1f}).",
                )
            )
    if nipt and nipt["chromosomes"]:
        figures.append(z_figure(nipt))
    if nipt and nipt["fetal_fraction"]["methods"]:
        figures.append(fetal_fraction_figure(nipt))
    if nipt:
        plane = sex_chromosome_figure(nipt)
        if plane:
            figures.append(plane)
    sizes = entry.size_histogram or ((nipt or {}).get("fragment_sizes") or {}).get("histogram_0_600")
    if sizes:
        figures.append(size_figure(sizes, "Fragment sizes"))
    if fragments:
        motifs = end_motif_figure(fragments)
        if motifs:
            figures.append(motifs)
    if viral_view and viral_view.viral_size_histogram and sum(viral_view.viral_size_histogram):
        figures.append(
            size_figure(
                viral_view.viral_size_histogram,
                f"{viral_view.virus} fragment sizes",
                "viral_sizes",
                viral_view.host_size_histogram,
                "autosomal",
            )
        )
    if tumor and "tumor" in entry.profiles:
        assert tumor_view is not None  # read from the same results
        altered = tumor_view.altered_segments
        figures.append(
            profile_figure(
                entry.profiles["tumor"],
                [Region.of_tumor_segment(segment) for segment in altered],
                f"Copy number: tumour fraction {100 * tumor_view.tumor_fraction:.1f} %, ploidy {tumor_view.ploidy:.2f}",
                "tumor_profile",
                "Coloured bars: segments with a copy-number change (red gain, blue loss).",
            )
        )
        # The largest changes get a chromosome of their own; the rest are in the table and the genome plot.
        changed = sorted(altered, key=lambda s: -abs(s.log2_ratio) * s.bins)
        for number, segment in enumerate(changed[:TUMOR_REGION_FIGURES], 1):
            region = Region.of_tumor_segment(segment)
            figures.append(
                region_figure(
                    entry.profiles["tumor"],
                    region,
                    number,
                    _region_title(region),
                    f"Every bin of {segment.chrom}; shaded and coloured: the segment "
                    f"({'subclonal' if segment.subclonal else 'clonal'}, log2 ratio {segment.log2_ratio:.2f}).",
                )
            )
    if tumor and tumor.get("arms"):
        figures.append(arm_figure(tumor))
    return figures


def finding_lines(entry: SampleResults) -> list[str]:
    """The findings, which lead the page: positives, CNVs, tumour DNA, a positive EBV screen, a failed sample."""
    lines = []
    nipt, tumor, viral = read_results(entry.results)
    if nipt and nipt.failed:
        lines.append(
            "Prenatal test: no result. The sample failed quality control ("
            + "; ".join(nipt.qc_reasons)
            + "). A new blood sample is advised."
        )
    elif nipt:
        positives = nipt.calls_with(POSITIVE)
        if positives:
            lines.append(
                "High risk: " + ", ".join(c.event for c in positives) + ". A screening result: confirm by diagnostic "
                "testing (amniocentesis or CVS) before any decision."
            )
        for cnv in nipt.copy_number_calls:
            lines.append(
                f"{cnv.kind.capitalize()} of {cnv.size / 1e6:.1f} Mb on {cnv.chrom} ({cnv.start:,}-{cnv.end:,})"
                + (f": region of {cnv.syndrome}" if cnv.syndrome else "")
                + f"; most likely {cnv.origin} in origin."
            )
    if tumor and tumor.detected:
        low, high = tumor.interval
        lines.append(
            f"Tumour DNA detected: tumour fraction {100 * tumor.tumor_fraction:.1f} % "
            f"(95 % interval {100 * low:.1f} to {100 * high:.1f} %), ploidy "
            f"{tumor.ploidy:.2f}; {len(tumor.altered_segments)} segments with a copy-number change."
        )
    if viral and viral.positive:
        lines.append(
            f"EBV screen positive: {viral.data['fragments']['unique']} fragments on {viral.data['virus']} "
            f"({viral.data['per_million']['value']:.2f} per million)."
        )
    return lines


def summary_lines(entry: SampleResults) -> list[str]:
    """The rest of the result in plain language, with the caveats this sample needs."""
    lines = []
    nipt, tumor, viral = read_results(entry.results)
    if nipt and not nipt.failed:
        positives = nipt.calls_with(POSITIVE)
        no_calls = nipt.calls_with(NO_CALL)
        fetal_fraction = nipt.data["fetal_fraction"]
        ff = nipt.fetal_fraction
        ff_text = (
            f"{100 * ff:.1f} % (95 % interval {_percent(fetal_fraction.get('low'))} to {_percent(fetal_fraction.get('high'))})"
            if ff is not None
            else "not determinable (calls made on the z-score alone)"
        )
        lines.append(f"Prenatal test: fetal sex {nipt.fetal_sex}; fetal fraction {ff_text}.")
        if not positives:
            lines.append("Low risk for the trisomies and sex-chromosome aneuploidies tested.")
        if nipt.data.get("pattern"):
            lines.append(nipt.data["pattern"]["note"].capitalize() + ".")
        for c in positives:
            if c.note:
                lines.append(f"{c.event}: {c.note}.")
        if no_calls:
            lines.append(
                "No call for "
                + ", ".join(c.event for c in no_calls[:6])
                + (" and others" if len(no_calls) > 6 else "")
                + ": "
                + (no_calls[0].reason or "evidence not conclusive")
                + "."
            )
        caution = low_fetal_fraction_caution(nipt.data)
        if caution:
            lines.append(caution)
    if viral and not viral.positive:
        screen = viral.data["screen"]
        lines.append(
            f"EBV screen: {viral.screen_result}. {viral.data['fragments']['unique']} fragments on {viral.data['virus']} "
            f"({viral.data['per_million']['value']:.2f} per million)."
            + (f" {screen.get('reason')}" if screen.get("reason") else "")
        )
    if tumor:
        if tumor.detected:
            others = [x for x in tumor.data.get("solutions", []) if not x.get("chosen")]
            if tumor.data.get("solutions_close") and others:
                other = others[0]
                lines.append(
                    f"Another reading is almost as likely: baseline copy number {other['baseline_copy_number']} at tumour fraction "
                    f"{100 * other['tumor_fraction']:.1f} % (posterior {100 * other['probability']:.0f} %); the interval covers both."
                )
        else:
            lines.append(
                f"No tumour-derived copy-number changes detected; the tumour fraction is at most "
                f"{100 * tumor.interval[1]:.1f} % (upper bound). Tumours without copy-number changes are not seen."
            )
    if not (nipt or tumor or viral):
        lines.append("Only fragment-size analysis was run on this sample; it makes no diagnostic call.")
    return lines


def low_fetal_fraction_caution(nipt: Mapping[str, Any]) -> str | None:
    """A warning when the fetal fraction may lie below what a trisomy needs at this depth: a negative
    there is weaker than it reads."""
    low = nipt["fetal_fraction"].get("low")
    limit = nipt.get("detection_limit") or {}
    if low is None:
        return None
    short = [(event, limit[key]) for event, key in TRISOMY_LIMITS if limit.get(key) is not None and low < limit[key]]
    if not short:
        return None
    return (
        f"Caution: the fetal fraction's lower bound ({100 * low:.1f} %) is below what "
        + ", ".join(f"{event} needs ({100 * value:.1f} %)" for event, value in short)
        + "; a low-risk result for "
        + ("it" if len(short) == 1 else "them")
        + " is less certain than usual. A new sample later in pregnancy carries more fetal DNA."
    )


def qc_rows(entry: SampleResults) -> list[tuple[str, str, str, str]]:
    """(check, value, expectation, status) rows for the QC table."""
    rows = []
    nipt, tumor, viral = read_results(entry.results)
    if nipt:
        qc = nipt.qc
        # Each row judges with the analysis's own limits, so the table and the sample's status agree.
        status = qc.status
        rows.append(("overall prenatal QC", status, PASS, status))
        if qc.counted_reads is not None:
            limits = COUNTED_READS_LIMITS
            rows.append(
                (
                    "counted fragments",
                    f"{qc.counted_reads:,}",
                    limits.expectation(f"{limits.warn:,.0f}"),
                    limits.status(qc.counted_reads),
                )
            )
        if qc.bin_variance_ratio is not None:
            ratio, limits = qc.bin_variance_ratio, BIN_VARIANCE_LIMITS
            rows.append(
                (
                    "bin variance vs Poisson",
                    f"{ratio:.2f}",
                    limits.expectation(f"{limits.warn:g}"),
                    limits.status(ratio),
                )
            )
        if qc.chr21_cv is not None:
            limits = CHR21_CV_EXCESS_LIMITS
            poisson = qc.chr21_poisson_cv
            rows.append(
                (
                    "chr21 CV",
                    f"{100 * qc.chr21_cv:.3f} %",
                    limits.expectation(f"{limits.warn:g}x the Poisson limit {100 * (poisson or 0.0):.3f} %"),
                    limits.status(qc.chr21_cv / poisson) if poisson else PASS,
                )
            )
        if qc.gc_residual is not None:
            limits = GC_RESIDUAL_LIMITS
            rows.append(
                (
                    "GC bias left after correction",
                    f"{qc.gc_residual:.4f}",
                    limits.expectation(f"{limits.warn:g}"),
                    limits.status(qc.gc_residual),
                )
            )
        ff = nipt.fetal_fraction
        if ff is not None:
            limits = FETAL_FRACTION_LIMITS
            rows.append(
                (
                    "fetal fraction",
                    f"{100 * ff:.1f} %",
                    limits.expectation(f"{100 * limits.warn:g} %"),
                    limits.status(ff),
                )
            )
        for reason in qc.reasons:
            rows.append(("note", reason, "", status))
    if tumor:
        limits = TUMOR_BINS_USED_LIMITS
        rows.append(
            (
                "tumour: bins used",
                f"{tumor.bins_used:,}",
                limits.expectation(f"{limits.warn:,.0f} at 1 Mb"),
                # Bins finer than 1 Mb are more numerous: the floor is stated for 1 Mb bins.
                limits.status(tumor.bins_used) if tumor.bin_size >= 1e6 else PASS,
            )
        )
        limits = TUMOR_NOISE_SCALE_LIMITS
        rows.append(
            (
                "tumour: noise scale",
                f"{tumor.noise_scale:.4f}",
                limits.expectation(f"{limits.warn:g}"),
                limits.status(tumor.noise_scale),
            )
        )
    if viral:
        # The size ratio matters only when the amount of viral DNA leaves the call open: a sample negative on
        # the amount alone (no viral fragments, say) has nothing to warn about.
        if viral.size_evaluable:
            rows.append(("viral size ratio evaluable", "yes", "yes, or not needed", PASS))
        elif viral.screen_result == NEGATIVE:
            rows.append(
                (
                    "viral size ratio evaluable",
                    "not needed: negative on the amount of viral DNA",
                    "yes, or not needed",
                    PASS,
                )
            )
        else:
            rows.append(("viral size ratio evaluable", "no", "yes, or not needed", WARN))
    return rows


# The detection_limit keys of the smallest fetal fraction each main trisomy needs.
TRISOMY_LIMITS = tuple((event, f"minimum_fetal_fraction_{event}") for event in ("T21", "T18", "T13"))
TUMOR_REGION_FIGURES = 6  # the largest altered segments drawn on their own chromosome
SMALLEST_BENCHMARKED_CNV_BP = 3_000_000  # the smallest fetal deletion in benchmarks/nipt_accuracy.py

MAIN_FINDINGS = ("T21", "T18", "T13", "45,X", "47,XXX", "47,XXY", "47,XYY")


def call_rows(entry: SampleResults) -> list[list[str]]:
    """The named findings always; other autosomes only when not negative, the rest summed up in one row."""
    rows: list[list[str]] = []
    nipt, _, _ = read_results(entry.results)
    if not nipt:
        return rows
    quiet = []
    for c in nipt.calls:
        if c.event not in MAIN_FINDINGS and c.result == NEGATIVE:
            quiet.append(c.event)
            continue
        sex_chromosome = c.event in MAIN_FINDINGS[3:]
        rows.append(
            [
                c.event,
                c.result,
                "" if sex_chromosome else table_cell(c.z, ".2f"),
                table_cell(c.score, ".3f") if sex_chromosome else table_cell(c.log_bayes_factor, ".1f"),
                _percent(c.minimum_fetal_fraction),
                "; ".join(t for t in (c.reason, c.note) if t),
            ]
        )
    if quiet:
        rows.append([f"other trisomies ({len(quiet)})", "negative", "", "", "", ", ".join(quiet)])
    return rows


# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class SignOff:
    """The outcome of a review, printed in a report's sign-off block (the review app's export fills it)."""

    signed_off_by: str
    signed_off_at: str
    reviewers: tuple[str, ...] = ()
    findings: tuple[tuple[str, str, str, str], ...] = ()  # finding, automatic result, reviewed status, detail
    comments: tuple[tuple[str, str, str], ...] = ()  # author, when, text


@dataclass(frozen=True)
class ReportSettings:
    """What a lab sets once for its reports: its name for the header, and the report date (None: the
    date the results were written, so the same results give the same bytes on any day)."""

    lab: str | None = None
    report_date: str | None = None
    sample_info: dict[str, dict[str, str]] = field(default_factory=dict)  # sample -> field -> value, for the header


def read_sample_info(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """A lab's table of what it knows about each sample (patient or request ID, collection date,
    gestational age, referrer: any columns beside `sample`), printed in each report's header."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream, delimiter="\t")
            rows = list(reader)
            columns = [column.strip() for column in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read the sample table ({error}); give a tab-separated UTF-8 file") from None
    if "sample" not in columns:
        raise DataError(
            f"{path}: no 'sample' column; the first line must name the columns, tab-separated, one of them 'sample'"
        )
    info: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, 2):
        name = next(
            (
                (value or "").strip()
                for column, value in row.items()
                if column is not None and column.strip() == "sample"
            ),
            "",
        )
        if None in row:
            raise DataError(f"{path} line {number}: more cells than the header has columns")
        if not name or name in info:
            raise DataError(
                f"{path} line {number}: " + ("no sample name" if not name else f"sample {name!r} a second time")
            )
        info[name] = {
            column.strip(): (value or "").strip() for column, value in row.items() if column.strip() != "sample"
        }
    return info


@dataclass
class TableSection:
    """One titled table of the sample page."""

    id: str
    title: str
    columns: list[str]
    rows: list[list]
    classes: list[list[str]] | None = None


@functools.lru_cache(maxsize=1)
def _templates():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("plasmacount", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["css_string"] = _css_string
    return environment


@functools.cache
def _asset(name: str):
    """A CSS or script file of the templates folder, inlined so that every page stands alone."""
    from importlib.resources import files

    from markupsafe import Markup

    return Markup((files("plasmacount") / "templates" / name).read_text(encoding="utf-8"))


def _css_string(value: object) -> str:
    """A CSS string literal of any text: every character but letters, digits and spaces as a hex escape
    (its trailing space ends the escape), so that no quote, backslash or `</style>` in a sample name
    can end it."""
    from markupsafe import Markup

    text = "".join(c if c.isascii() and (c.isalnum() or c == " ") else f"\\{ord(c):06x} " for c in str(value))
    return Markup(f'"{text}"')


def _render(template: str, **context) -> str:
    context.setdefault("style", _asset("report.css"))
    context.setdefault("script", None)
    return _templates().get_template(template).render(**context) + "\n"


def results_date(entry: SampleResults) -> str:
    """The UTC date the newest of a sample's result files was written."""
    newest = max((path.stat().st_mtime for path in entry.sources), default=0.0)
    return datetime.datetime.fromtimestamp(newest, datetime.UTC).date().isoformat()


def _write_table(path: Path, columns: list[str], rows: list[list]) -> Path:
    with atomic_output(path, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for row in rows:
            stream.write("\t".join("" if v is None else str(v) for v in row) + "\n")
    return path


def _figure_items(figures: list[Figure], data_dir: Path, written: list[Path]) -> list[dict]:
    """Each figure for the template, with its data table written to `data_dir` (added to `written`)."""
    from markupsafe import Markup

    items = []
    for figure in figures:
        table = _write_table(data_dir / f"{figure.name}.tsv", figure.columns, figure.rows)
        written.append(table)
        items.append(
            {
                "name": figure.name,
                "title": figure.title,
                "svg": Markup(_unique_ids(figure.svg, figure.name)),
                "caption": figure.caption,
                "data_link": f"{data_dir.name}/{table.name}",
                "data_name": table.name,
            }
        )
    return items


def _percent(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f} %"


def table_sections(entry: SampleResults) -> list[TableSection]:
    """The sample page's tables after the result: calls, CNVs, EBV, tumour, fragments."""
    sections = []
    calls = call_rows(entry)
    if calls:
        sections.append(
            TableSection(
                "calls",
                "Calls",
                [
                    "finding",
                    "result",
                    "z",
                    "log Bayes factor (posterior for sex chromosomes)",
                    "minimum fetal fraction",
                    "note",
                ],
                calls,
                [
                    ["", "positive" if row[1] == "positive" else "warn" if row[1] == "no-call" else "", "", "", "", ""]
                    for row in calls
                ],
            )
        )
    nipt, tumor, viral = read_results(entry.results)
    if nipt and nipt.copy_number_calls:
        rows = [
            [
                c.chrom,
                f"{c.start:,}",
                f"{c.end:,}",
                f"{c.size / 1e6:.2f}",
                c.kind,
                c.origin,
                f"{c.copy_ratio:.3f}",
                f"{c.z:.1f}",
                c.syndrome or "",
            ]
            for c in nipt.copy_number_calls
        ]
        sections.append(
            TableSection(
                "cnvs",
                "Copy-number variants",
                ["chrom", "start", "end", "size (Mb)", "type", "origin", "copy ratio", "z", "syndrome"],
                rows,
            )
        )
    if viral:
        low, high = viral.viral_fragments_interval
        ratio_low, ratio_high = viral.size_ratio_interval if viral.size_evaluable else (0.0, 0.0)
        rows = [
            ["result", viral.screen_result],
            ["fragments on " + viral.virus, f"{viral.viral_fragments} ({low:.1f}-{high:.1f})"],
            ["per million mapped", f"{viral.per_million:.3f}"],
            [
                "size ratio (80-110 bp)",
                "not evaluable: " + (viral.size_reason or "")
                if not viral.size_evaluable
                else f"{viral.size_ratio:.2f} ({ratio_low:.2f}-{ratio_high:.2f})",
            ],
        ]
        sections.append(TableSection("ebv", "EBV screen", ["measure", "value"], rows))
    if tumor:
        low, high = tumor.interval
        rows = [
            [
                "tumour fraction",
                f"{_percent(tumor.tumor_fraction)} (95 % interval {_percent(low)} to {_percent(high)})",
            ],
            ["detected", "yes" if tumor.detected else "no"],
            ["ploidy", f"{tumor.ploidy:.2f}"],
            ["CNA score", str(tumor.cna_score)],
            ["altered segments", str(len(tumor.altered_segments))],
        ]
        if tumor.sex:
            share = tumor.chrY_read_share
            rows.append(
                ["sex (chrY reads)", tumor.sex + (f" ({100 * share:.3f} % of reads)" if share is not None else "")]
            )
        for solution in tumor.solutions:
            rows.append(
                [
                    f"solution: baseline {solution.baseline_copy_number}" + (" (chosen)" if solution.chosen else ""),
                    f"tumour fraction {_percent(solution.tumor_fraction)}, posterior {_percent(solution.probability)}",
                ]
            )
        sections.append(TableSection("tumour", "Tumour fraction", ["measure", "value"], rows))
    fragments = entry.results.get("fragments")
    if fragments:
        sections.append(TableSection("fragments", "Fragments", ["measure", "value"], fragment_rows(fragments)))
    return sections


def fragment_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """The fragment numbers a reader looks for first: how many, their mode and median, the short share."""
    fragments = FragmentsResult(result)
    size = fragments.size
    low, high = fragments.short_range
    rows = [
        ["fragments", "NA" if size.fragments is None else f"{size.fragments:,}"],
        [
            "mode / median / mean length",
            f"{table_cell(size.mode)} / {table_cell(size.median)} / {table_cell(size.mean, '.1f')} bp",
        ],
        ["share below 150 bp", _percent(size.share_below_150)],
        [
            "share above 250 bp / 1 kb",
            f"{_percent(size.share_above_250, 2)} / {_percent(size.share_above_1000, 3)}",
        ],
    ]
    if size.periodicity_period is not None:
        rows.append(
            [
                "10 bp periodicity",
                f"period {size.periodicity_period:.1f} bp, amplitude {size.periodicity_amplitude:.3f}",
            ]
        )
    ratio = fragments.short_long_ratio
    if ratio is not None:
        long_low, long_high = fragments.long_range
        rows.append([f"short ({low}-{high} bp) / long ({long_low}-{long_high} bp)", f"{ratio:.3f}"])
    diversity = fragments.motif_diversity
    if diversity is not None:
        ends = "" if fragments.motif_ends is None else f" ({fragments.motif_ends:,} ends)"
        rows.append([f"end-motif diversity ({fragments.motif_length}-mers)", f"{diversity:.4f}{ends}"])
    mitochondrial = fragments.mitochondrial_fraction
    if mitochondrial is not None:
        rows.append(["mitochondrial share", _percent(mitochondrial, 3)])
    return rows


def method_paragraphs(entry: SampleResults) -> list[str]:
    """What was done and what it cannot see, from the numbers in the sample's own results."""
    paragraphs = []
    nipt = entry.results.get("nipt")
    if nipt:
        reference = nipt.get("reference") or {}
        counted = nipt["qc"].get("counted_reads")
        paragraphs.append(
            "Prenatal test: cell-free DNA fragments counted"
            + (f" ({counted:,})" if counted is not None else "")
            + (
                f" in {reference['bin_size'] / 1e3:g} kb bins of {reference.get('build') or 'the reference genome'}"
                if reference.get("bin_size")
                else ""
            )
            + (
                f", compared with a reference of {reference['samples']} euploid pregnancies"
                if reference.get("samples")
                else ""
            )
            + ". Trisomies: the chromosome's z-score against that reference and, when the fetal fraction is known, a Bayes factor "
            "for a trisomy at that fetal fraction. Sex chromosomes: the posterior of six karyotypes from the chrX and chrY doses. "
            "Deletions and duplications: segments of the bin profile, fetal or maternal by the copy ratio expected at the fetal fraction."
        )
        limits = detection_limit_text(nipt)
        if limits:
            paragraphs.append(
                "Limits at this sample's depth and fetal fraction: " + limits + ". These are computed by the model "
                "from this sample's counts and noise; on simulated pregnancies fetal deletions were benchmarked from "
                f"{SMALLEST_BENCHMARKED_CNV_BP / 1e6:g} Mb up (BENCHMARKS.md), none smaller."
            )
        paragraphs.append(
            "This is a screening test. Mosaicism confined to the placenta, a vanishing twin, maternal copy-number "
            "variants or tumours and balanced rearrangements can give results that differ from the fetus; "
            "a high-risk result must be confirmed by diagnostic testing (amniocentesis or CVS) before any decision."
        )
    _, tumor, viral = read_results(entry.results)
    if tumor:
        donors = tumor.panel_donors
        paragraphs.append(
            f"Tumour fraction: {tumor.bins_used:,} bins of {tumor.bin_size / 1e6:g} Mb"
            + (f" against a panel of {donors} healthy donors" if donors else " without a panel of normals")
            + "; copy number by a hidden Markov model over tumour fraction and ploidy. The 95 % interval spans the solutions by "
            "their posterior. Tumour DNA without copy-number changes, and tumour fractions below about "
            f"{_percent(tumor.interval[1] if not tumor.detected else 0.03)}, are not seen."
        )
    if viral:
        paragraphs.append(
            f"EBV screen: fragments on {viral.virus} counted among {viral.mapped_fragments:,} mapped fragments, "
            "with the share of 80-110 bp viral fragments against the host's. A screening result: a positive needs "
            "follow-up (retest, endoscopy), a negative does not exclude nasopharyngeal carcinoma."
        )
    fragments = entry.results.get("fragments")
    if fragments:
        paragraphs.append(
            "Fragmentomics: fragment lengths from each fragment's own ends; it makes no diagnostic call on its own."
        )
    return paragraphs


def detection_limit_text(nipt: dict) -> str:
    """The smallest fetal fractions and CNV sizes this sample could show, as its JSON reports them."""
    limit = nipt.get("detection_limit") or {}
    parts = [
        f"{event} needs a fetal fraction of at least {100 * limit[key]:.1f} %"
        for event, key in TRISOMY_LIMITS
        if limit.get(key) is not None
    ]
    power = round(100 * limit.get("cnv_power", 0.9))
    if limit.get("smallest_fetal_deletion_bp"):
        parts.append(
            f"fetal deletions smaller than {limit['smallest_fetal_deletion_bp'] / 1e6:.1f} Mb are found with less than "
            f"{power} % probability"
        )
    regions = [
        f"{name} from {100 * region['minimum_fetal_fraction']:.0f} %"
        for name, region in (limit.get("syndrome_regions") or {}).items()
        if region.get("minimum_fetal_fraction")
    ]
    if regions:
        parts.append(
            f"syndrome deletions are found with {power} % probability at fetal fractions of: " + ", ".join(regions)
        )
    return "; ".join(parts)


def render_sample_page(
    entry: SampleResults,
    figures: list[dict],
    settings: ReportSettings = ReportSettings(),
    signoff: SignOff | None = None,
) -> str:
    """The sample's page as HTML text: the same text is the HTML report and the source of the PDF."""
    qc = qc_rows(entry)
    written_on = results_date(entry)
    return _render(
        "sample.html",
        title=f"plasmacount: {entry.sample}",
        sample=entry.sample,
        lab=settings.lab,
        sample_info=settings.sample_info.get(entry.sample, {}),
        results_date=written_on,
        report_date=settings.report_date or written_on,
        version=__version__,
        analyses=", ".join(entry.results),
        sources=", ".join(p.name for p in entry.sources),
        findings=finding_lines(entry),
        summary=summary_lines(entry),
        sections=table_sections(entry),
        figures=figures,
        qc={
            "columns": ["check", "value", "expected", "status"],
            "rows": [list(r) for r in qc],
            "classes": [["", "", "", r[3]] for r in qc],
        }
        if qc
        else None,
        method=method_paragraphs(entry),
        signoff=signoff,
    )


def write_sample_report(
    entry: SampleResults, output: Path, pdf: bool = True, settings: ReportSettings = ReportSettings()
) -> list[Path]:
    """<sample>.html (self-contained), <sample>.pdf (the same page, printed) and <sample>_data/<plot>.tsv."""
    plt = _pyplot()
    data_dir = output / f"{sample_file_stem(entry.sample)}_data"
    data_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = sample_figures(entry)
    try:
        text = render_sample_page(entry, _figure_items(figures, data_dir, written), settings)
    finally:
        for figure in figures:
            plt.close(figure.figure)
    page = output / f"{sample_file_stem(entry.sample)}.html"
    with atomic_output(page, "w") as stream:
        stream.write(text)
    written.append(page)
    if pdf:
        path = output / f"{sample_file_stem(entry.sample)}.pdf"
        with atomic_output(path, "wb") as stream:
            stream.write(html_to_pdf(text, f"plasmacount report: {entry.sample}"))
        written.append(path)
    return written


SIGN_OFF_BEGIN, SIGN_OFF_END = "<!-- sign-off begin -->", "<!-- sign-off end -->"


def with_sign_off(page: str, signoff: SignOff) -> str:
    """A sample page with its sign-off block filled in (the review app's export after sign-off)."""
    start, end = page.find(SIGN_OFF_BEGIN), page.find(SIGN_OFF_END)
    block = _templates().get_template("macros.html").module.sign_off(signoff)
    if start < 0 or end < start:
        # A page from before the sign-off block existed: the block goes at its end.
        closing = page.rfind("</body>")
        return page[:closing] + str(block) + page[closing:] if closing >= 0 else page + str(block)
    return page[:start] + str(block) + page[end + len(SIGN_OFF_END) :]


def sign_off_page(sample: str, batch: str, signoff: SignOff) -> str:
    """A page of the sign-off alone, for a sample imported without its report page."""
    return _render(
        "signoff.html", title=f"plasmacount: {sample}", sample=sample, batch=batch, version=__version__, signoff=signoff
    )


PDF_NEEDS = "pip install weasyprint; apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"


def pdf_unavailable() -> str | None:
    """Why PDFs cannot be printed on this machine (WeasyPrint or its Pango missing), or None."""
    import importlib

    try:
        importlib.import_module("weasyprint")  # loading it is the test: Pango is found only then
    except (ImportError, OSError) as error:
        return f"WeasyPrint cannot load ({str(error).splitlines()[0][:120]}); {PDF_NEEDS}"
    return None


def html_to_pdf(page: str, title: str) -> bytes:
    """A report page printed to A4 by WeasyPrint (its own CSS and SVG engine; no browser). Nothing
    outside the page is fetched: a result may come from anyone, and a report must print offline."""
    missing = pdf_unavailable()
    if missing is not None:
        raise DataError(f"PDF reports need {missing}, or write HTML only (report --no-pdf)")
    import weasyprint

    # Only the page's own inline images (rasterised dots inside an SVG) are fetched: data: URLs.
    fetcher = weasyprint.URLFetcher(allowed_protocols={"data"})
    # WeasyPrint logs what it skips; its warnings (SVG style properties it ignores) are noise here,
    # but an error (a figure it could not draw) would leave a hole in the PDF, so it stops the report.
    errors: list[str] = []
    collector = _Collector(errors)
    log = logging.getLogger("weasyprint")
    level, propagate = log.level, log.propagate
    log.setLevel(logging.ERROR)
    log.propagate = False
    log.addHandler(collector)
    # fontTools stamps each embedded font subset with the clock ("modified" in its head table)
    # unless SOURCE_DATE_EPOCH fixes it; a fixed stamp keeps the same report byte for byte the same.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = epoch if epoch is not None else "0"
    try:
        document = weasyprint.HTML(string=page, url_fetcher=fetcher, base_url=None).render()
        document.metadata.title = title
        document.metadata.generator = f"plasmacount {__version__}"
        document.metadata.created = document.metadata.modified = None
        data = document.write_pdf()
    finally:
        if epoch is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        log.removeHandler(collector)
        log.setLevel(level)
        log.propagate = propagate
    if errors:
        raise DataError(
            f"{title}: the PDF could not be drawn in full ({errors[0]}); write HTML only (report --no-pdf) and report this"
        )
    return data


class _Collector(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.ERROR)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


ID_PATTERN = re.compile(r'(\bid="|xlink:href="#|\bhref="#|url\(#)([^")]+)')


def _unique_ids(svg: str, prefix: str) -> str:
    """An SVG whose ids (glyphs, clip paths, lines) carry the figure's name: matplotlib numbers them
    from one in every figure, and a page holds several."""
    return ID_PATTERN.sub(lambda match: f"{match.group(1)}{prefix}-{match.group(2)}", svg)


def write_batch_overview(
    samples: list[SampleResults], output: Path, title: str = "plasmacount batch overview"
) -> list[Path]:
    """batch.html: every sample's calls and flags in a sortable table, and the batch plots."""
    from markupsafe import Markup

    written: list[Path] = []
    data_dir = output / "batch_data"
    data_dir.mkdir(parents=True, exist_ok=True)
    columns = [
        "sample",
        "QC",
        "fetal sex",
        "FF %",
        "z13",
        "z18",
        "z21",
        "zX",
        "positive",
        "no-call",
        "CNVs",
        "EBV",
        "tumour %",
        "flags",
    ]
    rows, classes, tsv_rows = [], [], []
    for entry in samples:
        nipt, tumor, viral = read_results(entry.results)
        z = {}
        if nipt:
            for name, values in nipt.data["chromosomes"].items():
                z[name_key(name)] = values["z"]
        positives = ",".join(c.event for c in nipt.calls_with(POSITIVE)) if nipt else ""
        no_calls = ",".join(c.event for c in nipt.calls_with(NO_CALL)) if nipt else ""
        cnvs = (
            ",".join(f"{c.kind[:3]} {c.chrom}:{c.start / 1e6:.1f}-{c.end / 1e6:.1f}Mb" for c in nipt.copy_number_calls)
            if nipt
            else ""
        )
        ff = nipt.fetal_fraction if nipt else None
        qc_status = nipt.qc_status if nipt else ""
        flags = []
        if qc_status and qc_status != PASS:
            flags.append(f"QC {qc_status}")
        if positives or cnvs:
            flags.append("finding")
        if no_calls:
            flags.append("no-call")
        if viral and viral.positive:
            flags.append("EBV positive")
        if tumor and tumor.detected:
            flags.append("tumour DNA")
        values = [
            entry.sample,
            qc_status,
            nipt.fetal_sex if nipt else "",
            "" if ff is None else f"{100 * ff:.1f}",
            *[table_cell(z.get(k), ".2f") if z.get(k) is not None else "" for k in ("13", "18", "21", "X")],
            positives or "-",
            (no_calls[:40] + "...") if len(no_calls) > 40 else (no_calls or "-"),
            cnvs or "-",
            viral.screen_result if viral else "",
            f"{100 * tumor.tumor_fraction:.1f}" if tumor else "",
            "; ".join(flags) or "-",
        ]
        tsv_rows.append(values)
        link = Markup('<a href="{}.html">{}</a>').format(quote(sample_file_stem(entry.sample)), entry.sample)
        rows.append([link] + values[1:])
        classes.append(
            [
                "",
                qc_status,
                "",
                "",
                "",
                "",
                "",
                "",
                "positive" if positives else "",
                "",
                "positive" if cnvs else "",
                "positive" if viral and viral.positive else "",
                "",
                "warn" if flags else "",
            ]
        )
    written.append(_write_table(data_dir / "samples.tsv", columns, tsv_rows))
    # Columns no sample fills (prenatal columns in a cancer batch, say) are left off the page.
    shown = [j for j in range(len(columns)) if j == 0 or any(row[j] not in ("", "-") for row in tsv_rows)]
    candidates = (
        batch_strip_figure(samples),
        batch_fetal_fraction_figure(samples),
        batch_qc_figure(samples),
        batch_tumor_figure(samples),
        batch_viral_figure(samples),
        batch_sizes_figure(samples),
    )
    figures = [f for f in candidates if f]
    try:
        text = _render(
            "batch.html",
            title=title,
            samples=samples,
            version=__version__,
            columns=[columns[j] for j in shown],
            rows=[[row[j] for j in shown] for row in rows],
            classes=[[row[j] for j in shown] for row in classes],
            figures=_figure_items(figures, data_dir, written),
            script=_asset("sort.js"),
        )
    finally:
        plt = _pyplot()
        for figure in figures:
            plt.close(figure.figure)
    page = output / "batch.html"
    with atomic_output(page, "w") as stream:
        stream.write(text)
    written.append(page)
    return written


# ----------------------------------------------------------------------------- MultiQC


def _nipt_multiqc_row(result: Mapping[str, Any]) -> list[str]:
    nipt = NiptResult(result)
    return [
        nipt.qc_status,
        nipt.fetal_sex,
        table_cell(nipt.fetal_fraction, ".4f"),
        *[
            table_cell(next((v["z"] for n, v in result["chromosomes"].items() if name_key(n) == k), None), ".2f")
            for k in ("13", "18", "21", "X")
        ],
        ",".join(c.event for c in nipt.calls_with(POSITIVE)) or "none",
        str(len(nipt.copy_number_calls)),
    ]


def _tumor_multiqc_row(tumor: TumorResult) -> list[str]:
    low, high = tumor.interval
    return [
        f"{tumor.tumor_fraction:.4f}",
        f"{low:.4f}",
        f"{high:.4f}",
        f"{tumor.ploidy:.2f}",
        str(tumor.detected).lower(),
        str(tumor.cna_score),
    ]


def _viral_multiqc_row(viral: ViralResult) -> list[str]:
    ratio = viral.size_ratio
    return [
        viral.virus,
        str(viral.viral_fragments),
        f"{viral.per_million:.4f}",
        table_cell(ratio, ".3f") if ratio is not None else "NA",
        viral.screen_result,
    ]


def _fragments_multiqc_row(size: FragmentSizes) -> list[str]:
    return [
        table_cell(size.mode),
        table_cell(size.median),
        table_cell(size.share_below_150, ".4f"),
        table_cell(size.periodicity_amplitude, ".4f"),
    ]


def write_multiqc(samples: list[SampleResults], output: Path) -> list[Path]:
    """MultiQC custom content: one table per analysis (`*_mqc.tsv`) and a QC bar graph (`*_mqc.json`)."""
    written = []
    tables = {
        "nipt": (
            "plasmacount: prenatal test",
            ["qc_status", "fetal_sex", "fetal_fraction", "z_13", "z_18", "z_21", "z_X", "positive", "cnvs"],
            _nipt_multiqc_row,
        ),
        "tumor": (
            "plasmacount: tumour fraction",
            ["tumor_fraction", "tumor_fraction_low", "tumor_fraction_high", "ploidy", "detected", "cna_score"],
            lambda r: _tumor_multiqc_row(TumorResult(r)),
        ),
        "viral": (
            "plasmacount: viral DNA",
            ["virus", "fragments", "per_million", "size_ratio", "screen"],
            lambda r: _viral_multiqc_row(ViralResult(r)),
        ),
        "fragments": (
            "plasmacount: fragment sizes",
            ["mode_bp", "median_bp", "share_below_150", "periodicity_amplitude"],
            lambda r: _fragments_multiqc_row(FragmentsResult(r).size),
        ),
    }
    for analysis, (section, columns, row_of) in tables.items():
        having = [entry for entry in samples if analysis in entry.results]
        if not having:
            continue
        path = output / f"plasmacount_{analysis}_mqc.tsv"
        with atomic_output(path, "w") as stream:
            stream.write(
                f"# id: 'plasmacount_{analysis}'\n# section_name: '{section}'\n"
                f"# description: 'from plasmacount {__version__} {analysis} results'\n# plot_type: 'table'\n"
                f"# pconfig:\n#     id: 'plasmacount_{analysis}_table'\n#     namespace: 'plasmacount'\n"
            )
            stream.write("Sample\t" + "\t".join(columns) + "\n")
            for entry in having:
                stream.write(entry.sample + "\t" + "\t".join(str(v) for v in row_of(entry.results[analysis])) + "\n")
        written.append(path)
    prenatal = [(entry.sample, NiptResult(entry.results["nipt"]).qc) for entry in samples if "nipt" in entry.results]
    counted = {sample: {"counted": qc.counted_reads} for sample, qc in prenatal if qc.counted_reads is not None}
    if counted:
        path = output / "plasmacount_counts_mqc.json"
        document = {
            "id": "plasmacount_counts",
            "section_name": "plasmacount: counted fragments",
            "plot_type": "bargraph",
            "description": "Fragments counted in the bins used for the prenatal test.",
            "pconfig": {
                "id": "plasmacount_counts_plot",
                "title": "plasmacount: counted fragments",
                "ylab": "fragments",
            },
            "data": counted,
        }
        with atomic_output(path, "w") as stream:
            json.dump(document, stream, indent=1, sort_keys=True)
            stream.write("\n")
        written.append(path)
    return written


def write_reports(
    paths: list[str | os.PathLike],
    output: str | os.PathLike,
    pdf: bool = True,
    progress: Callable[[int, int], None] | None = None,
    settings: ReportSettings = ReportSettings(),
) -> list[Path]:
    """Everything `plasmacount report` writes; returns the paths. The set is made in a staging
    folder beside `output` and moved in only when complete, so an interrupted run leaves the
    earlier reports (or nothing), never half a batch."""
    import shutil
    import tempfile

    samples = collect(paths)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        written = []
        for i, entry in enumerate(samples):
            with stage("report: sample pages"):
                written += write_sample_report(entry, staging, pdf=pdf, settings=settings)
            if progress:
                progress(i + 1, len(samples))
        with stage("report: batch overview"):
            written += write_batch_overview(samples, staging)
        with stage("report: MultiQC files"):
            written += write_multiqc(samples, staging)
        output.mkdir(parents=True, exist_ok=True)
        final = []
        for path in written:
            target = output / Path(path).relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            final.append(target)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
