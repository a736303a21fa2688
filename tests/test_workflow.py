"""The Snakemake workflow end to end (simulated FASTQ -> alignment -> counts -> reference -> nipt,
viral, tumor, fragments -> reports -> MultiQC), its lint, and sample-sheet checks."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plasmacount.errors import DataError
from plasmacount.samplesheet import read_sample_sheet
from plasmacount.simulation import SimulationRequest, run_simulation

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
TOOLS = all(shutil.which(tool) for tool in ("bwa", "samtools")) and (BIN / "snakemake").exists()
needs_tools = pytest.mark.skipif(not TOOLS, reason="bwa, samtools and snakemake are needed (`.ci/run` installs them)")


def _snakemake(directory: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(WORKFLOW), "--configfile", "config.yaml", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def _sheet(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w") as stream:
        stream.write("sample\tfastq_1\tfastq_2\tcounts\trole\n")
        for row in rows:
            stream.write("\t".join(row) + "\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A lab folder: 24 earlier pregnancies as counts (the reference), 3 new ones as FASTQ."""
    folder = tmp_path_factory.mktemp("workflow")
    run_simulation(
        SimulationRequest(
            output=folder / "earlier",
            cohort="euploid",
            samples=24,
            reads=300_000,
            seed=1,
            paired=True,
            output_format="counts",
            prefix="earlier",
        )
    )
    run_simulation(
        SimulationRequest(
            output=folder / "reads",
            cohort="nipt",
            samples=3,
            reads=600_000,
            seed=3,
            paired=True,
            output_format="fastq",
            prefix="case",
        )
    )
    rows = [
        [f"case_{i:04d}", f"reads/case_{i:04d}_R1.fastq.gz", f"reads/case_{i:04d}_R2.fastq.gz", "", "test"]
        for i in (1, 2, 3)
    ]
    rows += [[f"earlier_{i:04d}", "", "", f"earlier/earlier_{i:04d}.counts.npz", "reference"] for i in range(1, 25)]
    _sheet(folder / "samples.tsv", rows)
    (folder / "config.yaml").write_text(
        "samples: samples.tsv\noutdir: results\n"
        "genome: {fasta: reads/genome/genome.fa, bins: reads/genome/bins.npz}\n"
        "align: {threads: 2}\nanalyses: [nipt, viral, tumor, fragments]\n"
    )
    return folder


@needs_tools
def test_workflow_from_fastq_to_reports(project):
    run = _snakemake(project, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    results = project / "results"
    with open(project / "reads" / "truth.tsv") as stream:
        truth = {row["sample"]: row for row in csv.DictReader(stream, delimiter="\t")}
    with open(results / "nipt" / "nipt.tsv") as stream:
        called = {row["sample"]: row for row in csv.DictReader(stream, delimiter="\t")}
    assert set(called) == set(truth)
    for sample, row in called.items():
        assert row["fetal_sex"] == truth[sample]["fetal_sex"], sample
        assert row["positive"] == (truth[sample]["findings"] or "-"), sample
    for sample in truth:
        assert (results / "reports" / f"{sample}.html").exists() and (results / "reports" / f"{sample}.pdf").exists()
        for analysis in ("viral", "tumor", "fragments"):
            assert (results / analysis / f"{sample}.{analysis}.json").exists()
        assert (results / "alignments" / f"{sample}.bam.bai").exists()
    # Duplicates are marked: the simulated reads carry PCR duplicates, and count skips them.
    assert "DUPLICATE TOTAL" in (results / "qc" / "case_0001.markdup.txt").read_text()
    multiqc = (results / "multiqc" / "multiqc_report.html").read_text()
    assert "plasmacount_nipt" in multiqc and "samtools" in multiqc.lower()
    # A second run finds nothing to do.
    again = _snakemake(project, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@needs_tools
def test_workflow_lint_is_clean(project):
    run = _snakemake(project, "--lint")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Lints for" not in run.stdout + run.stderr


@needs_tools
@pytest.mark.parametrize("problem", ["missing", "duplicate"])
def test_bad_sample_sheet_fails_before_any_job(project, tmp_path, problem):
    for name in ("config.yaml",):
        shutil.copy(project / name, tmp_path / name)
    os.symlink(project / "reads", tmp_path / "reads")
    os.symlink(project / "earlier", tmp_path / "earlier")
    rows = [["case_0001", "reads/case_0001_R1.fastq.gz", "reads/case_0001_R2.fastq.gz", "", "test"]]
    rows += [[f"earlier_{i:04d}", "", "", f"earlier/earlier_{i:04d}.counts.npz", "reference"] for i in range(1, 25)]
    if problem == "missing":
        rows.insert(1, ["case_0009", "reads/case_0009_R1.fastq.gz", "", "", "test"])
    else:
        rows.insert(1, ["case_0001", "reads/case_0002_R1.fastq.gz", "reads/case_0002_R2.fastq.gz", "", "test"])
    _sheet(tmp_path / "samples.tsv", rows)
    run = _snakemake(tmp_path, "--cores", "2")
    assert run.returncode != 0
    message = run.stdout + run.stderr
    assert "row 3" in message
    assert (
        ("case_0009_R1.fastq.gz" in message and "not found" in message)
        if problem == "missing"
        else "appears twice" in message
    )
    assert not (tmp_path / "results").exists()


def test_sample_sheet_rules(tmp_path):
    (tmp_path / "a.fq").write_text("")
    (tmp_path / "x.npz").write_text("")
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text("sample\tfastq_1\tcounts\trole\na1\ta.fq\t\t\nb2\t\tx.npz\treference\n")
    rows = read_sample_sheet(sheet)
    assert [(r.sample, r.role, r.input_kind) for r in rows] == [("a1", "test", "fastq"), ("b2", "reference", "counts")]
    assert rows[0].fastq_1 == str((tmp_path / "a.fq").resolve()) and not rows[0].paired
    cases = {
        "sample\tfastq_1\tcounts\na1\ta.fq\tx.npz\n": "exactly one input",
        "sample\tfastq_1\na1\ta.fq\nbad name\ta.fq\n": "row 3",
        "sample\tfastq_1\trole\na1\ta.fq\tcontrol\n": "role 'control'",
        "name\tfastq_1\na1\ta.fq\n": "no 'sample' column",
        "sample\tother\na1\tz\n": "no input column",
        "sample\tfastq_1\n": "no samples",
    }
    for text, expected in cases.items():
        sheet.write_text(text)
        with pytest.raises(DataError, match=expected):
            read_sample_sheet(sheet)
