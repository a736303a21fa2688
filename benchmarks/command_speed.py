"""Speed of the analysis commands (`fragments`, `viral`, `tumor`, `report`), each beside the
nearest peer that runs here, in the same run (ratios, not absolute times: machines are noisy).

- `fragments` on a 4 M-fragment paired-end BAM against `samtools stats -@2` (which also builds
  the insert-size histogram), without and with end motifs (`--fasta`);
- `viral` on the same BAM (a full pass: the size ratio needs the autosomal size profile) against
  `samtools stats -@2` as well; no public tool does the two-criterion screen;
- `tumor` on 20 hg38 1 Mb counts files at 10 M fragments, and `report` on the demo-size batch:
  their peers (ichorCNA in R) cannot be installed here, so only seconds per sample are given.

    python benchmarks/command_speed.py [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "commands"
PLASMACOUNT = [sys.executable, "-m", "plasmacount", "--quiet"]


def timed(command: list[str], repeats: int = 3) -> float:
    """Median wall time of `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    bam = DATA / "reads" / "bench_0001.bam"
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
                str(DATA / "reads"),
                "--prefix",
                "bench",
                "--seed",
                "5",
            ],
            check=True,
        )
    counts = sorted((DATA / "cancer").glob("*.counts.npz"))
    if len(counts) < 20:
        subprocess.run(
            PLASMACOUNT
            + [
                "simulate",
                "--cohort",
                "cancer",
                "--samples",
                "20",
                "--reads",
                "10M",
                "--genome",
                "hg38",
                "--bin-size",
                "1000000",
                "-o",
                str(DATA / "cancer"),
                "--prefix",
                "patient",
            ],
            check=True,
        )
        counts = sorted((DATA / "cancer").glob("*.counts.npz"))
    genome = DATA / "reads" / "genome"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        stats = timed(["samtools", "stats", "-@2", str(bam)])
        count = timed(
            PLASMACOUNT + ["count", str(bam), "--bins", str(genome / "bins.npz"), "-o", str(out / "c.counts.npz")]
        )
        plain = timed(PLASMACOUNT + ["fragments", str(bam), "--bins", str(genome / "bins.npz"), "-o", str(out / "f1")])
        motifs = timed(
            PLASMACOUNT
            + [
                "fragments",
                str(bam),
                "--bins",
                str(genome / "bins.npz"),
                "--fasta",
                str(genome / "genome.fa"),
                "-o",
                str(out / "f2"),
            ]
        )
        viral = timed(PLASMACOUNT + ["viral", str(bam), "-o", str(out / "v")])
        rows.append(
            (
                "`fragments` (sizes, periodicity, windows)",
                "4 M-fragment paired-end BAM",
                plain,
                "`samtools stats -@2`",
                stats,
            )
        )
        rows.append(("`fragments --fasta` (+ end motifs)", "same BAM", motifs, "`samtools stats -@2`", stats))
        rows.append(("`fragments --fasta` (+ end motifs)", "same BAM", motifs, "plasmacount `count`", count))
        rows.append(("`viral` (from the BAM)", "same BAM", viral, "`samtools stats -@2`", stats))
        tumor = timed(
            PLASMACOUNT
            + [
                "tumor",
                *map(str, counts),
                "--bins",
                str(DATA / "cancer" / "genome" / "bins.npz"),
                "-o",
                str(out / "t"),
            ],
            repeats=1,
        ) / len(counts)
        rows.append(
            (
                "`tumor`, per sample",
                "hg38 1 Mb counts, 10 M fragments",
                tumor,
                "ichorCNA (R; not installable here)",
                None,
            )
        )
        report = timed(PLASMACOUNT + ["report", str(out / "t"), "-o", str(out / "r")], repeats=1) / len(counts)
        rows.append(("`report` (HTML + PDF), per sample", "the `tumor` results above", report, "none", None))
    lines = [
        "| command | input | plasmacount (s) | peer | peer (s) | plasmacount / peer |",
        "|---|---|---|---|---|---|",
    ]
    for command, data, seconds, peer, peer_seconds in rows:
        ratio = f"{seconds / peer_seconds:.2f}x" if peer_seconds else "-"
        lines.append(
            f"| {command} | {data} | {seconds:.2f} | {peer} | {'-' if peer_seconds is None else f'{peer_seconds:.2f}'} | {ratio} |"
        )
    lines += [
        "",
        "Medians of 3 runs (one for `tumor` and `report`), 2 cores. `samtools stats` is the nearest peer for a full pass that "
        "builds a fragment-size histogram. `fragments --fasta` reads the end motifs in the same compiled pass that counts "
        "(the FASTA through its faidx index in a memory map), so its row beside `count` is the cost of the motifs, the "
        "methylation tags and the fragment statistics together.",
    ]
    report_text = "\n".join(lines)
    print(report_text)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import write_section

        write_section(
            "commands",
            "## Analysis commands: speed beside their peers\n\n" + report_text,
            "python benchmarks/command_speed.py --write",
        )


if __name__ == "__main__":
    main()
