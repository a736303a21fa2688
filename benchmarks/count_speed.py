"""Counting speed and memory, side by side with the decompression floor and the peer tools.

Makes (once) a coordinate-sorted 10 M-read BAM with hg38 names and lengths using
`plasmacount simulate`, then times, interleaved, each command `--runs` times:
`bgzip -@2 -dc` (decompression only), `plasmacount count`, `samtools view -@2 -c`, and
`mosdepth -n --fast-mode --by 100000 -Q 20`. Wall time is the median; peak memory is the
child's maximum resident set size (os.wait4). Results go to BENCHMARKS.md between markers.

    python benchmarks/count_speed.py [--reads 10M] [--paired] [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLASMACOUNT = [sys.executable, "-m", "plasmacount"]


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one command, stdout discarded."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({process.returncode}): {' '.join(command)}\n{process.stderr.read().decode()}"
        )
    return elapsed, usage.ru_maxrss / 1024


def make_bam(directory: Path, reads: str, paired: bool) -> Path:
    name = f"{'pe' if paired else 'se'}{reads}"
    bam = directory / name / "bench_0001.bam"
    if not bam.exists():
        command = PLASMACOUNT + [
            "--quiet",
            "simulate",
            "-o",
            str(directory / name),
            "--cohort",
            "euploid",
            "--samples",
            "1",
            "--reads",
            reads,
            "--genome",
            "hg38",
            "--format",
            "bam",
            "--seed",
            "1",
            "--prefix",
            "bench",
        ]
        if paired:
            command.append("--paired")
        subprocess.run(command, check=True)
    return bam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", default="10M")
    parser.add_argument("--paired", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--skip-mosdepth", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    bam = make_bam(args.data, args.reads, args.paired)
    idxstats = subprocess.run(["samtools", "idxstats", str(bam)], capture_output=True, text=True, check=True).stdout
    records = sum(int(line.split("\t")[2]) + int(line.split("\t")[3]) for line in idxstats.splitlines())
    scratch = Path(tempfile.mkdtemp())
    tools = {
        "bgzip -@2 -dc (decompression floor)": ["bgzip", "-@2", "-dc", str(bam)],
        "plasmacount count (2 threads)": PLASMACOUNT
        + ["--quiet", "count", str(bam), "-o", str(scratch / "c.npz"), "--threads", "2"],
        "samtools view -@2 -c -q 20 -F 1024": ["samtools", "view", "-@2", "-c", "-q", "20", "-F", "1024", str(bam)],
    }
    if not args.skip_mosdepth and shutil.which("mosdepth"):
        tools["mosdepth -n --fast-mode --by 100000 -Q 20"] = [
            "mosdepth",
            "-n",
            "--fast-mode",
            "--by",
            "100000",
            "-Q",
            "20",
            str(scratch / "m"),
            str(bam),
        ]
    times: dict[str, list[float]] = {name: [] for name in tools}
    memory: dict[str, float] = {name: 0.0 for name in tools}
    for command in tools.values():  # warm the page cache
        run_measured(command)
    for run in range(args.runs):
        for name, command in tools.items():
            if name.startswith("mosdepth") and run >= 2:
                continue  # ~30 s a run; two runs are enough to see the ratio
            seconds, megabytes = run_measured(command)
            times[name].append(seconds)
            memory[name] = max(memory[name], megabytes)
    shutil.rmtree(scratch)
    floor = statistics.median(times["bgzip -@2 -dc (decompression floor)"])
    ours = statistics.median(times["plasmacount count (2 threads)"])
    lines = [
        f"### {'Paired-end' if args.paired else 'Single-end'}: {records:,} records, {bam.stat().st_size / 1e6:,.0f} MB BAM",
        "",
        "| command | median wall (s) | runs | vs bgzip -@2 -dc | peak RSS (MB) |",
        "|---|---|---|---|---|",
    ]
    for name in tools:
        median = statistics.median(times[name])
        lines.append(f"| `{name}` | {median:.2f} | {len(times[name])} | {median / floor:.2f}x | {memory[name]:.0f} |")
    summary = f"plasmacount / bgzip = **{ours / floor:.2f}x** (target <= 1.3x)"
    if any(n.startswith("mosdepth") for n in tools):
        mosdepth = statistics.median(next(times[n] for n in tools if n.startswith("mosdepth")))
        summary += f"; mosdepth / plasmacount = **{mosdepth / ours:.1f}x** (target >= 10x)"
    lines += [
        "",
        summary + f"; plasmacount peak memory {memory['plasmacount count (2 threads)']:.0f} MB (target < 1 GB).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_results(f"count-{'pe' if args.paired else 'se'}", report, args)


def write_results(key: str, report: str, args) -> None:
    from results import write_section

    command = f"python benchmarks/count_speed.py --reads {args.reads}{' --paired' if args.paired else ''} --runs {args.runs} --write"
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    write_section(key, report + f"\nMachine: {machine}.", command)


if __name__ == "__main__":
    main()
