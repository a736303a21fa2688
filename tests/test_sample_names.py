"""Sample names never choose where a file is written: one safe-name rule for every output."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from plasmacount.counts import SampleCounts
from plasmacount.files import sample_file_stem
from plasmacount.report import sibling_file

HOSTILE = ("../../escaped", "a/b", "/tmp/plasmacount-absolute-name", "..", "-rf", "name\nwith newline")


def test_safe_names_stay_and_unsafe_ones_become_distinct_plain_stems():
    for name in ("case_01", "Łódź_01", "S1.rep-2+3"):
        assert sample_file_stem(name) == name
    stems = [sample_file_stem(name) for name in HOSTILE + ("a_b", "x" * 300)]
    assert len(set(stems)) == len(stems)
    for stem in stems:
        assert (
            "/" not in stem
            and ".." not in stem
            and not stem.startswith((".", "-"))
            and len(stem) <= 100
            and stem.isprintable()
        )
    assert sample_file_stem("a/b") != sample_file_stem("a_b")


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "/tmp/plasmacount-absolute-name"])
def test_path_like_sample_names_never_write_outside_the_output(name, demo_output, tmp_path, run_cli):
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    before_outside = _files_under(tmp_path)
    absolute_before = Path("/tmp/plasmacount-absolute-name.nipt.json").exists()

    def renamed(source: Path, analysis: str) -> Path:
        counts = SampleCounts.load(source)
        path = work / f"in_{analysis}.counts.npz"
        dataclasses.replace(counts, sample=name).save(path)
        return path

    batch = sorted((demo_output / "batch").glob("*.counts.npz"))[0]
    patient = sorted((demo_output / "patients").glob("*.counts.npz"))[0]
    ebv = sorted((demo_output / "ebv").glob("*.counts.npz"))[0]
    runs = {
        "nipt": ["nipt", renamed(batch, "nipt"), "--reference", demo_output / "reference.npz"],
        "tumor": [
            "tumor",
            renamed(patient, "tumor"),
            "--panel",
            demo_output / "tumor_panel.npz",
            "--bins",
            demo_output / "healthy" / "genome" / "bins.npz",
        ],
        "viral": ["viral", renamed(ebv, "viral")],
        "fragments": ["fragments", renamed(batch, "fragments")],
    }
    outputs = {}
    for analysis, arguments in runs.items():
        outputs[analysis] = work / f"out_{analysis}"
        result = run_cli("--quiet", *arguments, "-o", outputs[analysis])
        assert result.exit_code == 0, (analysis, result.stderr)
    reports = work / "reports"
    assert run_cli("--quiet", "report", *outputs.values(), "-o", reports, "--no-pdf").exit_code == 0
    inputs = {work / f"in_{a}.counts.npz" for a in ("nipt", "tumor", "viral", "fragments")}
    written = _files_under(tmp_path) - before_outside - inputs
    assert written, "nothing was written"
    for path in written:
        assert any(path.is_relative_to(folder) for folder in [*outputs.values(), reports]), path
    assert Path("/tmp/plasmacount-absolute-name.nipt.json").exists() == absolute_before
    # The real name is kept inside the files.
    [stored] = [p for p in outputs["nipt"].glob("*.nipt.json")]
    assert json.loads(stored.read_text())["sample"] == name
    assert stored.name == f"{sample_file_stem(name)}.nipt.json"


def test_simulate_refuses_a_path_like_prefix(tmp_path, run_cli):
    result = run_cli("simulate", "-o", tmp_path / "out", "--samples", "1", "--reads", "10k", "--prefix", "../escaped")
    assert result.exit_code == 2 and "--prefix" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "escaped_0001.counts.npz").exists()


def test_a_result_may_only_name_files_in_its_own_folder(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    result = folder / "s.nipt.json"
    result.write_text("{}")
    (folder / "s.nipt.bedgraph").write_text("track\n")
    (tmp_path / "outside.bedgraph").write_text("track\n")
    (folder / "link.bedgraph").symlink_to(tmp_path / "outside.bedgraph")
    assert sibling_file(result, "s.nipt.bedgraph") == (folder / "s.nipt.bedgraph").resolve()
    for name in (
        "/dev/zero",
        "/etc/passwd",
        "../outside.bedgraph",
        "link.bedgraph",
        "..",
        "",
        None,
        7,
        ["x"],
        "missing.bedgraph",
    ):
        assert sibling_file(result, name) is None, name


@pytest.mark.parametrize("analysis", ["nipt", "tumor", "viral", "fragments"])
def test_two_samples_with_one_name_are_refused(analysis, demo_output, tmp_path, run_cli):
    source = {"nipt": "batch", "tumor": "patients", "viral": "ebv", "fragments": "batch"}[analysis]
    first, second = sorted((demo_output / source).glob("*.counts.npz"))[:2]
    twin = tmp_path / "twin.counts.npz"
    dataclasses.replace(SampleCounts.load(second), sample=SampleCounts.load(first).sample).save(twin)
    extra = {
        "nipt": ["--reference", demo_output / "reference.npz"],
        "tumor": [
            "--panel",
            demo_output / "tumor_panel.npz",
            "--bins",
            demo_output / "healthy" / "genome" / "bins.npz",
        ],
    }.get(analysis, [])
    out = tmp_path / "out"
    result = run_cli(analysis, first, twin, *extra, "-o", out)
    assert (
        result.exit_code == 1
        and ("repeat" in result.stderr or "twice" in result.stderr)
        and result.stderr.count("ERROR") == 1
    )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("analysis", ["viral", "fragments"])
def test_two_alignment_files_of_one_read_group_sample_are_refused_before_counting(
    analysis, demo_output, tmp_path, run_cli
):
    """A BAM copied under another file name keeps its read group's SM, so both would be one
    sample: refused up front, before either is counted, with nothing written."""
    import shutil

    original = sorted((demo_output / "alignments").glob("*.bam"))[0]
    copy = tmp_path / "renamed.bam"
    shutil.copy(original, copy)
    shutil.copy(str(original) + ".bai", str(copy) + ".bai")
    out = tmp_path / "out"
    result = run_cli(analysis, original, copy, "-o", out)
    assert result.exit_code == 1 and "appears twice" in result.stderr and result.stderr.count("ERROR") == 1
    assert original.stem in result.stderr and str(copy) in result.stderr
    assert not out.exists() or not any(out.iterdir())
