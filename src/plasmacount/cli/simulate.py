"""Simulate plasma DNA sequencing cohorts with known truth: counts, BAM, CRAM or FASTQ."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plasmacount.cli import number

logger = logging.getLogger("plasmacount")


def read_count(text: str) -> int:
    """'10M', '500k', '2.5M' or a plain number."""
    factors = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    try:
        if text[-1].lower() in factors:
            return int(float(text[:-1]) * factors[text[-1].lower()])
        return int(float(text))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected a number of reads such as 10M or 500k, not {text!r}") from None


EXAMPLES = """
plasmacount simulate --cohort nipt --samples 20 --reads 10M -o simulated
plasmacount simulate --cohort euploid --samples 200 --genome hg38 --placental-pattern-sd 0 --chrY-hotspot-share 0.05 -o panel
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from plasmacount.simulation import COHORTS, FORMATS

    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR", help="folder for the data, truth.tsv and truth.json"
    )
    parser.add_argument(
        "--cohort",
        choices=COHORTS,
        default="nipt",
        help="nipt: pregnancies with aneuploidies and CNVs; euploid: normal pregnancies (a reference panel); "
        "cancer: tumour fractions 0-30%%; healthy: non-pregnant donors; ebv: NPC screening (default nipt)",
    )
    parser.add_argument(
        "--samples", type=number(int, 1), default=10, metavar="N", help="number of samples (default 10)"
    )
    parser.add_argument(
        "--reads",
        type=read_count,
        default=10_000_000,
        metavar="N",
        help="mean counted fragments per sample, e.g. 10M (default)",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=FORMATS,
        default="counts",
        help="output: counts (fast), bam, cram, fastq, or long-bam: long-read "
        "whole molecules with CpG methylation (MM/ML), --reads molecules per sample (default counts)",
    )
    parser.add_argument(
        "--genome",
        choices=("synthetic", "hg38"),
        default="synthetic",
        help="synthetic: scaled genome with a FASTA (needed for CRAM/FASTQ); hg38: real names and lengths (default synthetic)",
    )
    parser.add_argument(
        "--bins",
        metavar="ANNOTATION",
        help="with --genome hg38: real GC/mappability per bin (e.g. an imported QDNAseq table)",
    )
    parser.add_argument(
        "--bin-size",
        type=number(int, 100),
        metavar="N",
        help="bin size (default: 100 kb for hg38, 100 kb x scale for the synthetic genome)",
    )
    parser.add_argument(
        "--scale",
        type=number(float, 0.0, 1.0, above=True),
        default=1 / 200,
        metavar="F",
        help="synthetic genome size relative to hg38 (default 0.005)",
    )
    parser.add_argument(
        "--paired", action="store_true", help="paired-end reads with fragment lengths (default single-end)"
    )
    parser.add_argument(
        "--read-length", type=number(int, 20, 1000), default=50, metavar="L", help="read length (default 50)"
    )
    parser.add_argument(
        "--fetal-fraction-median",
        type=number(float, 0.0, 0.5, above=True),
        default=0.10,
        metavar="F",
        help="median fetal fraction (default 0.10)",
    )
    parser.add_argument("--prefix", help="sample name prefix (default: the cohort name)")
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed of the samples; the same seeds give the same files (default 1)"
    )
    parser.add_argument(
        "--lab-seed",
        type=int,
        default=1,
        help="random seed of the genome and the lab's per-bin effects, shared by cohorts of one lab (default 1)",
    )
    parser.add_argument(
        "--placental-pattern-sd",
        type=number(float, 0.0, 1.0),
        default=None,
        metavar="SD",
        help="per-bin efficiency of placental DNA (lognormal SD; default 0.03, weak as in real data; 0 = none, "
        "0.15 = the strong pattern that makes female fetal fraction from the bin profile easy)",
    )
    parser.add_argument(
        "--chrY-hotspot-share",
        dest="y_hotspot_share",
        type=number(float, 0.0, 1.0, above=True),
        default=None,
        metavar="F",
        help="share of chrY bins where the female mis-mapping background piles up (default 0.2; pessimistic 0.05)",
    )
    parser.add_argument(
        "--ebv-npc-low-load-share",
        type=number(float, 0.0, 1.0),
        default=0.0,
        metavar="F",
        help="EBV cohort: share of NPC drawn with a carrier's viral load (default 0; pessimistic 0.33)",
    )
    parser.add_argument(
        "--ebv-carrier-nucleosomal-share",
        type=number(float, 0.0, 1.0),
        default=0.0,
        metavar="F",
        help="EBV cohort: each carrier's share of nucleosome-sized (NPC-like) viral DNA is drawn up to this "
        "(default 0: carriers' viral DNA all short; pessimistic 0.5)",
    )
    parser.add_argument(
        "--long-read-pessimistic",
        action="store_true",
        help="long-bam: placenta and blood methylation closer and noisier (see docs/simulation.md)",
    )
    parser.add_argument(
        "--threads", type=number(int, 1, 256), default=2, metavar="N", help="compression threads (default 2)"
    )


def run(args: argparse.Namespace) -> None:
    from plasmacount.errors import UsageError
    from plasmacount.long_read_simulation import LongReadEffects
    from plasmacount.progress import Progress
    from plasmacount.simulation import EbvDraws, LabEffects, SimulationRequest, run_simulation

    changes = {
        name: value
        for name, value in (
            ("placental_pattern_sd", args.placental_pattern_sd),
            ("y_hotspot_share", args.y_hotspot_share),
        )
        if value is not None
    }
    if any(value < 0 for value in changes.values()) or changes.get("y_hotspot_share", 0.5) > 1:
        raise UsageError("--placental-pattern-sd must be >= 0 and --chrY-hotspot-share between 0 and 1")
    if args.bins and args.genome != "hg38":
        raise UsageError("--bins goes with --genome hg38; the synthetic genome makes its own bins")
    request = SimulationRequest(
        output=Path(args.output),
        cohort=args.cohort,
        samples=args.samples,
        reads=args.reads,
        seed=args.seed,
        lab_seed=args.lab_seed,
        paired=args.paired,
        read_length=args.read_length,
        output_format=args.output_format,
        genome=args.genome,
        scale=args.scale,
        bin_size=args.bin_size,
        bins=args.bins,
        fetal_fraction_median=args.fetal_fraction_median,
        threads=args.threads,
        prefix=args.prefix,
        effects=LabEffects(**changes),
        ebv=EbvDraws(
            npc_low_load_share=args.ebv_npc_low_load_share,
            carrier_nucleosomal_share_max=args.ebv_carrier_nucleosomal_share,
        ),
        long_read_effects=LongReadEffects.pessimistic() if args.long_read_pessimistic else LongReadEffects(),
    )
    paths = run_simulation(request, progress=Progress("simulating samples", enabled=not args.quiet))
    logger.info(
        "%d %s files and their truth (truth.tsv, truth.json) written to %s", len(paths), args.output_format, args.output
    )
