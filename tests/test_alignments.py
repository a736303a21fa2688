"""Counting BAM and CRAM: bin by bin equal to an independent pysam count and to samtools."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from bam_factory import CONTIGS, random_records, write_bam, write_reference
from independent import as_vectors, count_with_pysam

from plasmacount.alignments import CountOptions, count_alignments
from plasmacount.simulation import SimulationRequest, run_simulation

BINNED = ["chr1", "chr2", "chrX", "chrY"]


def assert_same(counts, independent):
    vectors = as_vectors(independent, counts)
    np.testing.assert_array_equal(counts.counts, vectors["bins"])
    np.testing.assert_array_equal(counts.short, vectors["short"])
    np.testing.assert_array_equal(counts.long, vectors["long"])
    np.testing.assert_array_equal(counts.fragment_lengths, vectors["lengths"])
    other = {o["name"]: int(n) for o, n in zip(counts.other_contigs, counts.other_counts)}
    assert {k: v for k, v in other.items() if v} == dict(independent["other"])
    for row, o in enumerate(counts.other_contigs):
        for length in np.flatnonzero(counts.other_fragment_lengths[row]):
            assert counts.other_fragment_lengths[row, length] == independent["other_lengths"][(o["name"], int(length))]


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        CountOptions(),
        CountOptions(min_mapq=0, skip_duplicates=False, skip_qc_fail=False),
        CountOptions(min_mapq=30, remove_unmarked_duplicates=True, threads=1),
        CountOptions(min_mapq=1, short_range=(90, 150), long_range=(151, 300), threads=3),
    ],
)
def test_random_flags_match_independent_count(tmp_path, paired, options):
    bam = write_bam(tmp_path / "random.bam", random_records(seed=7 if paired else 8, n=12_000, paired=paired))
    counts = count_alignments(bam, bin_size=50_000, options=options)
    independent = count_with_pysam(
        bam,
        50_000,
        BINNED,
        options.min_mapq,
        options.skip_duplicates,
        options.skip_qc_fail,
        options.remove_unmarked_duplicates,
        short=options.short_range,
        long=options.long_range,
    )
    assert counts.counts.sum() > 100
    assert counts.paired == (paired and counts.qc["counted_pairs"] > 0)
    assert_same(counts, independent)
    assert counts.qc["total"] == 12_000 + (800 if paired else 400) + 50


def test_counts_match_samtools_per_contig(tmp_path):
    if shutil.which("samtools") is None:
        pytest.skip("samtools not installed")
    bam = write_bam(tmp_path / "se.bam", random_records(seed=3, n=8_000, paired=False))
    counts = count_alignments(bam, bin_size=100_000)
    for name, _ in CONTIGS:
        expected = int(
            subprocess.run(
                ["samtools", "view", "-c", "-q", "20", "-F", "0xF04", str(bam), name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert counts.per_contig_counts.get(name, 0) == expected, name
    paired = write_bam(tmp_path / "pe.bam", random_records(seed=4, n=8_000, paired=True))
    counts = count_alignments(paired, bin_size=100_000)
    for name, _ in CONTIGS:
        # Unpaired reads count as single-end; pairs through their forward mate, or for pairs on one
        # strand through the leftmost mate (read 1 on a tie). A pair not marked proper counts when
        # its reads face each other within 5,000 bp.
        facing = (
            "(!flag.reverse != !flag.mreverse && ((!flag.reverse && pos <= mpos) || (flag.reverse && mpos <= pos)) "
            "&& tlen != 0 && tlen <= 5000 && tlen >= -5000)"
        )
        representative = (
            "((!flag.reverse != !flag.mreverse && !flag.reverse) "
            "|| (!flag.reverse == !flag.mreverse && (pos < mpos || (pos == mpos && flag.read1))))"
        )
        expression = (
            f"!flag.paired || ((flag.proper_pair || {facing}) && !flag.munmap && rnext == rname && {representative})"
        )
        expected = int(
            subprocess.run(
                ["samtools", "view", "-c", "-q", "20", "-F", "0xF04", "-e", expression, str(paired), name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert counts.per_contig_counts.get(name, 0) == expected, name


def test_cram_equals_bam(tmp_path):
    reference = write_reference(tmp_path / "ref.fa")
    records = random_records(seed=11, n=6_000, paired=True)
    for record in records:
        # CRAM rewrites mate bits on unpaired reads (invalid SAM), so keep flags valid here.
        if not record["flag"] & 0x1:
            record["flag"] &= ~(0x2 | 0x8 | 0x20 | 0x40 | 0x80)
    bam = write_bam(tmp_path / "pe.bam", records)
    cram = tmp_path / "pe.cram"
    import pysam

    pysam.view("-C", "-T", str(reference), "-o", str(cram), str(bam), catch_stdout=False)
    pysam.index(str(cram))
    from_bam = count_alignments(bam, bin_size=100_000)
    from_cram = count_alignments(cram, bin_size=100_000, reference=reference)
    np.testing.assert_array_equal(from_bam.counts, from_cram.counts)
    np.testing.assert_array_equal(from_bam.fragment_lengths, from_cram.fragment_lengths)
    assert from_bam.qc == from_cram.qc
    assert_same(from_cram, count_with_pysam(cram, 100_000, BINNED, reference=str(reference)))


def test_cram_without_its_reference_is_one_line(tmp_path):
    """htslib's own lines about a missing reference are silenced; the one line names the FASTA."""
    import sys

    import pysam

    reference = write_reference(tmp_path / "ref.fa")
    bam = write_bam(tmp_path / "se.bam", random_records(seed=12, n=500, paired=False))
    cram = tmp_path / "se.cram"
    pysam.view("-C", "-T", str(reference), "-o", str(cram), str(bam), catch_stdout=False)
    pysam.index(str(cram))
    reference.rename(tmp_path / "moved.fa")
    environment = dict(os.environ, REF_PATH="/nonexistent/%s", REF_CACHE="/nonexistent/%s")
    for extra in ([], ["--fasta", str(bam)]):
        result = subprocess.run(
            [sys.executable, "-m", "plasmacount", "--quiet", "count", str(cram), *extra, "-o", str(tmp_path / "x.npz")],
            capture_output=True,
            text=True,
            env=environment,
        )
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert (
            "cannot decode the CRAM" in result.stderr and str(reference) in result.stderr and "--fasta" in result.stderr
        )
        assert not (tmp_path / "x.npz").exists()


def test_simulated_bam_spanning_many_windows(tmp_path):
    """A BAM of many 8 MB windows: records split across windows must be counted once."""
    [bam] = run_simulation(
        SimulationRequest(
            output=tmp_path,
            cohort="nipt",
            samples=1,
            reads=120_000,
            paired=True,
            output_format="bam",
            scale=1 / 1000,
            seed=5,
        )
    )
    one = count_alignments(bam, bin_size=20_000, options=CountOptions(threads=1))
    two = count_alignments(bam, bin_size=20_000, options=CountOptions(threads=2))
    np.testing.assert_array_equal(one.counts, two.counts)
    binned = [c.name for c in one.layout.contigs]
    assert_same(two, count_with_pysam(bam, 20_000, binned))
    assert two.qc["total"] > 240_000


def test_pairs_beyond_the_proper_pair_limit_count_by_their_geometry(tmp_path):
    """Long pairs without the proper flag count when they face each other within --max-length;
    pairs facing away, on one strand or beyond the limit do not; --max-length 0 keeps
    the aligner's proper pairs only. Checked against the independent count, BAM and CRAM."""
    records = []
    shapes = [  # (flag of the leftmost read, flag of its mate, length, counted by its geometry)
        (0x1 | 0x20 | 0x40, 0x1 | 0x10 | 0x80, 600, True),  # forward then reverse: a long molecule
        (0x1 | 0x20 | 0x40, 0x1 | 0x10 | 0x80, 4_800, True),
        (0x1 | 0x20 | 0x40, 0x1 | 0x10 | 0x80, 5_200, False),  # beyond 5,000 bp
        (0x1 | 0x10 | 0x40, 0x1 | 0x20 | 0x80, 600, False),  # reverse then forward: facing away
        (0x1 | 0x40, 0x1 | 0x80, 600, False),  # both forward
        (0x1 | 0x2 | 0x20 | 0x40, 0x1 | 0x2 | 0x10 | 0x80, 170, False),  # proper: counted anyway
    ]
    for i in range(300):
        first, second, length, geometric = shapes[i % len(shapes)]
        pos = 1_000 + 5_000 * i
        records.append(
            {
                "flag": first,
                "ref": 0,
                "pos": pos,
                "mapq": 60,
                "mate_ref": 0,
                "mate_pos": pos + length - 50,
                "tlen": length,
                "name": f"p{i}",
            }
        )
        records.append(
            {
                "flag": second,
                "ref": 0,
                "pos": pos + length - 50,
                "mapq": 60,
                "mate_ref": 0,
                "mate_pos": pos,
                "tlen": -length,
                "name": f"p{i}",
            }
        )
    records.sort(key=lambda r: (r["ref"], r["pos"]))
    bam = write_bam(tmp_path / "long.bam", records)
    counts = count_alignments(bam, bin_size=100_000)
    assert counts.qc["pairs_by_geometry"] == 100 and counts.qc["counted_pairs"] == 150
    assert (
        counts.fragment_lengths[600] == 50
        and counts.fragment_lengths[4_800] == 50
        and counts.fragment_lengths[170] == 50
    )
    assert_same(counts, count_with_pysam(bam, 100_000, BINNED))
    proper_only = count_alignments(bam, bin_size=100_000, options=CountOptions(max_pair_length=0))
    assert proper_only.qc["counted_pairs"] == 50 and proper_only.qc["pairs_by_geometry"] == 0
    assert_same(proper_only, count_with_pysam(bam, 100_000, BINNED, max_pair_length=0))
    reference = write_reference(tmp_path / "ref.fa")
    cram = tmp_path / "long.cram"
    import pysam

    pysam.view("-C", "-T", str(reference), "-o", str(cram), str(bam), catch_stdout=False)
    pysam.index(str(cram))
    from_cram = count_alignments(cram, bin_size=100_000, reference=reference)
    np.testing.assert_array_equal(from_cram.fragment_lengths, counts.fragment_lengths)
    assert from_cram.qc == counts.qc


def test_real_cram_fragment_lengths(tmp_path, shared_data):
    """The real FinaleToolkit CRAM at MAPQ >= 30: the aligner marked 42,934 pairs proper (up to
    288 bp); 6,212 more face each other within 5 kb, nearly all 289-900 bp: long molecules.
    Mode 166-168 bp."""
    cram = tmp_path / "real.cram"
    shutil.copy(shared_data / "finaletoolkit" / "hg19.chr1.6Mb.cram", cram)
    import pysam

    pysam.index(str(cram))
    counts = count_alignments(cram, bin_size=100_000, options=CountOptions(min_mapq=30))
    assert counts.paired
    assert counts.qc["counted_pairs"] == 42_934 + 6_212 and counts.qc["pairs_by_geometry"] == 6_212
    assert counts.fragment_lengths[289:].sum() > 6_000 and counts.fragment_lengths[:289].sum() < 43_100
    mode = int(np.argmax(counts.fragment_lengths))
    assert 166 <= mode <= 168
    assert_same(counts, count_with_pysam(cram, 100_000, [c.name for c in counts.layout.contigs], min_mapq=30))
    # The BAM path gives the same counts as the CRAM path.
    bam = tmp_path / "real.bam"
    pysam.view("-b", "-o", str(bam), str(cram), catch_stdout=False)
    pysam.index(str(bam))
    from_bam = count_alignments(bam, bin_size=100_000, options=CountOptions(min_mapq=30))
    np.testing.assert_array_equal(from_bam.counts, counts.counts)
    np.testing.assert_array_equal(from_bam.fragment_lengths, counts.fragment_lengths)


def test_real_cram_against_fragment_file(tmp_path, shared_data):
    """Fragment lengths equal those in FinaleToolkit's fragment BED made from the same CRAM."""
    import gzip

    cram = tmp_path / "real.cram"
    shutil.copy(shared_data / "finaletoolkit" / "hg19.chr1.6Mb.cram", cram)
    import pysam

    pysam.index(str(cram))
    # FinaleToolkit's convention: the aligner's proper pairs only (its file has 42,934 fragments).
    counts = count_alignments(cram, bin_size=100_000, options=CountOptions(min_mapq=30, max_pair_length=0))
    assert counts.qc["counted_pairs"] == 42_934
    expected = np.zeros(counts.fragment_lengths.size, dtype=np.int64)
    with gzip.open(shared_data / "finaletoolkit" / "Jan28_2020-1.hg19.chr1_0-6Mb.frag.bed.gz", "rt") as stream:
        for line in stream:
            fields = line.split("\t")
            expected[min(int(fields[2]) - int(fields[1]), expected.size - 1)] += 1
    np.testing.assert_array_equal(counts.fragment_lengths, expected)
