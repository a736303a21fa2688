"""Viral DNA in plasma: screening for nasopharyngeal carcinoma by Epstein-Barr virus DNA.

NPC cells release EBV DNA into plasma. Lam et al. (PNAS 2018) showed that two measurements
from one blood draw separate NPC from the many non-cancer carriers of EBV DNA: the *amount*
(the share of fragments that map to the EBV genome) and the *size* (NPC-derived EBV DNA is
nucleosome-protected and long, carrier EBV DNA is short). The size ratio is
`% of viral fragments at 80-110 bp / % of autosomal fragments at 80-110 bp`: near 1 for
NPC-like viral DNA, far above 1 for carriers. A sample screens positive when the proportion
reaches its cut-off AND the size ratio stays at or below its cut-off; cut-offs are options or
are learnt from a labelled training set (the lowest NPC proportion and the highest NPC size
ratio, with a margin, so that every training NPC passes, as in the published design).

Counts come from a counts file (viral contigs are counted with their own length histograms)
or straight from alignments; with alignments, reads in the BamHI-W repeat (MAPQ 0 there) are
counted separately and the unique count uses its own MAPQ threshold (default 30).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.genome import name_key

SCHEMA_VERSION = "1.0"
EBV_NAMES = ("chrEBV", "NC_007605", "NC_007605.1", "EBV")
# BamHI-W (IR1) repeat of NC_007605: about 12 kb to 35 kb of the genome.
EBV_W_REPEAT = (12_000, 35_000)
SHORT_WINDOW = (80, 110)


@dataclass(frozen=True)
class ScreenCutoffs:
    """The two-criterion screen: proportion of viral fragments, and the viral size ratio."""

    proportion: float = 3e-7      # 3 viral fragments per 10 M
    size_ratio: float = 10.0      # NPC-like viral DNA: about 1; carriers: about 30
    min_size_fragments: int = 3   # fewer paired viral fragments: size ratio not evaluable
    source: str = "default"

    def to_json(self) -> dict:
        return asdict(self)


def find_viral_contig(counts: SampleCounts, virus: str | None, where: str) -> int:
    """Row of the viral contig among the sample's other contigs (EBV names by default)."""
    names = [contig["name"] for contig in counts.other_contigs]
    wanted = [virus] if virus else list(EBV_NAMES)
    for candidate in wanted:
        for i, name in enumerate(names):
            if name == candidate or name_key(name) == name_key(candidate):
                return i
    present = ", ".join(names[:12]) or "none"
    label = virus or "EBV (chrEBV / NC_007605)"
    raise DataError(f"{where}: no viral contig {label} among the contigs outside the bins ({present}); "
                    "align to a reference with the viral genome (e.g. GRCh38 analysis set with chrEBV) or pass --virus NAME")


def poisson_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson count."""
    alpha = 1 - confidence
    low = 0.0 if count == 0 else stats.chi2.ppf(alpha / 2, 2 * count) / 2
    high = stats.chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    return float(low), float(high)


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion."""
    if trials == 0:
        return 0.0, 1.0
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else stats.beta.ppf(alpha / 2, successes, trials - successes + 1)
    high = 1.0 if successes == trials else stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes)
    return float(low), float(high)


def analyse(counts: SampleCounts, row: int, cutoffs: ScreenCutoffs, w_repeat: int | None = None,
            unique_override: int | None = None, viral_lengths: np.ndarray | None = None, note: str | None = None) -> dict:
    """The viral result of one sample (see the module docstring)."""
    name = counts.other_contigs[row]["name"]
    viral = int(unique_override if unique_override is not None else counts.other_counts[row])
    human = int(counts.counts.sum() + sum(int(n) for i, n in enumerate(counts.other_counts) if i != row))
    total = human + viral
    low, high = poisson_interval(viral)
    per_million = 1e6 / total if total else float("nan")
    histogram = viral_lengths if viral_lengths is not None else counts.other_fragment_lengths[row]
    notes = [note] if note else []
    size = {"evaluable": False, "ratio": None, "low": None, "high": None, "viral_fragments_with_length": int(histogram.sum()),
            "viral_fragments_80_110": int(histogram[SHORT_WINDOW[0] : SHORT_WINDOW[1] + 1].sum()),
            "viral_share_80_110": None, "autosomal_share_80_110": None, "profile_mode": None, "reason": None}
    if counts.paired:
        autosomal = counts.fragment_lengths
        size["autosomal_share_80_110"] = float(autosomal[SHORT_WINDOW[0] : SHORT_WINDOW[1] + 1].sum() / max(autosomal.sum(), 1))
        if histogram.sum():
            size["profile_mode"] = int(np.argmax(histogram[:-1]))
    # Size profiles up to 600 bp, for plots: viral counts and the autosomal share per length.
    size["viral_histogram_0_600"] = histogram[:601].astype(int).tolist() if counts.paired else None
    size["autosomal_histogram_0_600"] = counts.fragment_lengths[:601].astype(int).tolist() if counts.paired else None
    result = {
        "schema_version": SCHEMA_VERSION, "sample": counts.sample, "source": counts.source, "virus": name, "paired": counts.paired,
        "fragments": {"unique": viral, "low": low, "high": high, "w_repeat": w_repeat, "total_mapped": total},
        "per_million": {"value": viral * per_million, "low": low * per_million, "high": high * per_million},
        "proportion": {"value": viral / total if total else None, "low": low / total if total else None,
                       "high": high / total if total else None},
        "size": size,
        "screen": None,
        "notes": notes,
    }
    return apply_screen(result, cutoffs)


def apply_screen(result: dict, cutoffs: ScreenCutoffs) -> dict:
    """(Re)compute the size-ratio evaluation and the two-criterion screen under `cutoffs`."""
    size = result["size"]
    n, k = size["viral_fragments_with_length"], size["viral_fragments_80_110"]
    autosomal_share = size["autosomal_share_80_110"]
    size.update({"evaluable": False, "ratio": None, "low": None, "high": None, "viral_share_80_110": None, "reason": None})
    if not result["paired"]:
        size["reason"] = "single-end data: no fragment lengths; the screen uses the count criterion only"
    elif n < cutoffs.min_size_fragments or not autosomal_share:
        size["reason"] = f"{n} viral fragments with a length (at least {cutoffs.min_size_fragments} needed)"
    else:
        share_low, share_high = binomial_interval(k, n)
        size.update({"evaluable": True, "ratio": (k / n) / autosomal_share, "low": share_low / autosomal_share,
                     "high": share_high / autosomal_share, "viral_share_80_110": k / n})
    proportion = result["proportion"]["value"]
    count_pass = proportion is not None and proportion >= cutoffs.proportion
    if not count_pass:
        outcome, reason = "negative", "viral DNA proportion below the cut-off"
    elif not result["paired"]:
        outcome, reason = "positive", "count criterion only (single-end data)"
    elif not size["evaluable"]:
        outcome, reason = "not evaluable", "proportion above the cut-off but too few viral fragments for the size criterion"
    elif size["ratio"] <= cutoffs.size_ratio:
        outcome, reason = "positive", "proportion and size ratio both NPC-like"
    else:
        outcome, reason = "negative", "viral DNA is short (carrier-like size ratio)"
    result["screen"] = {"result": outcome, "reason": reason, "count_criterion": bool(count_pass),
                        "size_criterion": None if not size["evaluable"] else bool(size["ratio"] <= cutoffs.size_ratio),
                        "cutoffs": cutoffs.to_json()}
    return result


def from_alignments(path: str | os.PathLike, virus: str | None, cutoffs: ScreenCutoffs, min_mapq: int = 30,
                    reference: str | os.PathLike | None = None, bin_size: int = 100_000) -> dict:
    """Count the alignments, then re-read the viral contig for the W repeat and the viral MAPQ threshold."""
    import pysam

    from plasmacount.alignments import CountOptions, prepare_cram_environment, alignment_kind, count_alignments

    path = Path(path)
    counts = count_alignments(path, bin_size=bin_size, options=CountOptions(), reference=reference)
    row = find_viral_contig(counts, virus, str(path))
    name = counts.other_contigs[row]["name"]
    is_ebv = any(name_key(name) == name_key(n) for n in EBV_NAMES)
    prepare_cram_environment()
    unique = w_repeat = 0
    lengths = np.zeros(counts.fragment_lengths.size, dtype=np.int64)
    mode = "rc" if alignment_kind(path) == "cram" else "rb"
    with pysam.AlignmentFile(str(path), mode, reference_filename=str(reference) if reference else None) as alignments:
        for read in alignments.fetch(name):
            if read.is_unmapped or read.is_secondary or read.is_supplementary or read.is_qcfail or read.is_duplicate:
                continue
            if read.is_paired:
                if not read.is_proper_pair or read.reference_start > read.next_reference_start or (
                        read.reference_start == read.next_reference_start and not read.is_read1):
                    continue
            in_repeat = is_ebv and EBV_W_REPEAT[0] <= read.reference_start < EBV_W_REPEAT[1]
            if in_repeat:
                w_repeat += 1
                continue
            if read.mapping_quality < min_mapq:
                continue
            unique += 1
            if read.is_paired:
                lengths[min(abs(read.template_length), lengths.size - 1)] += 1
    return analyse(counts, row, cutoffs, w_repeat if is_ebv else None, unique, lengths,
                   note=f"unique viral fragments at MAPQ >= {min_mapq}, outside the BamHI-W repeat")


def from_counts(counts: SampleCounts, virus: str | None, cutoffs: ScreenCutoffs, where: str) -> dict:
    row = find_viral_contig(counts, virus, where)
    mapq = counts.filters.get("min_mapq")
    note = (f"viral fragments as counted (MAPQ >= {mapq}); the BamHI-W repeat is not separable in a counts file: "
            "analyse the BAM/CRAM for it") if mapq is not None else "viral fragments as counted"
    return analyse(counts, row, cutoffs, None, note=note)


def learn_cutoffs(results: list[dict], labels: dict[str, str], proportion_margin: float = 0.5, size_margin: float = 0.25) -> ScreenCutoffs:
    """Cut-offs that let every labelled NPC pass: the lowest NPC proportion and the highest NPC size
    ratio (among NPC with at least 50 viral fragments), with margins (half the lowest proportion, a
    quarter above the highest ratio), since the extremes of a training set are themselves noisy."""
    npc = [r for r in results if labels.get(r["sample"], "").lower() in ("npc", "positive", "1", "case")]
    if not npc:
        raise UsageError("the training labels name no NPC sample (label 'npc') among the inputs; cannot learn cut-offs")
    proportions = [r["proportion"]["value"] for r in npc if r["proportion"]["value"]]
    if not proportions:
        raise DataError("no labelled NPC sample has any viral fragment; cannot learn a count cut-off")
    # Only NPC with enough viral fragments have a stable size ratio (about 50, per the size-ratio
    # literature); a few-fragment NPC's ratio is mostly counting noise and would loosen the cut-off.
    ratios = [r["size"]["ratio"] for r in npc if r["size"]["evaluable"] and r["size"]["viral_fragments_with_length"] >= 50]
    defaults = ScreenCutoffs()
    return ScreenCutoffs(proportion=min(proportions) * (1 - proportion_margin),
                         size_ratio=max(ratios) * (1 + size_margin) if ratios else defaults.size_ratio,
                         min_size_fragments=defaults.min_size_fragments,
                         source=f"learnt from {len(npc)} labelled NPC of {len(results)} training samples")


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """A two-column TSV: sample, label (npc / other); a header line is allowed."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: training labels not found; check the path")
    labels = {}
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or (number == 1 and fields[0].lower() == "sample"):
                continue
            if len(fields) < 2:
                raise DataError(f"{path}: line {number} needs two tab-separated columns: sample and label")
            labels[fields[0]] = fields[1]
    return labels


def write_outputs(results: list[dict], output: str | os.PathLike, cutoffs: ScreenCutoffs) -> list[Path]:
    from plasmacount.files import atomic_output, check_unique_samples, sample_file_stem, table_cell, write_json

    check_unique_samples([r["sample"] for r in results])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        written.append(write_json(output / f"{sample_file_stem(result['sample'])}.viral.json", result))
    path = output / "viral.tsv"
    columns = ["sample", "virus", "fragments", "per_million", "proportion", "proportion_low", "proportion_high", "w_repeat",
               "size_ratio", "size_ratio_low", "size_ratio_high", "screen", "reason"]
    with atomic_output(path, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for r in results:
            values = [r["sample"], r["virus"], r["fragments"]["unique"], r["per_million"]["value"], r["proportion"]["value"],
                      r["proportion"]["low"], r["proportion"]["high"], r["fragments"]["w_repeat"], r["size"]["ratio"], r["size"]["low"],
                      r["size"]["high"], r["screen"]["result"], r["screen"]["reason"]]
            stream.write("\t".join(table_cell(v, ".6g") for v in values) + "\n")
    written.append(path)
    write_json(output / "viral_cutoffs.json", cutoffs.to_json())
    return written


def load_cutoffs(path: str | os.PathLike) -> ScreenCutoffs:
    try:
        data = json.loads(Path(path).read_text())
        return ScreenCutoffs(**{k: data[k] for k in ("proportion", "size_ratio", "min_size_fragments", "source") if k in data})
    except FileNotFoundError:
        raise DataError(f"{path}: cut-off file not found; check the path") from None
    except (json.JSONDecodeError, TypeError) as error:
        raise DataError(f"{path}: not a viral cut-off file ({error}); use the viral_cutoffs.json that `viral` writes") from None
