"""Count cfDNA fragments per genomic bin from a BAM/CRAM (or import counts from a WIG/TSV)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plasmacount.cli import add_fasta_option, add_fragment_rule_options, fragment_rules, number
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")


def _range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH in bp, e.g. 100-150, not {text!r}") from None
    return low, high


EXAMPLES = """
plasmacount count sample01.bam --bins hg38.100kb.bins.npz -o counts/sample01.counts.npz
plasmacount count sample02.cram --fasta GRCh38.fa --bins hg38.100kb.bins.npz -o counts/sample02.counts.npz --tsv counts/sample02.tsv
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        metavar="IN",
        help="coordinate-sorted, indexed BAM or CRAM; a fragment file (.frag.gz); or counts as "
        "readCounter WIG or TSV (chrom start end count)",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="counts file to write (plasmacount counts format, .npz)"
    )
    parser.add_argument(
        "--tsv", metavar="PATH", help="also write a per-bin table: chrom start end count (short long for paired-end)"
    )
    bins = parser.add_mutually_exclusive_group()
    bins.add_argument(
        "--bin-size",
        type=number(int, 100),
        default=None,
        metavar="N",
        help="bin size in bp laid over the header's chromosomes (default 100000)",
    )
    bins.add_argument("--bins", metavar="ANNOTATION", help="bins of an annotation made by `plasmacount bins`")
    add_fasta_option(parser, "genome FASTA, for CRAM input")
    parser.add_argument("--sample", help="sample name (default: SM of the read group, else the file name)")
    parser.add_argument(
        "--keep-duplicates", action="store_true", help="count duplicate-flagged reads (default: skip them)"
    )
    parser.add_argument("--keep-qc-fail", action="store_true", help="count QC-fail-flagged reads (default: skip them)")
    parser.add_argument(
        "--remove-unmarked-duplicates",
        action="store_true",
        help="skip fragments with the same position, strand (and length) as one already counted",
    )
    parser.add_argument(
        "--short-range",
        type=_range,
        default=(100, 150),
        metavar="LOW-HIGH",
        help="short fragment lengths counted per bin (default 100-150)",
    )
    parser.add_argument(
        "--long-range",
        type=_range,
        default=(151, 220),
        metavar="LOW-HIGH",
        help="long fragment lengths counted per bin (default 151-220)",
    )
    add_fragment_rule_options(parser)
    parser.add_argument(
        "--fragments-out",
        metavar="FRAG_GZ",
        help="also write the counted fragments as a FinaleToolkit/DELFI fragment "
        "file (chrom start end mapq strand; bgzip + tabix index); fragment files are read as input too",
    )
    parser.add_argument(
        "--threads", type=number(int, 1, 256), default=2, metavar="N", help="decompression threads (default 2)"
    )


def run(args: argparse.Namespace) -> None:
    from plasmacount.alignments import CountOptions, ScanRequest, scan_alignments
    from plasmacount.bins import BinAnnotation
    from plasmacount.counts import input_kind, load_counts
    from plasmacount.fragment_files import count_fragment_file
    from plasmacount.progress import Progress

    source = Path(args.input)
    kind = input_kind(source)
    annotation = BinAnnotation.load(args.bins) if args.bins else None
    if args.fragments_out and kind not in ("bam", "cram"):
        raise UsageError(f"--fragments-out writes the fragments of alignments; {source} is not a BAM or CRAM")
    if kind in ("bam", "cram", "fragments"):
        options = CountOptions(
            **fragment_rules(args),
            skip_duplicates=not args.keep_duplicates,
            skip_qc_fail=not args.keep_qc_fail,
            remove_unmarked_duplicates=args.remove_unmarked_duplicates,
            short_range=args.short_range,
            long_range=args.long_range,
            threads=args.threads,
        )
        if kind == "fragments":
            counts, _ = count_fragment_file(
                source, args.bin_size or 100_000, annotation, args.bins, options, args.fasta, args.sample
            )
        else:
            counts, _ = scan_alignments(
                source,
                bin_size=args.bin_size or 100_000,
                annotation=annotation,
                annotation_path=args.bins,
                options=options,
                reference=args.fasta,
                sample=args.sample,
                progress=Progress(f"counting {source.name}", enabled=not args.quiet, interval=30.0),
                request=ScanRequest(fragment_file=args.fragments_out),
            )
    else:
        counts = load_counts(source)
        if args.sample:
            counts.sample = args.sample
        if args.bin_size and args.bin_size != counts.bin_size:
            raise UsageError(
                f"{source} holds {counts.bin_size:,} bp bins; --bin-size {args.bin_size:,} cannot re-bin imported counts"
            )
        if annotation is not None:
            from plasmacount.genome import check_compatible

            if annotation.bin_size != counts.bin_size:
                raise UsageError(
                    f"{source} holds {counts.bin_size:,} bp bins but {args.bins} has {annotation.bin_size:,} bp bins"
                )
            check_compatible(
                annotation.layout, [(c.name, c.length) for c in counts.layout.contigs], str(source), args.bins
            )
            counts = counts.on_layout(annotation.layout)
    existed = Path(args.output).exists()
    counts.save(args.output)
    if args.tsv:
        try:
            counts.write_tsv(args.tsv)
        except BaseException:
            if not existed:  # both new outputs or neither (an older file of the same name is not ours to delete)
                Path(args.output).unlink(missing_ok=True)
            raise
    qc = counts.qc
    logger.info(
        "%s: %s fragments counted in %s bins of %s bp%s",
        counts.sample,
        f"{int(counts.counts.sum()):,}",
        f"{counts.layout.n_bins:,}",
        f"{counts.bin_size:,}",
        " (paired-end)" if counts.paired else "",
    )
    if qc.get("total"):
        logger.info(
            "reads: %s total, %s mapped, %s duplicates, %s below MAPQ %d",
            f"{qc['total']:,}",
            f"{qc['mapped']:,}",
            f"{qc.get('duplicates', 0):,}",
            f"{qc['low_mapq']:,}",
            counts.filters.get("min_mapq", 0),
        )
