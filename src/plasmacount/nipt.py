"""Prenatal testing of one plasma sample against a panel of normals: the result a lab reports.

For each sample: quality control, fetal sex, fetal fraction (every estimator and their
combination), whole-chromosome aneuploidy calls for every autosome (`aneuploidy`),
sex-chromosome aneuploidies (`sex_chromosomes`), and sub-chromosomal CNVs (segmentation of
the normalised profile, `segment`) with their origin (fetal or maternal, from the size of the
ratio shift against the fetal fraction), the syndrome region they hit, and the smallest event
this sample could have shown. Every negative is qualified by what the sample could see; every
no-call states its reason.

Result schema ("nipt", version 1.0; `docs/nipt-schema.md`): keys are always present, null
when not applicable.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from plasmacount import __version__, aneuploidy, fetal_fraction, sex_chromosomes, tracks
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError
from plasmacount.files import atomic_output, table_cell, write_json
from plasmacount.genome import HG38_LENGTHS, SYNDROME_REGIONS, name_key
from plasmacount.progress import stage
from plasmacount.reference import AUTOSOME_KEYS, Reference, chromosome_keys, ignore_empty_bins
from plasmacount.segment import bin_to_bin_sd, segment
from plasmacount.tracks import Profile

SCHEMA_VERSION = "1.0"
NAMED_TRISOMIES = {"21": "T21", "18": "T18", "13": "T13"}
CNV_Z_THRESHOLD = 5.0
MINIMUM_READS = 500_000
WARN_READS = 3_000_000


@dataclass(frozen=True)
class NiptOptions:
    cnv_z: float = CNV_Z_THRESHOLD
    cnv_min_bins: int = 5
    segment_threshold: float = 5.0


def _chromosome_names(sample: SampleCounts) -> dict[str, str]:
    """Name key -> the chromosome name as the sample's input spells it."""
    return {name_key(c.name): c.name for c in sample.layout.contigs}


def _qc(sample: SampleCounts, profile, scores: dict, dispersion: float) -> dict:
    counted = int(sample.counts.sum())
    chr21 = scores["21"]
    poisson_cv = math.sqrt(aneuploidy.poisson_variance(profile, "21"))
    reasons_fail, reasons_warn = [], []
    if counted < MINIMUM_READS:
        reasons_fail.append(f"only {counted:,} counted reads (minimum {MINIMUM_READS:,})")
    elif counted < WARN_READS:
        reasons_warn.append(f"{counted:,} counted reads (fewer than {WARN_READS:,})")
    residual = profile.gc_curve.residual
    if residual > 0.10:
        reasons_fail.append(f"GC curve residual {residual:.3f}")
    elif residual > 0.03:
        reasons_warn.append(f"GC curve residual {residual:.3f}")
    if np.isfinite(dispersion):
        if dispersion > 3.0:
            reasons_fail.append(f"bin-to-bin variance {dispersion:.2f}x counting noise")
        elif dispersion > 1.6:
            reasons_warn.append(f"bin-to-bin variance {dispersion:.2f}x counting noise")
    excess = chr21["sd"] / poisson_cv if poisson_cv > 0 else float("nan")
    if np.isfinite(excess) and excess > 2.5:
        reasons_fail.append(f"chr21 CV {100 * chr21['sd']:.3f} % is {excess:.1f}x its counting limit")
    elif np.isfinite(excess) and excess > 1.5:
        reasons_warn.append(f"chr21 CV {100 * chr21['sd']:.3f} % is {excess:.1f}x its counting limit")
    status = "fail" if reasons_fail else "warn" if reasons_warn else "pass"
    return {"status": status, "reasons": reasons_fail + reasons_warn, "counted_reads": counted, "gc_residual": residual,
            "bin_variance_ratio": dispersion, "chr21_cv": chr21["sd"], "chr21_poisson_cv": poisson_cv}


def _failed_result(sample_name: str, reason: str, source: dict | None = None) -> dict:
    """A result with every call a no-call (reference mismatch, unreadable sample)."""
    return {
        "schema_version": SCHEMA_VERSION, "plasmacount_version": __version__, "sample": sample_name, "source": source,
        "reference": None,
        "qc": {"status": "fail", "reasons": [reason], "counted_reads": None, "gc_residual": None, "bin_variance_ratio": None,
               "chr21_cv": None, "chr21_poisson_cv": None},
        "fetal_sex": "inconclusive", "fetal_sex_detail": {"chrY_z": None, "chrY_dose": None},
        "fetal_fraction": {"estimate": None, "low": None, "high": None, "methods": {}, "note": None},
        "chromosomes": {},
        "calls": [{"event": event, "result": "no-call", "score": None, "z": None, "log_likelihood_ratio": None,
                   "minimum_fetal_fraction": None, "reason": reason}
                  for event in ["T21", "T18", "T13"] + [f"T{k}" for k in AUTOSOME_KEYS if k not in NAMED_TRISOMIES]
                  + ["45,X", "47,XXX", "47,XXY", "47,XYY"]],
        "sex_chromosomes": None, "cnvs": [], "detection_limit": None, "fragment_sizes": None, "profile": None,
    }


def _scale(reference: Reference) -> float:
    """Coordinate scale of the reference genome against hg38 (1 for real genomes)."""
    try:
        chr1 = reference.layout.contig("chr1")
    except KeyError:
        return 1.0
    if reference.layout.build != "unknown":
        return 1.0
    return chr1.length / HG38_LENGTHS["chr1"]


@ignore_empty_bins
def analyse_sample(sample: SampleCounts, reference: Reference, options: NiptOptions = NiptOptions(), where: str | None = None) -> dict:
    """The full prenatal result of one sample (see the module docstring)."""
    try:
        reference.check_sample(sample, where or sample.sample)
    except DataError as error:
        return _failed_result(sample.sample, f"reference mismatch: {error}", sample.source)
    counts = reference.align(sample).astype(float)
    model = reference.model
    keys = chromosome_keys(reference.layout)
    profile = model.normalise(counts)
    names = _chromosome_names(sample)
    dispersion = aneuploidy.noise_dispersion(profile, profile.autosomal)
    sums = aneuploidy.gc_corrected_sums(counts[None, :], profile.gc_curve.factors[None, :], model.mask, keys)[0]
    scores = aneuploidy.score_chromosomes(profile, sums, reference)
    qc = _qc(sample, profile, scores, dispersion)
    qc_failed = qc["status"] == "fail"

    # Fetal sex and the chrY dose.
    sex_model = reference.metadata["sex_model"]
    clean = np.zeros(reference.layout.n_bins, dtype=bool)
    clean[sex_model["clean_bins"]] = True
    dose = sex_chromosomes.y_dose(profile.coverage, clean)
    calibration = reference.metadata["fetal_fraction"]["y_calibration"]
    y_fraction = calibration * 2 * (dose - sex_model["female_dose_median"])
    sex = sex_chromosomes.fetal_sex(dose, sex_model, counts.sum(), y_fraction)
    clean_reads = counts[clean].sum()
    scale = math.sqrt(max(sex_model["median_reads"] / max(counts.sum(), 1.0), 1.0))
    counting_sd = calibration * 2 * math.sqrt((sex_model["female_dose_sd"] * scale) ** 2 + (dose**2 / clean_reads if clean_reads > 0 else 0.0))
    # The calibration of chrY against chrX is itself known to about 5 %.
    y_sd = math.hypot(counting_sd, 0.05 * max(y_fraction, 0.0))

    # Fetal fraction.
    x_ratio = scores["X"]["ratio"]
    x_sd = scores["X"]["sd"]
    ff = fetal_fraction.estimate(sample, profile, reference, y_fraction, y_sd, sex["sex"], x_ratio, x_sd)
    combined = ff["combined"]
    independent = ff["sex_independent"]
    ff_note = None
    if combined and independent and "chrY" in ff["methods"]:
        y_estimate = ff["methods"]["chrY"]
        gap = abs(y_estimate["estimate"] - independent[0])
        if gap > 4 * math.hypot(y_estimate["sd"], independent[1]):
            # More (or less) chrY than the fetal fraction explains: 47,XYY, a vanishing twin, a male
            # donor organ... The chrY estimate is then not a fetal fraction.
            combined = fetal_fraction.interval(independent[0], independent[1])
            ff_note = "chrY dose disagrees with the sex-independent estimate; chrY left out"
    ff_value = combined["estimate"] if combined else None
    ff_low = combined["low"] if combined else None

    # Autosomal trisomies.
    calls = []
    for key in ["21", "18", "13"] + [k for k in AUTOSOME_KEYS if k not in NAMED_TRISOMIES]:
        decision = aneuploidy.call_trisomy(scores[key], ff_value, ff_low, qc_failed)
        calls.append({"event": NAMED_TRISOMIES.get(key, f"T{key}"), "result": decision["result"], "score": decision["log_likelihood_ratio"],
                      "z": decision["z"], "log_likelihood_ratio": decision["log_likelihood_ratio"],
                      "minimum_fetal_fraction": decision["minimum_fetal_fraction"], "reason": decision["reason"]})

    # Sex-chromosome aneuploidies.
    x_change = x_ratio / reference.metadata["chromosomes"]["X"]["mean"] - 1
    if independent is not None:
        sca_ff, sca_sd = independent
    elif combined is not None:
        sca_ff, sca_sd = combined["estimate"], combined["sd"]
    else:
        sca_ff, sca_sd = None, None
    classification = sex_chromosomes.classify(x_change, x_sd, y_fraction, y_sd, sca_ff, sca_sd)
    calls.extend(_sca_calls(classification, qc_failed, sex["sex"]))

    cnvs, limit = _cnvs(profile, reference, keys, names, counts.sum(), ff_value, sex["sex"], options)
    chromosomes = {names.get(key, key): {"ratio": s["ratio"], "z": s["z"], "ncv_z": s["ncv_z"], "regression_z": s["regression_z"], "sd": s["sd"]}
                   for key, s in scores.items()}
    detection = {"minimum_fetal_fraction_T21": aneuploidy.minimum_fetal_fraction(scores["21"]["sd"]),
                 "minimum_fetal_fraction_T18": aneuploidy.minimum_fetal_fraction(scores["18"]["sd"]),
                 "minimum_fetal_fraction_T13": aneuploidy.minimum_fetal_fraction(scores["13"]["sd"]),
                 "smallest_fetal_cnv_bp": limit}
    return {
        "schema_version": SCHEMA_VERSION, "plasmacount_version": __version__, "sample": sample.sample, "source": sample.source,
        "reference": {"samples": len(reference.samples), "qc_status": reference.metadata.get("qc", {}).get("status"),
                      "bin_size": reference.bin_size, "build": reference.layout.build},
        "qc": qc,
        "fetal_sex": sex["sex"],
        "fetal_sex_detail": {"chrY_z": sex["z"], "chrY_dose": dose},
        "fetal_fraction": {"estimate": ff_value, "low": ff_low, "high": combined["high"] if combined else None, "methods": ff["methods"],
                           "note": ff_note},
        "chromosomes": chromosomes,
        "calls": calls,
        "sex_chromosomes": {"x_ratio": x_ratio, "x_change": x_change, "x_sd": x_sd, "y_fetal_fraction": y_fraction, "y_sd": y_sd,
                            "posteriors": classification["posteriors"], "best_karyotype": classification["best"]},
        "cnvs": cnvs,
        "detection_limit": detection,
        "fragment_sizes": _size_summary(sample),
        "profile": Profile.from_layout(reference.layout, profile.log_ratio / math.log(2)),
    }


def _size_summary(sample: SampleCounts) -> dict | None:
    """The genome-wide fragment-size histogram up to 600 bp (paired-end only), for the report."""
    if not sample.paired or sample.fragment_lengths is None or sample.fragment_lengths.sum() == 0:
        return None
    histogram = sample.fragment_lengths
    return {"histogram_0_600": histogram[:601].astype(int).tolist(), "total": int(histogram.sum()),
            "mode": int(np.argmax(histogram[:-1])), "share_below_150": float(histogram[:150].sum() / histogram.sum())}


def _sca_calls(classification: dict, qc_failed: bool, sex: str) -> list[dict]:
    events = ["45,X", "47,XXX", "47,XXY", "47,XYY"]
    posteriors = classification["posteriors"]
    calls = []
    for event in events:
        base = {"event": event, "score": None, "z": None, "log_likelihood_ratio": None, "minimum_fetal_fraction": None, "reason": None}
        if qc_failed:
            calls.append({**base, "result": "no-call", "reason": "sample QC failed"})
            continue
        if posteriors is None:
            calls.append({**base, "result": "no-call", "reason": "no sex-independent fetal fraction"})
            continue
        probability = posteriors[event]
        base["score"] = probability
        if classification["fit"] is not None and classification["fit"] > 25:
            calls.append({**base, "result": "no-call",
                          "reason": "X/Y dosage not explained by any fetal karyotype (maternal sex-chromosome mosaicism or CNV?)"})
        elif probability >= 0.99:
            calls.append({**base, "result": "positive"})
        elif probability <= 0.01:
            calls.append({**base, "result": "negative"})
        else:
            calls.append({**base, "result": "no-call", "reason": f"posterior probability {probability:.2f}: X/Y dosage ambiguous at this fetal fraction"})
    return calls


def _cnvs(profile, reference: Reference, keys: np.ndarray, names: dict, reads: float, ff: float | None, sex: str,
          options: NiptOptions) -> tuple[list[dict], float | None]:
    """Segment each chromosome and call CNVs with origin, syndrome and z against the panel."""
    bin_sd = reference.panel["bin_sd"]
    panel_reads = float(np.median(reference.metadata["reads"]))
    depth_scale = panel_reads / max(reads, 1.0)
    residuals = reference.panel["residuals"]
    female_panel = np.array([s == "female" for s in reference.metadata["panel_sexes"]])
    log2 = profile.log_ratio / math.log(2)
    index, start, end = reference.layout.bin_table()
    scale = _scale(reference)
    calls = []
    variances = []
    chromosomes = AUTOSOME_KEYS + (["X"] if sex == "female" else [])
    for key in chromosomes:
        bins = np.flatnonzero((keys == key) & np.isfinite(log2) & np.isfinite(bin_sd) & (bin_sd > 0))
        if bins.size < 2 * options.cnv_min_bins:
            continue
        variance = (bin_sd[bins] / math.log(2)) ** 2 * depth_scale
        variances.append(np.median(variance))
        weights = 1 / variance
        values = log2[bins] - np.average(log2[bins], weights=weights)  # whole-chromosome changes belong to aneuploidy
        for first, last in segment(values, weights, options.segment_threshold, options.cnv_min_bins):
            if last - first < options.cnv_min_bins or (last - first) > 0.8 * bins.size:
                continue
            chosen = bins[first:last]
            w = weights[first:last]
            mean = float(np.average(log2[chosen], weights=w))
            panel_block = residuals[:, chosen]
            if key == "X":
                panel_block = panel_block[female_panel]
            panel_means = np.nanmean(panel_block.astype(float), axis=1) / math.log(2)
            null_sd = float(np.nanstd(panel_means)) * math.sqrt(depth_scale) if panel_means.size > 2 else float("nan")
            analytic_sd = 1 / math.sqrt(w.sum())
            sd = max(null_sd, analytic_sd) if np.isfinite(null_sd) else analytic_sd
            z = (mean - float(np.nanmean(panel_means))) / sd
            if abs(z) < required_z(options.cnv_z, chosen.size):
                continue
            ratio = 2**mean
            # A shift far below what a heterozygous fetal event gives is noise or low-level mosaicism.
            if ff and abs(ratio - 1) < 0.5 * ff / 2:
                continue
            origin, origin_detail = _origin(ratio - 1, sd * math.log(2) * ratio, ff)
            chrom_start, chrom_end = int(start[chosen[0]]), int(end[chosen[-1]])
            contig = reference.layout.contigs[int(index[chosen[0]])].name
            calls.append({"chrom": names.get(key, contig), "start": chrom_start, "end": chrom_end, "size": chrom_end - chrom_start,
                          "bins": int(chosen.size), "type": "deletion" if ratio < 1 else "duplication", "copy_ratio": ratio,
                          "log2_ratio": mean, "z": z, "origin": origin, "origin_log_likelihood": origin_detail,
                          "syndrome": _syndrome(key, chrom_start, chrom_end, scale)})
    limit = None
    if ff and variances:
        typical = float(np.median(variances))
        shift = abs(math.log2(1 - ff / 2))
        n_bins = (options.cnv_z * math.sqrt(typical) / shift) ** 2
        limit = float(max(n_bins, options.cnv_min_bins) * reference.bin_size)
    return calls, limit


def required_z(base: float, n_bins: int) -> float:
    """The |z| a segment needs: stricter for short segments, of which far more are tested."""
    return max(base, base + 2.0 - 0.5 * math.log2(max(n_bins, 1) / 5))


def _origin(change: float, sd: float, ff: float | None) -> tuple[str, dict | None]:
    """fetal (shift ~FF/2), maternal (shift ~1/2) or uncertain, by likelihood."""
    if ff is None or not np.isfinite(change):
        return "uncertain", None
    sign = 1 if change > 0 else -1
    hypotheses = {"fetal": sign * ff / 2, "maternal": sign * 0.5, "maternal_only": sign * (1 - ff) / 2}
    sd_total = math.sqrt(sd**2 + (0.15 * ff / 2) ** 2)  # allow for fetal-fraction error
    log_like = {k: -0.5 * ((change - v) / sd_total) ** 2 for k, v in hypotheses.items()}
    maternal = max(log_like["maternal"], log_like["maternal_only"])
    fetal = log_like["fetal"]
    detail = {"fetal": fetal, "maternal": maternal}
    if fetal - maternal > math.log(100) and abs(change - hypotheses["fetal"]) < 4 * sd_total:
        return "fetal", detail
    if maternal - fetal > math.log(100):
        return "maternal", detail
    return "uncertain", detail


def _syndrome(key: str, start: int, end: int, scale: float) -> str | None:
    for name, (chrom, first, last) in SYNDROME_REGIONS.items():
        if name_key(chrom) != key:
            continue
        first, last = int(first * scale), int(last * scale)
        overlap = min(end, last) - max(start, first)
        if overlap > 0.5 * (last - first):
            return name
    return None


# ----------------------------------------------------------------------------- outputs

def write_results(results: Sequence[dict], output: str | os.PathLike) -> list[Path]:
    """Per sample JSON, CNV BED and VCF; one batch TSV. Returns the paths written."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        sample = result["sample"]
        profile = result.get("profile")
        files = {"cnv_bed": f"{sample}.cnv.bed", "cnv_vcf": f"{sample}.cnv.vcf.gz"}
        if profile is not None:
            track_files, track_paths = tracks.write_profile_tracks(output, sample, "nipt", profile,
                                                                   "plasmacount nipt: log2 ratio to the reference panel")
            files.update(track_files, segments_seg=f"{sample}.nipt.seg")
            written += track_paths
            written.append(tracks.write_seg(output / files["segments_seg"], _profile_segments(sample, profile)))
        stored = {key: value for key, value in result.items() if key != "profile"}
        stored["files"] = files
        written.append(write_json(output / f"{sample}.nipt.json", stored))
        written.append(_write_bed(output / files["cnv_bed"], [result]))
        vcf = _write_vcf(output / f"{sample}.cnv.vcf", result)
        written.append(vcf)
        written.append(tracks.compress_and_index_vcf(vcf))
    written.append(_write_bed(output / "nipt.cnv.bed", results))
    tsv = output / "nipt.tsv"
    columns = ["sample", "qc_status", "fetal_sex", "fetal_fraction", "fetal_fraction_low", "fetal_fraction_high", "z_13", "z_18", "z_21",
               "z_X", "positive", "no_call", "cnvs", "qc_reasons"]
    with atomic_output(tsv, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for r in results:
            chromosome = lambda key: next((v["z"] for name, v in r["chromosomes"].items() if name_key(name) == key), None)  # noqa: E731
            ff = r["fetal_fraction"]
            row = [r["sample"], r["qc"]["status"], r["fetal_sex"], table_cell(ff["estimate"]), table_cell(ff["low"]), table_cell(ff["high"]),
                   table_cell(chromosome("13")), table_cell(chromosome("18")), table_cell(chromosome("21")), table_cell(chromosome("X")),
                   ",".join(c["event"] for c in r["calls"] if c["result"] == "positive") or "-",
                   ",".join(c["event"] for c in r["calls"] if c["result"] == "no-call") or "-",
                   ",".join(f"{c['type'][:3]}:{c['chrom']}:{c['start']}-{c['end']}:{c['origin']}" for c in r["cnvs"]) or "-",
                   "; ".join(r["qc"]["reasons"]) or "-"]
            stream.write("\t".join(row) + "\n")
    written.append(tsv)
    return written


SEG_THRESHOLD = 6.0  # |z| of a change point in the SEG track: a display track, so stricter than CNV calling's own test
SEG_MIN_BINS = 5


def _profile_segments(sample: str, profile: "Profile") -> list[tuple[str, str, int, int, int, float]]:
    """Each chromosome segmented (CBS on the log2 profile), for IGV's SEG track."""
    rows = []
    finite = profile.finite()
    names = np.array(finite.chrom)
    for chrom in dict.fromkeys(finite.chrom):
        bins = np.flatnonzero(names == chrom)
        if bins.size == 0:
            continue
        values = finite.value[bins]
        spread = bin_to_bin_sd(values) if bins.size > 2 else 0.0
        if bins.size >= 2 * SEG_MIN_BINS and spread > 0:
            pieces = segment(values - np.median(values), np.full(values.size, spread**-2), SEG_THRESHOLD, SEG_MIN_BINS)
        else:
            pieces = [(0, bins.size)]
        for first, last in pieces:
            chosen = bins[first:last]
            rows.append((sample, chrom, int(finite.start[chosen[0]]), int(finite.end[chosen[-1]]), int(chosen.size), float(np.mean(finite.value[chosen]))))
    return rows


def _write_bed(path: Path, results: Sequence[dict]) -> Path:
    with atomic_output(path, "w") as stream:
        stream.write("#chrom\tstart\tend\tname\tscore\tstrand\tsample\ttype\torigin\tcopy_ratio\tz\tsyndrome\n")
        for r in results:
            for c in r["cnvs"]:
                name = f"{c['type']}_{c['origin']}"
                stream.write(f"{c['chrom']}\t{c['start']}\t{c['end']}\t{name}\t{min(1000, int(abs(c['z']) * 10))}\t.\t{r['sample']}\t"
                             f"{c['type']}\t{c['origin']}\t{c['copy_ratio']:.4f}\t{c['z']:.2f}\t{c['syndrome'] or '.'}\n")
    return path


def _write_vcf(path: Path, result: dict) -> Path:
    """CNVs as symbolic structural variants (VCF 4.2)."""
    contigs = sorted({c["chrom"] for c in result["cnvs"]})
    with atomic_output(path, "w") as stream:
        stream.write("##fileformat=VCFv4.2\n")
        stream.write(f"##source=plasmacount {__version__}\n")
        for contig in contigs:
            stream.write(f"##contig=<ID={contig}>\n")
        stream.write('##ALT=<ID=DEL,Description="Deletion">\n##ALT=<ID=DUP,Description="Duplication">\n')
        stream.write('##INFO=<ID=SVTYPE,Number=1,Type=String,Description="Type of structural variant">\n')
        stream.write('##INFO=<ID=END,Number=1,Type=Integer,Description="End position of the variant">\n')
        stream.write('##INFO=<ID=SVLEN,Number=1,Type=Integer,Description="Difference in length between REF and ALT alleles">\n')
        stream.write('##INFO=<ID=IMPRECISE,Number=0,Type=Flag,Description="Imprecise structural variation">\n')
        stream.write('##INFO=<ID=ORIGIN,Number=1,Type=String,Description="fetal, maternal or uncertain">\n')
        stream.write('##INFO=<ID=RATIO,Number=1,Type=Float,Description="Copy ratio against the panel of normals">\n')
        stream.write('##INFO=<ID=ZSCORE,Number=1,Type=Float,Description="Segment z-score against the panel of normals">\n')
        stream.write('##INFO=<ID=SYNDROME,Number=1,Type=String,Description="Microdeletion/duplication syndrome region hit">\n')
        stream.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for i, c in enumerate(sorted(result["cnvs"], key=lambda c: (contigs.index(c["chrom"]), c["start"]))):
            kind = "DEL" if c["type"] == "deletion" else "DUP"
            length = c["end"] - c["start"]
            info = (f"SVTYPE={kind};END={c['end']};SVLEN={-length if kind == 'DEL' else length};IMPRECISE;ORIGIN={c['origin']};"
                    f"RATIO={c['copy_ratio']:.4f};ZSCORE={c['z']:.2f}")
            if c["syndrome"]:
                info += ";SYNDROME=" + c["syndrome"].replace(" ", "_").replace(";", "_").replace(",", "_")
            stream.write(f"{c['chrom']}\t{max(1, c['start'])}\tcnv{i + 1}\tN\t<{kind}>\t.\tPASS\t{info}\n")
    return path


def run_batch(paths: Sequence[str | os.PathLike], reference: Reference, output: str | os.PathLike, options: NiptOptions = NiptOptions(),
              progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Analyse every counts file (bad ones become failed results) and write the outputs."""
    from plasmacount.counts import load_counts

    results = []
    seen = set()
    for i, path in enumerate(paths):
        sample = load_counts(path)
        if sample.sample in seen:
            raise DataError(f"{path}: sample name {sample.sample!r} appears twice in this batch; rename one with `count --sample`")
        seen.add(sample.sample)
        with stage("nipt: analysing samples"):
            results.append(analyse_sample(sample, reference, options, where=str(path)))
        if progress:
            progress(i + 1, len(paths))
    with stage("nipt: writing outputs"):
        write_results(results, output)
    return results
