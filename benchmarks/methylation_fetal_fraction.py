"""Fetal fraction from per-molecule CpG methylation on simulated long-read pregnancies, default and
pessimistic simulator settings; and counting speed of a long-read BAM beside `samtools view -c`.

Data: the project's OWN SIMULATOR (`long_read_simulation`, synthetic genome at 1/1000). A
reference is learnt from a panel (non-pregnant women and pregnancies with known fetal fractions,
seed TRAIN), then the fetal fraction of test pregnancies of both fetal sexes (seed TEST, drawn
after the method was fixed) is estimated and compared with the truth: the share of autosomal
molecules that came from the placenta, read from the simulated read names.

    python benchmarks/methylation_fetal_fraction.py [--tests 12] [--molecules 20000] [--speed-molecules 1000000] [--write]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam

from plasmacount.alignments import CountOptions, ScanRequest, scan_alignments
from plasmacount.long_read_simulation import LongReadEffects, LongReadSample, write_long_read_bam
from plasmacount.methylation import fetal_fraction, learn_reference
from plasmacount.synthetic_genome import make_genome

HERE = Path(__file__).resolve().parent


def autosomal_placental_share(bam: Path) -> float:
    fetal = total = 0
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if read.reference_name.removeprefix("chr").isdigit():
                total += 1
                fetal += read.query_name.endswith("_P")
    return fetal / total


def cohort(
    directory: Path, genome, effects: LongReadEffects, molecules: int, tests: int, train_seed: int, test_seed: int
) -> dict:
    annotation = genome.annotation()
    options = CountOptions(long_reads=True)

    def molecules_of(name: str, n: int, fraction: float, sex: str | None, seed: int):
        bam = write_long_read_bam(
            directory / f"{name}.bam", genome, LongReadSample(name, n, fraction, sex), seed, effects
        )
        counts, features = scan_alignments(
            bam, annotation=annotation, options=options, request=ScanRequest(methylation=True)
        )
        return bam, counts, features.molecules

    rng = np.random.default_rng(train_seed)
    panel = []
    for i in range(4):
        _, counts, rows = molecules_of(f"blood{i}", molecules // 2, 0.0, None, train_seed * 1000 + i)
        panel.append((rows, 0.0))
    for i in range(6):
        bam, counts, rows = molecules_of(
            f"panel{i}",
            molecules // 2,
            float(rng.uniform(0.04, 0.2)),
            ("male", "female")[i % 2],
            train_seed * 1000 + 100 + i,
        )
        panel.append((rows, autosomal_placental_share(bam)))
    reference = learn_reference(counts.layout, panel, source="simulated panel")
    rng = np.random.default_rng(test_seed)
    errors, covered, rows_out = [], 0, []
    for i in range(tests):
        truth_parameter = float(rng.uniform(0.03, 0.2))
        sex = ("female", "male")[i % 2]
        bam, counts, rows = molecules_of(f"test{i}", molecules, truth_parameter, sex, test_seed * 1000 + i)
        truth = autosomal_placental_share(bam)
        result = fetal_fraction(rows, reference, counts.layout)
        errors.append(result["estimate"] - truth)
        covered += result["interval"][0] <= truth <= result["interval"][1]
        rows_out.append((sex, truth, result["estimate"]))
    errors = np.array(errors)
    by_sex = {
        sex: float(np.mean([abs(e) for (s, _, _), e in zip(rows_out, errors) if s == sex]))
        for sex in ("female", "male")
    }
    return {
        "mae": float(np.mean(np.abs(errors))),
        "max": float(np.max(np.abs(errors))),
        "bias": float(np.mean(errors)),
        "covered": covered,
        "tests": tests,
        "by_sex": by_sex,
    }


def speed(directory: Path, genome, molecules: int, runs: int = 3) -> tuple[float, float]:
    bam = write_long_read_bam(
        directory / "speed.bam", genome, LongReadSample("speed", molecules, 0.1, "male"), 7, LongReadEffects()
    )
    ours = [
        sys.executable,
        "-m",
        "plasmacount",
        "--quiet",
        "count",
        str(bam),
        "--long-reads",
        "-o",
        str(directory / "speed.counts.npz"),
    ]
    peer = ["samtools", "view", "-@2", "-c", str(bam)]
    times = {"ours": [], "peer": []}
    for _ in range(runs):
        for name, command in (("ours", ours), ("peer", peer)):
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["peer"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=12)
    parser.add_argument("--molecules", type=int, default=20_000)
    parser.add_argument("--speed-molecules", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, nargs=2, default=(41, 42), metavar=("TRAIN", "TEST"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    genome = make_genome(scale=1 / 1000, seed=3, bin_size=100_000)
    lines = [
        "Data: the project's OWN SIMULATOR (long-read BAMs with MM/ML tags, synthetic genome at 1/1000, 100 kb bins). "
        f"Reference learnt on 4 non-pregnant women and 6 pregnancies of known fetal fraction ({args.molecules // 2:,} molecules each, "
        f"seed {args.seeds[0]}); tested on {args.tests} pregnancies, half of each fetal sex ({args.molecules:,} molecules each, "
        f"seed {args.seeds[1]}, drawn after the method was fixed). Truth: the share of autosomal molecules from the placenta.",
        "",
        "| simulator setting | MAE (points) | largest error | mean error | female / male MAE | 95 % intervals hold the truth |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for label, effects in (
            ("default", LongReadEffects()),
            ("pessimistic (LongReadEffects.pessimistic)", LongReadEffects.pessimistic()),
        ):
            directory = Path(scratch) / label.split()[0]
            directory.mkdir()
            r = cohort(directory, genome, effects, args.molecules, args.tests, *args.seeds)
            lines.append(
                f"| {label} | {100 * r['mae']:.2f} | {100 * r['max']:.2f} | {100 * r['bias']:+.2f} | "
                f"{100 * r['by_sex']['female']:.2f} / {100 * r['by_sex']['male']:.2f} | {r['covered']} of {r['tests']} |"
            )
            shutil.rmtree(directory)
        ours, peer = speed(Path(scratch), genome, args.speed_molecules)
    lines += [
        "",
        f"Counting a {args.speed_molecules:,}-molecule long-read BAM (`count --long-reads`: lengths, bins, log-spaced "
        f"classes): {ours:.2f} s; `samtools view -@2 -c` on it: {peer:.2f} s ({ours / peer:.2f}x; medians of 3, 2 cores).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        sys.path.insert(0, str(HERE))
        from results import write_section

        write_section(
            "methylation",
            "## Long molecules: fetal fraction from methylation, counting speed\n\n" + text,
            "python benchmarks/methylation_fetal_fraction.py --write",
        )


if __name__ == "__main__":
    main()
