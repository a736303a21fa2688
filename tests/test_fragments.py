"""Fragmentomics against independent computations: size histogram, periodicity, windows, end motifs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pysam
import pytest
from independent import count_with_pysam, faces_its_mate

from plasmacount.alignments import CountOptions
from plasmacount.bins import BinAnnotation
from plasmacount.fragments import MOTIFS, analyse, end_motifs, size_statistics, ten_bp_periodicity, window_ratios
from plasmacount.simulation import SimulationRequest, fragment_length_distribution, run_simulation


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fragments")
    [bam] = run_simulation(
        SimulationRequest(
            output=directory,
            cohort="ebv",
            samples=1,
            reads=30_000,
            paired=True,
            output_format="bam",
            scale=1 / 1000,
            seed=3,
        )
    )
    return bam, directory / "genome" / "genome.fa", directory / "genome" / "bins.npz"


def test_real_cram_size_profile(shared_data, tmp_path, run_cli):
    cram = tmp_path / "real.cram"
    shutil.copy(shared_data / "finaletoolkit" / "hg19.chr1.6Mb.cram", cram)
    pysam.index(str(cram))
    assert run_cli("fragments", cram, "-o", tmp_path / "out", "--min-mapq", "30").exit_code == 0
    result = json.loads((tmp_path / "out" / "real.fragments.json").read_text())
    # Independent: every pair's leftmost mate at MAPQ >= 30 (proper, or facing its mate within 5 kb), not
    # duplicate/secondary/supplementary/QC-fail.
    expected = np.zeros(5002, dtype=np.int64)
    with pysam.AlignmentFile(str(cram)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if (
                read.is_unmapped
                or read.is_secondary
                or read.is_supplementary
                or read.is_qcfail
                or read.is_duplicate
                or read.mapping_quality < 30
                or not read.is_paired
                or read.mate_is_unmapped
                or read.next_reference_id != read.reference_id
                or not (read.is_proper_pair or faces_its_mate(read, 5000))
            ):
                continue
            if (
                (not read.is_reverse)
                if read.is_reverse != read.mate_is_reverse
                else (
                    read.reference_start < read.next_reference_start
                    or (read.reference_start == read.next_reference_start and read.is_read1)
                )
            ):
                expected[min(abs(read.template_length), 5001)] += 1
    rows = (tmp_path / "out" / "real.size_histogram.tsv").read_text().splitlines()[1:]
    observed = np.array([int(line.split("\t")[1]) for line in rows])
    np.testing.assert_array_equal(observed, expected)
    assert 166 <= result["size"]["mode"] <= 168
    assert (
        result["size"]["fragments"] == 42_934 + 6_212
    )  # the aligner's proper pairs, and the longer ones facing each other
    # FinaleToolkit's convention (the aligner's proper pairs only) gives FinaleToolkit's own figures.
    assert run_cli("fragments", cram, "-o", tmp_path / "proper", "--min-mapq", "30", "--max-length", "0").exit_code == 0
    result = json.loads((tmp_path / "proper" / "real.fragments.json").read_text())
    assert result["size"]["fragments"] == 42_934
    assert result["size"]["mean"] == pytest.approx(169.8, abs=0.05)
    assert result["size"]["share_below_150"] == pytest.approx(0.154, abs=0.001)
    assert 9.5 < result["size"]["periodicity_period"] < 11.0


def test_size_statistics_and_periodicity():
    maternal = fragment_length_distribution("maternal")
    histogram = np.append(np.round(maternal * 1e7).astype(np.int64), 0)
    stats = size_statistics(histogram)
    assert stats["mode"] == 167 and 165 <= stats["median"] <= 172
    assert stats["share_above_500"] > 0
    amplitude, period = ten_bp_periodicity(histogram)
    assert 9.5 < period < 11.5 and amplitude > 0.01
    smooth = np.append(np.round(np.exp(-0.5 * ((np.arange(5001) - 167) / 20) ** 2) * 1e6).astype(np.int64), 0)
    assert ten_bp_periodicity(smooth)[0] < amplitude / 10
    assert size_statistics(np.zeros(10, dtype=np.int64))["mode"] is None


def forward_mate_or_leftmost(read) -> bool:
    """The mate a pair is counted through: the forward one, or for same-strand pairs the leftmost."""
    if read.is_reverse != read.mate_is_reverse:
        return not read.is_reverse
    return read.reference_start < read.next_reference_start or (
        read.reference_start == read.next_reference_start and read.is_read1
    )


def test_end_motifs_match_independent_count(simulated):
    bam, fasta, _ = simulated
    motifs = end_motifs(bam, fasta, CountOptions())
    reference = pysam.FastaFile(str(fasta))
    complement = str.maketrans("ACGT", "TGCA")
    expected = dict.fromkeys(MOTIFS, 0)
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if (
                read.is_unmapped
                or read.is_secondary
                or read.is_supplementary
                or read.is_qcfail
                or read.is_duplicate
                or read.mapping_quality < 20
                or read.mate_is_unmapped
                or read.next_reference_id != read.reference_id
                or not (read.is_proper_pair or faces_its_mate(read, 5000))
                or not forward_mate_or_leftmost(read)
            ):
                continue
            start = read.reference_start
            end = start + abs(read.template_length)
            for motif in (
                reference.fetch(read.reference_name, start, start + 4).upper(),
                reference.fetch(read.reference_name, end - 4, end).upper()[::-1].translate(complement),
            ):
                if motif in expected:
                    expected[motif] += 1
    assert motifs.ends == sum(expected.values()) > 10_000
    assert dict(zip(MOTIFS, motifs.counts.tolist())) == expected
    assert 0.9 < motifs.diversity <= 1.0  # random synthetic sequence: near-uniform motifs


def test_windows_and_bad_input(simulated, tmp_path, run_cli):
    bam, fasta, bins = simulated
    annotation = BinAnnotation.load(bins)
    result, tables = analyse(bam, fasta, annotation, str(bins), window=50_000)
    windows = tables["windows"]
    from plasmacount.alignments import count_alignments

    counts = count_alignments(bam, annotation=annotation)
    assert (
        sum(w["short"] for w in windows) == counts.short.sum() and sum(w["long"] for w in windows) == counts.long.sum()
    )
    assert all(w["chrom"] != "chrEBV" for w in windows)
    assert all(w["end"] - w["start"] <= 50_000 for w in windows)
    assert result["short_long_ratio"]["gc_corrected"] and result["end_motifs"]["diversity"] is not None
    assert (
        result["other_contigs"]["chrM"]["fragments"]
        == counts.other_counts[[o["name"] for o in counts.other_contigs].index("chrM")]
    )
    # Mitochondrial share against an independent count (pysam, record by record).
    independent = count_with_pysam(bam, annotation.bin_size, [c.name for c in counts.layout.contigs])
    chr_m, nuclear = independent["other"]["chrM"], sum(independent["bins"].values())
    assert (
        result["mitochondrial"] == {"fragments": chr_m, "fraction": pytest.approx(chr_m / (chr_m + nuclear))}
        and chr_m > 0
    )
    # Single-end data: no size criteria, said so.
    [single] = run_simulation(
        SimulationRequest(output=tmp_path / "se", cohort="euploid", samples=1, reads=20_000, scale=1 / 1000, seed=4)
    )
    result, tables = analyse(single)
    assert result["size"]["mode"] is None and tables["windows"] is None
    assert any("single-end" in note for note in result["notes"])
    from plasmacount.counts import SampleCounts

    with pytest.raises(Exception, match="paired-end"):
        window_ratios(SampleCounts.load(single))
    assert run_cli("fragments", single, "-o", tmp_path / "out").exit_code == 0
    assert run_cli("fragments", bam, "-o", tmp_path / "o2", "--fasta", tmp_path / "missing.fa").exit_code == 1
    assert run_cli("fragments", bam, "-o", tmp_path / "o3", "--window", "0").exit_code == 2


def test_miller_madow_diversity_takes_out_the_small_sample_bias():
    """Over 300 draws of 1,000 ends from a known motif distribution, the plug-in diversity (equal
    to scipy's entropy / log 256) falls short of the truth by about 0.025; the Miller-Madow one
    is several times closer on average."""
    import math

    from scipy import stats

    from plasmacount.fragments import EndMotifs

    rng = np.random.default_rng(17)
    truth_p = rng.dirichlet(np.full(256, 2.0))
    truth = stats.entropy(truth_p) / math.log(256)
    plug_in, corrected = [], []
    for _ in range(300):
        motifs = EndMotifs(counts=rng.multinomial(1000, truth_p), ends=1000, skipped=0)
        assert motifs.diversity == pytest.approx(stats.entropy(motifs.counts) / math.log(256), rel=1e-12)
        plug_in.append(motifs.diversity)
        corrected.append(motifs.diversity_miller_madow)
    assert np.mean(plug_in) < truth - 0.02
    assert abs(np.mean(corrected) - truth) < abs(np.mean(plug_in) - truth) / 4
    assert EndMotifs(counts=np.zeros(256, dtype=np.int64), ends=0, skipped=0).diversity_miller_madow is None
