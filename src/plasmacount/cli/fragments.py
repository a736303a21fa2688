"""Fragmentomics: size profile, 10 bp periodicity, long molecules, short/long windows, end motifs."""

from __future__ import annotations

import argparse
import logging

from plasmacount.cli import add_fasta_option, add_fragment_rule_options, fragment_rules, number
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount fragments sample01.bam --fasta GRCh38.fa --bins hg38.100kb.bins.npz -o fragment-results
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="COUNTS_OR_BAM",
        help="indexed BAM/CRAM, fragment files (.frag.gz), counts files or WIG/TSV counts",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="folder for <sample>.fragments.json, tables and fragments.tsv",
    )
    add_fasta_option(parser, "genome FASTA: end motifs (and CRAM decoding)")
    parser.add_argument(
        "--bins",
        metavar="ANNOTATION",
        help="bin annotation: GC-corrected short/long ratios (and the bins for BAM/CRAM)",
    )
    parser.add_argument(
        "--window",
        type=number(int, 1000),
        default=5_000_000,
        metavar="BP",
        help="window for short/long ratios (default 5000000)",
    )
    parser.add_argument(
        "--bin-size",
        type=number(int, 100),
        default=100_000,
        metavar="N",
        help="bins when counting BAM/CRAM without --bins (default 100000)",
    )
    parser.add_argument(
        "--motif-length", type=number(int, 1, 12), default=4, metavar="K", help="end motifs of K bases (default 4)"
    )
    parser.add_argument(
        "--fragment-files",
        action="store_true",
        help="also write OUTDIR/<sample>.frag.gz (FinaleToolkit/DELFI fragment file, bgzip + tabix) from each BAM/CRAM",
    )
    add_fragment_rule_options(parser)
    parser.add_argument(
        "--intervals",
        metavar="BED",
        help="sites (e.g. transcription start sites): coverage, long and short WPS, "
        "adjusted WPS and cleavage profile over 5 kb around each (TSV per site and per name, bigWig tracks)",
    )
    from plasmacount.intervals import INTERVAL_FEATURES

    parser.add_argument(
        "--interval-features",
        choices=INTERVAL_FEATURES,
        default="all",
        help="with --intervals: all (default) or coverage only (no WPS, cleavage or tracks; for many sites)",
    )
    from plasmacount.fragments import INTERVALS_ONLY_LONGEST

    parser.add_argument(
        "--intervals-only",
        action="store_true",
        help="with --intervals: read only the reads near the sites through the BAM/CRAM index and write only "
        "<sample>.intervals.json and the interval tables (no genome-wide features, no coverage per million; "
        f"pairs up to --max-length bp, {INTERVALS_ONLY_LONGEST} with --max-length 0); quick for few sites "
        "on a large file",
    )
    parser.add_argument(
        "--delfi-panel",
        metavar="PANEL",
        help="DELFI: correlate each profile with this panel's median and z-score its arms (made by --make-delfi-panel)",
    )
    parser.add_argument(
        "--make-delfi-panel",
        metavar="OUT",
        help="DELFI: write the median profile of the inputs (healthy donors) to OUT",
    )
    parser.add_argument(
        "--delfi-window-ratio",
        choices=("sum", "mean"),
        default=None,
        help="a 5 Mb window's ratio: sum (its short over its long fragments, DELFI; default) or mean (of its "
        "100 kb ratios, FinaleToolkit; the default with --convention finaletoolkit)",
    )
    from plasmacount.delfi import GC_SMOOTHERS

    parser.add_argument(
        "--delfi-gc-smoother",
        choices=GC_SMOOTHERS,
        default="delfi",
        help="DELFI's GC correction: delfi (its two-stage loess; default) or loess_1d (FinaleToolkit's: "
        "Cappellari's loess_1d on a 0.01 GC grid; needs `pip install loess`, free for non-commercial use only)",
    )
    parser.add_argument(
        "--methylation-reference",
        metavar="REF",
        help="fetal fraction from per-molecule CpG methylation against this "
        "reference (made by --learn-methylation-reference; same --bins)",
    )
    parser.add_argument(
        "--learn-methylation-reference",
        metavar="OUT",
        help="learn a methylation reference from the inputs and write it to OUT (needs --known-fetal-fractions)",
    )
    parser.add_argument(
        "--known-fetal-fractions",
        metavar="TSV",
        help="for --learn-methylation-reference: `sample  fetal_fraction` per input, 0 for a non-pregnant woman",
    )


def run(args: argparse.Namespace) -> None:
    from plasmacount import delfi, fragments
    from plasmacount.alignments import CountOptions
    from plasmacount.bins import BinAnnotation
    from plasmacount.intervals import read_sites
    from plasmacount.progress import Progress

    if args.window <= 0:
        raise UsageError(f"--window must be a positive number of bases, not {args.window}")
    if args.interval_features != "all" and not args.intervals:
        raise UsageError("--interval-features needs --intervals BED")
    if args.intervals_only:
        genome_wide = [
            flag
            for flag, given in (
                ("--fragment-files", args.fragment_files),
                ("--delfi-panel", args.delfi_panel),
                ("--make-delfi-panel", args.make_delfi_panel),
                ("--methylation-reference", args.methylation_reference),
                ("--learn-methylation-reference", args.learn_methylation_reference),
            )
            if given
        ]
        if not args.intervals:
            raise UsageError("--intervals-only needs --intervals BED")
        if genome_wide:
            raise UsageError(
                f"--intervals-only reads the sites alone; {', '.join(genome_wide)} need(s) the whole file: drop one of them"
            )
    if args.learn_methylation_reference and not args.known_fetal_fractions:
        raise UsageError(
            "--learn-methylation-reference needs --known-fetal-fractions TSV (sample, fetal_fraction; 0 if not pregnant)"
        )
    annotation = BinAnnotation.load(args.bins) if args.bins else None
    panel = delfi.load_panel(args.delfi_panel) if args.delfi_panel else None
    sites = read_sites(args.intervals) if args.intervals else None
    if args.intervals_only and not sites:
        raise UsageError("--intervals-only needs --intervals BED")
    if args.delfi_gc_smoother == "loess_1d":
        delfi.loess_1d_function()  # before the pass, not after it
    options = fragments.FragmentOptions(
        fasta=args.fasta,
        annotation_path=args.bins,
        window=args.window,
        bin_size=args.bin_size,
        counting=CountOptions(**fragment_rules(args)),
        motif_length=args.motif_length,
        fragment_files=bool(args.fragment_files),
        delfi_window_ratio=args.delfi_window_ratio or ("mean" if args.convention == "finaletoolkit" else "sum"),
        delfi_gc_smoother=args.delfi_gc_smoother,
        sites=tuple(sites) if sites is not None else None,
        interval_features=args.interval_features,
        intervals_only=args.intervals_only,
    )
    progress = Progress("fragmentomics", enabled=not args.quiet)
    results = fragments.analyse_batch(args.inputs, args.output, annotation, options, panel, progress)
    if args.make_delfi_panel:
        made = fragments.make_delfi_panel(results, args.make_delfi_panel)
        logger.info("DELFI panel of %d profiles written to %s", made, args.make_delfi_panel)
    if args.learn_methylation_reference:
        known = fragments.read_known_fetal_fractions(args.known_fetal_fractions)
        learnt = fragments.learn_methylation_reference(
            results, known, args.learn_methylation_reference, args.known_fetal_fractions
        )
        logger.info("methylation reference from %d samples written to %s", learnt, args.learn_methylation_reference)
    if args.methylation_reference:
        from plasmacount.methylation import MethylationReference

        fragments.add_methylation_fetal_fractions(results, MethylationReference.load(args.methylation_reference))
    fragments.write_outputs(results, args.output)
    for result, _ in results:
        if args.intervals_only:
            logger.info(
                "%s: %d reads read near %d sites, %d fragments kept",
                result["sample"],
                result["reads_read"],
                result["intervals"]["sites"],
                result["fragments_kept"],
            )
            continue
        size = result["size"]
        if not size["fragments"]:
            logger.warning(
                "%s: no fragment lengths (single-end reads, or no proper pairs): its size statistics are empty; "
                "fragmentomics needs paired-end data",
                result["sample"],
            )
        logger.info(
            "%s: %s fragments, mode %s bp, %.1f %% below 150 bp, motif diversity %s",
            result["sample"],
            size["fragments"],
            size["mode"],
            100 * (size["share_below_150"] or 0),
            "NA" if result["end_motifs"]["diversity"] is None else f"{result['end_motifs']['diversity']:.3f}",
        )
