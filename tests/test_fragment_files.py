"""One pass over alignments: end motifs of any length, fragment files, long molecules and CpG methylation,
each against an independent computation (pysam record by record) or the field's own files."""

from __future__ import annotations

import array
import gzip
import shutil

import numpy as np
import pysam
import pytest
from bam_factory import CONTIGS, write_bam, write_reference

from plasmacount.alignments import CountOptions, ScanRequest, count_alignments, scan_alignments
from plasmacount.counts import SampleCounts
from plasmacount.fragment_files import count_fragment_file
from plasmacount.motifs import motif_names
from plasmacount.simulation import SimulationRequest, run_simulation

COMPLEMENT = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("one-pass")
    [bam] = run_simulation(
        SimulationRequest(
            output=directory,
            cohort="ebv",
            samples=1,
            reads=20_000,
            paired=True,
            output_format="bam",
            scale=1 / 1000,
            seed=5,
        )
    )
    return bam, directory / "genome" / "genome.fa"


def independent_motifs(bam, fasta, k: int, representative: str, min_mapq: int = 20) -> dict[str, int]:
    """Both 5' ends of every counted pair, read from the FASTA with pysam; the pair's mate chosen by `representative`."""
    expected = dict.fromkeys(motif_names(k), 0)
    reference = pysam.FastaFile(str(fasta))
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if (
                read.is_unmapped
                or read.is_secondary
                or read.is_supplementary
                or read.is_qcfail
                or read.is_duplicate
                or read.mapping_quality < min_mapq
                or not read.is_paired
                or read.mate_is_unmapped
                or read.next_reference_id != read.reference_id
                or not read.is_proper_pair
            ):
                continue
            if representative == "read1":
                if not read.is_read1 or read.template_length == 0:
                    continue
                start = read.reference_start if read.template_length > 0 else read.reference_end + read.template_length
                end = start + abs(read.template_length)
            else:
                if read.is_reverse == read.mate_is_reverse or read.is_reverse:
                    continue
                start, end = read.reference_start, read.reference_start + abs(read.template_length)
            for motif in (
                reference.fetch(read.reference_name, start, start + k).upper(),
                reference.fetch(read.reference_name, max(end - k, 0), end).upper()[::-1].translate(COMPLEMENT),
            ):
                if motif in expected:
                    expected[motif] += 1
    return expected


@pytest.mark.parametrize("k,representative", [(6, "forward"), (3, "read1")])
def test_end_motifs_of_any_length_in_the_counting_pass(simulated, k, representative):
    bam, fasta = simulated
    options = CountOptions(representative=representative, max_pair_length=0)
    counts, features = scan_alignments(bam, options=options, request=ScanRequest(motif_k=k, fasta=fasta))
    expected = independent_motifs(bam, fasta, k, representative)
    assert features.ends_counted == sum(expected.values()) > 10_000
    assert dict(zip(motif_names(k), features.motif_counts.tolist())) == expected
    # The counts of the same pass are those of a plain count.
    assert np.array_equal(counts.counts, count_alignments(bam, options=options).counts)


def test_a_compressed_fasta_and_a_cram_give_the_same_motifs_through_htslib(simulated, tmp_path):
    bam, fasta = simulated
    packed = tmp_path / "genome.fa.gz"
    pysam.tabix_compress(str(fasta), str(packed), force=True)
    pysam.faidx(str(packed))
    _, in_kernel = scan_alignments(bam, request=ScanRequest(motif_k=4, fasta=fasta))
    _, through_htslib = scan_alignments(bam, request=ScanRequest(motif_k=4, fasta=packed))
    cram = tmp_path / "sample.cram"
    pysam.view("-C", "-T", str(fasta), "-o", str(cram), str(bam), catch_stdout=False)
    pysam.index(str(cram))
    _, from_cram = scan_alignments(cram, reference=fasta, request=ScanRequest(motif_k=4, fasta=fasta))
    assert np.array_equal(in_kernel.motif_counts, through_htslib.motif_counts)
    assert np.array_equal(in_kernel.motif_counts, from_cram.motif_counts)
    assert in_kernel.ends_counted == from_cram.ends_counted > 10_000


def test_single_end_reads_give_their_own_five_prime_end(tmp_path):
    reference = write_reference(tmp_path / "ref.fa")
    records = []
    rng = np.random.default_rng(2)
    for i in range(3000):
        ref = int(rng.integers(2))
        records.append(
            {
                "flag": 16 if i % 2 else 0,
                "ref": ref,
                "pos": int(rng.integers(0, CONTIGS[ref][1] - 500)),
                "mapq": 60,
                "mate_ref": -1,
                "mate_pos": -1,
                "tlen": 0,
                "name": f"s{i}",
            }
        )
    records.sort(key=lambda r: (r["ref"], r["pos"]))
    bam = write_bam(tmp_path / "se.bam", records)
    _, features = scan_alignments(bam, request=ScanRequest(motif_k=4, fasta=reference))
    expected = dict.fromkeys(motif_names(4), 0)
    fasta = pysam.FastaFile(str(reference))
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if read.is_reverse:
                motif = (
                    fasta.fetch(read.reference_name, read.reference_end - 4, read.reference_end)
                    .upper()[::-1]
                    .translate(COMPLEMENT)
                )
            else:
                motif = fasta.fetch(read.reference_name, read.reference_start, read.reference_start + 4).upper()
            if motif in expected:
                expected[motif] += 1
    assert dict(zip(motif_names(4), features.motif_counts.tolist())) == expected
    assert features.ends_counted == sum(expected.values()) > 2500


@pytest.mark.parametrize("representative", ["forward", "read1"])
def test_fragment_files_round_trip(simulated, tmp_path, representative):
    bam, fasta = simulated
    options = CountOptions(representative=representative)
    frag = tmp_path / "sample.frag.gz"
    direct, _ = scan_alignments(bam, options=options, request=ScanRequest(fragment_file=frag))
    assert (tmp_path / "sample.frag.gz.tbi").exists()
    back, _ = count_fragment_file(frag, options=options)
    for name in (
        "counts",
        "short",
        "long",
        "fragment_lengths",
        "other_counts",
        "other_fragment_lengths",
        "long_molecule_lengths",
    ):
        assert np.array_equal(getattr(direct, name), getattr(back, name)), name
    assert back.paired and back.layout == direct.layout
    # Sorted and indexed: tabix finds every fragment of a region, and only those.
    with pysam.TabixFile(str(frag)) as tabix:
        lines = list(tabix.fetch("chr1", 100_000, 200_000))
    assert lines and all(int(line.split("\t")[2]) > 100_000 and int(line.split("\t")[1]) < 200_000 for line in lines)
    with gzip.open(frag, "rt") as stream:
        rows = [line.split("\t") for line in stream if not line.startswith("#")]
    starts = [(row[0], int(row[1])) for row in rows]
    assert len(rows) == direct.counts.sum() + direct.other_counts.sum()
    assert all(a[1] <= b[1] for a, b in zip(starts, starts[1:]) if a[0] == b[0])
    # A filter raised when reading applies to the MAPQ column.
    strict, _ = count_fragment_file(frag, options=CountOptions(min_mapq=60))
    assert strict.counts.sum() == sum(
        1 for row in rows if int(row[3]) >= 60 and row[0] in {c.name for c in direct.layout.contigs}
    )


def test_size_classes_by_midpoint_through_kernel_cram_and_fragment_file(simulated, tmp_path):
    """DELFI's and FinaleToolkit's rule: a fragment's short/long tally goes to the bin of its midpoint
    (start + end) // 2, while its count stays with its start; against pysam record by record."""
    bam, fasta = simulated
    options = CountOptions(representative="read1", max_pair_length=0, min_mapq=30, size_class_placement="midpoint")
    frag = tmp_path / "sample.frag.gz"
    kernel, _ = scan_alignments(bam, bin_size=10_000, options=options, request=ScanRequest(fragment_file=frag))
    cram = tmp_path / "sample.cram"
    pysam.view("-C", "-T", str(fasta), "-o", str(cram), str(bam), catch_stdout=False)
    pysam.index(str(cram))
    through_htslib, _ = scan_alignments(cram, bin_size=10_000, options=options, reference=fasta)
    from_file, _ = count_fragment_file(frag, bin_size=10_000, options=options)
    layout = kernel.layout
    first = {c.name: c.first_bin for c in layout.contigs}
    short = np.zeros(layout.n_bins, dtype=np.int64)
    long_ = np.zeros(layout.n_bins, dtype=np.int64)
    moved = 0
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch(until_eof=True):
            if (
                read.is_unmapped
                or read.is_secondary
                or read.is_supplementary
                or read.is_qcfail
                or read.is_duplicate
                or read.mapping_quality < 30
                or not read.is_proper_pair
                or not read.is_read1
                or read.template_length == 0
                or read.reference_name not in first
            ):
                continue
            start = read.reference_start if read.template_length > 0 else read.reference_end + read.template_length
            end = start + abs(read.template_length)
            b = first[read.reference_name] + (start + end) // 2 // 10_000
            moved += (start + end) // 2 // 10_000 != start // 10_000
            length = end - start
            short[b] += 100 <= length <= 150
            long_[b] += 151 <= length <= 220
    assert moved > 100 and long_.sum() > 5_000
    for counts in (kernel, through_htslib, from_file):
        assert np.array_equal(counts.short, short) and np.array_equal(counts.long, long_)
        assert counts.filters["size_class_placement"] == "midpoint"
    by_start, _ = scan_alignments(
        bam, bin_size=10_000, options=CountOptions(representative="read1", max_pair_length=0, min_mapq=30)
    )
    assert np.array_equal(by_start.counts, kernel.counts) and not np.array_equal(by_start.long, kernel.long)
    assert by_start.long.sum() == kernel.long.sum()


def test_single_end_fragment_files_keep_lengths_unknown(tmp_path):
    [single] = run_simulation(
        SimulationRequest(
            output=tmp_path / "se",
            cohort="euploid",
            samples=1,
            reads=20_000,
            scale=1 / 1000,
            seed=4,
            output_format="bam",
        )
    )
    frag = tmp_path / "se.frag.gz"
    direct, _ = scan_alignments(single, request=ScanRequest(fragment_file=frag))
    back, _ = count_fragment_file(frag)
    assert np.array_equal(direct.counts, back.counts) and not back.paired and back.fragment_lengths.sum() == 0


def test_real_fragments_equal_the_finaledb_fragment_file(shared_data, tmp_path, run_cli):
    """The real CRAM's fragments (proper pairs, MAPQ >= 30, the forward mate standing for a pair) are
    line for line those of the fragment file shipped with FinaleToolkit (whose strand column is '+' throughout)."""
    cram = tmp_path / "real.cram"
    shutil.copy(shared_data / "finaletoolkit" / "hg19.chr1.6Mb.cram", cram)
    pysam.index(str(cram))
    frag = tmp_path / "real.frag.gz"
    assert (
        run_cli(
            "count",
            cram,
            "-o",
            tmp_path / "real.counts.npz",
            "--min-mapq",
            "30",
            "--max-length",
            "0",
            "--fragments-out",
            frag,
        ).exit_code
        == 0
    )
    with gzip.open(frag, "rt") as stream:
        ours = sorted(tuple(line.split("\t")[:4]) for line in stream if not line.startswith("#"))
    with gzip.open(shared_data / "finaletoolkit" / "Jan28_2020-1.hg19.chr1_0-6Mb.frag.bed.gz", "rt") as stream:
        theirs = sorted(tuple(line.split("\t")[:4]) for line in stream)
    assert len(ours) == 42_934 and ours == theirs
    # Counting the fragment file gives the CRAM's counts.
    assert run_cli("count", frag, "-o", tmp_path / "back.counts.npz").exit_code == 0
    direct, back = SampleCounts.load(tmp_path / "real.counts.npz"), SampleCounts.load(tmp_path / "back.counts.npz")
    assert np.array_equal(direct.counts, back.counts) and np.array_equal(direct.fragment_lengths, back.fragment_lengths)


def long_read_bam(path, n: int, seed: int) -> list[dict]:
    """Unpaired long reads with indels in their CIGAR and MM/ML tags (5mC, some with 5hmC listed in the same
    group, some reverse-strand); returns what each molecule is."""
    rng = np.random.default_rng(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": name, "LN": length} for name, length in CONTIGS]}
    truth = []
    rows = []
    for i in range(n):
        ref = int(rng.integers(3))
        span_a, span_b, span_c = (
            (int(x) for x in rng.integers(30, 4000, size=3))
            if rng.random() < 0.7
            else (int(x) for x in rng.integers(1000, 12_000, size=3))
        )
        deletion, insertion = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        span = span_a + deletion + span_b + span_c
        pos = int(rng.integers(0, CONTIGS[ref][1] - span - 1))
        rows.append((ref, pos, span_a, deletion, span_b, insertion, span_c, bool(rng.random() < 0.5), i))
    rows.sort()
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for ref, pos, span_a, deletion, span_b, insertion, span_c, reverse, i in rows:
            length = span_a + span_b + insertion + span_c
            sequence = "".join(rng.choice(list("ACGT"), size=length))
            original = sequence[::-1].translate(COMPLEMENT) if reverse else sequence
            cytosines = [j for j, base in enumerate(original) if base == "C"]
            listed = sorted(
                rng.choice(len(cytosines), size=min(len(cytosines), int(rng.integers(0, 60))), replace=False).tolist()
            )
            deltas, previous = [], -1
            for c in listed:
                deltas.append(c - previous - 1)
                previous = c
            both = rng.random() < 0.3
            probabilities = rng.integers(0, 256, size=len(listed) * (2 if both else 1))
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.flag, a.reference_id, a.reference_start, a.mapping_quality = (
                f"m{i}",
                16 if reverse else 0,
                ref,
                pos,
                60,
            )
            a.cigartuples = [(0, span_a), (2, deletion), (0, span_b), (1, insertion), (0, span_c)]
            a.query_sequence = sequence
            if listed:
                a.set_tag("MM", ("C+hm?," if both else "C+m?,") + ",".join(map(str, deltas)) + ";", "Z")
                a.set_tag("ML", array.array("B", probabilities.tolist()))
            out.write(a)
            methylation = probabilities[1::2] if both else probabilities
            truth.append(
                {
                    "ref": ref,
                    "pos": pos,
                    "length": span_a + deletion + span_b + span_c,
                    "calls": len(listed),
                    "methylated": int((methylation >= 128).sum()),
                }
            )
    pysam.index(str(path))
    return truth


def test_long_reads_are_whole_molecules_with_their_methylation(tmp_path, run_cli):
    bam = tmp_path / "long.bam"
    truth = long_read_bam(bam, 1500, seed=9)
    options = CountOptions(long_reads=True, longest_length=5000)
    counts, features = scan_alignments(bam, bin_size=100_000, options=options, request=ScanRequest(methylation=True))
    # Independent: pysam's reference_length and modified_bases, record by record.
    lengths, calls, methylated = [], 0, 0
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch(until_eof=True):
            lengths.append(read.reference_length)
            for (base, strand, code), sites in read.modified_bases.items():
                if (base, strand, code) == ("C", int(read.is_reverse), "m"):  # MM's C+ against the reference
                    calls += len(sites)
                    methylated += sum(1 for _, p in sites if p >= 128)
    lengths = np.array(lengths)
    assert sorted(lengths.tolist()) == sorted(t["length"] for t in truth)
    exact = np.bincount(np.minimum(lengths, 5001), minlength=5002)
    assert np.array_equal(counts.fragment_lengths, exact)
    edges = counts.long_molecule_edges
    long_lengths = lengths[lengths > 5000]
    assert np.array_equal(
        counts.long_molecule_lengths,
        np.bincount(np.searchsorted(edges, long_lengths, side="right") - 1, minlength=edges.size),
    )
    assert counts.long_molecule_lengths.sum() == (lengths > 5000).sum() > 100
    assert features.molecules[:, 2].sum() == calls == sum(t["calls"] for t in truth) > 10_000
    assert features.molecules[:, 3].sum() == methylated == sum(t["methylated"] for t in truth)
    assert features.methylation_unreadable == 0
    # The same through htslib (CRAM).
    reference = write_reference(tmp_path / "ref.fa")
    cram = tmp_path / "long.cram"
    pysam.view("-C", "-T", str(reference), "-o", str(cram), str(bam), catch_stdout=False)
    pysam.index(str(cram))
    from_cram, cram_features = scan_alignments(
        cram, bin_size=100_000, options=options, reference=reference, request=ScanRequest(methylation=True)
    )
    assert np.array_equal(from_cram.fragment_lengths, counts.fragment_lengths)
    assert np.array_equal(np.sort(cram_features.molecules, axis=0), np.sort(features.molecules, axis=0))
    # Without --long-reads the same reads are single-end reads: counted, with no length.
    plain = count_alignments(bam, bin_size=100_000)
    assert np.array_equal(plain.counts, counts.counts) and plain.fragment_lengths.sum() == 0
    # The fragments report: methylation genome-wide and by size, shares of long molecules.
    assert run_cli("fragments", bam, "-o", tmp_path / "out", "--long-reads").exit_code == 0
    import json

    result = json.loads((tmp_path / "out" / "long.fragments.json").read_text())
    assert result["methylation"]["cpg_calls"] == calls
    assert result["methylation"]["cpg_methylated_fraction"] == pytest.approx(methylated / calls)
    assert sum(c["cpg_calls"] for c in result["methylation"]["by_size"]) == calls
    assert result["long_molecules"]["share_above_5000"] == pytest.approx((lengths > 5000).mean())
    assert result["long_molecules"]["share_above_10000"] == pytest.approx((lengths > 10_000).mean())
    rows = (tmp_path / "out" / "long.methylation.tsv").read_text().splitlines()[1:]
    assert sum(int(row.split("\t")[3]) for row in rows) == calls


def test_fetal_fraction_from_methylation_of_long_molecules(tmp_path, run_cli):
    """Own simulator: a reference learnt from 2 non-pregnant women and 3 pregnancies of known fetal
    fraction; two test pregnancies (one of each fetal sex) within 1.5 points of the truth (the share of
    autosomal molecules from the placenta, from the simulated read names), inside their intervals."""
    import json

    simulate = lambda out, cohort, n, molecules, seed: run_cli(  # noqa: E731
        "simulate",
        "-o",
        tmp_path / out,
        "--cohort",
        cohort,
        "--samples",
        n,
        "--reads",
        molecules,
        "--format",
        "long-bam",
        "--scale",
        "0.001",
        "--bin-size",
        "100000",
        "--seed",
        seed,
    )
    assert simulate("blood", "healthy", 2, 8000, 11).exit_code == 0
    assert simulate("panel", "euploid", 3, 8000, 12).exit_code == 0
    assert simulate("test", "euploid", 2, 15000, 13).exit_code == 0

    def placental_share(bam):
        with pysam.AlignmentFile(str(bam)) as alignments:
            origins = [
                read.query_name.endswith("_P")
                for read in alignments.fetch(until_eof=True)
                if read.reference_name.removeprefix("chr").isdigit()
            ]
        return sum(origins) / len(origins)

    known = tmp_path / "known.tsv"
    rows = (
        ["sample\tfetal_fraction"]
        + [f"{bam.stem}\t0" for bam in sorted((tmp_path / "blood").glob("*.bam"))]
        + [f"{bam.stem}\t{placental_share(bam):.4f}" for bam in sorted((tmp_path / "panel").glob("*.bam"))]
    )
    known.write_text("\n".join(rows) + "\n")
    bins = tmp_path / "blood" / "genome" / "bins.npz"
    inputs = sorted((tmp_path / "blood").glob("*.bam")) + sorted((tmp_path / "panel").glob("*.bam"))
    assert (
        run_cli(
            "fragments",
            *inputs,
            "--long-reads",
            "--bins",
            bins,
            "-o",
            tmp_path / "learn",
            "--learn-methylation-reference",
            tmp_path / "reference.npz",
            "--known-fetal-fractions",
            known,
        ).exit_code
        == 0
    )
    tests = sorted((tmp_path / "test").glob("*.bam"))
    assert (
        run_cli(
            "fragments",
            *tests,
            "--long-reads",
            "--bins",
            bins,
            "-o",
            tmp_path / "estimates",
            "--methylation-reference",
            tmp_path / "reference.npz",
        ).exit_code
        == 0
    )
    sexes = set()
    for bam in tests:
        result = json.loads((tmp_path / "estimates" / f"{bam.stem}.fragments.json").read_text())
        estimate = result["methylation"]["fetal_fraction"]
        truth = placental_share(bam)
        assert abs(estimate["estimate"] - truth) <= 0.015, (bam.stem, estimate, truth)
        assert estimate["interval"][0] <= truth <= estimate["interval"][1]
        with pysam.AlignmentFile(str(bam)) as alignments:
            sexes.add(any(read.reference_name == "chrY" for read in alignments.fetch("chrY")))
    assert sexes == {True, False}  # one male and one female fetus
    # Learning without the fractions is a usage error.
    assert (
        run_cli(
            "fragments",
            *inputs[:1],
            "--long-reads",
            "-o",
            tmp_path / "x",
            "--learn-methylation-reference",
            tmp_path / "r2.npz",
        ).exit_code
        == 2
    )
