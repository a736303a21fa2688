"""End motifs: the k bases of the reference at each 5' end of a cfDNA fragment.

A fragment [start, end) has two 5' ends: the forward strand's, read from `start` on, and the
reverse strand's, read backwards from `end - 1` and complemented. Both are counted for pairs
and long molecules; a short single-end read has only its own 5' end (the start of a forward
read, the end of a reverse one). An end whose k-mer leaves the contig or holds a base other than
A, C, G or T is skipped and tallied. A k-mer is indexed as sum(code * 4^(k-1-i)) with A=0, C=1,
G=2, T=3, so the index order is the alphabetical order of the motifs.

The reference is read through its faidx index from an uncompressed FASTA (a memory map in the
compiled counter; `samtools faidx` makes the index); a bgzip-compressed FASTA is read with pysam.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasmacount.errors import DataError, UsageError

DEFAULT_MOTIF_LENGTH = 4
LONGEST_MOTIF = 12  # 4^12 = 16.8 M counts (134 MB): the longest k worth keeping as one table


def motif_names(k: int) -> list[str]:
    """All 4^k motifs in index order."""
    return ["".join(bases) for bases in itertools.product("ACGT", repeat=k)]


def check_motif_length(k: int) -> None:
    if not 1 <= k <= LONGEST_MOTIF:
        raise UsageError(f"--motif-length must be between 1 and {LONGEST_MOTIF}, not {k}")


@dataclass(frozen=True)
class FastaIndex:
    """A FASTA's faidx index: per contig (length, byte offset, bases per line, bytes per line)."""

    path: Path
    contigs: dict[str, tuple[int, int, int, int]]
    compressed: bool

    @classmethod
    def load(cls, fasta: str | os.PathLike) -> FastaIndex:
        path = Path(fasta)
        if not path.exists():
            raise DataError(f"{path}: reference FASTA not found; check --fasta")
        with open(path, "rb") as stream:
            compressed = stream.read(2) == b"\x1f\x8b"
        index = Path(str(path) + ".fai")
        if not index.exists():
            raise DataError(f"{path}: no index {index.name} beside the FASTA; run `samtools faidx {path}`")
        contigs = {}
        with open(index) as stream:
            for number, line in enumerate(stream, 1):
                fields = line.rstrip("\n").split("\t")
                try:
                    contigs[fields[0]] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]))
                except (IndexError, ValueError):
                    raise DataError(
                        f"{index}: line {number} is not a faidx line; re-create it with `samtools faidx {path}`"
                    ) from None
        return cls(path, contigs, compressed)

    def table(self, names: list[str]) -> np.ndarray:
        """Rows (offset, bases per line, bytes per line, length) for contigs `names` in order;
        -1 where the FASTA lacks the contig (its ends are skipped)."""
        rows = np.full((len(names), 4), -1, dtype=np.int64)
        for i, name in enumerate(names):
            if name in self.contigs:
                length, offset, line_bases, line_bytes = self.contigs[name]
                rows[i] = (offset, line_bases, line_bytes, length)
        return rows


_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _code, _base in enumerate(b"ACGT"):
    _BASE_CODE[_base] = _BASE_CODE[_base + 32] = _code  # upper and lower case


def base_codes(sequence: str) -> np.ndarray:
    """A=0, C=1, G=2, T=3, anything else 4, per base."""
    return _BASE_CODE[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]


def count_end_kmers(
    codes: np.ndarray, forward: np.ndarray, reverse: np.ndarray, k: int, counts: np.ndarray
) -> tuple[int, int]:
    """Add the k-mers at forward-strand starts and (reverse-complemented) before reverse-strand
    ends of one contig (`codes`) to `counts`; returns (ends counted, ends skipped)."""
    weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    found = skipped = 0
    for positions, offsets, complement in ((forward, np.arange(k), False), (reverse, -1 - np.arange(k), True)):
        if positions.size == 0:
            continue
        inside = (positions + offsets.min() >= 0) & (positions + offsets.max() < codes.size)
        window = codes[positions[inside, None] + offsets[None, :]]
        valid = np.all(window < 4, axis=1)
        window = window[valid].astype(np.int64)
        if complement:
            window = 3 - window  # A<->T, C<->G
        np.add.at(counts, window @ weights, 1)
        found += int(valid.sum())
        skipped += int(positions.size - valid.sum())
    return found, skipped
