"""Fragment files: one line per counted cfDNA fragment, the FinaleToolkit/DELFI fragment BED.

A fragment file is BGZF-compressed, tabix-indexed text, one fragment per line, sorted by contig
and start: `chrom  start  end  mapq  strand` (0-based, half-open; MAPQ of the read that stood for
the pair; the strand of read 1). FinaleToolkit reads and writes the same columns (and a BED6
variant with a name column before the score, which is read too). plasmacount writes them
from `count --fragments-out` and `fragments --fragment-files`, after every counting filter, and
reads them wherever it reads a BAM, so BAM -> fragment file -> counts equals BAM -> counts.

Its header lines start with '#':
  #plasmacount-fragments 1 ends=pairs representative=forward min_mapq=20 ...
  #contigs chr1:248956422 chr2:242193529 ...
`ends` says what a line is: `pairs` (a fragment from a read pair), `molecules` (a long read, a
whole molecule) or `single` (a single-end read: its span is the read's, not the fragment's, so
its length is not counted as a fragment length). A file without the header (FinaleToolkit's)
is taken as pairs, with contig lengths from `--bins` or the `--fasta` index.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import TYPE_CHECKING

from plasmacount import __version__
from plasmacount.errors import DataError, UsageError

if TYPE_CHECKING:
    from plasmacount.alignments import CountOptions, ScanFeatures, ScanRequest
    from plasmacount.bins import BinAnnotation
    from plasmacount.counts import SampleCounts

FORMAT = "#plasmacount-fragments"
FORMAT_VERSION = "1"
ENDS = ("pairs", "molecules", "single")


def fragment_file_header(contigs: list[tuple[str, int]], options: CountOptions, ends: str) -> str:
    """The '#' lines that open a fragment file written with these counting options."""
    settings = [
        f"ends={ends}",
        f"representative={options.representative}",
        f"min_mapq={options.min_mapq}",
        f"skip_duplicates={str(options.skip_duplicates).lower()}",
        f"skip_qc_fail={str(options.skip_qc_fail).lower()}",
        f"remove_unmarked_duplicates={str(options.remove_unmarked_duplicates).lower()}",
        f"max_pair_length={options.max_pair_length}",
        f"plasmacount={__version__}",
    ]
    if options.fragment_lengths:
        settings.insert(-1, f"fragment_lengths={options.fragment_lengths[0]}-{options.fragment_lengths[1]}")
    return (
        f"{FORMAT} {FORMAT_VERSION} "
        + " ".join(settings)
        + "\n"
        + "#contigs "
        + " ".join(f"{name}:{length}" for name, length in contigs)
        + "\n"
    )


def index_fragment_file(path: str | os.PathLike) -> str:
    """Build the tabix index of a written fragment file; returns the index's path (`path`.tbi)."""
    import pysam

    index = str(path) + ".tbi"
    try:
        pysam.tabix_index(
            str(path), force=True, seq_col=0, start_col=1, end_col=2, zerobased=True, meta_char="#", index=index
        )
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot index the fragment file ({error})") from error
    return index


def is_fragment_file(path: str | os.PathLike) -> bool:
    """Whether a gzip file holds fragment lines (or opens with the plasmacount header)."""
    try:
        with gzip.open(path, "rt", errors="replace") as stream:
            for _ in range(100):
                line = stream.readline()
                if not line:
                    return False
                if line.startswith(FORMAT):
                    return True
                if line.startswith("#"):
                    continue
                fields = line.rstrip("\n").split("\t")
                return len(fields) >= 5 and fields[1].isdigit() and fields[2].isdigit()
    except (OSError, EOFError, UnicodeDecodeError):
        return False
    return False


def read_header(path: str | os.PathLike) -> tuple[dict, list[tuple[str, int]] | None]:
    """(settings, contigs) from a fragment file's header; ({}, None) for a file without one."""
    settings: dict = {}
    contigs = None
    try:
        with gzip.open(path, "rt", errors="replace") as stream:
            for line in stream:
                if not line.startswith("#"):
                    break
                if line.startswith(FORMAT):
                    fields = line.split()
                    if len(fields) < 2 or fields[1].split(".")[0] != FORMAT_VERSION:
                        raise DataError(
                            f"{path}: fragment file version {fields[1] if len(fields) > 1 else '?'} is not supported; "
                            "re-create it with this plasmacount"
                        )
                    settings = dict(item.split("=", 1) for item in fields[2:] if "=" in item)
                elif line.startswith("#contigs"):
                    contigs = []
                    for item in line.split()[1:]:
                        name, _, length = item.rpartition(":")
                        if not name or not length.isdigit():
                            raise DataError(f"{path}: its #contigs line is corrupt ({item!r}); re-create the file")
                        contigs.append((name, int(length)))
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read the fragment file ({error}); it must be bgzip-compressed") from error
    if settings.get("ends", "pairs") not in ENDS:
        raise DataError(f"{path}: unknown ends={settings['ends']} in its header; re-create the file")
    return settings, contigs


def sample_name(path: str | os.PathLike) -> str:
    """The sample name of a fragment file when none is given: its file name without the suffixes."""
    from plasmacount.counts import sample_name_from_path

    return sample_name_from_path(str(path).removesuffix(".frag.gz").removesuffix(".frag.bed.gz"))


def count_fragment_file(
    path: str | os.PathLike,
    bin_size: int = 100_000,
    annotation: BinAnnotation | None = None,
    annotation_path: str | None = None,
    options: CountOptions | None = None,
    fasta: str | os.PathLike | None = None,
    sample: str | None = None,
    request: ScanRequest | None = None,
) -> tuple[SampleCounts, ScanFeatures]:
    """Count a fragment file into bins with the same rules and outputs as a BAM: (counts, features).

    The filters already applied when it was written stay applied; `options.min_mapq` applies to
    its MAPQ column, and end motifs come from `request.motif_k` and the FASTA as for a BAM."""
    import numpy as np

    from plasmacount.alignments import (
        QC_FIELDS,
        CountOptions,
        ScanFeatures,
        ScanRequest,
        _load_kernel,
        _new_tallies,
        _plan,
        kernel_rules,
    )
    from plasmacount.counts import SampleCounts
    from plasmacount.motifs import FastaIndex, check_motif_length

    options = options or CountOptions()
    request = request or ScanRequest()
    options.validate()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    settings, contigs = read_header(path)
    fasta_index = FastaIndex.load(fasta) if fasta is not None and (request.motif_k or contigs is None) else None
    if contigs is None:
        if annotation is not None:
            contigs = [(c.name, c.length) for c in annotation.layout.contigs]
        elif fasta_index is not None:
            contigs = [(name, entry[0]) for name, entry in fasta_index.contigs.items()]
        else:
            raise DataError(
                f"{path}: a fragment file without plasmacount's #contigs header; pass --bins ANNOTATION or --fasta FASTA "
                "(with its .fai) for the contig lengths"
            )
    if request.motif_k:
        check_motif_length(request.motif_k)
        if fasta_index is None:
            raise UsageError("end motifs need the reference FASTA (--fasta)")
        if fasta_index.compressed:
            raise DataError(
                f"{fasta}: end motifs from a fragment file need an uncompressed FASTA; run `bgzip -d` on it and `samtools faidx`"
            )
    ends = settings.get("ends", "pairs")
    plan = _plan(path, contigs, bin_size, annotation, annotation_path)
    result = _new_tallies(plan, len(contigs), options)
    features = ScanFeatures(motif_k=request.motif_k)
    extras: dict = {}
    motif_tallies = np.zeros(2, dtype=np.int64)
    if request.motif_k:
        assert fasta_index is not None  # checked above
        features.motif_counts = np.zeros(4**request.motif_k, dtype=np.int64)
        extras.update(
            motif_k=request.motif_k,
            fasta=str(fasta_index.path),
            fai=fasta_index.table([c for c, _ in contigs]),
            motif_counts=features.motif_counts,
            motif_tallies=motif_tallies,
        )
    try:
        _, fragments = _load_kernel().count_bam(
            str(path),
            0,
            options.threads,
            plan.ref_bin_offset,
            plan.ref_bin_count,
            plan.ref_other_index,
            plan.layout.bin_size,
            options.min_mapq,
            0,
            0,
            int(options.remove_unmarked_duplicates),
            options.short_range[0],
            options.short_range[1],
            options.long_range[0],
            options.long_range[1],
            options.longest_length + 1,
            options.max_pair_length,
            result["counts"],
            result["short"],
            result["long"],
            result["histogram"],
            result["other_counts"],
            result["other_histogram"],
            result["per_ref"],
            result["qc"],
            ref_names=tuple(name for name, _ in contigs),
            text_input=1,
            text_lengths_known=int(ends != "single"),
            long_reads=int(ends == "molecules"),
            long_edges=result["long_edges"],
            long_histogram=result["long_histogram"],
            **kernel_rules(options),
            keep_fragments=int(request.keep_fragments),
            **extras,
        )
    except ValueError as error:
        message = str(error)
        fix = (
            "sort it (`sort -k1,1 -k2,2n`) and bgzip it"
            if "sorted" in message
            else "it must be bgzip-compressed (`bgzip FILE`), not gzip"
        )
        raise DataError(f"{path}: {message}; {fix}") from None
    features.ends_counted, features.ends_skipped = int(motif_tallies[0]), int(motif_tallies[1])
    features.reference_names = [name for name, _ in contigs]
    if request.keep_fragments:
        features.fragments = np.frombuffer(fragments, dtype=np.int64).reshape(
            -1, 4
        )  # read-only: never changed in place
    qc = {name: int(value) for name, value in zip(QC_FIELDS, result["qc"])}
    if qc["total"] == 0:
        raise DataError(f"{path}: holds no fragments")
    filters = {
        "min_mapq": max(options.min_mapq, int(settings.get("min_mapq", 0))),
        "fragment_file": settings or "external",
        "size_class_placement": options.size_class_placement,
    }
    counts = SampleCounts(
        sample=sample or sample_name(path),
        layout=plan.layout,
        counts=result["counts"],
        paired=qc["counted_pairs"] > 0,
        short=result["short"],
        long=result["long"],
        fragment_lengths=result["histogram"],
        other_contigs=plan.other_contigs,
        other_counts=result["other_counts"],
        other_fragment_lengths=result["other_histogram"],
        short_range=(options.short_range[0], options.short_range[1]),
        long_range=(options.long_range[0], options.long_range[1]),
        qc=qc,
        per_contig_counts={name: int(n) for (name, _), n in zip(contigs, result["per_ref"]) if n > 0},
        source={"path": str(path), "type": "fragments"},
        filters=filters,
        long_molecule_edges=result["long_edges"],
        long_molecule_lengths=result["long_histogram"],
    )
    return counts, features
