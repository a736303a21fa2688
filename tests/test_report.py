"""Reports and the files other tools read: HTML in a real browser, PDF, plot data, VCF/tabix,
bedGraph/bigWig, SEG, MultiQC custom content, determinism and bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plasmacount.report import write_reports
from plasmacount.tracks import read_bedgraph

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _rows(path: Path) -> list[dict]:
    with open(path) as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def test_demo_ends_with_reports(demo_output):
    prenatal = demo_output / "reports" / "prenatal"
    assert (prenatal / "batch.html").exists()
    for case in range(1, 9):
        page = prenatal / f"case_{case:02d}.html"
        assert page.exists() and (prenatal / f"case_{case:02d}.pdf").exists()
        text = page.read_text()
        # Self-contained: plots inline, no script or stylesheet fetched from elsewhere.
        assert text.count("<svg") >= 4 and 'src="http' not in text and 'href="http' not in text
    assert "High risk: T21" in (prenatal / "case_03.html").read_text()
    assert "Low risk" in (prenatal / "case_01.html").read_text()
    assert "DiGeorge" in (prenatal / "case_07.html").read_text()
    cancer = demo_output / "reports" / "cancer"
    assert (cancer / "patient_0001.html").exists() and (cancer / "screen_0001.html").exists()
    assert (demo_output / "reports" / "alignments" / "pregnancy_0001.html").exists()


def test_plot_data_matches_the_results(demo_output):
    prenatal = demo_output / "reports" / "prenatal"
    result = json.loads((demo_output / "nipt" / "case_03.nipt.json").read_text())
    z = {row["chromosome"]: float(row["z"]) for row in _rows(prenatal / "case_03_data" / "z_scores.tsv")}
    assert z["chr21"] == pytest.approx(result["chromosomes"]["chr21"]["z"], abs=1e-6)
    ff = {row["method"]: float(row["estimate"]) for row in _rows(prenatal / "case_03_data" / "fetal_fraction.tsv")}
    assert ff["combined"] == pytest.approx(result["fetal_fraction"]["estimate"], abs=1e-6)
    # The genome profile shown is the median of the bedGraph's bins per 1 Mb window.
    profile = read_bedgraph(demo_output / "nipt" / "case_03.nipt.bedgraph")
    shown = _rows(prenatal / "case_03_data" / "nipt_profile.tsv")
    first = shown[10]
    inside = [
        v
        for c, s, v in zip(profile.chrom, profile.start, profile.value)
        if c == first["chrom"] and int(first["start"]) <= s < int(first["end"])
    ]
    assert float(first["log2_ratio"]) == pytest.approx(float(np.median(inside)), abs=1e-4)
    sizes = _rows(prenatal / "case_03_data" / "fragment_sizes.tsv")
    assert sum(int(r["fragments"]) for r in sizes) == sum(result["fragment_sizes"]["histogram_0_600"])
    batch = {(r["sample"], r["chromosome"]): r for r in _rows(prenatal / "batch_data" / "batch_z_scores.tsv")}
    assert batch[("case_03", "chr21")]["positive"] == "true" and batch[("case_01", "chr21")]["positive"] == "false"
    samples = _rows(prenatal / "batch_data" / "samples.tsv")
    assert [r["sample"] for r in samples] == [f"case_{i:02d}" for i in range(1, 9)]
    assert next(r for r in samples if r["sample"] == "case_04")["positive"] == "T18"


def test_reports_are_byte_for_byte_repeatable(demo_output, tmp_path):
    first = write_reports([demo_output / "nipt"], tmp_path / "a")
    write_reports([demo_output / "nipt"], tmp_path / "b")
    for path in first:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes(), path.name


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`.ci/run` installs it)")
def test_reports_open_in_headless_chromium(demo_output, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    pages = [
        demo_output / "reports" / "prenatal" / "batch.html",
        demo_output / "reports" / "prenatal" / "case_07.html",
        demo_output / "reports" / "cancer" / "batch.html",
        demo_output / "reports" / "cancer" / "patient_0002.html",
        demo_output / "reports" / "alignments" / "pregnancy_0001.html",
    ]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            for path in pages:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                problems, requests = [], []
                # The page's events fire while this page loads, so each handler keeps this page's lists.
                page.on(
                    "console",
                    lambda message, problems=problems: (
                        problems.append(message.text) if message.type in ("error", "warning") else None
                    ),
                )
                page.on("pageerror", lambda error, problems=problems: problems.append(str(error)))
                page.on("request", lambda request, requests=requests: requests.append(request.url))
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                assert problems == [], (path.name, problems)
                assert [url for url in requests if url != path.as_uri()] == [], path.name
                assert page.locator("svg").count() >= 2, path.name
                if path.name == "batch.html":
                    # The sortable table: sorting on FF % puts the lowest fetal fraction first, then the highest.
                    label = "FF %" if "prenatal" in str(path) else "tumour %"
                    header = page.locator("th", has_text=label)
                    column = [text.strip() for text in page.locator("thead th").all_inner_texts()].index(label)
                    header.click()
                    values = [
                        v for v in page.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts() if v.strip()
                    ]
                    assert [float(v) for v in values] == sorted(float(v) for v in values)
                    header.focus()  # the second sort from the keyboard
                    page.keyboard.press("Enter")
                    values = [
                        v for v in page.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts() if v.strip()
                    ]
                    assert [float(v) for v in values] == sorted((float(v) for v in values), reverse=True)
                page.screenshot(path=str(tmp_path / f"{path.parent.name}_{path.stem}.png"), full_page=True)
                page.close()
        finally:
            browser.close()


def test_vcf_is_bgzipped_indexed_and_clean(demo_output):
    pysam = pytest.importorskip("pysam")
    path = demo_output / "nipt" / "case_07.cnv.vcf.gz"
    assert (demo_output / "nipt" / "case_07.cnv.vcf.gz.tbi").exists()
    with open(path, "rb") as stream:
        assert stream.read(4) == b"\x1f\x8b\x08\x04"  # BGZF: gzip with the extra field
    with pysam.VariantFile(str(path)) as vcf:
        records = list(vcf.fetch("chr22"))
    assert len(records) == 1
    record = records[0]
    assert record.alts == ("<DEL>",) and record.info["SVTYPE"] == "DEL"
    # POS is the padding base before the event (VCF 4.2 symbolic alleles): the deleted bases are POS+1..END.
    assert record.info["SVLEN"] == -(record.stop - record.pos) and record.stop - record.pos > 2_000_000
    if shutil.which("bcftools"):
        run = subprocess.run(["bcftools", "view", "-H", str(path), "chr22"], capture_output=True, text=True)
        assert run.returncode == 0 and run.stderr == "" and run.stdout.count("\n") == 1


def test_bigwig_bedgraph_and_seg(demo_output):
    pyBigWig = pytest.importorskip("pyBigWig")
    bedgraph = read_bedgraph(demo_output / "nipt" / "case_07.nipt.bedgraph")
    with pyBigWig.open(str(demo_output / "nipt" / "case_07.nipt.bw")) as track:
        for i in range(0, len(bedgraph.chrom), 997):
            value = track.values(bedgraph.chrom[i], int(bedgraph.start[i]), int(bedgraph.start[i]) + 1)[0]
            assert value == pytest.approx(bedgraph.value[i], abs=1e-5)
        assert track.chroms("chr1") == 248956422
    first = (demo_output / "nipt" / "case_07.nipt.bedgraph").read_text().splitlines()[0]
    assert first.startswith("track type=bedGraph")
    seg = _rows(demo_output / "nipt" / "case_07.nipt.seg")
    assert list(seg[0]) == ["ID", "chrom", "loc.start", "loc.end", "num.mark", "seg.mean"]
    # The 22q11.2 deletion shows as its own segment with a negative mean.
    assert any(
        r["chrom"] == "chr22" and float(r["seg.mean"]) < -0.05 and 18_000_000 < int(r["loc.start"]) < 20_000_000
        for r in seg
    )
    tumor = _rows(demo_output / "tumor" / "tumor.seg")
    assert list(tumor[0]) == ["ID", "chrom", "loc.start", "loc.end", "num.mark", "seg.mean"]
    assert (demo_output / "tumor" / "patient_0001.tumor.bw").exists()


def test_multiqc_shows_plasmacount_sections(demo_output, tmp_path):
    pytest.importorskip("multiqc")
    target = tmp_path / "multiqc"
    run = subprocess.run(
        [sys.executable, "-m", "multiqc", str(demo_output / "reports"), "-o", str(target), "--no-ansi", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    page = (target / "multiqc_report.html").read_text()
    for section in (
        "plasmacount_nipt",
        "plasmacount_tumor",
        "plasmacount_viral",
        "plasmacount_fragments",
        "plasmacount_counts",
    ):
        assert section in page, section
    data = json.loads((target / "multiqc_data" / "multiqc_data.json").read_text())
    assert "case_03" in json.dumps(data)


def test_bad_input(tmp_path, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("report", empty, "-o", tmp_path / "out")
    assert (
        result.exit_code == 2
        and "no plasmacount results" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.nipt.json").write_text("{not json")
    result = run_cli("report", broken, "-o", tmp_path / "out2")
    assert result.exit_code == 1 and "x.nipt.json" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())
    result = run_cli("report", tmp_path / "missing", "-o", tmp_path / "out3")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_failed_and_single_end_results_still_report(tmp_path, run_cli):
    from plasmacount.counts import load_counts
    from plasmacount.nipt import _failed_result
    from plasmacount.simulation import SimulationRequest, run_simulation
    from plasmacount.viral import ScreenModel, from_counts, write_outputs

    results = tmp_path / "results"
    results.mkdir()
    (results / "failed.nipt.json").write_text(json.dumps(_failed_result("failed", "reference mismatch: bins differ")))
    paths = run_simulation(
        SimulationRequest(
            output=tmp_path / "ebv",
            cohort="ebv",
            samples=2,
            reads=1_000_000,
            seed=3,
            output_format="counts",
            genome="hg38",
            prefix="single",
        )
    )
    write_outputs([from_counts(load_counts(p), None, ScreenModel(), str(p)) for p in paths], results, ScreenModel())
    result = run_cli("report", results, "-o", tmp_path / "reports")
    assert result.exit_code == 0, result.stderr
    failed = (tmp_path / "reports" / "failed.html").read_text()
    assert "no result" in failed and "reference mismatch" in failed
    single = (tmp_path / "reports" / "single_0001.html").read_text()
    assert "EBV screen" in single and "single-end" in single


def test_an_interrupted_report_leaves_no_half_set(demo_output, tmp_path, monkeypatch):
    import plasmacount.report as report

    write_reports([demo_output / "nipt"], tmp_path / "out", pdf=False)
    before = sorted(
        (p.relative_to(tmp_path / "out"), p.read_bytes()) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_batch_overview", broken)
    with pytest.raises(OSError):
        write_reports([demo_output / "nipt"], tmp_path / "out", pdf=False)
    after = sorted(
        (p.relative_to(tmp_path / "out"), p.read_bytes()) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert after == before and [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(OSError):
        write_reports([demo_output / "nipt"], tmp_path / "fresh", pdf=False)
    assert not (tmp_path / "fresh").exists()
