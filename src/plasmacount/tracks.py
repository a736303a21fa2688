"""Genome tracks for genome browsers: per-bin profiles as bedGraph and bigWig, segments as SEG,
and VCF files compressed with bgzip and indexed with tabix.

These are the files IGV and the UCSC browser open directly. A profile is one value per bin
(NaN where the bin was not used); unused bins are left out of the track rather than written
as zero, so that a browser shows a gap, not a false deletion.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from plasmacount.files import atomic_output

if TYPE_CHECKING:
    from plasmacount.genome import Layout


@dataclass
class GenomeTrack:
    """Values per bin along the genome, as a bedGraph or bigWig track holds them (`chrom`,
    `start`, `end`, `value` of equal length)."""

    chrom: list[str]
    start: np.ndarray
    end: np.ndarray
    value: np.ndarray
    contig_lengths: dict[str, int]

    def finite(self) -> GenomeTrack:
        keep = np.isfinite(self.value)
        if keep.all():
            return self
        chrom = np.asarray(self.chrom, dtype=object)[keep].tolist()
        return GenomeTrack(chrom, self.start[keep], self.end[keep], self.value[keep], self.contig_lengths)

    @classmethod
    def from_layout(cls, layout: Layout, values: np.ndarray) -> GenomeTrack:
        index, start, end = layout.bin_table()
        names = [contig.name for contig in layout.contigs]
        return cls(
            [names[i] for i in index],
            np.asarray(start),
            np.asarray(end),
            np.asarray(values, dtype=float),
            {contig.name: contig.length for contig in layout.contigs},
        )


def write_bedgraph(path: str | os.PathLike, profile: GenomeTrack, name: str, description: str) -> Path:
    """bedGraph with a UCSC track line; values with 5 decimals."""
    profile = profile.finite()
    with atomic_output(path, "w") as stream:
        stream.write(f'track type=bedGraph name="{name}" description="{description}" visibility=full autoScale=on\n')
        stream.writelines(
            f"{chrom}\t{start}\t{end}\t{value:.5f}\n"
            for chrom, start, end, value in zip(
                profile.chrom, profile.start.tolist(), profile.end.tolist(), profile.value.tolist()
            )
        )
    return Path(path)


def read_bedgraph(path: str | os.PathLike) -> GenomeTrack:
    chrom, start, end, value = [], [], [], []
    with open(path) as stream:
        for line in stream:
            if line.startswith(("track", "#", "browser")) or not line.strip():
                continue
            fields = line.split("\t")
            chrom.append(fields[0])
            start.append(int(fields[1]))
            end.append(int(fields[2]))
            value.append(float(fields[3]))
    lengths: dict[str, int] = {}
    for c, e in zip(chrom, end):
        lengths[c] = max(lengths.get(c, 0), e)
    return GenomeTrack(chrom, np.array(start, dtype=np.int64), np.array(end, dtype=np.int64), np.array(value), lengths)


@contextlib.contextmanager
def open_bigwig(path: str | os.PathLike, contigs: list[tuple[str, int]]) -> Iterator:
    """A pyBigWig writer with its header; the file appears at `path` only when the block succeeds
    (pyBigWig writes by file name, so it is made beside the target and renamed when complete)."""
    import pyBigWig

    partial = Path(str(path) + ".part")
    try:
        handle = pyBigWig.open(str(partial), "w")
        try:
            handle.addHeader([(name, int(length)) for name, length in contigs])
            yield handle
        finally:
            handle.close()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_bigwig(path: str | os.PathLike, profile: GenomeTrack) -> Path:
    """The same profile as bigWig (binary, indexed: what browsers stream from a server)."""
    profile = profile.finite()
    contigs = [(name, int(length)) for name, length in profile.contig_lengths.items()]
    with open_bigwig(path, contigs) as handle:
        order = {name: i for i, (name, _) in enumerate(contigs)}
        rank = np.array([order[name] for name in profile.chrom], dtype=np.int64)
        rows = np.lexsort((profile.start, rank))
        if rows.size:
            chrom = np.asarray(profile.chrom, dtype=object)[rows].tolist()
            handle.addEntries(
                chrom,
                profile.start[rows].astype(np.int64).tolist(),
                ends=profile.end[rows].astype(np.int64).tolist(),
                values=profile.value[rows].astype(float).tolist(),
            )
    return Path(path)


def write_profile_tracks(
    output: Path, sample: str, analysis: str, profile: GenomeTrack, description: str
) -> tuple[dict, list[Path]]:
    """`<sample>.<analysis>.bedgraph` and `.bw` (a safe file stem, see files.sample_file_stem) of a profile in `output`: (file names for the result JSON, paths written)."""
    from plasmacount.files import sample_file_stem

    stem = sample_file_stem(sample)
    files = {"profile_bedgraph": f"{stem}.{analysis}.bedgraph", "profile_bigwig": f"{stem}.{analysis}.bw"}
    written = [
        write_bedgraph(output / files["profile_bedgraph"], profile, f"{sample} log2 ratio", description),
        write_bigwig(output / files["profile_bigwig"], profile),
    ]
    return files, written


def write_seg(path: str | os.PathLike, rows: list[tuple[str, str, int, int, int, float]]) -> Path:
    """IGV SEG: ID, chrom, loc.start (1-based), loc.end, num.mark, seg.mean (log2 ratio)."""
    with atomic_output(path, "w") as stream:
        stream.write("ID\tchrom\tloc.start\tloc.end\tnum.mark\tseg.mean\n")
        for sample, chrom, start, end, bins, mean in rows:
            stream.write(
                f"{sample}\t{chrom}\t{start + 1}\t{end}\t{bins}\t{mean:.4f}\n"
                if math.isfinite(mean)
                else f"{sample}\t{chrom}\t{start + 1}\t{end}\t{bins}\tNA\n"
            )
    return Path(path)


def compress_and_index_vcf(path: str | os.PathLike) -> Path:
    """bgzip `path` to `path.gz` and write its tabix index `path.gz.tbi`; returns the .gz path."""
    import pysam

    path = Path(path)
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(path.name + ".part.gz")
    index = Path(str(partial) + ".tbi")
    try:
        pysam.tabix_compress(str(path), str(partial), force=True)
        pysam.tabix_index(str(partial), preset="vcf", force=True)
        os.replace(index, str(target) + ".tbi")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        index.unlink(missing_ok=True)
    return target
