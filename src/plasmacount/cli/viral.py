"""Screen plasma for viral DNA (EBV for nasopharyngeal carcinoma): amount, size ratio, two-criterion result."""

from __future__ import annotations

import argparse
import logging

from plasmacount.cli import add_fasta_option, number

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount viral bams/*.bam -o viral-results
plasmacount viral counts/*.counts.npz -o trained --train labels.tsv --specificity 0.95
plasmacount viral counts/*.counts.npz -o viral-results --model trained/viral_model.json
plasmacount viral retest/*.counts.npz -o retest-results --model trained/viral_model.json --previous viral-results/*.viral.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="COUNTS",
        help="counts files, or indexed BAM/CRAM (for the W repeat and a viral MAPQ)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="folder for <sample>.viral.json, viral.tsv, viral_model.json",
    )
    parser.add_argument(
        "--virus", metavar="CONTIG", help="viral contig (default EBV: chrEBV / NC_007605), e.g. an HPV16 or HBV contig"
    )
    parser.add_argument(
        "--min-mapq",
        type=number(int, 0, 255),
        default=30,
        metavar="Q",
        help="MAPQ of unique viral reads, with alignments (default 30)",
    )
    add_fasta_option(parser, "genome FASTA, for CRAM input")
    parser.add_argument(
        "--threshold",
        type=number(float, 0.0),
        metavar="LLR",
        help="log likelihood ratio NPC : not NPC to screen positive (default: the published PPV at the published prevalence, 4.97)",
    )
    parser.add_argument(
        "--min-size-fragments",
        type=number(int, 1),
        metavar="N",
        help="viral fragments needed to judge the size (default 3)",
    )
    parser.add_argument("--model", metavar="JSON", help="screen model from an earlier run (its viral_model.json)")
    parser.add_argument(
        "--train", metavar="LABELS", help="learn the model from these samples: TSV of sample and label (npc / other)"
    )
    parser.add_argument(
        "--specificity",
        type=number(float, 0.5, 1.0),
        default=0.95,
        metavar="S",
        help="with --train: share of non-NPC carriers below the line (default 0.95)",
    )
    parser.add_argument(
        "--previous",
        nargs="+",
        metavar="JSON",
        help="the first draw's <sample>.viral.json files: this run is the retest",
    )


def run(args: argparse.Namespace) -> None:
    import dataclasses

    from plasmacount.errors import UsageError
    from plasmacount.progress import Progress
    from plasmacount.results import ViralResult
    from plasmacount.viral import ScreenModel, ViralOptions, load_model, read_labels, read_previous, run_batch

    if args.model and args.train:
        raise UsageError("--model and --train exclude each other: reuse a model or learn a new one")
    model = load_model(args.model) if args.model else ScreenModel()
    changes = {
        k: v
        for k, v in (("threshold", args.threshold), ("min_size_fragments", args.min_size_fragments))
        if v is not None
    }
    if changes:
        model = dataclasses.replace(model, source=model.source + "; changed by options", **changes)
    results, model = run_batch(
        args.inputs,
        args.output,
        model,
        ViralOptions(virus=args.virus, min_mapq=args.min_mapq, fasta=args.fasta),
        labels=read_labels(args.train) if args.train else None,
        specificity=args.specificity,
        previous=read_previous(args.previous or []),
        progress=Progress("viral screen", enabled=not args.quiet),
    )
    screened = [ViralResult(r) for r in results]
    logger.info(
        "%d samples screened for %s: %d positive (model: %s)",
        len(screened),
        screened[0].virus if screened else "EBV",
        sum(r.positive for r in screened),
        model.source,
    )
