"""An independent count with pysam, record by record, written from the counting rules alone.

It shares no code with plasmacount's counters; tests compare the two bin by bin.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pysam


def count_with_pysam(
    path,
    bin_size: int,
    binned: list[str],
    min_mapq: int = 20,
    skip_duplicates: bool = True,
    skip_qc_fail: bool = True,
    remove_unmarked: bool = False,
    reference=None,
    longest: int = 5000,
    short=(100, 150),
    long=(151, 220),
    max_pair_length: int = 5000,
    representative: str = "forward",
):
    mode = "rc" if str(path).endswith(".cram") else "rb"
    bins: Counter = Counter()
    short_bins: Counter = Counter()
    long_bins: Counter = Counter()
    lengths: Counter = Counter()
    other: Counter = Counter()
    other_lengths: Counter = Counter()
    seen_at, seen = None, set()
    with pysam.AlignmentFile(str(path), mode, reference_filename=reference) as alignments:
        for read in alignments.fetch(until_eof=True):
            if read.is_unmapped or read.reference_id < 0 or read.is_secondary or read.is_supplementary:
                continue
            if read.is_qcfail and skip_qc_fail:
                continue
            if read.is_duplicate and skip_duplicates:
                continue
            if read.mapping_quality < min_mapq:
                continue
            length = None
            if read.is_paired:
                if read.mate_is_unmapped or read.next_reference_id != read.reference_id:
                    continue
                if not read.is_proper_pair and not faces_its_mate(read, max_pair_length):
                    continue
                if representative == "forward" and read.is_reverse != read.mate_is_reverse:
                    # the forward mate stands for the pair
                    if read.is_reverse:
                        continue
                else:
                    if read.reference_start > read.next_reference_start:
                        continue
                    if read.reference_start == read.next_reference_start and not read.is_read1:
                        continue
                length = abs(read.template_length)
            if remove_unmarked:
                where = (read.reference_id, read.reference_start)
                if where != seen_at:
                    seen_at, seen = where, set()
                key = (length, read.is_reverse)
                if key in seen:
                    continue
                seen.add(key)
            contig = read.reference_name
            capped = min(length, longest + 1) if length is not None else None
            if contig in binned:
                key = (contig, read.reference_start // bin_size)
                bins[key] += 1
                if length is not None:
                    lengths[capped] += 1
                    if short[0] <= length <= short[1]:
                        short_bins[key] += 1
                    if long[0] <= length <= long[1]:
                        long_bins[key] += 1
            else:
                other[contig] += 1
                if length is not None:
                    other_lengths[(contig, capped)] += 1
    return {
        "bins": bins,
        "short": short_bins,
        "long": long_bins,
        "lengths": lengths,
        "other": other,
        "other_lengths": other_lengths,
    }


def faces_its_mate(read, max_pair_length: int) -> bool:
    """A pair the aligner did not mark proper is still a fragment when one read is forward and
    the other reverse, the forward one starts no later than the reverse one, and the span is
    1..max_pair_length."""
    if read.is_reverse == read.mate_is_reverse:
        return False
    forward_start, reverse_start = (
        (read.next_reference_start, read.reference_start)
        if read.is_reverse
        else (read.reference_start, read.next_reference_start)
    )
    return forward_start <= reverse_start and 0 < abs(read.template_length) <= max_pair_length


def as_vectors(result, counts):
    """Lay an independent result over a SampleCounts' layout for comparison."""
    layout = counts.layout
    vectors = {name: np.zeros(layout.n_bins, dtype=np.int64) for name in ("bins", "short", "long")}
    for name in vectors:
        for (contig, b), n in result[name].items():
            c = layout.contig(contig)
            vectors[name][c.first_bin + b] += n
    histogram = np.zeros(counts.fragment_lengths.size, dtype=np.int64)
    for length, n in result["lengths"].items():
        histogram[length] += n
    vectors["lengths"] = histogram
    return vectors
