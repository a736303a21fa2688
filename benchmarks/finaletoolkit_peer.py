"""Fragmentomics beside FinaleToolkit: the same BAM and FASTA, the same conventions, numbers and times.

FinaleToolkit 1.1.0 (PyPI, MIT) is installed into a virtual environment of its own under
benchmarks/data (once), never into plasmacount's. On the 4 M-fragment paired-end BAM of
`command_speed.py` (simulated, with its synthetic genome FASTA), each tool computes, with
FinaleToolkit's conventions selected in plasmacount (`--convention finaletoolkit`: read 1 stands
for a pair, proper pairs only, MAPQ >= 30):
- the fragment-length histogram (`frag-length-bins --bin-size 1`);
- 4-mer end motifs of fragments of 50 bp or more (`end-motifs -k 4 --min-length 50`);
- WPS, adjusted WPS and the cleavage profile over 5 kb around `--sites` sites (`wps`,
  `adjust-wps`, `cleavage-profile`), and coverage of 1 kb around each (`coverage`); plasmacount
  with `--intervals-only` (the reads near the sites, through the index), as FinaleToolkit reads.
The simulated BAM covers a 15.6 Mb synthetic genome at about 60x, where 1,000 sites and the reads
within a fragment's length of them are a third of the file. The interval rows are therefore also
run on the same fragments laid out on contigs 200 times longer (a 3.1 Gb genome at 0.3x, the
density of low-pass plasma sequencing; `stretched_bam`).
Each command runs `--runs` times, interleaved; wall times are medians. The numbers are compared
count by count and every difference is explained (by reading FinaleToolkit's code, see the notes).

    python benchmarks/finaletoolkit_peer.py [--runs 3] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PLASMACOUNT = [sys.executable, "-m", "plasmacount", "--quiet"]
VERSION = "1.1.0"


def finaletoolkit() -> Path:
    """The finaletoolkit command of a private virtual environment (made once)."""
    venv = DATA / f"finaletoolkit-{VERSION}"
    command = venv / "bin" / "finaletoolkit"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"finaletoolkit=={VERSION}"], check=True)
    return command


def bench_bam() -> tuple[Path, Path]:
    reads = DATA / "commands" / "reads"
    bam = reads / "bench_0001.bam"
    if not bam.exists():
        subprocess.run(
            PLASMACOUNT
            + [
                "simulate",
                "--cohort",
                "ebv",
                "--samples",
                "1",
                "--reads",
                "4M",
                "--paired",
                "--format",
                "bam",
                "-o",
                str(reads),
                "--prefix",
                "bench",
                "--seed",
                "5",
            ],
            check=True,
        )
    return bam, reads / "genome" / "genome.fa"


def stretched_bam(bam: Path, factor: int = 200) -> Path:
    """The BAM's fragments on contigs `factor` times longer: both mates of a fragment move by the
    same shift (TLEN, CIGAR and flags unchanged), then sorted and indexed (made once)."""
    import pysam

    out = bam.with_name(f"{bam.stem}.x{factor}.bam")
    if out.exists():
        return out
    unsorted = out.with_suffix(".unsorted.bam")
    with pysam.AlignmentFile(str(bam)) as alignments:
        header = alignments.header.to_dict()
        for contig in header["SQ"]:
            contig["LN"] *= factor
        with pysam.AlignmentFile(str(unsorted), "wb", header=header, threads=2) as target:
            for read in alignments.fetch(until_eof=True):
                position, mate = read.reference_start, read.next_reference_start
                if position >= 0:
                    same = mate >= 0 and read.next_reference_id == read.reference_id
                    anchor = min(position, mate) if same else position
                    read.reference_start = position + (factor - 1) * anchor
                    if mate >= 0:
                        read.next_reference_start = mate + (factor - 1) * (anchor if same else mate)
                target.write(read)
    pysam.sort("-@", "2", "-m", "1G", "-o", str(out), str(unsorted))
    unsorted.unlink()
    pysam.index(str(out))
    return out


def _sites(bam: Path, n: int, spacing: int = 6000) -> list[tuple[str, int]]:
    """n fragment midpoints at evenly spaced ranks of the binned chromosomes' counted reads, more
    than `spacing` bp apart."""
    import pysam

    with pysam.AlignmentFile(str(bam)) as alignments:
        mapped = sum(s.mapped for s in alignments.get_index_statistics() if s.contig.removeprefix("chr").isdigit())
        step = max(1, mapped // (8 * n))  # more candidates than sites: some fall within `spacing` of the last one
        result = []
        for i, read in enumerate(alignments.fetch(until_eof=True)):
            if (
                i % step == 0
                and read.reference_name
                and read.reference_name.removeprefix("chr").isdigit()
                and read.is_proper_pair
                and read.template_length > 0
            ):
                middle = read.reference_start + read.template_length // 2
                if not result or result[-1][0] != read.reference_name or middle - result[-1][1] > spacing:
                    result.append((read.reference_name, middle))
            if len(result) >= n:
                break
    return result


def _contig_lengths(bam: Path) -> list[tuple[str, int]]:
    import pysam

    with pysam.AlignmentFile(str(bam)) as alignments:
        return list(zip(alignments.references, alignments.lengths))


def _compare_tracks(peer: Path, ours: Path) -> tuple[int, int]:
    """(bases both tracks hold a value for, bases whose values differ by more than 1e-6), base by
    base over the peer's entries (plasmacount writes a run of equal values as one entry)."""
    import pyBigWig

    a, b = pyBigWig.open(str(peer)), pyBigWig.open(str(ours))
    both = differ = 0
    for chrom in a.chroms():
        entries = a.intervals(chrom) or []
        if chrom not in b.chroms() or not entries:
            continue
        block: list[tuple[int, int, float]] = []
        for entry in list(entries) + [(-1, -1, 0.0)]:
            if block and entry[0] != block[-1][1]:  # a contiguous block of the peer's entries ends
                theirs = np.concatenate([np.full(end - start, value) for start, end, value in block])
                mine = np.array(b.values(chrom, block[0][0], block[-1][1], numpy=True))
                common = np.isfinite(mine)
                both += int(common.sum())
                differ += int((np.abs(theirs[common] - mine[common]) > 1e-6).sum())
                block = []
            block.append(entry)
    return both, differ


def timed(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sites", type=int, default=1000, help="sites for the interval features (default 1000)")
    parser.add_argument(
        "--coverage-sites", type=int, default=5000, help="1 kb sites for the coverage-only rows (default 5000)"
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    peer = finaletoolkit()
    bam, fasta = bench_bam()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        ours = PLASMACOUNT + ["fragments", str(bam), "--convention", "finaletoolkit", "-o", str(out / "ours")]
        commands = {
            "ours_sizes": ours,
            "peer_sizes": [
                str(peer),
                "frag-length-bins",
                str(bam),
                "-q",
                "30",
                "--bin-size",
                "1",
                "-o",
                str(out / "lengths.tsv"),
            ],
            "ours_motifs": ours[:-1] + [str(out / "ours_motifs"), "--fasta", str(fasta), "--fragment-lengths", "50-"],
            "peer_motifs": [
                str(peer),
                "end-motifs",
                str(bam),
                str(fasta),
                "-k",
                "4",
                "-q",
                "30",
                "--min-length",
                "50",
                "-o",
                str(out / "motifs.tsv"),
            ],
        }
        # Sites: fragment midpoints spread over the genome (a BED of 1 bp sites, and of 1 kb sites for coverage).
        sites, wide, windows = out / "sites.bed", out / "wide.bed", out / "windows.bed"
        site_rows = _sites(bam, args.sites)
        sites.write_text("".join(f"{c}\t{m}\t{m + 1}\tsite{i}\t0\t+\n" for i, (c, m) in enumerate(site_rows)))
        wide.write_text("".join(f"{c}\t{max(0, m - 500)}\t{m + 500}\tsite{i}\n" for i, (c, m) in enumerate(site_rows)))
        sizes = out / "chrom.sizes"
        sizes.write_text("".join(f"{name}\t{length}\n" for name, length in _contig_lengths(bam)))
        from plasmacount.intervals import Site, site_window

        lengths = dict(_contig_lengths(bam))
        windows.write_text(
            "".join(
                f"{c}\t{a}\t{b}\n"
                for c, a, b in ((c, *site_window(Site(c, m, m + 1, "", "+"), lengths[c])) for c, m in site_rows)
            )
        )
        commands["ours_intervals"] = ours[:-1] + [
            str(out / "ours_sites"),
            "--intervals",
            str(sites),
            "--intervals-only",
        ]
        commands["peer_wps"] = [
            str(peer),
            "wps",
            str(bam),
            str(sites),
            "--chrom-sizes",
            str(sizes),
            "-q",
            "30",
            "-o",
            str(out / "wps.bw"),
        ]
        commands["peer_cleavage"] = [
            str(peer),
            "cleavage-profile",
            str(bam),
            str(windows),
            str(sizes),
            "-q",
            "30",
            "-o",
            str(out / "cleavage.bw"),
        ]
        commands["ours_coverage"] = ours[:-1] + [
            str(out / "ours_wide"),
            "--intervals",
            str(wide),
            "--interval-features",
            "coverage",
            "--intervals-only",
        ]
        commands["ours_coverage_whole"] = ours[:-1] + [
            str(out / "ours_wide_whole"),
            "--intervals",
            str(wide),
            "--interval-features",
            "coverage",
        ]
        commands["peer_coverage"] = [
            str(peer),
            "coverage",
            str(bam),
            str(wide),
            "-q",
            "30",
            "-o",
            str(out / "coverage.bed"),
        ]
        many, many_rows = out / "many.bed", _sites(bam, args.coverage_sites, spacing=1000)
        many.write_text("".join(f"{c}\t{max(0, m - 500)}\t{m + 500}\tsite{i}\n" for i, (c, m) in enumerate(many_rows)))
        commands["ours_coverage_many"] = ours[:-1] + [
            str(out / "ours_many"),
            "--intervals",
            str(many),
            "--interval-features",
            "coverage",
        ]
        commands["peer_coverage_many"] = [
            str(peer),
            "coverage",
            str(bam),
            str(many),
            "-q",
            "30",
            "-o",
            str(out / "coverage_many.bed"),
        ]
        # The same fragments at the density of low-pass data on a genome of human size.
        sparse = stretched_bam(bam)
        sparse_sites = _sites(sparse, args.sites)
        sparse_lengths = dict(_contig_lengths(sparse))
        (out / "sparse.sizes").write_text("".join(f"{name}\t{length}\n" for name, length in _contig_lengths(sparse)))
        (out / "sparse_sites.bed").write_text(
            "".join(f"{c}\t{m}\t{m + 1}\tsite{i}\t0\t+\n" for i, (c, m) in enumerate(sparse_sites))
        )
        (out / "sparse_wide.bed").write_text(
            "".join(f"{c}\t{max(0, m - 500)}\t{m + 500}\tsite{i}\n" for i, (c, m) in enumerate(sparse_sites))
        )
        (out / "sparse_windows.bed").write_text(
            "".join(
                f"{c}\t{a}\t{b}\n"
                for c, a, b in (
                    (c, *site_window(Site(c, m, m + 1, "", "+"), sparse_lengths[c])) for c, m in sparse_sites
                )
            )
        )
        sparse_ours = PLASMACOUNT + ["fragments", str(sparse), "--convention", "finaletoolkit", "--intervals-only"]
        commands["sparse_ours_intervals"] = sparse_ours + [
            "-o",
            str(out / "sparse_sites"),
            "--intervals",
            str(out / "sparse_sites.bed"),
        ]
        commands["sparse_ours_coverage"] = sparse_ours + [
            "-o",
            str(out / "sparse_wide"),
            "--intervals",
            str(out / "sparse_wide.bed"),
            "--interval-features",
            "coverage",
        ]
        commands["sparse_ours_coverage_whole"] = PLASMACOUNT + [
            "fragments",
            str(sparse),
            "--convention",
            "finaletoolkit",
            "-o",
            str(out / "sparse_wide_whole"),
            "--intervals",
            str(out / "sparse_wide.bed"),
            "--interval-features",
            "coverage",
        ]
        commands["sparse_peer_wps"] = [
            str(peer),
            "wps",
            str(sparse),
            str(out / "sparse_sites.bed"),
            "--chrom-sizes",
            str(out / "sparse.sizes"),
            "-q",
            "30",
            "-o",
            str(out / "sparse_wps.bw"),
        ]
        commands["sparse_peer_cleavage"] = [
            str(peer),
            "cleavage-profile",
            str(sparse),
            str(out / "sparse_windows.bed"),
            str(out / "sparse.sizes"),
            "-q",
            "30",
            "-o",
            str(out / "sparse_cleavage.bw"),
        ]
        commands["sparse_peer_coverage"] = [
            str(peer),
            "coverage",
            str(sparse),
            str(out / "sparse_wide.bed"),
            "-q",
            "30",
            "-o",
            str(out / "sparse_coverage.bed"),
        ]
        (out / "one.bed").write_text((out / "sparse_wide.bed").read_text().splitlines()[0] + "\n")
        commands["ours_one"] = sparse_ours + [
            "-o",
            str(out / "one"),
            "--intervals",
            str(out / "one.bed"),
            "--interval-features",
            "coverage",
        ]
        commands["peer_one"] = [
            str(peer),
            "coverage",
            str(sparse),
            str(out / "one.bed"),
            "-q",
            "30",
            "-o",
            str(out / "one.cov.bed"),
        ]
        seconds = timed(commands, args.runs)
        start = time.perf_counter()
        subprocess.run(
            [str(peer), "adjust-wps", str(out / "wps.bw"), str(sites), str(sizes), "-o", str(out / "adjusted.bw")],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds["peer_adjust"] = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [
                str(peer),
                "adjust-wps",
                str(out / "sparse_wps.bw"),
                str(out / "sparse_sites.bed"),
                str(out / "sparse.sizes"),
                "-o",
                str(out / "sparse_adjusted.bw"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds["sparse_peer_adjust"] = time.perf_counter() - start
        wps_agreement = _compare_tracks(out / "wps.bw", out / "ours_sites" / "bench_0001.wps.bw")
        adjusted_agreement = _compare_tracks(out / "adjusted.bw", out / "ours_sites" / "bench_0001.wps_adjusted.bw")
        cleavage_agreement = _compare_tracks(out / "cleavage.bw", out / "ours_sites" / "bench_0001.cleavage.bw")

        def coverages(peer_file: Path, ours_folder: Path) -> tuple[list[float], list[int]]:
            [table] = ours_folder.glob("*.intervals.tsv")
            return (
                [float(line.split("\t")[4]) for line in peer_file.read_text().splitlines() if line],
                [int(line.split("\t")[5]) for line in table.read_text().splitlines()[1:]],
            )

        def same_rows(a: Path, b: Path) -> bool:
            """Whether two interval tables agree but for the coverage per million (None reading by index)."""
            [x], [y] = a.glob("*.intervals.tsv"), b.glob("*.intervals.tsv")

            def cut(path: Path) -> list[list[str]]:
                return [row[:6] + row[7:] for row in (line.split("\t") for line in path.read_text().splitlines())]

            return cut(x) == cut(y)

        whole_agrees = same_rows(out / "ours_wide", out / "ours_wide_whole") and same_rows(
            out / "sparse_wide", out / "sparse_wide_whole"
        )
        sparse_wps = _compare_tracks(out / "sparse_wps.bw", out / "sparse_sites" / "bench_0001.wps.bw")
        sparse_adjusted = _compare_tracks(
            out / "sparse_adjusted.bw", out / "sparse_sites" / "bench_0001.wps_adjusted.bw"
        )
        sparse_cleavage = _compare_tracks(out / "sparse_cleavage.bw", out / "sparse_sites" / "bench_0001.cleavage.bw")
        sparse_peer_coverage, sparse_our_coverage = coverages(out / "sparse_coverage.bed", out / "sparse_wide")
        sparse_ours = seconds["sparse_ours_intervals"] + seconds["sparse_ours_coverage"]
        sparse_peer = (
            seconds["sparse_peer_coverage"]
            + seconds["sparse_peer_wps"]
            + seconds["sparse_peer_adjust"]
            + seconds["sparse_peer_cleavage"]
        )

        peer_coverage, our_coverage = coverages(out / "coverage.bed", out / "ours_wide")
        peer_many, our_many = coverages(out / "coverage_many.bed", out / "ours_many")
        ours_intervals = seconds["ours_intervals"] + seconds["ours_coverage"]
        peer_intervals = (
            seconds["peer_coverage"] + seconds["peer_wps"] + seconds["peer_adjust"] + seconds["peer_cleavage"]
        )
        # Sizes: FinaleToolkit's bins (min max count) pool every contig; plasmacount keeps the binned
        # chromosomes' histogram apart from each other contig's (chrM, chrEBV), so both are added here.
        from plasmacount.alignments import CountOptions, count_alignments

        counts = count_alignments(bam, options=CountOptions(representative="read1", max_pair_length=0, min_mapq=30))
        ours_histogram = counts.fragment_lengths + counts.other_fragment_lengths.sum(axis=0)
        binned_only = int(counts.fragment_lengths.sum())
        peer_histogram = np.zeros(ours_histogram.size, dtype=np.int64)
        for line in (out / "lengths.tsv").read_text().splitlines()[1:]:
            low, _, count = line.split("\t")[:3]
            peer_histogram[min(int(low), ours_histogram.size - 1)] += int(count)
        size_differences = int(np.abs(ours_histogram - peer_histogram).sum())
        # Motifs: FinaleToolkit writes frequencies; its total of ends is the one that makes them whole counts.
        ours_counts = {}
        for line in (out / "ours_motifs" / "bench_0001.end_motifs.tsv").read_text().splitlines()[1:]:
            motif, count, _ = line.split("\t")
            ours_counts[motif] = int(count)
        peer_frequencies = {
            line.split("\t")[0]: float(line.split("\t")[1])
            for line in (out / "motifs.tsv").read_text().splitlines()
            if line and not line.startswith(("motif", "#"))
        }
        ours_total = sum(ours_counts.values())
        peer_total = next(
            n
            for n in range(ours_total - 2000, ours_total + 2000)
            if all(abs(f * n - round(f * n)) < 1e-3 for f in peer_frequencies.values())
        )
        motif_differences = sum(abs(ours_counts[m] - round(peer_frequencies[m] * peer_total)) for m in ours_counts)
        largest_frequency_difference = max(abs(ours_counts[m] / ours_total - peer_frequencies[m]) for m in ours_counts)
    lines = [
        "Data: the project's OWN SIMULATOR (4 M-fragment paired-end BAM of `command_speed.py`, its synthetic genome FASTA). "
        f"FinaleToolkit {VERSION} from PyPI in its own environment; plasmacount with `--convention finaletoolkit`.",
        "",
        "| feature | plasmacount (s) | FinaleToolkit (s) | FinaleToolkit / plasmacount | agreement |",
        "|---|---|---|---|---|",
        f"| size histogram (1 bp) | {seconds['ours_sizes']:.2f} | {seconds['peer_sizes']:.2f} | {seconds['peer_sizes'] / seconds['ours_sizes']:.1f}x | "
        f"{int(ours_histogram.sum()):,} fragments ({binned_only:,} on chr1-22/X/Y, the rest chrM/chrEBV); {size_differences} counts differ |",
        f"| 4-mer end motifs, fragments >= 50 bp | {seconds['ours_motifs']:.2f} | {seconds['peer_motifs']:.2f} | "
        f"{seconds['peer_motifs'] / seconds['ours_motifs']:.1f}x | {ours_total:,} ends against {peer_total:,}; {motif_differences} counts differ "
        f"(largest frequency difference {largest_frequency_difference:.1e}) |",
        f"| interval features, {len(site_rows):,} sites: coverage of 1 kb around each (fragment midpoints), WPS (120 bp window, "
        f"120-180 bp) over 5 kb, adjusted WPS, cleavage profile | {ours_intervals:.2f} (`fragments --intervals-only` over the sites "
        f"{seconds['ours_intervals']:.2f}, over their 1 kb for coverage {seconds['ours_coverage']:.2f}) | {peer_intervals:.2f} "
        f"(coverage {seconds['peer_coverage']:.1f}, wps {seconds['peer_wps']:.1f}, adjust-wps {seconds['peer_adjust']:.1f}, "
        f"cleavage-profile {seconds['peer_cleavage']:.1f}) | {peer_intervals / ours_intervals:.1f}x | "
        f"WPS: {wps_agreement[1]} of {wps_agreement[0]:,} positions differ; adjusted: {adjusted_agreement[1]} of {adjusted_agreement[0]:,}; "
        f"cleavage: {cleavage_agreement[1]:,} of {cleavage_agreement[0]:,}; coverage: {sum(our_coverage):,} fragments against "
        f"{int(sum(peer_coverage)):,}, {sum(1 for a, b in zip(our_coverage, peer_coverage) if a != b)} sites differ |",
        f"| coverage only (`--interval-features coverage --intervals-only`), the same {len(site_rows):,} sites of 1 kb | "
        f"{seconds['ours_coverage']:.2f} (whole pass: {seconds['ours_coverage_whole']:.2f}) | "
        f"{seconds['peer_coverage']:.2f} | {seconds['peer_coverage'] / min(seconds['ours_coverage'], seconds['ours_coverage_whole']):.1f}x | as above |",
        f"| coverage only, {len(many_rows):,} sites of 1 kb (whole pass) | {seconds['ours_coverage_many']:.2f} | {seconds['peer_coverage_many']:.2f} | "
        f"{seconds['peer_coverage_many'] / seconds['ours_coverage_many']:.1f}x | {sum(our_many):,} fragments against {int(sum(peer_many)):,}, "
        f"{sum(1 for a, b in zip(our_many, peer_many) if a != b)} sites differ |",
        f"| low-pass layout (the same fragments on a 3.1 Gb genome): interval features at {len(sparse_sites):,} sites, as in the first "
        f"interval row | {sparse_ours:.2f} (sites {seconds['sparse_ours_intervals']:.2f}, coverage {seconds['sparse_ours_coverage']:.2f}) | "
        f"{sparse_peer:.2f} (coverage {seconds['sparse_peer_coverage']:.1f}, wps {seconds['sparse_peer_wps']:.1f}, adjust-wps "
        f"{seconds['sparse_peer_adjust']:.1f}, cleavage-profile {seconds['sparse_peer_cleavage']:.1f}) | {sparse_peer / sparse_ours:.1f}x | "
        f"WPS: {sparse_wps[1]} of {sparse_wps[0]:,} positions differ; adjusted: {sparse_adjusted[1]} of {sparse_adjusted[0]:,}; cleavage: "
        f"{sparse_cleavage[1]:,} of {sparse_cleavage[0]:,}; coverage: {sum(sparse_our_coverage):,} fragments against "
        f"{int(sum(sparse_peer_coverage)):,}, {sum(1 for a, b in zip(sparse_our_coverage, sparse_peer_coverage) if a != b)} sites differ |",
        f"| low-pass layout: coverage only, {len(sparse_sites):,} sites of 1 kb | {seconds['sparse_ours_coverage']:.2f} (whole pass: "
        f"{seconds['sparse_ours_coverage_whole']:.2f}) | {seconds['sparse_peer_coverage']:.2f} | "
        f"{seconds['sparse_peer_coverage'] / seconds['sparse_ours_coverage']:.1f}x | as above |",
        "",
        f"Medians of {args.runs} interleaved run(s) per command, 2 cores, FinaleToolkit with its default single worker. Where the motif counts differ, "
        "FinaleToolkit counts more ends than there are fragments: its `end_motifs` splits each contig into windows and takes "
        "every read 1 that overlaps a window (pysam's fetch), so a read across a window edge is counted in both windows; "
        "its own `frag_generator` lists exactly plasmacount's fragments (the same multiset of start and end, checked on a "
        "200 k-fragment BAM of the same simulator). plasmacount's motifs equal an independent pysam count in the tests "
        "(`test_end_motifs_of_any_length_in_the_counting_pass`). Where WPS, coverage and the cleavage profile differ, FinaleToolkit "
        "misses fragments: it fetches the reads that overlap its region and keeps read 1, so a fragment reaching into the region "
        "whose read 1 lies outside it is lost. The WPS differences sit in the first bases of a site's window (on chr1, the 18 "
        "positions from 336,584 in a run with 200 sites: fragment 336,354-336,529, read 1 at 336,354-336,404, just before FinaleToolkit's fetch from "
        "336,404); in the cleavage profile a 1,467 bp pair whose read 1 ended 475 bp beyond a 5 kb window changed the share "
        "976 bp inside it (200 k-fragment BAM). plasmacount places fragments by their own coordinates. "
        "plasmacount's WPS, adjusted WPS and cleavage profile equal brute-force computations from the definitions in the tests "
        "(`tests/test_intervals.py`). `--intervals-only` reads, through the BAM index, the reads within a fragment's length "
        "(5 kb under this convention) of each site, so that no fragment reaching into a site is lost, and writes the interval "
        "tables alone; its rows equal the whole pass's (all but the coverage per million, which needs every fragment) "
        f"{'in both layouts, checked here' if whole_agrees else 'NOT in this run (see the tables)'}, and in the tests "
        "(`tests/test_bam_index.py`, BAM and CRAM, both conventions, long molecules). In the dense layout those reads are a "
        "more than half of the file, so reading them costs nearly a whole pass; at low-pass density the whole pass is the slower "
        "way by far. Neither tool runs in less than its start-up: coverage of one site takes plasmacount "
        f"{seconds['ours_one']:.2f} s and FinaleToolkit {seconds['peer_one']:.2f} s "
        f"({seconds['peer_one'] / seconds['ours_one']:.1f}x), the floor of the ratio over a handful of sites.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        sys.path.insert(0, str(HERE))
        from results import write_section

        write_section(
            "finaletoolkit",
            "## Fragmentomics beside FinaleToolkit\n\n" + text,
            f"python benchmarks/finaletoolkit_peer.py --runs {args.runs} --write",
        )


if __name__ == "__main__":
    main()
