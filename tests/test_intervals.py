"""Interval features (WPS, adjusted WPS, cleavage profile, coverage) against brute-force computations
written from their definitions (Snyder et al. 2016; FinaleToolkit's adjust-wps), and through `fragments`."""

from __future__ import annotations

import json

import numpy as np
import pyBigWig
import pytest
from scipy.signal import savgol_filter

from plasmacount import intervals
from plasmacount.intervals import ContigFragments


@pytest.fixture(scope="module")
def fragments():
    rng = np.random.default_rng(8)
    start = np.sort(rng.integers(0, 20_000, 3000))
    length = np.where(rng.random(3000) < 0.8, rng.integers(120, 181, 3000), rng.integers(20, 400, 3000))
    return ContigFragments(start, start + length, rng.random(3000) < 0.5)


def brute_wps(f: ContigFragments, first: int, last: int, window: int, lengths):
    keep = (f.end - f.start >= lengths[0]) & (f.end - f.start <= lengths[1])
    s, e = f.start[keep], f.end[keep]
    out = []
    for p in range(first, last):
        a, b = round(p - window / 2), round(p + window / 2 - 1)  # the window, both ends included
        spanning = np.sum((s < a) & (e > b))
        ending = np.sum(((s >= a) & (s <= b)) | ((e >= a) & (e <= b)))
        out.append(spanning - ending)
    return np.array(out)


@pytest.mark.parametrize("settings", [intervals.LONG_WPS, intervals.SHORT_WPS, {"window": 60, "lengths": (20, 400)}])
def test_wps_equals_its_definition(fragments, settings):
    np.testing.assert_array_equal(
        intervals.wps(fragments, 7000, 9500, **settings),
        brute_wps(fragments, 7000, 9500, settings["window"], settings["lengths"]),
    )


def test_adjusted_wps_and_cleavage_equal_their_definitions(fragments):
    scores = intervals.wps(fragments, 5000, 10_000, **intervals.LONG_WPS)
    running = np.array([np.median(scores[i : i + 1000]) for i in range(scores.size - 1000)])
    expected = savgol_filter(scores[500 : 500 + running.size] - running, 21, 2)
    np.testing.assert_allclose(intervals.adjusted_wps(scores), expected)
    profile = intervals.cleavage_profile(fragments, 6000, 6500)
    for p in range(6000, 6500, 7):
        covering = (fragments.start <= p) & (fragments.end > p)
        # FinaleToolkit's rule: a reverse fragment ends at its end coordinate, one past its last (covering) base.
        ends = np.sum((~fragments.reverse & (fragments.start == p)) | (fragments.reverse & (fragments.end == p)))
        assert profile[p - 6000] == pytest.approx(100 * ends / covering.sum() if covering.sum() else 0.0)


def test_interval_features_through_fragments(tmp_path, run_cli):
    from plasmacount.simulation import SimulationRequest, run_simulation

    [bam] = run_simulation(
        SimulationRequest(
            output=tmp_path / "sim",
            cohort="euploid",
            samples=1,
            reads=60_000,
            paired=True,
            output_format="bam",
            scale=1 / 1000,
            seed=6,
        )
    )
    bed = tmp_path / "sites.bed"
    bed.write_text(
        "chr1\t40000\t40001\tGENE_A\t0\t+\nchr1\t120000\t121000\tGENE_A\t0\t-\nchr2\t50000\t50001\tGENE_B\t0\t+\n"
    )
    frag = tmp_path / "sample.frag.gz"
    assert run_cli("count", bam, "-o", tmp_path / "c.npz", "--fragments-out", frag).exit_code == 0
    fasta = tmp_path / "sim" / "genome" / "genome.fa"
    assert run_cli("fragments", bam, "--intervals", bed, "--fasta", fasta, "-o", tmp_path / "out").exit_code == 0
    stem = bam.name.removesuffix(".bam")
    rows = [line.split("\t") for line in (tmp_path / "out" / f"{stem}.intervals.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert len(rows) == 3
    # Coverage: fragments (from the fragment file) whose midpoint is in the site.
    import gzip

    with gzip.open(frag, "rt") as stream:
        lines = [line.split("\t") for line in stream if not line.startswith("#")]
    for row in rows:
        chrom, start, end = row[0], int(row[1]), int(row[2])
        expected = sum(1 for f in lines if f[0] == chrom and start <= (int(f[1]) + int(f[2])) // 2 < end)
        assert int(row[header.index("coverage")]) == expected
    # End motifs per site: both 5' ends of the fragments with their midpoint in it, from the FASTA (pysam).
    import pysam

    reference = pysam.FastaFile(str(fasta))
    complement = str.maketrans("ACGT", "TGCA")
    motif_rows = [
        line.split("\t") for line in (tmp_path / "out" / f"{stem}.interval_end_motifs.tsv").read_text().splitlines()
    ]
    names = motif_rows[0][4:]
    for row in motif_rows[1:]:
        chrom, start, end = row[0], int(row[1]), int(row[2])
        expected = dict.fromkeys(names, 0)
        for f in lines:
            if f[0] == chrom and start <= (int(f[1]) + int(f[2])) // 2 < end:
                a, b = int(f[1]), int(f[2])
                for motif in (
                    reference.fetch(chrom, a, a + 4).upper(),
                    reference.fetch(chrom, b - 4, b).upper()[::-1].translate(complement),
                ):
                    if motif in expected:
                        expected[motif] += 1
        assert [int(x) for x in row[4:]] == [expected[n] for n in names]
    assert sum(int(x) for row in motif_rows[1:] for x in row[4:]) > 0
    genes = (tmp_path / "out" / f"{stem}.genes.tsv").read_text().splitlines()
    assert [line.split("\t")[:2] for line in genes[1:]] == [["GENE_A", "2"], ["GENE_B", "1"]]
    with pyBigWig.open(str(tmp_path / "out" / f"{stem}.wps.bw")) as track:
        values = track.values("chr1", 37_500, 42_500)
    assert len(values) == 5000 and all(np.isfinite(values))
    result = json.loads((tmp_path / "out" / f"{stem}.fragments.json").read_text())
    assert result["intervals"]["sites"] == 3
    # Coverage only: the same coverage column, no scores, no tracks.
    assert (
        run_cli(
            "fragments", bam, "--intervals", bed, "--interval-features", "coverage", "-o", tmp_path / "cov"
        ).exit_code
        == 0
    )
    only = [line.split("\t") for line in (tmp_path / "cov" / f"{stem}.intervals.tsv").read_text().splitlines()]
    assert only[0] == header[: len(only[0])]
    assert [r[:6] for r in only[1:]] == [r[:6] for r in rows]
    assert all(r[header.index("wps_long_centre")] == "NA" for r in only[1:])
    assert not list((tmp_path / "cov").glob("*.bw"))
    assert json.loads((tmp_path / "cov" / f"{stem}.fragments.json").read_text())["intervals"]["features"] == "coverage"
    assert run_cli("fragments", bam, "--interval-features", "coverage", "-o", tmp_path / "none").exit_code == 2
    # A site on a contig the alignments lack is a data error.
    bed.write_text("chrUn\t10\t20\tX\n")
    assert run_cli("fragments", bam, "--intervals", bed, "-o", tmp_path / "bad").exit_code == 1


@pytest.mark.parametrize("size", [21, 22, 101, 4000])
@pytest.mark.parametrize("window, degree", [(21, 2), (11, 3), (5, 1)])
def test_savitzky_golay_equals_scipys(size, window, degree):
    values = np.random.default_rng(size + window).normal(size=size).cumsum()
    np.testing.assert_allclose(
        intervals.savitzky_golay(values, window, degree), savgol_filter(values, window, degree), rtol=1e-9, atol=1e-9
    )
