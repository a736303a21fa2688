"""The `plasmacount` command line: one module per subcommand, each a thin layer over the library.

Each subcommand module has a docstring (its first line is the help summary), an
`add_arguments(parser)` function and a `run(args)` function. This module dispatches, sets up
logging (--quiet, --debug) and turns the library's errors into one-line messages with exit
code 1 (bad data) or 2 (bad usage); --debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
import sys
import time
from pathlib import Path

from plasmacount import __version__
from plasmacount.errors import PlasmacountError
from plasmacount.progress import recording_stages, stage, summarise

SUBCOMMANDS = (
    "bins",
    "count",
    "reference",
    "nipt",
    "viral",
    "tumor",
    "fragments",
    "report",
    "simulate",
    "demo",
    "serve",
    "import",
    "user",
)
MODULES = {"import": "import_results"}  # subcommands whose name is a Python keyword

logger = logging.getLogger("plasmacount")


class _Formatter(logging.Formatter):
    """Plain messages for INFO; 'WARNING:'/'ERROR:' prefixes kept for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname}: {message}"


def _summary(name: str) -> str:
    """First docstring line of a subcommand module, read without importing it (fast --help)."""
    source = Path(__file__).with_name(f"{MODULES.get(name, name)}.py").read_text()
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return docstring.splitlines()[0] if docstring else ""


def number(kind: type, low: float | None = None, high: float | None = None, above: bool = False):
    """An argparse type: an int or float within [low, high] (or above `low` when `above`), so a
    value that makes no sense (a bin size of 0, -1 components, a negative z) stops at the
    command line with exit code 2 instead of giving a silent wrong answer."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if (
            value != value
            or (low is not None and (value <= low if above else value < low))
            or (high is not None and value > high)
        ):
            if above:
                raise argparse.ArgumentTypeError(
                    f"{text} must be above {low:g}" + (f" and at most {high:g}" if high is not None else "")
                )
            if high is None:
                raise argparse.ArgumentTypeError(f"{text} must be at least {low:g}")
            raise argparse.ArgumentTypeError(f"{text} must be from {low:g} to {high:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_fasta_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--fasta FASTA` (the genome FASTA) with its old spelling `--reference` kept as a deprecated
    alias: `--reference` means the panel of normals in `nipt`, and one word for two things misled."""
    parser.add_argument("--fasta", metavar="FASTA", help=help)
    parser.add_argument("--reference", dest="fasta", action=_DeprecatedAlias, help=argparse.SUPPRESS)


CONVENTIONS = {
    # plasmacount's own: the forward mate stands for a pair; facing pairs count up to --max-length.
    "plasmacount": {"representative": "forward", "min_mapq": 20},
    # FinaleToolkit's (and DELFI's fragment files): read 1 stands for the pair, the aligner's
    # proper pairs only, MAPQ >= 30, size classes by fragment midpoint.
    "finaletoolkit": {
        "representative": "read1",
        "min_mapq": 30,
        "max_pair_length": 0,
        "size_class_placement": "midpoint",
    },
}


def length_range(text: str) -> tuple[int, int]:
    """LOW-HIGH in bp (HIGH may be left out: LOW-)."""
    try:
        low, _, high = text.partition("-")
        return int(low), int(high) if high else 1 << 62
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH in bp, e.g. 50-1000 or 50-, not {text!r}") from None


def add_fragment_rule_options(parser: argparse.ArgumentParser) -> None:
    """Which reads make a fragment: `--min-mapq`, `--max-length`, `--convention`, `--long-reads`."""
    from plasmacount.alignments import DEFAULT_MAX_PAIR_LENGTH, SIZE_CLASS_PLACEMENTS

    parser.add_argument(
        "--min-mapq",
        type=number(int, 0, 255),
        default=None,
        metavar="Q",
        help="skip reads with mapping quality below Q (default 20; 30 with --convention finaletoolkit)",
    )
    parser.add_argument(
        "--max-length",
        type=number(int, 0),
        default=None,
        metavar="BP",
        help="pairs the aligner did not mark proper still count when they face each other on one contig "
        f"within BP (default {DEFAULT_MAX_PAIR_LENGTH}); 0: the aligner's proper pairs only "
        "(FinaleToolkit's and DELFI's convention)",
    )
    parser.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default="plasmacount",
        help="plasmacount (default: the forward mate stands for a pair, MAPQ >= 20) or finaletoolkit "
        "(read 1 stands for the pair, proper pairs only, MAPQ >= 30, size classes by midpoint); "
        "--min-mapq, --max-length and --size-class-placement override",
    )
    parser.add_argument(
        "--fragment-lengths",
        type=length_range,
        default=None,
        metavar="LOW-HIGH",
        help="count only fragments of known length LOW..HIGH bp (default: all; FinaleToolkit's end motifs use 50-)",
    )
    parser.add_argument(
        "--size-class-placement",
        choices=SIZE_CLASS_PLACEMENTS,
        default=None,
        help="a fragment's short/long tally goes to the bin of its start (default) or of its midpoint "
        "(DELFI's and FinaleToolkit's rule; the default with --convention finaletoolkit)",
    )
    parser.add_argument(
        "--long-reads",
        action="store_true",
        help="long-read data (nanopore, PacBio): a read without the paired flag is a whole molecule, "
        "its length its reference span",
    )


def fragment_rules(args: argparse.Namespace) -> dict:
    """CountOptions keywords from the options of `add_fragment_rule_options`."""
    from plasmacount.alignments import DEFAULT_MAX_PAIR_LENGTH

    rules = {"max_pair_length": DEFAULT_MAX_PAIR_LENGTH, **CONVENTIONS[args.convention], "long_reads": args.long_reads}
    if args.min_mapq is not None:
        rules["min_mapq"] = args.min_mapq
    if args.max_length is not None:
        rules["max_pair_length"] = args.max_length
    if args.fragment_lengths is not None:
        rules["fragment_lengths"] = args.fragment_lengths
    if args.size_class_placement is not None:
        rules["size_class_placement"] = args.size_class_placement
    return rules


class _DeprecatedAlias(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        # Said once logging is set up (main), so --quiet and the one-line format apply.
        notes = getattr(namespace, "deprecations", None) or []
        notes.append(
            f"{option_string} is deprecated here; use --fasta (--reference now means only the panel of normals)"
        )
        namespace.deprecations = notes
        setattr(namespace, self.dest, values)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit code 2, one line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with the examples' line breaks kept."""


def _chosen_subcommand(argv: list[str]) -> str | None:
    """The subcommand named on the command line: the first word that is not an option (the
    top-level options take no values)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def build_parser(chosen: str | None = None):
    """The parser; the `chosen` subcommand's module is imported and adds its options (so its
    --help lists them), the others stay summaries (fast start). Returns the parser and the
    chosen module (or None)."""
    parser = _ArgumentParser(
        prog="plasmacount",
        description="Molecular counting of plasma cell-free DNA from low-pass sequencing.",
        epilog="Run `plasmacount SUBCOMMAND --help` for a subcommand's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"plasmacount {__version__}")
    parser.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    parser.add_argument("--verbose", action="store_true", help="also print the time each stage took, at the end")
    parser.add_argument("--debug", action="store_true", help="print debug messages and tracebacks")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_ArgumentParser)
    module = None
    for name in SUBCOMMANDS:
        summary = _summary(name)
        if name == chosen:
            module = importlib.import_module(f"plasmacount.cli.{MODULES.get(name, name)}")
            examples = "\n".join(f"  {line}" for line in module.EXAMPLES.strip().splitlines())
            subparser = subparsers.add_parser(
                name, help=summary, description=summary, epilog=f"example:\n{examples}", formatter_class=_HelpFormatter
            )
            module.add_arguments(subparser)
        else:
            subparsers.add_parser(name, help=summary, description=summary)
    return parser, module


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    chosen = _chosen_subcommand(argv)
    parser, module = build_parser(chosen)
    args = parser.parse_args(argv)
    if args.subcommand is None or module is None:
        parser.print_help(sys.stderr)
        sys.exit(2)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO)
    logger.propagate = False
    for note in getattr(args, "deprecations", None) or []:
        logger.warning("%s", note)
    try:
        with recording_stages() as timings:
            started = time.perf_counter()
            with stage(args.subcommand):
                module.run(args)
        if args.verbose:
            logger.info("timings (%.1f s in all):", time.perf_counter() - started)
            for name, seconds, times in summarise(timings):
                logger.info("  %-40s %8.2f s%s", name, seconds, f" ({times} times)" if times > 1 else "")
    except PlasmacountError as error:
        if args.debug:
            raise
        logger.error("%s", error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        if args.debug:
            raise
        logger.error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except MemoryError:
        if args.debug:
            raise
        logger.error("out of memory; use a larger bin size or fewer threads")
        sys.exit(1)
    except OSError as error:
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        logger.error("%s%s", where, error.strerror or error)
        sys.exit(1)
