"""The built-in demonstration: a simulated cohort taken through every step plasmacount has.

It writes a synthetic genome and its bin annotation, simulates paired-end BAMs of a few
pregnancies and a count-level cohort, counts the BAMs, and summarises counted fragments and
fragment sizes against the simulation's truth. Later steps (reference panel, calls, reports)
join here as they are built.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from plasmacount.alignments import CountOptions, count_alignments
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.files import atomic_output
from plasmacount.simulation import SimulationRequest, run_simulation


@dataclass
class DemoResult:
    output: Path
    bams: list[Path]
    counts: list[Path]
    cohort_counts: list[Path]
    summary: Path


def run_demo(output: str | Path, seed: int = 1, reads: int = 200_000, bam_samples: int = 4, cohort_samples: int = 40,
             progress: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demonstration into `output` (created if needed)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda message: None)
    say(f"simulating {bam_samples} paired-end pregnancies as BAM ({reads:,} fragments each)")
    reads_dir = output / "alignments"
    bams = run_simulation(SimulationRequest(output=reads_dir, cohort="nipt", samples=bam_samples, reads=reads, seed=seed,
                                            paired=True, output_format="bam", scale=1 / 1000, prefix="pregnancy"))
    annotation_path = reads_dir / "genome" / "bins.npz"
    annotation = BinAnnotation.load(annotation_path)
    counts_dir = output / "counts"
    counts_dir.mkdir(exist_ok=True)
    counted = []
    for bam in bams:
        say(f"counting {bam.name}")
        sample_counts = count_alignments(bam, annotation=annotation, annotation_path=str(annotation_path), options=CountOptions())
        path = counts_dir / f"{sample_counts.sample}.counts.npz"
        sample_counts.save(path)
        sample_counts.write_tsv(counts_dir / f"{sample_counts.sample}.counts.tsv")
        counted.append(path)
    say(f"simulating a count-level cohort of {cohort_samples} pregnancies (10 M fragments each)")
    cohort = run_simulation(SimulationRequest(output=output / "cohort", cohort="nipt", samples=cohort_samples, reads=10_000_000,
                                              seed=seed, paired=True, output_format="counts", prefix="cohort"))
    with open(reads_dir / "truth.tsv") as stream:
        truth = {row["sample"]: row for row in csv.DictReader(stream, delimiter="\t")}
    summary = output / "summary.tsv"
    with atomic_output(summary, "w") as stream:
        stream.write("sample\tfetal_sex\tfetal_fraction\tfindings\treads\tcounted\tduplicates\tlow_mapq\tmode_bp\tshort_fraction\tchrEBV\n")
        for path in counted:
            c = SampleCounts.load(path)
            histogram = c.fragment_lengths
            short_fraction = histogram[:150].sum() / max(histogram.sum(), 1)
            ebv = dict(zip((o["name"] for o in c.other_contigs), c.other_counts.tolist())).get("chrEBV", 0)
            t = truth[c.sample]
            stream.write(f"{c.sample}\t{t['fetal_sex']}\t{t['fetal_fraction']}\t{t['findings'] or '-'}\t{c.qc['total']}\t{c.qc['counted']}\t"
                         f"{c.qc['duplicates']}\t{c.qc['low_mapq']}\t{int(np.argmax(histogram))}\t{short_fraction:.3f}\t{ebv}\n")
    with atomic_output(output / "demo.json", "w") as stream:
        json.dump({"bams": [str(p) for p in bams], "counts": [str(p) for p in counted], "cohort": [str(p) for p in cohort],
                   "summary": str(summary)}, stream, indent=1)
        stream.write("\n")
    return DemoResult(output, bams, counted, cohort, summary)
