"""Prenatal testing against simulated truth: reference, calls, fetal sex and fraction, CNVs, outputs, bad input."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from plasmacount import aneuploidy
from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.gc import fit_gc_curve
from plasmacount.genome import Layout
from plasmacount.nipt import analyse_sample, write_results
from plasmacount.reference import Reference, build_reference
from plasmacount.segment import segment
from plasmacount.simulation import GenomeModel, design_cohort, simulate_counts

BIN = 1_000_000
READS = 6_000_000


@pytest.fixture(scope="module")
def lab():
    model = GenomeModel.hg38_layout(BIN, seed=5)
    annotation = model.annotation()
    panel = [simulate_counts(d, model, 40, i) for i, d in enumerate(design_cohort("euploid", 40, READS, seed=40, paired=True, prefix="ref"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = build_reference(panel, annotation)
    return model, annotation, panel, reference


def designed(model, event=None, ff=0.12, sex="female", seed=7, index=0, cnv=None):
    [design] = design_cohort("euploid", 1, READS, seed=seed + index, paired=True, prefix=f"t{index}")
    design = dataclasses.replace(design, fetal_fraction=ff, fetal_sex=sex, fetal_karyotype="46,XY" if sex == "male" else "46,XX",
                                 sample=f"case_{index}")
    if event and event.startswith("T"):
        design.events = [{"type": "trisomy", "origin": "fetal", "chrom": f"chr{event[1:]}", "fetal_cn": 3}]
    elif event:
        design.fetal_karyotype = event
        design.fetal_sex = "male" if "Y" in event else "female"
    if cnv:
        design.events = [cnv]
    return simulate_counts(design, model, seed, index), design


def call(result, event):
    return next(c for c in result["calls"] if c["event"] == event)


def test_reference_model(lab):
    _, _, panel, reference = lab
    assert reference.metadata["qc"]["status"] in ("PASS", "WARN")
    assert reference.samples == [s.sample for s in panel]
    truth_sexes = [s.sample for s in panel]
    assert len(truth_sexes) == 40
    chromosomes = reference.metadata["chromosomes"]
    for key in ("13", "18", "21"):
        assert chromosomes[key]["cv"] < 2.0 * chromosomes[key]["poisson_cv"]  # a small panel; the benchmark measures 200
    assert reference.metadata["plasmacount_version"] if "plasmacount_version" in reference.metadata else True


def test_reference_round_trip(lab, tmp_path):
    model, _, _, reference = lab
    reference.save(tmp_path / "ref.npz")
    again = Reference.load(tmp_path / "ref.npz")
    assert again.samples == reference.samples and again.bin_size == BIN
    sample, _ = designed(model, "T21", index=1)
    first = json.dumps(analyse_sample(sample, reference), sort_keys=True, default=str)
    second = json.dumps(analyse_sample(sample, again), sort_keys=True, default=str)
    assert first == second


@pytest.mark.parametrize("sex", ["female", "male"])
def test_euploid_sex_and_fetal_fraction(lab, sex):
    model, _, _, reference = lab
    for index, ff in enumerate((0.06, 0.15)):
        sample, design = designed(model, ff=ff, sex=sex, index=10 + index + (5 if sex == "male" else 0))
        result = analyse_sample(sample, reference)
        assert result["fetal_sex"] == sex
        assert abs(result["fetal_fraction"]["estimate"] - ff) < 0.02
        assert result["fetal_fraction"]["low"] <= result["fetal_fraction"]["estimate"] <= result["fetal_fraction"]["high"]
        assert all(c["result"] != "positive" for c in result["calls"])
        assert call(result, "T21")["result"] == "negative"
        assert result["qc"]["status"] in ("pass", "warn")
        if sex == "male":
            assert "chrY" in result["fetal_fraction"]["methods"]


@pytest.mark.parametrize("event", ["T21", "T18", "T13", "T16"])
def test_trisomies_called(lab, event):
    model, _, _, reference = lab
    sample, _ = designed(model, event, ff=0.12, index=20)
    result = analyse_sample(sample, reference)
    assert call(result, event)["result"] == "positive"
    assert call(result, event)["z"] > 5
    assert [c["event"] for c in result["calls"] if c["result"] == "positive"] == [event]


def test_low_fetal_fraction_gives_no_call_not_negative(lab):
    model, _, _, reference = lab
    sample, _ = designed(model, "T21", ff=0.012, index=30)
    result = analyse_sample(sample, reference)
    decision = call(result, "T21")
    assert decision["result"] in ("no-call", "positive")
    if decision["result"] == "no-call":
        assert "fetal fraction" in decision["reason"]
    assert decision["minimum_fetal_fraction"] > 0.01


@pytest.mark.parametrize("karyotype", ["45,X", "47,XXX", "47,XXY", "47,XYY"])
def test_sex_chromosome_aneuploidies(lab, karyotype):
    model, _, _, reference = lab
    sample, _ = designed(model, karyotype, ff=0.16, index=40)
    result = analyse_sample(sample, reference)
    assert call(result, karyotype)["result"] == "positive", result["sex_chromosomes"]
    others = [c["event"] for c in result["calls"] if c["result"] == "positive"]
    assert others == [karyotype]
    if karyotype == "47,XYY":  # chrY says 2 x FF: left out of the fetal fraction
        assert abs(result["fetal_fraction"]["estimate"] - 0.16) < 0.03


def test_fetal_and_maternal_cnvs(lab):
    model, _, _, reference = lab
    fetal = {"type": "cnv", "origin": "fetal", "chrom": "chr4", "start": 0, "end": 20_000_000, "fetal_cn": 1, "maternal_cn": 2, "name": None}
    sample, _ = designed(model, ff=0.22, index=50, cnv=fetal)
    result = analyse_sample(sample, reference)
    hits = [c for c in result["cnvs"] if c["chrom"] == "chr4"]
    assert hits and hits[0]["type"] == "deletion" and hits[0]["origin"] == "fetal"
    assert hits[0]["start"] < 5_000_000 and 15_000_000 < hits[0]["end"] <= 21_000_000
    assert hits[0]["syndrome"] == "Wolf-Hirschhorn (4p16.3)"
    maternal = {"type": "cnv", "origin": "maternal", "chrom": "chr7", "start": 60_000_000, "end": 70_000_000, "fetal_cn": 3, "maternal_cn": 3, "name": None}
    sample, _ = designed(model, ff=0.10, index=51, cnv=maternal)
    result = analyse_sample(sample, reference)
    hits = [c for c in result["cnvs"] if c["chrom"] == "chr7"]
    assert hits and hits[0]["type"] == "duplication" and hits[0]["origin"] == "maternal"
    assert abs(hits[0]["copy_ratio"] - 1.5) < 0.1
    assert result["detection_limit"]["smallest_fetal_cnv_bp"] > 0


def test_result_schema_and_outputs(lab, tmp_path):
    import pysam

    model, _, _, reference = lab
    cnv = {"type": "cnv", "origin": "fetal", "chrom": "chr5", "start": 0, "end": 15_000_000, "fetal_cn": 3, "maternal_cn": 2, "name": None}
    results = [analyse_sample(designed(model, ff=0.2, index=60, cnv=cnv)[0], reference),
               analyse_sample(designed(model, "T21", index=61)[0], reference)]
    write_results(results, tmp_path)
    for result in results:
        data = json.loads((tmp_path / f"{result['sample']}.nipt.json").read_text())
        for key in ("sample", "schema_version", "qc", "fetal_sex", "fetal_fraction", "chromosomes", "calls", "cnvs"):
            assert key in data
        assert data["qc"]["status"] in ("pass", "warn", "fail")
        assert 0 <= data["fetal_fraction"]["estimate"] <= 1
        assert {"estimate", "low", "high"} <= set(data["fetal_fraction"])
        assert "chr21" in data["chromosomes"] and "z" in data["chromosomes"]["chr21"]
        for c in data["calls"]:
            assert {"event", "result", "score"} <= set(c) and c["result"] in ("positive", "negative", "no-call")
        for c in data["cnvs"]:
            assert {"chrom", "start", "end", "type", "origin", "z"} <= set(c)
    rows = (tmp_path / "nipt.tsv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].split("\t")[10] == "T21"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pysam.VariantFile(str(tmp_path / "case_60.cnv.vcf")) as vcf:
            records = list(vcf)
    assert records and records[0].info["SVTYPE"] == "DUP" and records[0].stop > records[0].pos
    assert (tmp_path / "case_60.cnv.bed").read_text().count("\n") == 1 + len(records)


def test_bad_samples_become_no_calls(lab):
    model, _, panel, reference = lab
    # Almost no reads.
    sparse = dataclasses.replace(panel[0], counts=(panel[0].counts // 100))
    result = analyse_sample(sparse, reference)
    assert result["qc"]["status"] == "fail"
    assert all(c["result"] == "no-call" for c in result["calls"])
    # Another bin size.
    other = GenomeModel.hg38_layout(500_000, seed=5)
    [design] = design_cohort("euploid", 1, READS, seed=3, paired=True)
    result = analyse_sample(simulate_counts(design, other, 3, 0), reference)
    assert result["qc"]["status"] == "fail" and "bin" in result["qc"]["reasons"][0]
    assert all(c["result"] == "no-call" and "reference mismatch" in c["reason"] for c in result["calls"])
    # Another build (chr1 of another length).
    layout = Layout.from_lengths([(c.name, c.length + (3_000_000 if c.name == "chr1" else 0)) for c in reference.layout.contigs], BIN)
    counts = SampleCounts(sample="other_build", layout=layout, counts=np.full(layout.n_bins, 100))
    result = analyse_sample(counts, reference)
    assert result["qc"]["status"] == "fail" and "builds differ" in result["qc"]["reasons"][0]


def test_reference_refuses_bad_panels(lab):
    _, annotation, panel, _ = lab
    with pytest.raises(UsageError, match="at least 20"):
        build_reference(panel[:10], annotation)
    females = [s for s in panel if s.counts[-60:].sum() < np.median([p.counts[-60:].sum() for p in panel])]
    model = GenomeModel.hg38_layout(BIN, seed=5)
    only_female = [simulate_counts(dataclasses.replace(d, fetal_sex="female", fetal_karyotype="46,XX"), model, 41, i)
                   for i, d in enumerate(design_cohort("euploid", 25, READS, seed=41, paired=True, prefix="f"))]
    only_male = [simulate_counts(dataclasses.replace(d, fetal_sex="male", fetal_karyotype="46,XY"), model, 42, i)
                 for i, d in enumerate(design_cohort("euploid", 25, READS, seed=42, paired=True, prefix="m"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(DataError, match="0 male"):
            build_reference(only_female, annotation)
        with pytest.raises(DataError, match="0 female"):
            build_reference(only_male, annotation)
    assert females is not None
    with pytest.raises(DataError, match="unique"):
        build_reference(panel[:20] + panel[:5], annotation)


def test_cli_reference_and_nipt(lab, tmp_path, run_cli):
    model, annotation, panel, _ = lab
    annotation.save(tmp_path / "bins.npz")
    paths = []
    for sample in panel[:24]:
        path = tmp_path / f"{sample.sample}.counts.npz"
        sample.save(path)
        paths.append(path)
    result = run_cli("reference", *paths, "--bins", tmp_path / "bins.npz", "-o", tmp_path / "ref.npz")
    assert result.exit_code == 0, result.stderr
    case, _ = designed(model, "T18", ff=0.15, index=70)
    case.save(tmp_path / "case.counts.npz")
    for out in ("a", "b"):
        result = run_cli("nipt", tmp_path / "case.counts.npz", "--reference", tmp_path / "ref.npz", "-o", tmp_path / out)
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a" / "case_70.nipt.json").read_bytes() == (tmp_path / "b" / "case_70.nipt.json").read_bytes()
    assert json.loads((tmp_path / "a" / "case_70.nipt.json").read_text())["calls"][1]["event"] == "T18"
    result = run_cli("reference", *paths[:5], "--bins", tmp_path / "bins.npz", "-o", tmp_path / "small.npz")
    assert result.exit_code == 2 and "at least 20" in result.stderr and not (tmp_path / "small.npz").exists()


def test_segmentation_finds_a_planted_change():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, 400)
    values[150:190] += 1.5
    segments = segment(values, np.ones(400), threshold=5.0, min_bins=3)
    assert any(abs(a - 150) <= 2 and abs(b - 190) <= 2 for a, b in segments)
    quiet = segment(rng.normal(0, 1, 400), np.ones(400), threshold=5.0)
    assert quiet == [(0, 400)]


def test_compiled_arc_search_equals_numpy():
    from plasmacount.segment import _best_arc, _best_arc_numpy

    rng = np.random.default_rng(4)
    for size in (8, 57, 400):
        values = rng.normal(0, 1, size)
        values[size // 3 : size // 2] += 2
        weights = rng.uniform(0.5, 2, size)
        compiled, reference = _best_arc(values, weights, 3), _best_arc_numpy(values, weights, 3)
        assert compiled[1:] == reference[1:] and compiled[0] == pytest.approx(reference[0], rel=1e-12)


def test_gc_curve_recovers_a_known_bias():
    rng = np.random.default_rng(2)
    gc = rng.uniform(0.35, 0.6, 20_000)
    bias = np.exp(1.2 * (gc - 0.41) - 6 * (gc - 0.41) ** 2)
    counts = rng.poisson(500 * bias)
    curve = fit_gc_curve(counts, gc, np.ones(gc.size, dtype=bool))
    truth = bias / np.mean(bias)
    assert np.max(np.abs(curve.factors / truth - 1)) < 0.03


def test_trisomy_decision_rules():
    score = {"z": 8.0, "sd": 0.003, "ratio": 1.024, "reference_mean": 1.0}
    assert aneuploidy.call_trisomy(score, 0.05, 0.045, False)["result"] == "positive"
    # The same excess at a fetal fraction of 20 % is too small for a fetal trisomy.
    assert aneuploidy.call_trisomy(score, 0.20, 0.19, False)["result"] in ("no-call", "negative")
    assert aneuploidy.call_trisomy({**score, "z": 0.3, "ratio": 1.001}, 0.10, 0.09, False)["result"] == "negative"
    low = aneuploidy.call_trisomy({**score, "z": 1.0, "ratio": 1.003}, 0.015, 0.01, False)
    assert low["result"] == "no-call" and "below" in low["reason"]
    assert aneuploidy.call_trisomy(score, 0.05, 0.045, True)["result"] == "no-call"
