"""The built-in demonstration: a simulated cohort taken through every step plasmacount has.

1. Alignments: a synthetic genome and its bin annotation, paired-end BAMs of a few
   pregnancies, counted and summarised (fragments, duplicates, fragment sizes) against truth.
2. Prenatal testing: a panel of 60 euploid pregnancies on the hg38 layout (10 M fragments),
   a reference built from it, and `nipt` on a mixed batch (euploid girls and boys, T21, T18,
   T13, 45,X, a 22q11.2 deletion), with the calls set beside the truth in `nipt/summary.tsv`.
3. Fragmentomics of the BAMs (`fragments/`): size profile, periodicity, windows, end motifs.
4. The EBV screen (`viral/`) of 30 simulated men (negatives, carriers, NPC) beside the truth.
5. Tumour fraction (`tumor/`): a panel of normals from 16 healthy donors, then 12 patients.
6. Reports (`reports/`): per-sample HTML and PDF, a batch overview and MultiQC files for the
   prenatal batch (`reports/prenatal/batch.html`), the cancer cohorts (`reports/cancer/`) and
   the fragmentomics of the BAMs (`reports/alignments/`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasmacount.alignments import CountOptions, count_alignments
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.files import atomic_output, write_json
from plasmacount.results import NO_CALL, POSITIVE, NiptResult, TumorResult, ViralResult
from plasmacount.simulation import (
    GenomeModel,
    SimulationRequest,
    design_cohort,
    run_simulation,
    simulate_counts,
    with_finding,
)

DEMO_CASES = [  # (finding, fetal fraction, fetal sex, fragments)
    (None, 0.08, "female", 10_000_000),
    (None, 0.12, "male", 10_000_000),
    ("T21", 0.09, "female", 10_000_000),
    ("T18", 0.11, "male", 10_000_000),
    ("T13", 0.07, "female", 10_000_000),
    ("45,X", 0.12, "female", 10_000_000),
    ("del:DiGeorge (22q11.2)", 0.20, "male", 20_000_000),
    (None, 0.03, "female", 10_000_000),
]


@dataclass
class DemoResult:
    output: Path
    bams: list[Path]
    counts: list[Path]
    cohort_counts: list[Path]
    summary: Path
    reference: Path
    nipt_summary: Path


def run_demo(
    output: str | Path,
    seed: int = 1,
    reads: int = 200_000,
    bam_samples: int = 4,
    cohort_samples: int = 60,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demonstration into `output` (created if needed)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda message: None)
    say(f"simulating {bam_samples} paired-end pregnancies as BAM ({reads:,} fragments each)")
    reads_dir = output / "alignments"
    bams = run_simulation(
        SimulationRequest(
            output=reads_dir,
            cohort="nipt",
            samples=bam_samples,
            reads=reads,
            seed=seed,
            paired=True,
            output_format="bam",
            scale=1 / 1000,
            prefix="pregnancy",
        )
    )
    annotation_path = reads_dir / "genome" / "bins.npz"
    annotation = BinAnnotation.load(annotation_path)
    counts_dir = output / "counts"
    counts_dir.mkdir(exist_ok=True)
    counted = []
    for bam in bams:
        say(f"counting {bam.name}")
        sample_counts = count_alignments(
            bam, annotation=annotation, annotation_path=str(annotation_path), options=CountOptions()
        )
        path = counts_dir / f"{sample_counts.sample}.counts.npz"
        sample_counts.save(path)
        sample_counts.write_tsv(counts_dir / f"{sample_counts.sample}.counts.tsv")
        counted.append(path)
    say("fragmentomics of the BAMs (sizes, periodicity, short/long windows, end motifs)")
    from plasmacount.fragments import FragmentOptions, run_batch

    fasta = reads_dir / "genome" / "genome.fa"
    options = FragmentOptions(fasta=fasta, annotation_path=str(annotation_path), window=50_000)
    run_batch(bams, output / "fragments", annotation, options)
    say(f"simulating a panel of {cohort_samples} euploid pregnancies (hg38 bins, 10 M fragments each)")
    cohort = run_simulation(
        SimulationRequest(
            output=output / "panel",
            cohort="euploid",
            samples=cohort_samples,
            reads=10_000_000,
            seed=seed,
            paired=True,
            output_format="counts",
            genome="hg38",
            prefix="panel",
        )
    )
    reference_path, nipt_summary = _prenatal(output, cohort, seed, say)
    _viral(output, seed, say)
    _tumor(output, seed, say)
    from plasmacount.report import pdf_unavailable, write_reports

    # A fresh machine may lack Pango, which the PDFs need; the demo then shows the HTML and says why.
    missing = pdf_unavailable()
    say(
        "writing reports (HTML, PDF, batch overviews, MultiQC files)"
        if missing is None
        else f"writing reports (HTML, batch overviews, MultiQC files; no PDF: {missing})"
    )
    reports = output / "reports"
    write_reports([output / "nipt"], reports / "prenatal", pdf=missing is None)
    write_reports([output / "tumor", output / "viral"], reports / "cancer", pdf=missing is None)
    write_reports([output / "fragments"], reports / "alignments", pdf=missing is None)
    with open(reads_dir / "truth.tsv") as stream:
        truth = {row["sample"]: row for row in csv.DictReader(stream, delimiter="\t")}
    summary = output / "summary.tsv"
    with atomic_output(summary, "w") as stream:
        stream.write(
            "sample\tfetal_sex\tfetal_fraction\tfindings\treads\tcounted\tduplicates\tlow_mapq\tmode_bp\tshort_fraction\tchrEBV\n"
        )
        for path in counted:
            c = SampleCounts.load(path)
            histogram = c.fragment_lengths
            short_fraction = histogram[:150].sum() / max(histogram.sum(), 1)
            ebv = dict(zip((o["name"] for o in c.other_contigs), c.other_counts.tolist())).get("chrEBV", 0)
            t = truth[c.sample]
            stream.write(
                f"{c.sample}\t{t['fetal_sex']}\t{t['fetal_fraction']}\t{t['findings'] or '-'}\t{c.qc['total']}\t{c.qc['counted']}\t"
                f"{c.qc['duplicates']}\t{c.qc['low_mapq']}\t{int(np.argmax(histogram))}\t{short_fraction:.3f}\t{ebv}\n"
            )
    write_json(
        output / "demo.json",
        {
            "bams": [str(p) for p in bams],
            "counts": [str(p) for p in counted],
            "panel": [str(p) for p in cohort],
            "summary": str(summary),
            "reference": str(reference_path),
            "nipt": str(nipt_summary),
            "reports": str(reports),
        },
    )
    return DemoResult(output, bams, counted, cohort, summary, reference_path, nipt_summary)


def _tumor(output: Path, seed: int, say: Callable[[str], None]) -> Path:
    """A panel of normals from 16 healthy donors, then tumour fractions of 12 simulated patients."""
    from plasmacount.tumor import make_panel, run_batch

    say("simulating healthy donors and cancer patients (1 Mb bins) and estimating tumour fractions")
    healthy = run_simulation(
        SimulationRequest(
            output=output / "healthy",
            cohort="healthy",
            samples=16,
            reads=10_000_000,
            seed=seed + 3,
            output_format="counts",
            genome="hg38",
            bin_size=1_000_000,
            prefix="donor",
        )
    )
    patients = run_simulation(
        SimulationRequest(
            output=output / "patients",
            cohort="cancer",
            samples=12,
            reads=10_000_000,
            seed=seed + 4,
            output_format="counts",
            genome="hg38",
            bin_size=1_000_000,
            prefix="patient",
        )
    )
    annotation = BinAnnotation.load(output / "healthy" / "genome" / "bins.npz")
    panel = make_panel(healthy, annotation, output / "tumor_panel.npz")
    results = [TumorResult(r) for r in run_batch(patients, annotation, panel, output / "tumor")]
    with open(output / "patients" / "truth.tsv") as stream:
        truth = {row["sample"]: row for row in csv.DictReader(stream, delimiter="\t")}
    summary = output / "tumor" / "summary.tsv"
    with atomic_output(summary, "w") as stream:
        stream.write("sample\ttrue_tumor_fraction\ttrue_ploidy\ttumor_fraction\tlow\thigh\tploidy\tcna_score\n")
        for r in results:
            t = truth[r.sample]
            low, high = r.interval
            stream.write(
                f"{r.sample}\t{t['tumor_fraction']}\t{t['tumor_ploidy']}\t{r.tumor_fraction:.3f}\t{low:.3f}\t"
                f"{high:.3f}\t{r.ploidy:.2f}\t{r.cna_score}\n"
            )
    return summary


def _viral(output: Path, seed: int, say: Callable[[str], None]) -> Path:
    """An EBV screening cohort (negatives, carriers, NPC) through `viral`, with the screen model
    learnt first on another labelled cohort, as a lab would (`viral --train`); returns its summary."""
    from plasmacount.counts import load_counts
    from plasmacount.viral import ScreenModel, from_counts, learn_model, run_batch

    say("simulating 150 labelled men to train the EBV screen, and 30 more to screen")
    training = run_simulation(
        SimulationRequest(
            output=output / "ebv_training",
            cohort="ebv",
            samples=150,
            reads=10_000_000,
            seed=seed + 3,
            paired=True,
            output_format="counts",
            genome="hg38",
            prefix="train",
        )
    )
    with open(output / "ebv_training" / "truth.tsv") as stream:
        labels = {row["sample"]: row["ebv_status"] for row in csv.DictReader(stream, delimiter="\t")}
    model = learn_model(
        [from_counts(load_counts(path), None, ScreenModel(), str(path)) for path in training], labels, 0.95
    )
    paths = run_simulation(
        SimulationRequest(
            output=output / "ebv",
            cohort="ebv",
            samples=30,
            reads=10_000_000,
            seed=seed + 2,
            paired=True,
            output_format="counts",
            genome="hg38",
            prefix="screen",
        )
    )
    results, _ = run_batch(paths, output / "viral", model)
    with open(output / "ebv" / "truth.tsv") as stream:
        truth = {row["sample"]: row["ebv_status"] for row in csv.DictReader(stream, delimiter="\t")}
    summary = output / "viral" / "summary.tsv"
    with atomic_output(summary, "w") as stream:
        stream.write("sample\ttruth\tebv_fragments\tsize_ratio\tscreen\n")
        for result in results:
            viral = ViralResult(result)
            ratio = viral.size_ratio
            stream.write(
                f"{viral.sample}\t{truth[viral.sample]}\t{result['fragments']['unique']}\t"
                f"{'NA' if ratio is None else f'{ratio:.2f}'}\t{viral.screen_result}\n"
            )
    return summary


def _prenatal(output: Path, panel: list[Path], seed: int, say: Callable[[str], None]) -> tuple[Path, Path]:
    """Reference from the panel, then `nipt` on the mixed demo batch; returns (reference, summary)."""
    from plasmacount.counts import load_counts
    from plasmacount.nipt import run_batch
    from plasmacount.reference import build_reference

    annotation_path = output / "panel" / "genome" / "bins.npz"
    annotation = BinAnnotation.load(annotation_path)
    say("building the reference")
    reference = build_reference([load_counts(path) for path in panel], annotation)
    reference_path = output / "reference.npz"
    reference.save(reference_path)
    model = GenomeModel.from_annotation(annotation, 1)
    batch_dir = output / "batch"
    batch_dir.mkdir(exist_ok=True)
    designs = design_cohort("euploid", len(DEMO_CASES), 10_000_000, seed=seed + 1, paired=True, prefix="case")
    paths: list[Path] = []
    truth: dict[str, tuple[str, float, str | None]] = {}
    for index, ((finding, ff, sex, reads), design) in enumerate(zip(DEMO_CASES, designs)):
        design = with_finding(design, finding, ff, fetal_sex=sex)
        design.reads = reads
        design.sample = f"case_{index + 1:02d}"
        path = batch_dir / f"{design.sample}.counts.npz"
        simulate_counts(design, model, seed + 1, index).save(path)
        paths.append(path)
        truth[design.sample] = (finding or "euploid", ff, design.fetal_sex)
    say(f"testing {len(paths)} pregnancies with `nipt`")
    results = run_batch(paths, reference, output / "nipt")
    summary = output / "nipt" / "summary.tsv"
    with atomic_output(summary, "w") as stream:
        stream.write(
            "sample\ttruth\ttrue_fetal_fraction\ttrue_fetal_sex\tfetal_sex\tfetal_fraction\tpositive\tno_call\tcnvs\n"
        )
        for result in results:
            nipt = NiptResult(result)
            true_finding, true_ff, true_sex = truth[nipt.sample]
            positives = ",".join(c.event for c in nipt.calls_with(POSITIVE)) or "-"
            no_calls = ",".join(c.event for c in nipt.calls_with(NO_CALL)) or "-"
            cnvs = (
                ",".join(
                    f"{c.kind} {c.chrom}:{c.start}-{c.end} {c.origin} {c.syndrome or ''}".strip()
                    for c in nipt.copy_number_calls
                )
                or "-"
            )
            estimate = nipt.fetal_fraction
            stream.write(
                f"{nipt.sample}\t{true_finding}\t{true_ff:.3f}\t{true_sex}\t{nipt.fetal_sex}\t"
                f"{'NA' if estimate is None else f'{estimate:.3f}'}\t{positives}\t{no_calls}\t{cnvs}\n"
            )
    return reference_path, summary
