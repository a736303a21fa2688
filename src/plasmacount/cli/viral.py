"""Screen plasma for viral DNA (EBV for nasopharyngeal carcinoma): amount, size ratio, two-criterion result."""
from __future__ import annotations

import argparse
import logging

from plasmacount.cli import add_fasta_option, number

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount viral bams/*.bam -o viral-results
plasmacount viral counts/*.counts.npz -o viral-results --cutoffs earlier/viral_cutoffs.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="COUNTS", help="counts files, or indexed BAM/CRAM (for the W repeat and a viral MAPQ)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for <sample>.viral.json, viral.tsv, viral_cutoffs.json")
    parser.add_argument("--virus", metavar="CONTIG", help="viral contig (default EBV: chrEBV / NC_007605), e.g. an HPV16 or HBV contig")
    parser.add_argument("--min-mapq", type=number(int, 0, 255), default=30, metavar="Q", help="MAPQ of unique viral reads, with alignments (default 30)")
    add_fasta_option(parser, "genome FASTA, for CRAM input")
    parser.add_argument("--proportion-cutoff", type=number(float, 0.0, 1.0), metavar="P", help="viral fragments / all fragments to pass (default 3e-7)")
    parser.add_argument("--size-ratio-cutoff", type=number(float, 0.0, above=True), metavar="R", help="highest NPC-like size ratio (default 10)")
    parser.add_argument("--min-size-fragments", type=number(int, 1), metavar="N", help="viral fragments needed to evaluate the size ratio (default 3)")
    parser.add_argument("--cutoffs", metavar="JSON", help="cut-offs from an earlier run (its viral_cutoffs.json)")
    parser.add_argument("--train", metavar="LABELS", help="learn the cut-offs from these samples: TSV of sample and label (npc / other)")


def run(args: argparse.Namespace) -> None:
    import dataclasses

    from plasmacount.counts import input_kind, load_counts
    from plasmacount.errors import UsageError
    from plasmacount.progress import Progress
    from plasmacount.viral import (ScreenCutoffs, apply_screen, from_alignments, from_counts, learn_cutoffs, load_cutoffs, read_labels,
                                   write_outputs)

    if args.cutoffs and args.train:
        raise UsageError("--cutoffs and --train exclude each other: reuse cut-offs or learn new ones")
    cutoffs = load_cutoffs(args.cutoffs) if args.cutoffs else ScreenCutoffs()
    changes = {k: v for k, v in (("proportion", args.proportion_cutoff), ("size_ratio", args.size_ratio_cutoff),
                                 ("min_size_fragments", args.min_size_fragments)) if v is not None}
    if changes:
        cutoffs = dataclasses.replace(cutoffs, source="options", **changes)
    if cutoffs.proportion < 0 or cutoffs.size_ratio <= 0 or cutoffs.min_size_fragments < 1:
        raise UsageError("cut-offs must be positive: --proportion-cutoff >= 0, --size-ratio-cutoff > 0, --min-size-fragments >= 1")
    progress = Progress("viral screen", enabled=not args.quiet)
    results = []
    for i, source in enumerate(args.inputs):
        if input_kind(source) in ("bam", "cram"):
            results.append(from_alignments(source, args.virus, cutoffs, args.min_mapq, args.fasta))
        else:
            results.append(from_counts(load_counts(source), args.virus, cutoffs, str(source)))
        progress(i + 1, len(args.inputs))
    if args.train:
        cutoffs = learn_cutoffs(results, read_labels(args.train))
        results = [apply_screen(result, cutoffs) for result in results]
    write_outputs(results, args.output, cutoffs)
    positives = sum(r["screen"]["result"] == "positive" for r in results)
    logger.info("%d samples screened for %s: %d positive (cut-offs: %s)", len(results), results[0]["virus"] if results else "EBV",
                positives, cutoffs.source)
