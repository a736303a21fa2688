"""Bin annotations: GC/N/blacklist from a FASTA against a direct count; imports of QDNAseq and ichorCNA files."""

from __future__ import annotations

import numpy as np
import pytest
from bam_factory import random_records, write_bam

from plasmacount.bins import BinAnnotation, annotate_fasta, import_annotations
from plasmacount.errors import DataError
from plasmacount.genome import Layout, check_compatible, name_key


def write_fasta(path, contigs):
    with open(path, "w") as out:
        for name, sequence in contigs:
            out.write(f">{name}\n")
            for i in range(0, len(sequence), 70):
                out.write(sequence[i : i + 70] + "\n")
    return path


def test_fasta_gc_n_and_blacklist(tmp_path):
    rng = np.random.default_rng(5)
    sequences = []
    for name, length in (("chr1", 25_000), ("chr2", 13_500), ("chrM", 500)):
        bases = np.frombuffer(b"ACGTacgt", dtype=np.uint8)[rng.integers(0, 8, length)].copy()
        bases[3000:4200] = ord("N")
        sequences.append((name, bases.tobytes().decode()))
    fasta = write_fasta(tmp_path / "ref.fa", sequences)
    blacklist = tmp_path / "blacklist.bed"
    blacklist.write_text("chr1\t500\t1500\nchr1\t1200\t2500\nchr2\t9000\t13500\n")
    annotation = annotate_fasta(fasta, bin_size=1000, blacklist=blacklist)
    assert annotation.layout.names == ["chr1", "chr2"]  # chrM is not binned
    for name, sequence in sequences[:2]:
        contig = annotation.layout.contig(name)
        for b in range(contig.n_bins):
            chunk = sequence[b * 1000 : (b + 1) * 1000].upper()
            known = sum(chunk.count(x) for x in "ACGT")
            expected_gc = (chunk.count("G") + chunk.count("C")) / known if known else np.nan
            got = annotation.gc[contig.first_bin + b]
            assert (np.isnan(expected_gc) and np.isnan(got)) or got == pytest.approx(expected_gc)
            assert annotation.n_fraction[contig.first_bin + b] == pytest.approx(chunk.count("N") / len(chunk))
    chr1 = annotation.layout.contig("chr1")
    np.testing.assert_allclose(annotation.blacklist[chr1.first_bin : chr1.first_bin + 3], [0.5, 1.0, 0.5])
    chr2 = annotation.layout.contig("chr2")
    assert annotation.blacklist[chr2.first_bin + 13] == pytest.approx(1.0)  # last, 500 bp bin fully covered
    assert np.isnan(annotation.mappability).all()
    path = tmp_path / "bins.npz"
    annotation.save(path)
    again = BinAnnotation.load(path)
    np.testing.assert_array_equal(again.gc, annotation.gc)
    assert again.layout == annotation.layout


def test_fasta_annotation_via_cli_is_deterministic(tmp_path, run_cli):
    rng = np.random.default_rng(1)
    fasta = write_fasta(
        tmp_path / "ref.fa",
        [("1", np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, 9000)].tobytes().decode())],
    )
    assert run_cli("bins", "--fasta", fasta, "--bin-size", "1000", "-o", tmp_path / "a.npz").exit_code == 0
    assert run_cli("bins", "--fasta", fasta, "--bin-size", "1000", "-o", tmp_path / "b.npz").exit_code == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_names_match_both_ways():
    assert name_key("chr1") == name_key("1") == "1"
    assert name_key("chrX") == name_key("X")
    assert name_key("chrM") == name_key("MT") == "M"
    layout = Layout.from_lengths([("1", 1000), ("X", 500)], 100)
    check_compatible(layout, [("chr1", 1000), ("chrX", 500)], "a.bam", "bins")
    with pytest.raises(DataError, match="builds differ"):
        check_compatible(layout, [("chr1", 1200)], "a.bam", "bins")


def test_bam_with_other_naming_uses_annotation(tmp_path):
    """A BAM with chr names counted on an annotation with Ensembl names."""
    from bam_factory import CONTIGS

    from plasmacount.alignments import count_alignments

    bam = write_bam(tmp_path / "a.bam", random_records(seed=2, n=3000, paired=False))
    layout = Layout.from_lengths([(name.replace("chr", ""), length) for name, length in CONTIGS[:4]], 100_000)
    nan = np.full(layout.n_bins, np.nan)
    annotation = BinAnnotation(layout, nan, nan, nan, nan)
    counts = count_alignments(bam, annotation=annotation)
    assert counts.layout.names == ["1", "2", "X", "Y"]
    by_name = count_alignments(bam, bin_size=100_000)
    np.testing.assert_array_equal(counts.counts, by_name.counts)


def test_import_qdnaseq(shared_data):
    annotation = import_annotations([shared_data / "qdnaseq_hg38" / "hg38.1000kbp.SR50.bins.tsv.gz"])
    assert annotation.bin_size == 1_000_000
    assert annotation.layout.names[0] == "1" and annotation.layout.names[-1] == "Y"
    # QDNAseq's last bin ends at the chromosome's end: chr1 = 248,956,422 bp, GRCh38.
    assert annotation.layout.build == "GRCh38"
    first = annotation.layout.contig("1")
    assert first.n_bins == 249
    assert 0.0 <= np.nanmin(annotation.gc) and np.nanmax(annotation.gc) <= 1.0
    assert np.nanmean(annotation.mappability) > 0.5
    assert (annotation.blacklist >= 0).all()


def test_import_qdnaseq_values(shared_data):
    import gzip

    annotation = import_annotations([shared_data / "qdnaseq_hg38" / "hg38.100kbp.SR50.bins.tsv.gz"])
    assert annotation.layout.build == "GRCh38"  # 2,490 bins of 100 kb on chr1: only GRCh38
    with gzip.open(shared_data / "qdnaseq_hg38" / "hg38.100kbp.SR50.bins.tsv.gz", "rt") as stream:
        stream.readline()
        rows = [stream.readline().split("\t") for _ in range(3)]
    for i, row in enumerate(rows):
        assert annotation.gc[i] == pytest.approx(float(row[4]) / 100)
        assert annotation.mappability[i] == pytest.approx(float(row[5]) / 100)
        assert annotation.n_fraction[i] == pytest.approx(1 - float(row[3]) / 100)


def test_import_ichorcna_wigs(shared_data):
    annotation = import_annotations(
        [shared_data / "ichorcna" / "gc_hg19_1000kb.wig", shared_data / "ichorcna" / "map_hg19_1000kb.wig"]
    )
    assert annotation.layout.build == "GRCh37"
    assert annotation.layout.n_bins == 3113
    assert np.isnan(annotation.gc).sum() > 0  # -1 in the WIG means unknown
    assert np.nanmax(annotation.mappability) <= 1.0
    # Mixing builds is refused.
    with pytest.raises(DataError, match="builds differ"):
        import_annotations(
            [shared_data / "ichorcna" / "gc_hg19_1000kb.wig", shared_data / "ichorcna" / "map_hg38_1000kb.wig"]
        )
    with pytest.raises(DataError, match="bin size"):
        import_annotations(
            [shared_data / "ichorcna" / "gc_hg19_1000kb.wig", shared_data / "ichorcna" / "gc_hg19_500kb.wig"]
        )
