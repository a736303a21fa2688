"""Make the bin annotation of a genome: GC, N content, mappability and blacklist per bin."""

from __future__ import annotations

import argparse
import logging

from plasmacount.cli import number
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount bins --fasta GRCh38.fa --bin-size 100000 --blacklist hg38-blacklist.v2.bed -o hg38.100kb.bins.npz
plasmacount bins --import hg38.100kbp.SR50.bins.tsv.gz -o hg38.100kb.bins.npz   # a QDNAseq table (with mappability)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", metavar="REF.fa", help="reference FASTA (indexed or indexable with samtools faidx)")
    source.add_argument(
        "--import",
        dest="import_files",
        nargs="+",
        metavar="FILE",
        help="ready annotations: QDNAseq bin TSV, a plain GC table ('chrom start end gc_percent', as NIPTeR's) and/or ichorCNA GC/mappability WIGs ('gc'/'map' in the name)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="ANNOTATION", help="annotation file to write (.npz)")
    parser.add_argument(
        "--bin-size",
        type=number(int, 100),
        default=100_000,
        metavar="N",
        help="bin size in bp for --fasta (default 100000)",
    )
    parser.add_argument("--blacklist", metavar="BED", help="regions to flag (e.g. the ENCODE blacklist), with --fasta")
    parser.add_argument("--all-contigs", action="store_true", help="bin every FASTA contig, not only chr1-22/X/Y")


def run(args: argparse.Namespace) -> None:
    from plasmacount.bins import annotate_fasta, import_annotations
    from plasmacount.progress import Progress

    if args.fasta:
        annotation = annotate_fasta(
            args.fasta,
            args.bin_size,
            args.blacklist,
            args.all_contigs,
            progress=Progress("annotating bins", enabled=not args.quiet),
        )
    else:
        if args.blacklist:
            raise UsageError("--blacklist goes with --fasta; imported annotations carry their own blacklist column")
        annotation = import_annotations(args.import_files)
    annotation.save(args.output)
    layout = annotation.layout
    logger.info(
        "%s bins of %s bp over %d contigs (build %s) written to %s",
        f"{layout.n_bins:,}",
        f"{layout.bin_size:,}",
        len(layout.contigs),
        layout.build,
        args.output,
    )
