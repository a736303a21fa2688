"""Reading by region through the BAM index: the chunks hold every read of a region (checked
against the virtual offsets htslib reports while reading the whole file), and `fragments
--intervals-only` gives the rows of a whole pass."""

from __future__ import annotations

import json

import numpy as np
import pysam
import pytest
from bam_factory import CONTIGS, random_records, write_bam, write_reference
from test_fragment_files import long_read_bam

from plasmacount import bam_index


def offsets_and_spans(path) -> list[tuple[int, int, int, int]]:
    """(virtual offset, reference, start, end) of every placed record, read in order by htslib;
    an unmapped read placed beside its mate spans one base, as htslib indexes it."""
    rows = []
    with pysam.AlignmentFile(str(path), "rb") as alignments:
        iterator = alignments.fetch(until_eof=True)
        while True:
            offset = alignments.tell()
            try:
                read = next(iterator)
            except StopIteration:
                break
            if read.reference_id >= 0:
                end = read.reference_end if read.reference_end is not None else read.reference_start + 1
                rows.append((offset, read.reference_id, read.reference_start, end))
    return rows


def random_regions(rng, n: int, contigs=CONTIGS) -> list[tuple[int, int, int]]:
    regions = []
    for _ in range(n):
        reference = int(rng.integers(len(contigs)))
        length = contigs[reference][1]
        begin = int(rng.integers(0, length))
        regions.append((reference, begin, min(length, begin + int(rng.choice([1, 50, 1000, 20_000, 300_000])))))
    return regions


def covered(chunks: np.ndarray, offset: int) -> bool:
    i = np.searchsorted(chunks[:, 0], offset, side="right") - 1
    return i >= 0 and chunks[i, 0] <= offset < chunks[i, 1]


@pytest.mark.parametrize("kind", ["short pairs", "long molecules"])
def test_region_chunks_hold_every_read_overlapping_the_region(tmp_path, kind):
    path = tmp_path / "reads.bam"
    if kind == "short pairs":
        write_bam(path, random_records(seed=12, n=30_000, paired=True))
    else:
        long_read_bam(path, 3000, seed=4)
        pysam.index(str(path))
    reads = offsets_and_spans(path)
    index = bam_index.read_index(str(path) + ".bai")
    rng = np.random.default_rng(5)
    failed_cuts = 0
    for _ in range(30):
        regions = bam_index.merge_regions(random_regions(rng, int(rng.integers(1, 8))))
        cut_chunks, cuts = bam_index.region_chunks(index, regions, longest_read=1000)
        whole_chunks, _ = bam_index.region_chunks(index, regions)
        holds = bam_index.cuts_hold(path, cuts)
        failed_cuts += not holds
        overlapping = [
            offset
            for offset, ref, start, end in reads
            if any(ref == r and start < e and end > b for r, b, e in regions)
        ]
        for chunks in (whole_chunks, cut_chunks) if holds else (whole_chunks,):
            assert np.all(chunks[1:, 0] > chunks[:-1, 1]) and np.all(chunks[:, 1] > chunks[:, 0])  # sorted, disjoint
            assert all(covered(chunks, offset) for offset in overlapping)
        if not holds:  # the check is not idle: some cut falls on a read of its region
            at = {offset: (ref, start) for offset, ref, start, _ in reads}
            assert any(
                at[offset][0] == ref and at[offset][1] < end and offset in overlapping for offset, ref, end in cuts
            )
    if kind == "long molecules":
        assert failed_cuts > 0  # molecules of up to 36 kb reach past the 1 kb bound: the check catches it
    else:
        assert failed_cuts == 0


@pytest.mark.parametrize("convention", ["plasmacount", "finaletoolkit"])
@pytest.mark.parametrize("features", ["all", "coverage"])
@pytest.mark.parametrize("kind", ["bam", "cram"])
def test_intervals_only_equals_the_whole_pass(tmp_path, run_cli, convention, features, kind):
    records = random_records(seed=21, n=40_000, paired=True)
    bam = write_bam(tmp_path / "reads.bam", records)
    source, extra = bam, []
    if kind == "cram":
        fasta = write_reference(tmp_path / "ref.fa")
        source = tmp_path / "reads.cram"
        pysam.view("-C", "-T", str(fasta), "-o", str(source), str(bam), catch_stdout=False)
        pysam.index(str(source))
        extra = ["--fasta", fasta]
    rng = np.random.default_rng(8)
    lines = []
    for i in range(60):
        name, length = CONTIGS[int(rng.integers(3))]
        start = int(rng.choice([0, length - 1, int(rng.integers(0, length - 1))]))
        lines.append(
            f"{name}\t{start}\t{min(length, start + int(rng.choice([1, 500, 3000, 40_000, 250_000])))}\tsite{i % 40}\t0\t+\n"
        )
    bed = tmp_path / "sites.bed"
    bed.write_text("".join(lines))
    # Proper pairs longer than 5 kb exist here: both readings count up to 5 kb, as --intervals-only must.
    common = [
        "--intervals",
        bed,
        "--interval-features",
        features,
        "--convention",
        convention,
        "--fragment-lengths",
        "0-5000",
        *extra,
    ]
    assert run_cli("fragments", source, "-o", tmp_path / "whole", *common).exit_code == 0
    assert run_cli("fragments", source, "-o", tmp_path / "only", "--intervals-only", *common).exit_code == 0
    [table] = (tmp_path / "whole").glob("*.intervals.tsv")  # a CRAM's sample is named by its file
    stem = table.name.removesuffix(".intervals.tsv")
    whole = [line.split("\t") for line in (tmp_path / "whole" / f"{stem}.intervals.tsv").read_text().splitlines()]
    only = [line.split("\t") for line in (tmp_path / "only" / f"{stem}.intervals.tsv").read_text().splitlines()]
    per_million = whole[0].index("coverage_per_million")
    assert len(whole) == len(only) == 61
    assert [r[:per_million] + r[per_million + 1 :] for r in whole] == [
        r[:per_million] + r[per_million + 1 :] for r in only
    ]
    assert sum(int(r[whole[0].index("coverage")]) for r in whole[1:]) > 100
    assert all(r[per_million] == "NA" for r in only[1:])
    assert (tmp_path / "whole" / f"{stem}.genes.tsv").read_text().splitlines()[0] == (
        tmp_path / "only" / f"{stem}.genes.tsv"
    ).read_text().splitlines()[0]
    if kind == "cram":  # the per-site end motifs (the FASTA is given) too
        assert (tmp_path / "whole" / f"{stem}.interval_end_motifs.tsv").read_text() == (
            tmp_path / "only" / f"{stem}.interval_end_motifs.tsv"
        ).read_text()
    if features == "all":
        import pyBigWig

        for track in ("wps", "wps_adjusted", "cleavage"):
            with (
                pyBigWig.open(str(tmp_path / "whole" / f"{stem}.{track}.bw")) as a,
                pyBigWig.open(str(tmp_path / "only" / f"{stem}.{track}.bw")) as b,
            ):
                for name, length in list(a.chroms().items())[:3]:
                    assert np.array_equal(
                        np.nan_to_num(a.values(name, 0, length)), np.nan_to_num(b.values(name, 0, length))
                    )
    result = json.loads((tmp_path / "only" / f"{stem}.intervals.json").read_text())
    assert result["scope"] == "intervals" and result["intervals"]["sites"] == 60
    assert not (tmp_path / "only" / "fragments.tsv").exists() and not list((tmp_path / "only").glob("*.fragments.json"))
    # Only the reads near the sites were read.
    whole_json = json.loads((tmp_path / "whole" / f"{stem}.fragments.json").read_text())
    assert result["reads_read"] < 0.8 * len(records) and whole_json["schema_version"] == result["schema_version"]


def test_intervals_only_long_molecules_and_refusals(tmp_path, run_cli):
    bam = tmp_path / "long.bam"
    long_read_bam(bam, 3000, seed=9)
    pysam.index(str(bam))
    reads = offsets_and_spans(bam)
    # Sites at the ends of molecules, where a cut at 1 kb would lose them.
    bed = tmp_path / "sites.bed"
    name = {i: n for i, (n, _) in enumerate(CONTIGS)}
    bed.write_text(
        "".join(f"{name[ref]}\t{max(0, end - 300)}\t{end}\tm{i}\n" for i, (_, ref, _, end) in enumerate(reads[::60]))
    )
    for features in ("coverage", "all"):
        common = ["--intervals", bed, "--long-reads", "--interval-features", features]
        assert run_cli("fragments", bam, "-o", tmp_path / f"whole_{features}", *common).exit_code == 0
        assert (
            run_cli("fragments", bam, "-o", tmp_path / f"only_{features}", "--intervals-only", *common).exit_code == 0
        )
        whole = (tmp_path / f"whole_{features}" / "long.intervals.tsv").read_text().splitlines()
        only = (tmp_path / f"only_{features}" / "long.intervals.tsv").read_text().splitlines()
        assert [r.split("\t")[:6] for r in whole] == [r.split("\t")[:6] for r in only]
        assert sum(int(r.split("\t")[5]) for r in only[1:]) > 0
    # What needs the whole file is refused in one line.
    for flags in (["--fragment-files"], ["--make-delfi-panel", tmp_path / "p.npz"], []):
        arguments = ["fragments", bam, "-o", tmp_path / "x", "--intervals-only", *flags]
        if flags:
            arguments += ["--intervals", bed]
        assert run_cli(*arguments).exit_code == 2
    # Without a .bai (CSI only) reading by region is refused, naming the fix.
    csi = tmp_path / "csi.bam"
    csi.write_bytes(bam.read_bytes())
    pysam.index("-c", str(csi))
    result = run_cli("fragments", csi, "-o", tmp_path / "y", "--intervals-only", "--intervals", bed, "--long-reads")
    assert result.exit_code == 1 and "samtools index" in result.stderr
