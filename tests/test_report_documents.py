"""Reports as documents a lab signs: the PDF (A4, header, sign-off block, embedded fonts, no figure
split over pages, read back with poppler's pdftotext/pdfinfo/pdffonts), what the pages say and draw
(the finding first, a zoom on every CNV, the defects found by a clinical reader), and the same page
in headless Chromium (no overlapping text, no empty plot, the finding in the first screen)."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from plasmacount.errors import DataError
from plasmacount.report import SignOff, html_to_pdf, with_sign_off

POPPLER = shutil.which("pdftotext") and shutil.which("pdfinfo") and shutil.which("pdffonts")
needs_poppler = pytest.mark.skipif(
    not POPPLER, reason="poppler-utils (pdftotext, pdfinfo, pdffonts) not installed (`.ci/run` installs it)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
A4_POINTS = (595.276, 841.89)


def _rows(path: Path) -> list[dict]:
    with open(path) as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def _pages(pdf: Path) -> list[str]:
    """The text of each page, whitespace collapsed (pdftotext separates pages by form feeds)."""
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [" ".join(page.split()) for page in text.split("\f")[:-1]]


def _page_sizes(pdf: Path) -> list[tuple[float, float]]:
    count = int(
        re.search(
            r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
        ).group(1)
    )
    info = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", str(count), str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    return [(float(w), float(h)) for w, h in re.findall(r"Page\s+\d+ size:\s+([\d.]+) x ([\d.]+) pts", info)]


def _figure_titles(page: Path) -> dict[str, str]:
    """Data file name -> the figure's heading, read from the HTML page."""
    text = page.read_text()
    return {
        data: " ".join(html.unescape(re.sub("<[^>]+>", "", title)).split())
        for title, data in re.findall(
            r'<figure class="figure"[^>]*>\s*<h3>(.*?)</h3>.*?Data: <a href="[^"]*">([^<]+)</a>', text, flags=re.S
        )
    }


@needs_poppler
@pytest.mark.parametrize(
    "folder, sample",
    [
        ("prenatal", "case_03"),
        ("prenatal", "case_07"),
        ("cancer", "patient_0002"),
        ("cancer", "screen_0001"),
        ("alignments", "pregnancy_0001"),
    ],
)
def test_pdf_is_an_a4_document_with_header_sign_off_and_whole_figures(demo_output, folder, sample):
    pdf = demo_output / "reports" / folder / f"{sample}.pdf"
    sizes = _page_sizes(pdf)
    assert sizes and all(abs(w - A4_POINTS[0]) < 0.5 and abs(h - A4_POINTS[1]) < 0.5 for w, h in sizes), sizes
    pages = _pages(pdf)
    assert len(pages) == len(sizes)
    for number, text in enumerate(pages, 1):
        # The header and footer of every page: sample, laboratory, report date, version, page count.
        assert f"plasmacount report: {sample} | laboratory:" in text, (number, text[:200])
        assert (
            re.search(r"report date \d{4}-\d{2}-\d{2} \| plasmacount \d", text)
            and f"page {number} of {len(pages)}" in text
        )
    whole = " ".join(pages)
    assert "Review and sign-off" in whole and "Reviewed by" in whole and "Signed off by" in whole
    assert whole.index("Result") < whole.index("Method and limits") < whole.index("Review and sign-off")
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), fonts
    # A figure is never split: its heading and its caption (which names its data file) are on one page.
    titles = _figure_titles(pdf.with_suffix(".html"))
    assert titles or sample == "screen_0001"  # an EBV screen with no viral fragments has no plot to draw
    for data, title in titles.items():
        holding = [i for i, text in enumerate(pages) if f"Data: {data}" in text]
        assert len(holding) == 1 and title in pages[holding[0]], (data, title)


@needs_poppler
def test_sign_off_block_is_filled_on_export(demo_output, tmp_path):
    page = (demo_output / "reports" / "prenatal" / "case_03.html").read_text()
    record = SignOff(
        "rita",
        "2026-12-03 10:15 UTC",
        ("rob", "rita"),
        (("Trisomy 21", "positive", "Verified", "z 9.1"),),
        (("rob", "2026-12-03 09:58", 'looks "clear" <b>to me</b>'),),
    )
    filled = with_sign_off(page, record)
    assert filled.count("sign-off begin") == 1 and "Not yet reviewed" not in filled and "<b>to me" not in filled
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(html_to_pdf(filled, "signed"))
    whole = " ".join(_pages(pdf))
    for text in (
        "Reviewed by rob, rita",
        "Signed off by rita",
        "Signed off at 2026-12-03 10:15 UTC",
        "Trisomy 21 positive Verified",
        'looks "clear" <b>to me</b>',
    ):
        assert text in whole, text


def test_a_pdf_is_the_same_byte_for_byte_whatever_the_clock_says(monkeypatch):
    """The same page prints to the same bytes a day later (the embedded font subsets were once
    stamped with the time of printing)."""
    from fontTools.misc import timeTools

    page = "<html><body><h1>case_01</h1><p>Trisomy 21: low risk (z 0.4)</p></body></html>"
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = html_to_pdf(page, "case_01")
    clock = timeTools.time.time
    monkeypatch.setattr(timeTools.time, "time", lambda: clock() + 86400)
    assert html_to_pdf(page, "case_01") == first
    assert "SOURCE_DATE_EPOCH" not in os.environ


def test_the_finding_leads_the_page_and_every_cnv_has_its_chromosome(demo_output):
    prenatal = demo_output / "reports" / "prenatal"
    page = (prenatal / "case_07.html").read_text()
    [cnv] = json.loads((demo_output / "nipt" / "case_07.nipt.json").read_text())["cnvs"]
    findings = page.index('<div class="findings">')
    assert findings < page.index('<div class="summary">') < page.index("<h2>Calls</h2>")
    headline = page[findings : page.index("</div>", findings)]
    assert "Deletion of 2.5 Mb on chr22" in headline and "DiGeorge (22q11.2)" in headline
    rows = _rows(prenatal / "case_07_data" / "region_1.tsv")
    assert {r["chrom"] for r in rows} == {"chr22"}
    inside = [r for r in rows if r["in_region"] == "true"]
    assert (
        len(inside) == cnv["bins"] and int(inside[0]["start"]) == cnv["start"] and int(inside[-1]["end"]) == cnv["end"]
    )
    assert "DiGeorge (22q11.2) region, 25 bins" in _figure_titles(prenatal / "case_07.html")["region_1.tsv"]
    # A euploid page has no findings block; a tumour page gets its largest segments zoomed.
    assert '<div class="findings">' not in (prenatal / "case_01.html").read_text()
    tumor = json.loads((demo_output / "tumor" / "patient_0002.tumor.json").read_text())
    zooms = sorted((demo_output / "reports" / "cancer" / "patient_0002_data").glob("region_*.tsv"))
    assert len(zooms) == min(6, sum(s["event"] != "neutral" for s in tumor["segments"])) > 0


def test_limits_and_percentages_come_from_the_sample(demo_output):
    prenatal = demo_output / "reports" / "prenatal"
    for case in range(1, 9):
        result = json.loads((demo_output / "nipt" / f"case_{case:02d}.nipt.json").read_text())
        text = " ".join(html.unescape(re.sub("<[^>]+>", " ", (prenatal / f"case_{case:02d}.html").read_text())).split())
        limit = result["detection_limit"]
        assert f"T21 needs a fetal fraction of at least {100 * limit['minimum_fetal_fraction_T21']:.1f} %" in text
        # The page claims no CNV sensitivity beyond what was benchmarked (deletions of 3 Mb and more).
        assert (
            "fetal deletions were benchmarked from 3 Mb up (BENCHMARKS.md), none smaller" in text
            and "0.5 Mb" not in text
        )
        low = result["fetal_fraction"]["low"]
        short = low is not None and low < limit["minimum_fetal_fraction_T21"]
        assert ("Caution: the fetal fraction's lower bound" in text) == short, case
        # Minimum fetal fractions in the calls table are percentages, as everywhere else on the page.
        t21 = next(c for c in result["calls"] if c["event"] == "T21")
        assert (
            f"{100 * t21['minimum_fetal_fraction']:.1f} %" in text
            and f"{t21['minimum_fetal_fraction']:.3f}" not in text
        )
    # The low-fetal-fraction pregnancy of the demo (true 3 %) is the one that needs the caution.
    assert "Caution: the fetal fraction&#39;s lower bound" in (prenatal / "case_08.html").read_text()


def test_plot_defects_a_clinical_reader_found_are_gone(demo_output):
    prenatal = demo_output / "reports" / "prenatal"
    # 45,X: the chrX bar is red (a positive), as the caption says positives are.
    z = {r["chromosome"]: r for r in _rows(prenatal / "case_06_data" / "z_scores.tsv")}
    assert z["chrX"]["positive"] == "true" and z["chr21"]["positive"] == "false"
    assert _rows(prenatal / "case_03_data" / "z_scores.tsv")[20]["positive"] == "true"  # chr21 of the T21 case
    # A boy's chrX (z far below the reference) is cut at the axis the autosomes set, not stretching it.
    boy = {r["chromosome"]: r for r in _rows(prenatal / "case_02_data" / "z_scores.tsv")}
    autosomes = max(abs(float(r["z"])) for name, r in boy.items() if name not in ("chrX", "chrY"))
    assert float(boy["chrX"]["z"]) < -10 and abs(float(boy["chrX"]["drawn_z"])) <= max(7.0, 1.15 * autosomes) + 1e-6
    # Each fetal-fraction method once (no second chrY row).
    for case in ("case_02", "case_07"):
        methods = [r["method"] for r in _rows(prenatal / f"{case}_data" / "fetal_fraction.tsv")]
        assert len(methods) == len(set(methods)) and "chrY" in methods and "chrY dose" not in methods
    # An EBV-negative sample with no viral fragments has nothing to warn about.
    result = json.loads((demo_output / "viral" / "screen_0001.viral.json").read_text())
    assert result["fragments"]["unique"] == 0 and result["screen"]["result"] == "negative"
    page = (demo_output / "reports" / "cancer" / "screen_0001.html").read_text()
    row = re.search(r"<td>viral size ratio evaluable</td><td>([^<]*)</td><td>[^<]*</td><td class=\"(\w+)\">", page)
    assert row and row.group(2) == "pass" and "not needed" in row.group(1)
    # A fragmentomics page shows the fragment numbers.
    fragments = json.loads((demo_output / "fragments" / "pregnancy_0001.fragments.json").read_text())["size"]
    page = (demo_output / "reports" / "alignments" / "pregnancy_0001.html").read_text()
    assert f"<td>{fragments['mode']} / {fragments['median']} / {fragments['mean']:.1f} bp</td>" in page
    assert f"{100 * fragments['share_below_150']:.1f} %" in page and f"{fragments['fragments']:,}" in page


def test_tumour_pages_show_real_intervals_and_a_flat_chrx_for_women(demo_output):
    cancer = demo_output / "reports" / "cancer"
    patients = sorted((demo_output / "tumor").glob("patient_*.tumor.json"))
    assert len(patients) >= 6
    for path in patients:
        result = json.loads(path.read_text())
        page = html.unescape((cancer / path.name.replace(".tumor.json", ".html")).read_text())
        low, high = 100 * result["tumor_fraction_low"], 100 * result["tumor_fraction_high"]
        assert high - low >= 0.05 and f"(95 % interval {low:.1f} % to {high:.1f} %)" in page, path.name
        if result["sex"] == "female":
            # chrX of a woman is drawn where her other chromosomes are, not a copy above them.
            chrx = [
                float(r["log2_ratio"])
                for r in _rows(cancer / f"{result['sample']}_data" / "tumor_profile.tsv")
                if r["chrom"] == "chrX"
            ]
            assert chrx and abs(sorted(chrx)[len(chrx) // 2]) < 0.2, path.name


def test_a_report_never_fetches_or_breaks_on_what_a_result_says(demo_output, tmp_path):
    """A sample name or lab with quotes, markup or CSS-breaking text stays text in HTML and PDF; a
    page that points outside itself is printed without fetching."""
    from plasmacount.report import ReportSettings, write_reports

    source = demo_output / "nipt" / "case_01.nipt.json"
    result = json.loads(source.read_text())
    name = 'x"</style><script>alert(1)</script>\\'
    result["sample"] = name
    result["files"] = {}
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "odd.nipt.json").write_text(json.dumps(result))
    written = write_reports(
        [folder], tmp_path / "out", settings=ReportSettings(lab='Lab "A" } @page {', report_date="2026-12-24")
    )
    page = next(p for p in written if p.suffix == ".html" and p.name != "batch.html").read_text()
    assert "<script>alert" not in page and "2026-12-24" in page
    # Nothing outside the page is fetched: a page that asks is refused in one line, not half printed.
    with pytest.raises(DataError, match="could not be drawn in full"):
        html_to_pdf('<html><body><img src="http://127.0.0.1:9/x.png"><p>offline</p></body></html>', "t")
    if POPPLER:
        text = " ".join(_pages(next(p for p in written if p.suffix == ".pdf")))
        assert (
            f'plasmacount report: {name} | laboratory: Lab "A" }} @page {{' in text and "report date 2026-12-24" in text
        )


# Text boxes of every SVG text element in each figure, and how much of each figure is not white.
FIGURE_SCRIPT = """
() => Array.from(document.querySelectorAll('figure.figure')).map(figure => {
  const svg = figure.querySelector('svg');
  const box = svg.getBoundingClientRect();
  const texts = Array.from(svg.querySelectorAll('text')).map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  }).filter(r => r.right > r.left && r.text.trim());
  return {id: figure.id, width: box.width, height: box.height, overflow: figure.scrollWidth > figure.clientWidth + 1, texts: texts};
})
"""


def _overlaps(texts: list[dict], tolerance: float = 1.0) -> list[tuple[str, str]]:
    found = []
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            width = min(a["right"], b["right"]) - max(a["left"], b["left"])
            height = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
            if width > tolerance and height > tolerance:
                found.append((a["text"], b["text"]))
    return found


def _ink(png: bytes) -> float:
    """The share of a screenshot's pixels that are not (nearly) white."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return float((pixels < 235).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`.ci/run` installs it)")
def test_pages_in_chromium_show_the_finding_first_with_no_overlapping_text_or_empty_plot(demo_output, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    screens = [
        path
        for path in sorted((demo_output / "viral").glob("*.viral.json"))
        if json.loads(path.read_text())["screen"]["result"] == "positive"
    ]
    assert screens, "the demo has an EBV-positive screen"
    reports = demo_output / "reports"
    pages = {
        "T21": (reports / "prenatal" / "case_03.html", "High risk: T21"),
        "45,X": (reports / "prenatal" / "case_06.html", "High risk: 45,X"),
        "22q11.2 deletion": (reports / "prenatal" / "case_07.html", "DiGeorge (22q11.2)"),
        "tumour": (reports / "cancer" / "patient_0002.html", "Tumour DNA detected"),
        "EBV": (reports / "cancer" / screens[0].name.replace(".viral.json", ".html"), "EBV screen positive"),
    }
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            for label, (path, finding) in pages.items():
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                box = page.locator(".findings").bounding_box()
                assert box and box["y"] >= 0 and box["y"] + box["height"] <= 900, (label, box)
                assert finding in page.locator(".findings").inner_text(), label
                figures = page.evaluate(FIGURE_SCRIPT)
                assert figures, label
                for figure in figures:
                    assert figure["width"] > 200 and figure["height"] > 100 and not figure["overflow"], (
                        label,
                        figure["id"],
                    )
                    assert len(figure["texts"]) >= 3, (label, figure["id"])
                    assert _overlaps(figure["texts"]) == [], (label, figure["id"], _overlaps(figure["texts"]))
                    ink = _ink(page.locator(f"#{figure['id']} svg").screenshot())
                    assert ink > 0.01, (label, figure["id"], ink)
                page.screenshot(path=str(tmp_path / f"{path.stem}.png"))
                page.close()
        finally:
            browser.close()


def test_the_lab_names_itself_and_its_samples_in_the_header(demo_output, tmp_path, run_cli):
    info = tmp_path / "info.tsv"
    info.write_text("sample\tpatient_id\tcollection_date\tgestational_age\ncase_03\tP-0042 <b>\t2026-11-28\t12+3\n")
    result = run_cli(
        "report",
        demo_output / "nipt",
        "-o",
        tmp_path / "out",
        "--lab",
        "Lab of Tests",
        "--sample-info",
        info,
        "--report-date",
        "2026-12-24",
        "--no-pdf",
    )
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "out" / "case_03.html").read_text()
    assert '<th scope="row">patient id</th><td colspan="3">P-0042 &lt;b&gt;</td>' in page
    assert '<th scope="row">gestational age</th><td colspan="3">12+3</td>' in page
    assert "<td>2026-12-24</td>" in page and "<td>Lab of Tests</td>" in page
    assert "P-0042" not in (tmp_path / "out" / "case_01.html").read_text()
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\tpatient\nx\ty\n")
    result = run_cli("report", demo_output / "nipt", "-o", tmp_path / "bad", "--sample-info", bad, "--no-pdf")
    assert (
        result.exit_code == 1 and "no 'sample' column" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    )
    assert not (tmp_path / "bad").exists()
    result = run_cli("report", demo_output / "nipt", "-o", tmp_path / "bad", "--report-date", "24.12.2026", "--no-pdf")
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.stderr
