"""The counts file: round trips, byte-for-byte determinism, TSV export/import, WIG import."""

from __future__ import annotations

import json
import zipfile

import numpy as np
from bam_factory import random_records, write_bam

from plasmacount.counts import SampleCounts, import_tsv, import_wig, load_counts


def test_round_trip_and_determinism(tmp_path, run_cli):
    bam = write_bam(tmp_path / "a.bam", random_records(seed=4, n=4000, paired=True))
    for name in ("one", "two"):
        assert run_cli("count", bam, "-o", tmp_path / f"{name}.npz", "--tsv", tmp_path / f"{name}.tsv").exit_code == 0
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    assert (tmp_path / "one.tsv").read_bytes() == (tmp_path / "two.tsv").read_bytes()
    counts = SampleCounts.load(tmp_path / "one.npz")
    assert counts.sample == "testsample"
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:
        metadata = json.loads(archive.read("metadata.json"))
    assert metadata["format"] == "plasmacount-counts" and metadata["format_version"].startswith("1.")
    # Plain numpy reads the arrays without pickle.
    with np.load(tmp_path / "one.npz", allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["counts"], counts.counts)
    # The TSV reads back to the same bins.
    back = import_tsv(tmp_path / "one.tsv")
    np.testing.assert_array_equal(back.counts, counts.counts)
    np.testing.assert_array_equal(back.short, counts.short)
    np.testing.assert_array_equal(back.long, counts.long)
    assert back.layout.names == counts.layout.names
    header = (tmp_path / "one.tsv").read_text().splitlines()[0]
    assert header == "chrom\tstart\tend\tcount\tshort\tlong"


def test_single_end_tsv_header(tmp_path, run_cli):
    bam = write_bam(tmp_path / "a.bam", random_records(seed=4, n=2000, paired=False))
    assert (
        run_cli("count", bam, "-o", tmp_path / "a.npz", "--tsv", tmp_path / "a.tsv", "--bin-size", "250000").exit_code
        == 0
    )
    lines = (tmp_path / "a.tsv").read_text().splitlines()
    assert lines[0] == "chrom\tstart\tend\tcount"
    assert lines[1].split("\t")[:3] == ["chr1", "0", "250000"]
    counts = load_counts(tmp_path / "a.npz")
    assert counts.bin_size == 250_000 and not counts.paired


def test_real_wig_import(shared_data, tmp_path, run_cli):
    wig = shared_data / "ichorcna" / "MBC_315.ctDNA.reads.wig"
    counts = import_wig(wig)
    values = [int(line) for line in wig.read_text().splitlines() if not line.startswith("fixedStep")]
    assert counts.counts.sum() == sum(values)
    assert counts.bin_size == 1_000_000
    assert counts.layout.names[:2] == ["1", "2"]
    assert (
        run_cli(
            "bins",
            "--import",
            shared_data / "ichorcna" / "gc_hg19_1000kb.wig",
            shared_data / "ichorcna" / "map_hg19_1000kb.wig",
            "-o",
            tmp_path / "bins.npz",
        ).exit_code
        == 0
    )
    assert run_cli("count", wig, "--bins", tmp_path / "bins.npz", "-o", tmp_path / "mbc.npz").exit_code == 0
    assert SampleCounts.load(tmp_path / "mbc.npz").counts.sum() == sum(values)
    # An hg19 WIG against hg38 bins is refused as a build mismatch.
    assert (
        run_cli(
            "bins", "--import", shared_data / "ichorcna" / "gc_hg38_1000kb.wig", "-o", tmp_path / "hg38.npz"
        ).exit_code
        == 0
    )
    result = run_cli("count", wig, "--bins", tmp_path / "hg38.npz", "-o", tmp_path / "bad.npz")
    assert result.exit_code == 1 and "builds differ" in result.stderr
    assert not (tmp_path / "bad.npz").exists()
