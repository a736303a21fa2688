"""Bad input: a one-line error naming the file and the fix, exit code 1, and no output left behind."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pysam
import pytest
from bam_factory import random_records, write_bam, write_reference


def assert_clean_failure(result, output: Path, *words: str, code: int = 1):
    assert result.exit_code == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ERROR: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}*")), "temporary file left behind"


@pytest.fixture
def good_bam(tmp_path) -> Path:
    return write_bam(tmp_path / "good.bam", random_records(seed=1, n=3000, paired=True))


def test_missing_file(tmp_path, run_cli):
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", tmp_path / "absent.bam", "-o", out), out, "absent.bam", "not found")


def test_missing_index(tmp_path, run_cli):
    bam = write_bam(tmp_path / "noindex.bam", random_records(seed=1, n=500, paired=False), index=False)
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", bam, "-o", out), out, "noindex.bam", "samtools index")


def test_unsorted_header(tmp_path, run_cli):
    bam = write_bam(
        tmp_path / "unsorted.bam", random_records(seed=1, n=500, paired=False), sort_order="queryname", index=False
    )
    shutil.copy(
        write_bam(tmp_path / "other.bam", random_records(seed=1, n=500, paired=False)).with_suffix(".bam.bai"),
        tmp_path / "unsorted.bam.bai",
    )
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", bam, "-o", out), out, "unsorted.bam", "samtools sort")


def test_unsorted_records(tmp_path, run_cli):
    """Header claims coordinate order (and a stale index exists) but records are shuffled."""
    records = random_records(seed=2, n=2000, paired=False, unplaced=0)
    records.reverse()
    bam = write_bam(tmp_path / "shuffled.bam", records, index=False)
    shutil.copy(
        write_bam(tmp_path / "other.bam", random_records(seed=1, n=500, paired=False)).with_suffix(".bam.bai"),
        tmp_path / "shuffled.bam.bai",
    )
    out = tmp_path / "out.npz"
    assert_clean_failure(
        run_cli("count", bam, "-o", out), out, "shuffled.bam", "not coordinate-sorted", "samtools sort"
    )


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.02])
def test_truncated_bam(tmp_path, run_cli, good_bam, keep):
    data = good_bam.read_bytes()
    truncated = tmp_path / "truncated.bam"
    truncated.write_bytes(data[: int(len(data) * keep)])
    shutil.copy(str(good_bam) + ".bai", str(truncated) + ".bai")
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", truncated, "-o", out), out, "truncated.bam", "truncated")


def test_bam_without_eof_marker(tmp_path, run_cli, good_bam):
    data = good_bam.read_bytes()
    assert data.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    cut = tmp_path / "noeof.bam"
    cut.write_bytes(data[:-28])
    shutil.copy(str(good_bam) + ".bai", str(cut) + ".bai")
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", cut, "-o", out), out, "noeof.bam", "end-of-file")


def test_corrupt_block(tmp_path, run_cli, good_bam):
    data = bytearray(good_bam.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt = tmp_path / "corrupt.bam"
    corrupt.write_bytes(bytes(data))
    shutil.copy(str(good_bam) + ".bai", str(corrupt) + ".bai")
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", corrupt, "-o", out), out, "corrupt.bam")


def test_empty_bam(tmp_path, run_cli):
    bam = write_bam(tmp_path / "empty.bam", [])
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", bam, "-o", out), out, "empty.bam", "no reads")


def test_zero_byte_file(tmp_path, run_cli):
    bam = tmp_path / "zero.bam"
    bam.write_bytes(b"")
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", bam, "-o", out), out, "zero.bam", "empty")


def test_cram_without_reference(tmp_path, run_cli):
    reference = write_reference(tmp_path / "ref.fa")
    bam = write_bam(tmp_path / "pe.bam", random_records(seed=3, n=500, paired=False))
    cram = tmp_path / "noref.cram"
    pysam.view(
        "-C", "-T", str(reference), "--output-fmt-option", "embed_ref=0", "-o", str(cram), str(bam), catch_stdout=False
    )
    pysam.index(str(cram))
    # Make the reference unreachable: moved away, so neither the header's UR nor a cache finds it.
    reference.rename(tmp_path / "moved.fa")
    Path(str(reference) + ".fai").rename(tmp_path / "moved.fa.fai")
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", cram, "-o", out), out, "noref.cram", "--fasta")
    # With the reference it works.
    assert run_cli("count", cram, "-o", out, "--fasta", tmp_path / "moved.fa").exit_code == 0
    assert out.exists()


def test_contigs_do_not_match_annotation(tmp_path, run_cli, good_bam):
    hg19_like = tmp_path / "hg19.tsv"
    hg19_like.write_text(
        "chrom\tstart\tend\tcount\n" + "".join(f"chr1\t{i * 100000}\t{(i + 1) * 100000}\t5\n" for i in range(25))
    )
    annotation = tmp_path / "bins.npz"
    # An annotation whose chr1 has another length (another build).
    import numpy as np

    from plasmacount.bins import BinAnnotation
    from plasmacount.genome import Layout

    layout = Layout.from_lengths([("chr1", 2_500_000), ("chr2", 1_500_000)], 100_000)
    nan = np.full(layout.n_bins, np.nan)
    BinAnnotation(layout, nan, nan, nan, nan).save(annotation)
    out = tmp_path / "out.npz"
    assert_clean_failure(
        run_cli("count", good_bam, "--bins", annotation, "-o", out), out, "good.bam", "chr1", "builds differ"
    )
    # No shared contig names at all.
    layout = Layout.from_lengths([("scaffold_1", 2_500_000)], 100_000)
    nan = np.full(layout.n_bins, np.nan)
    BinAnnotation(layout, nan, nan, nan, nan).save(annotation)
    assert_clean_failure(run_cli("count", good_bam, "--bins", annotation, "-o", out), out, "good.bam", "chr1")


@pytest.mark.parametrize(
    "content, words",
    [
        ("fixedStep chrom=1 start=1 step=1000 span=1000\n5\n6\nabc\n", ["line 4", "not a number"]),
        ("7\nfixedStep chrom=1 start=1 step=1000 span=1000\n5\n", ["line 1", "before any fixedStep"]),
        ("fixedStep chrom=1 start=1 step=1000 span=1000\n5\n-3\n", ["negative"]),
        ("fixedStep chrom=1 start=5 step=1000 span=1000\n5\n", ["start at 1"]),
    ],
)
def test_corrupt_wig(tmp_path, run_cli, content, words):
    wig = tmp_path / "bad.wig"
    wig.write_text(content)
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", wig, "-o", out), out, "bad.wig", *words)


@pytest.mark.parametrize(
    "content, words",
    [
        ("chrom\tstart\tend\tcount\nchr1\t0\t100\t5\nchr1\t100\t200\tx\n", ["line 3", "non-integer"]),
        ("chrom\tstart\tend\tcount\nchr1\t0\t100\t5\nchr1\t200\t300\t7\n", ["not contiguous"]),
        ("chrom\tstart\tend\tcount\nchr1\t0\t100\n", ["line 2", "columns"]),
        ("chr1\t0\t100\t5\n", ["header"]),
        ("chrom\tstart\tend\tcount\nchr1\t0\t100\t-4\n", ["negative"]),
    ],
)
def test_corrupt_tsv(tmp_path, run_cli, content, words):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text(content)
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", tsv, "-o", out), out, "bad.tsv", *words)


def test_truncated_gzip_tsv(tmp_path, run_cli):
    tsv = tmp_path / "bad.tsv.gz"
    data = gzip.compress(
        b"chrom\tstart\tend\tcount\n" + b"".join(b"chr1\t%d\t%d\t5\n" % (i * 100, i * 100 + 100) for i in range(5000))
    )
    tsv.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", tsv, "-o", out), out, "bad.tsv.gz")


def test_corrupt_counts_file(tmp_path, run_cli):
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"PK\x03\x04 this is not a zip")
    out = tmp_path / "out.npz"
    assert_clean_failure(run_cli("count", fake, "-o", out), out, "fake.npz")


@pytest.mark.parametrize(
    "args, words",
    [
        (["count", "x.bam", "-o", "o.npz", "--min-mapq", "300"], ["--min-mapq"]),
        (["count", "x.bam", "-o", "o.npz", "--short-range", "abc"], ["--short-range"]),
        (["count", "x.bam"], ["-o"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_usage_errors_exit_2(tmp_path, run_cli, args, words, good_bam):
    args = [str(good_bam) if a == "x.bam" else str(tmp_path / a) if a == "o.npz" else a for a in args]
    result = run_cli(*args)
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_output_folder_missing(tmp_path, run_cli, good_bam):
    out = tmp_path / "no" / "such" / "dir" / "out.npz"
    result = run_cli("count", good_bam, "-o", out)
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_debug_shows_traceback(tmp_path, run_cli):
    from plasmacount.cli import main
    from plasmacount.errors import DataError

    with pytest.raises(DataError):
        main(["--debug", "count", str(tmp_path / "absent.bam"), "-o", str(tmp_path / "o.npz")])


def test_count_leaves_no_counts_file_when_its_table_cannot_be_written(tmp_path, run_cli):
    """`count --tsv` into a missing folder: one line naming the table, and no .npz left behind."""
    source = tmp_path / "in.tsv"
    source.write_text(
        "chrom\tstart\tend\tcount\n" + "".join(f"chr1\t{i * 100000}\t{(i + 1) * 100000}\t{10 + i}\n" for i in range(30))
    )
    out = tmp_path / "out.counts.npz"
    result = run_cli("count", source, "-o", out, "--tsv", tmp_path / "missing" / "table.tsv")
    assert result.exit_code == 1 and "table.tsv" in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_a_write_failure_names_the_file_asked_for(tmp_path, run_cli):
    """A folder where the output should go: the message names it, not a hidden temporary file."""
    source = tmp_path / "in.tsv"
    source.write_text(
        "chrom\tstart\tend\tcount\n" + "".join(f"chr1\t{i * 100000}\t{(i + 1) * 100000}\t5\n" for i in range(30))
    )
    (tmp_path / "taken.npz").mkdir()
    result = run_cli("count", source, "-o", tmp_path / "taken.npz")
    assert result.exit_code == 1 and "taken.npz" in result.stderr and ".tmp" not in result.stderr
