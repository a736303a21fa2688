"""The command line: version, help, the installed script, the demo, progress display."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

from plasmacount import __version__
from plasmacount.progress import Progress


def test_version_and_help(run_cli):
    result = run_cli("--version")
    assert result.exit_code == 0
    assert run_cli().exit_code == 2


def test_every_subcommand_help_lists_its_options_and_an_example():
    """`plasmacount SUB --help` shows SUB's own options (the parser once answered --help before
    the subcommand had added them) and an example that names the subcommand."""
    from plasmacount.cli import SUBCOMMANDS

    for command in SUBCOMMANDS:
        result = subprocess.run(
            [sys.executable, "-m", "plasmacount", command, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, command
        text = result.stdout
        assert "-o" in text or command in ("serve", "user", "import", "demo"), command
        assert "example:" in text and f"plasmacount {command}" in text, command
        options = re.findall(r"^\s+(--[a-z][a-z-]*)", text, flags=re.M)
        assert len([o for o in options if o != "--help"]) >= 1, command


def test_old_fasta_spelling_still_works_with_a_warning(run_cli, tmp_path):
    missing = tmp_path / "missing.fa"
    result = run_cli("count", tmp_path / "none.bam", "-o", tmp_path / "x.npz", "--reference", missing)
    assert "deprecated" in result.stderr and "--fasta" in result.stderr


def test_installed_script_and_module():
    script = str(Path(sys.executable).parent / "plasmacount")
    for command in ([script, "--version"], [sys.executable, "-m", "plasmacount", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0
        assert __version__ in result.stdout + result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "plasmacount", "count", "/nonexistent.bam", "-o", "/tmp/x.npz"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_quiet_silences_information(tmp_path, run_cli):
    result = run_cli("--quiet", "simulate", "-o", tmp_path, "--samples", "2", "--reads", "100k", "--scale", "0.002")
    assert result.exit_code == 0 and result.stderr == ""
    result = run_cli("simulate", "-o", tmp_path, "--samples", "2", "--reads", "100k", "--scale", "0.002")
    assert "truth" in result.stderr


def test_demo(demo_output):
    tmp_path = demo_output.parent
    with open(tmp_path / "demo" / "summary.tsv") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    assert len(rows) == 4
    for row in rows:
        assert 160 <= int(row["mode_bp"]) <= 170
        assert int(row["counted"]) > 100_000
    assert len(list((tmp_path / "demo" / "panel").glob("*.counts.npz"))) == 60
    with open(tmp_path / "demo" / "fragments" / "fragments.tsv") as stream:
        fragment_rows = list(csv.DictReader(stream, delimiter="\t"))
    assert len(fragment_rows) == 4 and all(0.9 < float(r["motif_diversity"]) <= 1 for r in fragment_rows)
    with open(tmp_path / "demo" / "viral" / "summary.tsv") as stream:
        screened = list(csv.DictReader(stream, delimiter="\t"))
    assert len(screened) == 30
    assert all(r["screen"] == "negative" for r in screened if r["truth"] == "negative")
    assert all(r["screen"] == "positive" for r in screened if r["truth"] == "npc" and int(r["ebv_fragments"]) >= 20)
    with open(tmp_path / "demo" / "tumor" / "summary.tsv") as stream:
        patients = list(csv.DictReader(stream, delimiter="\t"))
    assert len(patients) == 12
    assert all(float(r["tumor_fraction"]) == 0 for r in patients if float(r["true_tumor_fraction"]) == 0)
    with open(tmp_path / "demo" / "nipt" / "summary.tsv") as stream:
        cases = list(csv.DictReader(stream, delimiter="\t"))
    assert len(cases) == 8
    for case in cases:
        assert case["fetal_sex"] == case["true_fetal_sex"]
        if case["truth"] in ("T21", "T18", "T13", "45,X"):
            assert case["positive"] == case["truth"]
        elif case["truth"].startswith("del:"):
            assert "deletion chr22" in case["cnvs"] and "fetal" in case["cnvs"]
        else:
            assert case["positive"] == "-"


def test_progress_bar_on_terminal_and_log_lines_elsewhere(caplog):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = Progress("counting", stream=terminal)
    for done in range(0, 11):
        progress(done, 10)
    assert "counting [" in terminal.getvalue() and "100.0%" in terminal.getvalue()
    plain = io.StringIO()
    with caplog.at_level("INFO", logger="plasmacount"):
        progress = Progress("counting", stream=plain, interval=0.0)
        progress(5, 10)
    assert plain.getvalue() == ""
    assert "5 of 10" in caplog.text


def test_verbose_prints_stage_timings_and_count_reports_progress(tmp_path, run_cli):
    from plasmacount.simulation import SimulationRequest, run_simulation

    [bam] = run_simulation(
        SimulationRequest(
            output=tmp_path / "reads",
            cohort="euploid",
            samples=1,
            reads=50_000,
            seed=2,
            paired=True,
            output_format="bam",
            prefix="p",
        )
    )
    result = run_cli(
        "--verbose", "count", bam, "--bins", tmp_path / "reads" / "genome" / "bins.npz", "-o", tmp_path / "p.npz"
    )
    assert result.exit_code == 0, result.stderr
    # Not a terminal: the progress of counting is a log line with the record total from the index.
    assert re.search(r"counting p_0001\.bam: (\d+) of \1 done", result.stderr)
    assert "timings (" in result.stderr and re.search(r"\n  count\s+\d+\.\d\d s", result.stderr)
    quiet = run_cli("count", bam, "--bins", tmp_path / "reads" / "genome" / "bins.npz", "-o", tmp_path / "q.npz")
    assert "timings" not in quiet.stderr


def test_numbers_that_make_no_sense_stop_at_the_command_line(tmp_path, run_cli):
    """A bin size of 0 once became 100 kb, -1 components wrote a reference, a negative CNV z
    called CNVs: each now stops with exit code 2, one line naming the option, and no output."""
    cases = [
        (["count", tmp_path / "x.bam", "-o", tmp_path / "x.npz", "--bin-size", "0"], "--bin-size"),
        (
            [
                "reference",
                tmp_path / "a.npz",
                "--bins",
                tmp_path / "b.npz",
                "-o",
                tmp_path / "r.npz",
                "--components",
                "-1",
            ],
            "--components",
        ),
        (
            ["nipt", tmp_path / "a.npz", "--reference", tmp_path / "r.npz", "-o", tmp_path / "out", "--cnv-z", "-3"],
            "--cnv-z",
        ),
        (["count", tmp_path / "x.bam", "-o", tmp_path / "x.npz", "--min-mapq", "300"], "--min-mapq"),
        (["simulate", "-o", tmp_path / "sim", "--scale", "0"], "--scale"),
        (["fragments", tmp_path / "x.bam", "-o", tmp_path / "f", "--window", "abc"], "--window"),
        (["serve", "--port", "99999"], "--port"),
    ]
    for arguments, option in cases:
        result = run_cli(*arguments)
        assert result.exit_code == 2, arguments
        assert option in result.stderr.splitlines()[-1] and "Traceback" not in result.stderr, result.stderr
    assert not any(tmp_path.iterdir())


def test_analysis_install_works_without_the_review_extra(tmp_path):
    """`pip install plasmacount` has no web stack: every analysis module imports and runs without
    it, and the review commands say in one line which extra to install."""
    blocked = ["fastapi", "uvicorn", "sqlalchemy", "alembic", "argon2", "multipart"]
    program = f"""
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None
import plasmacount
for module in pkgutil.walk_packages(plasmacount.__path__, "plasmacount."):
    if not module.name.startswith("plasmacount.review"):
        importlib.import_module(module.name)
from plasmacount.cli import main
main(sys.argv[1:])
"""
    simulate = subprocess.run(
        [
            sys.executable,
            "-c",
            program,
            "--quiet",
            "simulate",
            "-o",
            str(tmp_path),
            "--samples",
            "2",
            "--reads",
            "100k",
            "--scale",
            "0.002",
        ],
        capture_output=True,
        text=True,
    )
    assert simulate.returncode == 0, simulate.stderr
    for command in (["serve"], ["user", "disable", "ada"], ["import", str(tmp_path), "--name", "x"]):
        result = subprocess.run(
            [sys.executable, "-c", program, *command, "--database", str(tmp_path / "r.sqlite")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "pip install 'plasmacount[review]'" in result.stderr and result.stderr.strip().count("\n") == 0, (
            result.stderr
        )
