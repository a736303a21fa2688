"""The BAM index (.bai): which compressed chunks of a BAM hold the reads of given regions.

A coordinate-sorted BAM is a series of BGZF blocks; a read's place in it is a virtual offset
(the compressed block's byte offset << 16 | the offset inside the inflated block). The index
(SAM specification, section 5.2) lists, per reference, the chunks [begin, end) of virtual offsets
of the reads in each bin of the UCSC binning scheme (bins of 512 Mb down to 16 kb, a read in the
smallest bin that holds it), and a linear index: per 16 kb window the smallest virtual offset of
a read overlapping it. Reading only what overlaps a few regions then costs a few blocks per
region instead of a pass over the whole file; this is how `fragments --intervals-only` reads.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasmacount.errors import DataError

LINEAR_SHIFT = 14  # the linear index's windows are 16 kb
METADATA_BIN = 37450  # htslib's pseudo-bin of mapped/unmapped tallies, not reads
BIN_LEVELS = (
    (1, 26),
    (9, 23),
    (73, 20),
    (585, 17),
    (4681, 14),
)  # first bin of each level below the root, and its shift


@dataclass(frozen=True)
class ReferenceIndex:
    data: bytes  # the index file, whose chunk lists are read when asked for
    bins: dict[int, tuple[int, int]]  # bin -> (byte offset of its chunks, number of chunks)
    linear: np.ndarray  # per 16 kb window, the smallest virtual offset of a read overlapping it

    def chunks(self, number: int) -> np.ndarray | None:
        """The bin's chunks, rows (begin, end) of virtual offsets."""
        if number not in self.bins:
            return None
        offset, count = self.bins[number]
        return np.frombuffer(self.data, dtype="<u8", count=2 * count, offset=offset).reshape(-1, 2).astype(np.int64)


def overlapping_bins(begin: int, end: int) -> list[int]:
    """The bins that may hold a read overlapping [begin, end) (0-based; the specification's reg2bins)."""
    end -= 1
    bins = [0]
    for first, shift in BIN_LEVELS:
        bins.extend(range(first + (begin >> shift), first + (end >> shift) + 1))
    return bins


def read_index(path: str | os.PathLike) -> list[ReferenceIndex]:
    """The per-reference bins and linear index of a .bai file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the BAM index ({error.strerror})") from None
    if data[:4] != b"BAI\x01":
        raise DataError(f"{path}: not a BAM index (.bai); re-create it with `samtools index`")
    try:
        (n_references,) = struct.unpack_from("<i", data, 4)
        offset = 8
        references = []
        for _ in range(n_references):
            (n_bins,) = struct.unpack_from("<i", data, offset)
            offset += 4
            bins = {}
            for _ in range(n_bins):
                number, n_chunks = struct.unpack_from("<Ii", data, offset)
                if number != METADATA_BIN:
                    bins[number] = (offset + 8, n_chunks)
                offset += 8 + 16 * n_chunks
            (n_windows,) = struct.unpack_from("<i", data, offset)
            offset += 4
            linear = np.frombuffer(data, dtype="<u8", count=n_windows, offset=offset).astype(np.int64)
            offset += 8 * n_windows
            if offset > len(data):
                raise ValueError("truncated")
            references.append(ReferenceIndex(data, bins, linear))
    except (struct.error, ValueError):
        raise DataError(f"{path}: the BAM index is truncated; re-create it with `samtools index`") from None
    return references


def region_chunks(
    index: list[ReferenceIndex], regions: list[tuple[int, int, int]], longest_read: int | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The chunks holding every read that overlaps one of `regions` (reference index, begin, end):
    rows (begin, end) of virtual offsets, sorted and disjoint, so each read is read once; and the
    cuts made by `longest_read`, (virtual offset, reference, region end), to be checked.

    A chunk is cut at its start by the linear index: a read before the first read overlapping the
    region's first 16 kb window ends before the region. htslib's indexer moves the reads of
    sparse bins into their parent bin, so a chunk may run on for a megabase past the region; with
    `longest_read` (no read spans more bases) it is cut also at its end: every read overlapping a
    window that starts `longest_read` bases past the region starts after the region, and so comes
    after all of the region's reads. That bound is an assumption; the record at each cut must
    start at or after its region's end (`cuts` lists them), and if one does not, read again
    without it."""
    pieces, cuts = [], []
    for reference, begin, end in regions:
        if end <= begin or not 0 <= reference < len(index):
            continue
        linear = index[reference].linear
        # Empty windows hold 0 in some indexes: no read overlaps them, they bound nothing.
        inside = linear[begin >> LINEAR_SHIFT : ((end - 1) >> LINEAR_SHIFT) + 1]
        inside = inside[inside > 0]
        if linear.size and not inside.size and (end - 1) >> LINEAR_SHIFT < linear.size:
            continue  # the index knows these windows and no read overlaps them
        smallest = int(inside.min()) if inside.size else 0
        largest = None
        if longest_read is not None:
            after = linear[((end - 1 + longest_read) >> LINEAR_SHIFT) + 1 :]
            after = after[after > smallest]
            if after.size:
                largest = int(after[0])
        trimmed = False
        for number in overlapping_bins(begin, end):
            chunks = index[reference].chunks(number)
            if chunks is None:
                continue
            chunks = chunks[chunks[:, 1] > smallest]
            if largest is not None and chunks.size and chunks[:, 1].max() > largest:
                trimmed = True  # something of this bin is left unread: the cut must be checked
                chunks = chunks[chunks[:, 0] < largest]
                np.minimum(chunks[:, 1], largest, out=chunks[:, 1])
            if chunks.size:
                np.maximum(chunks[:, 0], smallest, out=chunks[:, 0])
                pieces.append(chunks)
        if trimmed and largest is not None:  # only a cut at `largest` trims
            cuts.append((largest, reference, end))
    if not pieces:
        return np.zeros((0, 2), dtype=np.int64), cuts
    chunks = np.concatenate(pieces)
    chunks = chunks[np.lexsort((chunks[:, 1], chunks[:, 0]))]
    merged = [list(chunks[0])]
    for begin, end in chunks[1:]:
        if begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    return np.array(merged, dtype=np.int64), cuts


def cuts_hold(path: str | os.PathLike, cuts: list[tuple[int, int, int]]) -> bool:
    """Whether the record at each cut starts at or after its region's end (or on a later
    reference, or there is none): then no read of the region lies past the cut."""
    import pysam

    with pysam.AlignmentFile(str(path), "rb") as alignments:
        for offset, reference, end in sorted(set(cuts)):
            alignments.seek(offset)
            try:
                read = next(alignments)
            except StopIteration:
                continue
            if 0 <= read.reference_id == reference and read.reference_start < end or 0 <= read.reference_id < reference:
                return False
    return True


def merge_regions(regions: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Regions (reference index, begin, end) sorted, overlapping and touching ones joined."""
    merged: list[list[int]] = []
    for reference, begin, end in sorted(regions):
        if merged and merged[-1][0] == reference and begin <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], end)
        else:
            merged.append([reference, begin, end])
    return [(r, b, e) for r, b, e in merged]
