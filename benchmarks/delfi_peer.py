"""DELFI short/long profiles beside FinaleToolkit: the same inputs, numbers compared bin by bin, times.

Three parts, each naming its data:
A. REAL tables from FinaleToolkit's repository (tests/data/delfi): 2,188 hg19 100 kb bins of a
   plasma sample with DELFI's raw and GC-corrected short/long counts and ratios, and the 5 Mb
   windows DELFI's own scripts made from them. plasmacount's GC correction runs on the raw
   columns, its window merge on the corrected ones; FinaleToolkit's own correction and merge run
   on the same table beside it.
B. The REAL paired-end CRAM (../shared/data/finaletoolkit/hg19.chr1.6Mb.cram, chr1:0-6 Mb): short
   (100-150 bp) and long (151-220 bp) fragments per 100 kb bin, FinaleToolkit's `delfi` (no GC
   correction, no merge) against `plasmacount count --convention finaletoolkit` (fragments by
   midpoint, read 1's MAPQ >= 30, proper pairs). An independent pysam count splits each bin's
   fragments by whether read 1 overlaps the bin, which is what FinaleToolkit's fetch needs.
C. The OWN SIMULATOR's 4 M-fragment paired-end BAM (`command_speed.py`) with its synthetic genome:
   the same per-bin comparison on every autosome, and the times of FinaleToolkit's whole `delfi`
   (GC correction and merge; 1 and 2 workers) against `plasmacount fragments --bins`.

    python benchmarks/delfi_peer.py [--runs 3] [--finaletoolkit-repo DIR] [--write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from finaletoolkit_peer import DATA, PLASMACOUNT, VERSION, bench_bam, finaletoolkit, timed  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data" / "finaletoolkit"
REPOSITORY = "https://github.com/epifluidlab/FinaleToolkit"
COMMIT = "3ca99fd"  # the commit ../shared/data/finaletoolkit was taken from
TABLES = "tests/data/delfi"

# FinaleToolkit's own correction and merge on a table, run by its environment's Python.
PEER_TABLE_SCRIPT = """
import sys, pandas
from finaletoolkit.frag._delfi_gc_correct import delfi_gc_correct
from finaletoolkit.frag._delfi_merge_bins import delfi_merge_bins
bins = pandas.read_csv(sys.argv[1], dtype={"contig": str})
corrected = delfi_gc_correct(bins[["contig", "start", "stop", "arm", "short", "long", "gc", "num_frags", "ratio"]], 0.75, 8)
corrected.to_csv(sys.argv[2], index=False)
delfi_merge_bins(bins).to_csv(sys.argv[3], index=False)
delfi_merge_bins(corrected).to_csv(sys.argv[4], index=False)
"""


def repository(path: str | None) -> Path:
    """A git directory of FinaleToolkit (cloned once under benchmarks/data unless given)."""
    if path:
        return Path(path)
    target = DATA / "FinaleToolkit"
    if not target.exists():
        subprocess.run(["git", "clone", "--quiet", REPOSITORY, str(target)], check=True)
    return target


def repository_file(repo: Path, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "show", f"{COMMIT}:{path}"], check=True, capture_output=True).stdout


def read_table(text: str) -> dict[str, np.ndarray]:
    lines = [line.split(",") for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    table = {}
    for i, name in enumerate(header):
        column = [row[i] for row in rows]
        table[name] = np.array(column, dtype=object) if name in ("contig", "arm") else np.array(column, dtype=float)
    return table


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.nanmax(np.abs(a - b) / np.abs(b)))


def _scaled(a: np.ndarray, b: np.ndarray) -> str:
    """Median and largest difference, as shares of the median of b."""
    scale = np.nanmedian(np.abs(b))
    return f"{np.nanmedian(np.abs(a - b)) / scale:.2%} / {np.nanmax(np.abs(a - b)) / scale:.2%}"


def tables_part(repo: Path, peer_python: Path, scratch: Path) -> list[str]:
    from plasmacount import delfi

    hundred = repository_file(repo, f"{TABLES}/test_delfi_100kb.csv")
    five = read_table(repository_file(repo, f"{TABLES}/test_delfi_5mb.csv").decode())
    table = read_table(hundred.decode())
    (scratch / "100kb.csv").write_bytes(hundred)
    subprocess.run(
        [
            str(peer_python),
            "-c",
            PEER_TABLE_SCRIPT,
            str(scratch / "100kb.csv"),
            str(scratch / "peer_corrected.csv"),
            str(scratch / "peer_merged.csv"),
            str(scratch / "peer_own_merged.csv"),
        ],
        check=True,
        capture_output=True,
    )
    peer_corrected = read_table((scratch / "peer_corrected.csv").read_text())
    peer_merged = read_table((scratch / "peer_merged.csv").read_text())
    gc = table["gc"]
    rows = []
    for column in ("short", "long", "ratio"):
        ours, theirs, published = (
            delfi.gc_correct(table[column], gc),
            peer_corrected[f"{column}_corrected"],
            table[f"{column}_corrected"],
        )
        rows.append(
            f"| {column} | {_scaled(ours, published)} | {np.corrcoef(ours, published)[0, 1]:.4f} | {_scaled(theirs, published)} | "
            f"{np.corrcoef(theirs, published)[0, 1]:.4f} | {_scaled(ours, theirs)} | {np.corrcoef(ours, theirs)[0, 1]:.4f} | "
            f"{np.median(table[column]):.4g} / {np.median(published):.4g} |"
        )
    bins = {
        "chrom": table["contig"],
        "start": table["start"].astype(int),
        "end": table["stop"].astype(int),
        "arm": table["arm"],
        "short_corrected": table["short_corrected"],
        "long_corrected": table["long_corrected"],
        "ratio_corrected": table["ratio_corrected"],
    }
    merged = delfi.merge_windows(bins, "mean")
    same_windows = [(w["start"], w["end"]) for w in merged] == list(
        zip(five["start"].astype(int), five["stop"].astype(int))
    )
    ours_ratio = np.array([w["ratio"] for w in merged])
    ours_short = np.array([w["short"] for w in merged])
    ours_long = np.array([w["long"] for w in merged])
    peer_ratio = peer_merged["ratio_corrected"]
    summed = delfi.merge_windows(bins, "sum")
    sum_ratio = np.array([w["ratio"] for w in summed])
    # The whole chain from the raw columns: plasmacount's correction, then its merge.
    chain = dict(
        bins,
        short_corrected=delfi.gc_correct(table["short"], gc),
        long_corrected=delfi.gc_correct(table["long"], gc),
        ratio_corrected=delfi.gc_correct(table["ratio"], gc),
    )
    chain_ratio = np.array([w["ratio"] for w in delfi.merge_windows(chain, "mean")])
    lines = [
        "### A. REAL tables: FinaleToolkit's DELFI test data (hg19, one plasma sample, DELFI's own scripts' output)",
        "",
        f"{table['start'].size:,} 100 kb bins (chr1-22 arms after DELFI's filters) with raw and corrected columns; "
        f"{five['start'].size} 5 Mb windows made from them by DELFI's scripts.",
        "",
        "GC correction of the raw bins (median / largest difference, as shares of the median of the second; r: Pearson):",
        "",
        "| column | plasmacount against DELFI's | r | FinaleToolkit against DELFI's | r | plasmacount against FinaleToolkit | r | "
        "median raw / DELFI corrected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += rows
    lines += [
        "",
        "DELFI's stored corrections cannot be reproduced from this table by either tool: DELFI subtracts its loess curve and adds the median of the bins it fitted, and that median (last column) is not the median of these bins, so its curve was fitted on bins this table leaves out. The merge, given the same corrected bins, is exact.",
        "",
        "| 5 Mb windows from the corrected bins | windows | same start and end as DELFI's | short, long sums: largest relative difference | "
        "ratio: largest relative difference | r |",
        "|---|---|---|---|---|---|",
        f"| plasmacount `merge_windows` (mean of the bins' corrected ratios) | {len(merged)} | {'all' if same_windows else 'NO'} | "
        f"{max(_relative(ours_short, five['short_corrected']), _relative(ours_long, five['long_corrected'])):.1e} | "
        f"{_relative(ours_ratio, five['ratio_corrected']):.1e} | {np.corrcoef(ours_ratio, five['ratio_corrected'])[0, 1]:.6f} |",
        f"| FinaleToolkit `delfi_merge_bins` | {peer_ratio.size} | "
        f"{'all' if np.array_equal(peer_merged['start'], five['start']) and np.array_equal(peer_merged['stop'], five['stop']) else 'NO'} | "
        f"{max(_relative(peer_merged['short_corrected'], five['short_corrected']), _relative(peer_merged['long_corrected'], five['long_corrected'])):.1e} | "
        f"{_relative(peer_ratio, five['ratio_corrected']):.1e} | {np.corrcoef(peer_ratio, five['ratio_corrected'])[0, 1]:.6f} |",
        f"| plasmacount against FinaleToolkit's merge | {len(merged)} | "
        f"{'all' if [w['start'] for w in merged] == list(peer_merged['start'].astype(int)) else 'NO'} | "
        f"{max(_relative(ours_short, peer_merged['short_corrected']), _relative(ours_long, peer_merged['long_corrected'])):.1e} | "
        f"{_relative(ours_ratio, peer_ratio):.1e} | - |",
        f"| plasmacount, window ratio as corrected sums (`--delfi-window-ratio sum`) | {len(summed)} | "
        f"{'all' if [(w['start'], w['end']) for w in summed] == [(w['start'], w['end']) for w in merged] else 'NO'} | - | "
        f"{_relative(sum_ratio, five['ratio_corrected']):.1e} | {np.corrcoef(sum_ratio, five['ratio_corrected'])[0, 1]:.6f} |",
        f"| plasmacount, correction and merge from the raw columns | {chain_ratio.size} | - | - | "
        f"{_relative(chain_ratio, five['ratio_corrected']):.1e} | {np.corrcoef(chain_ratio, five['ratio_corrected'])[0, 1]:.6f} |",
    ]
    lines += loess_1d_lines(table, peer_corrected, read_table((scratch / "peer_own_merged.csv").read_text()))
    return lines


def loess_1d_lines(table: dict, peer_corrected: dict, peer_own_merged: dict) -> list[str]:
    """plasmacount's `--delfi-gc-smoother loess_1d` (the user-installed `loess` package) against
    FinaleToolkit's correction and its merge of its own corrected bins."""
    import importlib.util

    from plasmacount import delfi

    if importlib.util.find_spec("loess") is None:
        return ["", "(`--delfi-gc-smoother loess_1d` not measured: the `loess` package is not installed here.)"]
    gc = table["gc"]
    fitted = np.isfinite(table["ratio"]) & np.isfinite(table["short"]) & np.isfinite(table["long"]) & np.isfinite(gc)
    corrected = {column: delfi.gc_correct_loess_1d(table[column], gc, fitted) for column in ("short", "long", "ratio")}
    differences = {
        column: float(np.max(np.abs(corrected[column] - peer_corrected[f"{column}_corrected"]))) for column in corrected
    }
    bins = {
        "chrom": table["contig"],
        "start": table["start"].astype(int),
        "end": table["stop"].astype(int),
        "arm": table["arm"],
        **{f"{column}_corrected": values for column, values in corrected.items()},
    }
    merged = np.array([w["ratio"] for w in delfi.merge_windows(bins, "mean")])
    return [
        "",
        "With `--delfi-gc-smoother loess_1d` (FinaleToolkit's smoother, Cappellari's `loess` package installed by the user; "
        "its licence allows non-commercial use only, so plasmacount never requires it), on the same raw columns:",
        "",
        "| | short | long | ratio | 5 Mb windows (mean of the corrected bin ratios) |",
        "|---|---|---|---|---|",
        f"| largest absolute difference to FinaleToolkit's `delfi_gc_correct` / its merge of its own corrected bins | "
        f"{differences['short']:.1e} | {differences['long']:.1e} | {differences['ratio']:.1e} | "
        f"{float(np.max(np.abs(merged - peer_own_merged['ratio_corrected']))):.1e} ({merged.size} windows) |",
    ]


def _peer_bins(path: Path) -> dict[tuple[str, int], tuple[int, int]]:
    """(contig, start) -> (short, long) from FinaleToolkit's delfi TSV."""
    lines = path.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    result = {}
    for line in lines[1:]:
        cells = dict(zip(header, line.split("\t")))
        if cells["short"] not in ("", "nan"):
            result[(cells["contig"], int(cells["start"]))] = (int(float(cells["short"])), int(float(cells["long"])))
    return result


def _our_bins(counts_path: Path) -> dict[tuple[str, int], tuple[int, int]]:
    from plasmacount.counts import SampleCounts

    counts = SampleCounts.load(counts_path)
    index, start, _ = counts.layout.bin_table()
    names = np.array(counts.layout.names, dtype=object)[index]
    return {(names[i], int(start[i])): (int(counts.short[i]), int(counts.long[i])) for i in range(start.size)}


def edge_split(alignment_path: Path, bin_size: int = 100_000) -> dict[tuple[str, int], list[int]]:
    """Independent pysam count: per bin of the fragment midpoint, [short, long, of which read 1 does
    not overlap the bin] for proper pairs with read 1 at MAPQ >= 30 and length 100-220."""
    import pysam

    result: dict[tuple[str, int], list[int]] = {}
    with pysam.AlignmentFile(str(alignment_path)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if (
                not read.is_read1
                or not read.is_proper_pair
                or read.is_secondary
                or read.is_supplementary
                or read.is_unmapped
                or read.mapping_quality < 30
                or read.is_duplicate
                or read.is_qcfail
            ):
                continue
            length = abs(read.template_length)
            if not 100 <= length <= 220:
                continue
            # read 1 is the fragment's left end when its template length is positive, else its right end
            start = read.reference_start if read.template_length > 0 else read.reference_end - length
            middle = (start + start + length) // 2
            low = middle // bin_size * bin_size
            cell = result.setdefault((read.reference_name, low), [0, 0, 0])
            cell[0 if length <= 150 else 1] += 1
            if read.reference_end <= low or read.reference_start >= low + bin_size:
                cell[2] += 1
    return result


def _compare(peer: dict, ours: dict, split: dict | None) -> dict:
    keys = sorted(peer)
    differ = [k for k in keys if peer[k] != ours.get(k, (0, 0))]
    result = {
        "bins": len(keys),
        "differ": len(differ),
        "ours": sum(sum(ours.get(k, (0, 0))) for k in keys),
        "peer": sum(sum(peer[k]) for k in keys),
    }
    if split is not None:
        # Every difference is a fragment whose read 1 lies outside its midpoint's bin.
        result["explained"] = sum(
            1 for k in keys if sum(ours.get(k, (0, 0))) - sum(peer[k]) == split.get(k, [0, 0, 0])[2]
        )
        result["independent_equal"] = sum(1 for k in keys if tuple(split.get(k, [0, 0, 0])[:2]) == ours.get(k, (0, 0)))
    return result


def _count_table(result: dict) -> list[str]:
    return [
        "| bins | fragments 100-220 bp, plasmacount | FinaleToolkit | bins that differ | differences explained by read 1 outside the bin | "
        "plasmacount equal to an independent pysam count |",
        "|---|---|---|---|---|---|",
        f"| {result['bins']} | {result['ours']:,} | {result['peer']:,} | {result['differ']} | {result['explained']} of {result['bins']} bins | "
        f"{result['independent_equal']} of {result['bins']} bins |",
    ]


def _chr1_bam(cram: Path, target: Path) -> None:
    """The CRAM's chr1 pairs as an indexed BAM whose header holds only chr1 at the 2bit genome's length:
    FinaleToolkit refuses an input with contigs its reference lacks, and the CRAM has no index."""
    import pysam

    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": 9_999_999}]}
    with pysam.AlignmentFile(str(cram)) as source, pysam.AlignmentFile(str(target), "wb", header=header) as out:
        for read in source.fetch(until_eof=True):
            if read.reference_name == "chr1" and (read.mate_is_unmapped or read.next_reference_name == "chr1"):
                out.write(pysam.AlignedSegment.from_dict(read.to_dict(), out.header))
    pysam.index(str(target))


def cram_part(peer: Path, repo: Path, scratch: Path) -> tuple[list[str], dict]:
    # The shared CRAM has no index beside it: a link to it in the scratch folder gets one.
    cram = scratch / "hg19.chr1.6Mb.cram"
    cram.symlink_to(SHARED / cram.name)
    subprocess.run(["samtools", "index", str(cram)], check=True)
    # FinaleToolkit reads the bins' GC from its 2bit genome.
    twobit = scratch / "hg19.chr1.10Mb.2bit"
    twobit.write_bytes(repository_file(repo, f"{TABLES}/hg19.chr1.10Mb.2bit"))
    bam = scratch / "chr1.bam"
    _chr1_bam(cram, bam)
    (scratch / "chr1.sizes").write_text("chr1\t6000000\n")
    (scratch / "chr1.bins.bed").write_text("".join(f"chr1\t{s}\t{s + 100_000}\n" for s in range(0, 6_000_000, 100_000)))
    subprocess.run(
        [
            str(peer),
            "delfi",
            str(bam),
            str(scratch / "chr1.sizes"),
            str(twobit),
            str(scratch / "chr1.bins.bed"),
            "--no-gc-correct",
            "--no-remove-nocov",
            "--no-merge-bins",
            "-o",
            str(scratch / "cram_peer.tsv"),
        ],
        check=True,
        capture_output=True,
    )
    for source, name in ((bam, "bam"), (cram, "cram")):
        subprocess.run(
            PLASMACOUNT
            + [
                "count",
                str(source),
                "--bin-size",
                "100000",
                "--convention",
                "finaletoolkit",
                "-o",
                str(scratch / f"{name}.counts.npz"),
            ],
            check=True,
        )
    peer_bins = _peer_bins(scratch / "cram_peer.tsv")
    ours = _our_bins(scratch / "bam.counts.npz")
    same_as_cram = all(ours[k] == _our_bins(scratch / "cram.counts.npz")[k] for k in peer_bins)
    result = _compare(peer_bins, ours, edge_split(bam))
    lines = [
        "### B. REAL CRAM: FinaleToolkit's chr1:0-6 Mb plasma sample (hg19, 100 kb bins)",
        "",
        *_count_table(result),
        "",
        "FinaleToolkit refuses the CRAM as it is (no index beside it, and contigs its 10 Mb reference lacks), so both tools read "
        "its chr1 pairs written to a BAM with a chr1-only header; plasmacount's counts from the CRAM itself are "
        f"{'the same in every bin' if same_as_cram else 'NOT the same'}.",
    ]
    return lines, result


def simulated_part(peer: Path, runs: int, scratch: Path) -> tuple[list[str], dict]:
    from plasmacount.bins import BinAnnotation
    from plasmacount.genome import AUTOSOME_KEYS, centromere_regions, name_key

    bam, fasta = bench_bam()
    annotation_path = scratch / "bins.npz"
    subprocess.run(
        PLASMACOUNT + ["bins", "--fasta", str(fasta), "--bin-size", "100000", "-o", str(annotation_path)], check=True
    )
    layout = BinAnnotation.load(annotation_path).layout
    autosomes = [c for c in layout.contigs if name_key(c.name) in AUTOSOME_KEYS]
    (scratch / "autosomes.sizes").write_text("".join(f"{c.name}\t{c.length}\n" for c in autosomes))
    (scratch / "bins.bed").write_text(
        "".join(
            f"{c.name}\t{i * 100_000}\t{min((i + 1) * 100_000, c.length)}\n" for c in autosomes for i in range(c.n_bins)
        )
    )
    centromeres = centromere_regions(layout)
    (scratch / "gaps.bed").write_text(
        "".join(
            f"{c.name}\t{centromeres[name_key(c.name)][0]}\t{centromeres[name_key(c.name)][1]}\tcentromere\n"
            for c in autosomes
        )
    )
    ours = PLASMACOUNT + [
        "fragments",
        str(bam),
        "--bins",
        str(annotation_path),
        "--convention",
        "finaletoolkit",
        "-o",
        str(scratch / "ours"),
    ]
    peer_command = [
        str(peer),
        "delfi",
        str(bam),
        str(scratch / "autosomes.sizes"),
        str(fasta),
        str(scratch / "bins.bed"),
        "-g",
        str(scratch / "gaps.bed"),
        "--no-remove-nocov",
    ]
    commands = {
        "ours": ours,
        "peer_1": peer_command + ["-t", "1", "-o", str(scratch / "peer_merged.tsv")],
        "peer_2": peer_command + ["-t", "2", "-o", str(scratch / "peer_merged_2.tsv")],
    }
    seconds = timed(commands, runs)
    subprocess.run(
        peer_command[:-1]
        + ["--no-remove-nocov", "--no-gc-correct", "--no-merge-bins", "-o", str(scratch / "peer_bins.tsv")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        PLASMACOUNT
        + [
            "count",
            str(bam),
            "--bins",
            str(annotation_path),
            "--convention",
            "finaletoolkit",
            "-o",
            str(scratch / "bench.counts.npz"),
        ],
        check=True,
    )
    result = _compare(_peer_bins(scratch / "peer_bins.tsv"), _our_bins(scratch / "bench.counts.npz"), edge_split(bam))
    summary = json.loads((scratch / "ours" / "bench_0001.fragments.json").read_text())["delfi"]
    result.update(seconds=seconds, bins_in_profile=summary["bins"])
    lines = [
        "### C. OWN SIMULATOR: 4 M-fragment paired-end BAM, synthetic genome (chromosomes at 1/200 of hg38, arms of fewer than 50 bins)",
        "",
        *_count_table(result),
        "",
        "| DELFI profile (100 kb bins, GC correction, 5 Mb merge) | seconds | FinaleToolkit / plasmacount |",
        "|---|---|---|",
        f"| plasmacount `fragments --bins --convention finaletoolkit` (whole pass: sizes, bins, DELFI, tables) | {seconds['ours']:.2f} | 1 |",
        f"| FinaleToolkit `delfi`, 1 worker | {seconds['peer_1']:.2f} | {seconds['peer_1'] / seconds['ours']:.1f}x |",
        f"| FinaleToolkit `delfi`, 2 workers | {seconds['peer_2']:.2f} | {seconds['peer_2'] / seconds['ours']:.1f}x |",
    ]
    return lines, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--finaletoolkit-repo", help="a clone (or bare git directory) of FinaleToolkit holding commit " + COMMIT
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    peer = finaletoolkit()
    repo = repository(args.finaletoolkit_repo)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        lines = tables_part(repo, peer.parent / "python", scratch)
        if SHARED.exists():
            part, _ = cram_part(peer, repo, scratch)
            lines += [""] + part
        else:
            lines += ["", f"### B. REAL CRAM: skipped ({SHARED} is not present)"]
        part, _ = simulated_part(peer, args.runs, scratch)
        lines += [""] + part
    lines += [
        "",
        f"FinaleToolkit {VERSION} from PyPI in its own environment (tables and 2bit genome from its repository at {COMMIT}); medians of "
        f"{args.runs} interleaved runs, 2 cores. With `--convention finaletoolkit` plasmacount places a fragment's size class by its "
        "midpoint (`--size-class-placement midpoint`), takes read 1's MAPQ >= 30 and proper pairs only, and averages a window's "
        "corrected bin ratios (`--delfi-window-ratio mean`). Where the counts differ, FinaleToolkit misses fragments: its `delfi` "
        "fetches the reads overlapping a bin and keeps read 1, so a fragment whose midpoint lies in the bin while read 1 ends before "
        "the bin's start (or, on the reverse strand, starts after its end) is counted nowhere; the independent count (pysam, in "
        "this benchmark) splits each bin's fragments by that and finds every difference. The GC corrections differ by their "
        "smoothers: DELFI's R `loess` (kd-tree interpolation), FinaleToolkit's Cappellari `loess_1d` on a 0.01 GC grid, "
        "plasmacount's exact two-stage loess on a 0.001 grid (tested against a brute-force loess in `tests/test_delfi.py`); "
        "with `--delfi-gc-smoother loess_1d` plasmacount calls the same `loess_1d` as FinaleToolkit and its corrections and "
        "windows equal FinaleToolkit's (part A).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        from results import write_section

        write_section("delfi", "## DELFI beside FinaleToolkit\n\n" + text, "python benchmarks/delfi_peer.py --write")


if __name__ == "__main__":
    main()
