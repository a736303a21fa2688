"""Fragmentomics: size profile, 10 bp periodicity, long molecules, short/long windows, end motifs."""
from __future__ import annotations

import argparse
import logging

from plasmacount.cli import add_fasta_option, add_max_length_option, number

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount fragments sample01.bam --fasta GRCh38.fa --bins hg38.100kb.bins.npz -o fragment-results
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="COUNTS_OR_BAM", help="counts files, WIG/TSV counts, or indexed BAM/CRAM")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for <sample>.fragments.json, tables and fragments.tsv")
    add_fasta_option(parser, "genome FASTA: end motifs (and CRAM decoding)")
    parser.add_argument("--bins", metavar="ANNOTATION", help="bin annotation: GC-corrected short/long ratios (and the bins for BAM/CRAM)")
    parser.add_argument("--window", type=number(int, 1000), default=5_000_000, metavar="BP", help="window for short/long ratios (default 5000000)")
    parser.add_argument("--bin-size", type=number(int, 100), default=100_000, metavar="N", help="bins when counting BAM/CRAM without --bins (default 100000)")
    parser.add_argument("--min-mapq", type=number(int, 0, 255), default=20, metavar="Q", help="skip reads with mapping quality below Q (default 20)")
    add_max_length_option(parser)


def run(args: argparse.Namespace) -> None:
    from plasmacount.alignments import CountOptions
    from plasmacount.bins import BinAnnotation
    from plasmacount.errors import UsageError
    from plasmacount.fragments import analyse, write_outputs
    from plasmacount.progress import Progress

    if args.window <= 0:
        raise UsageError(f"--window must be a positive number of bases, not {args.window}")
    annotation = BinAnnotation.load(args.bins) if args.bins else None
    progress = Progress("fragmentomics", enabled=not args.quiet)
    results = []
    for i, source in enumerate(args.inputs):
        results.append(analyse(source, args.fasta, annotation, args.bins, args.window, args.bin_size, CountOptions(min_mapq=args.min_mapq, max_pair_length=args.max_length)))
        progress(i + 1, len(args.inputs))
    write_outputs(results, args.output)
    for result, _ in results:
        size = result["size"]
        if not size["fragments"]:
            logger.warning("%s: no fragment lengths (single-end reads, or no proper pairs): its size statistics are empty; "
                           "fragmentomics needs paired-end data", result["sample"])
        logger.info("%s: %s fragments, mode %s bp, %.1f %% below 150 bp, motif diversity %s", result["sample"], size["fragments"],
                    size["mode"], 100 * (size["share_below_150"] or 0), "NA" if result["end_motifs"]["diversity"] is None
                    else f"{result['end_motifs']['diversity']:.3f}")
