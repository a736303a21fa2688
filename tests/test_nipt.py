"""Prenatal testing against simulated truth: reference, calls, fetal sex and fraction, CNVs, outputs, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
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
    panel = [
        simulate_counts(d, model, 40, i)
        for i, d in enumerate(design_cohort("euploid", 40, READS, seed=40, paired=True, prefix="ref"))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = build_reference(panel, annotation)
    return model, annotation, panel, reference


def designed(model, event=None, ff=0.12, sex="female", seed=7, index=0, cnv=None):
    [design] = design_cohort("euploid", 1, READS, seed=seed + index, paired=True, prefix=f"t{index}")
    design = dataclasses.replace(
        design,
        fetal_fraction=ff,
        fetal_sex=sex,
        fetal_karyotype="46,XY" if sex == "male" else "46,XX",
        sample=f"case_{index}",
    )
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
    assert reference.metadata["qc"]["status"] in ("pass", "warn")
    assert reference.samples == [s.sample for s in panel]
    truth_sexes = [s.sample for s in panel]
    assert len(truth_sexes) == 40
    chromosomes = reference.metadata["chromosomes"]
    for key in ("13", "18", "21"):
        assert (
            chromosomes[key]["cv"] < 2.0 * chromosomes[key]["poisson_cv"]
        )  # a small panel; the benchmark measures 200
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
        assert (
            result["fetal_fraction"]["low"] <= result["fetal_fraction"]["estimate"] <= result["fetal_fraction"]["high"]
        )
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
    checked = 0
    for index in range(30, 36):
        result = analyse_sample(designed(model, "T21", ff=0.012, index=index)[0], reference)
        decision = call(result, "T21")
        assert decision["result"] in ("no-call", "positive") and decision["minimum_fetal_fraction"] > 0.01
        if result["qc"]["status"] == "pass" and decision["result"] == "no-call":
            assert "fetal fraction" in decision["reason"]
            checked += 1
    assert checked >= 2


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
    fetal = {
        "type": "cnv",
        "origin": "fetal",
        "chrom": "chr4",
        "start": 0,
        "end": 20_000_000,
        "fetal_cn": 1,
        "maternal_cn": 2,
        "name": None,
    }
    sample, _ = designed(model, ff=0.22, index=50, cnv=fetal)
    result = analyse_sample(sample, reference)
    hits = [c for c in result["cnvs"] if c["chrom"] == "chr4"]
    assert hits and hits[0]["type"] == "deletion" and hits[0]["origin"] == "fetal"
    assert hits[0]["start"] < 5_000_000 and 15_000_000 < hits[0]["end"] <= 21_000_000
    assert hits[0]["syndrome"] == "Wolf-Hirschhorn (4p16.3)"
    maternal = {
        "type": "cnv",
        "origin": "maternal",
        "chrom": "chr7",
        "start": 60_000_000,
        "end": 70_000_000,
        "fetal_cn": 3,
        "maternal_cn": 3,
        "name": None,
    }
    sample, _ = designed(model, ff=0.10, index=51, cnv=maternal)
    result = analyse_sample(sample, reference)
    hits = [c for c in result["cnvs"] if c["chrom"] == "chr7"]
    assert hits and hits[0]["type"] == "duplication" and hits[0]["origin"] == "maternal"
    assert abs(hits[0]["copy_ratio"] - 1.5) < 0.1
    limit = result["detection_limit"]
    assert limit["smallest_fetal_deletion_bp"] > 0 and limit["cnv_power"] == 0.9
    regions = limit["syndrome_regions"]
    # At 1 Mb bins DiGeorge (2.6 Mb) is too small to test; a longer region needs less fetal DNA.
    assert regions["DiGeorge (22q11.2)"]["minimum_fetal_fraction"] is None and regions["DiGeorge (22q11.2)"]["bins"] < 5
    limits = sorted(
        (r["bins"], r["minimum_fetal_fraction"]) for r in regions.values() if r["minimum_fetal_fraction"] is not None
    )
    assert len(limits) >= 2 and all(0 < f <= 1 for _, f in limits) and limits[-1][1] < limits[0][1]


def test_result_schema_and_outputs(lab, tmp_path):
    import pysam

    model, _, _, reference = lab
    cnv = {
        "type": "cnv",
        "origin": "fetal",
        "chrom": "chr5",
        "start": 0,
        "end": 15_000_000,
        "fetal_cn": 3,
        "maternal_cn": 2,
        "name": None,
    }
    results = [
        analyse_sample(designed(model, ff=0.2, index=60, cnv=cnv)[0], reference),
        analyse_sample(designed(model, "T21", index=61)[0], reference),
    ]
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
    layout = Layout.from_lengths(
        [(c.name, c.length + (3_000_000 if c.name == "chr1" else 0)) for c in reference.layout.contigs], BIN
    )
    counts = SampleCounts(sample="other_build", layout=layout, counts=np.full(layout.n_bins, 100))
    result = analyse_sample(counts, reference)
    assert result["qc"]["status"] == "fail" and "builds differ" in result["qc"]["reasons"][0]


def test_reference_refuses_bad_panels(lab):
    _, annotation, panel, _ = lab
    with pytest.raises(UsageError, match="at least 20"):
        build_reference(panel[:10], annotation)
    females = [s for s in panel if s.counts[-60:].sum() < np.median([p.counts[-60:].sum() for p in panel])]
    model = GenomeModel.hg38_layout(BIN, seed=5)
    only_female = [
        simulate_counts(dataclasses.replace(d, fetal_sex="female", fetal_karyotype="46,XX"), model, 41, i)
        for i, d in enumerate(design_cohort("euploid", 25, READS, seed=41, paired=True, prefix="f"))
    ]
    only_male = [
        simulate_counts(dataclasses.replace(d, fetal_sex="male", fetal_karyotype="46,XY"), model, 42, i)
        for i, d in enumerate(design_cohort("euploid", 25, READS, seed=42, paired=True, prefix="m"))
    ]
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
        result = run_cli(
            "nipt", tmp_path / "case.counts.npz", "--reference", tmp_path / "ref.npz", "-o", tmp_path / out
        )
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a" / "case_70.nipt.json").read_bytes() == (tmp_path / "b" / "case_70.nipt.json").read_bytes()
    assert json.loads((tmp_path / "a" / "case_70.nipt.json").read_text())["calls"][1]["event"] == "T18"
    # --bins is accepted as in `reference`, and only checked: the same annotation passes, another refused.
    result = run_cli(
        "nipt",
        tmp_path / "case.counts.npz",
        "--reference",
        tmp_path / "ref.npz",
        "--bins",
        tmp_path / "bins.npz",
        "-o",
        tmp_path / "c",
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "c" / "case_70.nipt.json").read_bytes() == (tmp_path / "a" / "case_70.nipt.json").read_bytes()
    other = dataclasses.replace(annotation, gc=annotation.gc + 0.01)
    other.save(tmp_path / "other.bins.npz")
    result = run_cli(
        "nipt",
        tmp_path / "case.counts.npz",
        "--reference",
        tmp_path / "ref.npz",
        "--bins",
        tmp_path / "other.bins.npz",
        "-o",
        tmp_path / "d",
    )
    assert (
        result.exit_code == 2
        and "not the annotation the reference was made with" in result.stderr
        and not (tmp_path / "d").exists()
    )
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
    posterior = aneuploidy.FetalFractionPosterior.from_estimate
    score = {"z": 8.0, "sd": 0.003, "ratio": 1.024, "reference_mean": 1.0}
    assert aneuploidy.call_trisomy(score, posterior(0.05, 0.003), None)["result"] == "positive"
    # Far more excess than a fetal fraction of 2 % explains: still called, with a note.
    large = aneuploidy.call_trisomy(score, posterior(0.02, 0.002), None)
    assert large["result"] == "positive" and "larger than" in large["note"]
    assert (
        aneuploidy.call_trisomy({**score, "z": 0.3, "ratio": 1.001}, posterior(0.10, 0.01), None)["result"]
        == "negative"
    )
    low = aneuploidy.call_trisomy({**score, "z": 1.0, "ratio": 1.003}, posterior(0.015, 0.002), None)
    assert low["result"] == "no-call" and "below" in low["reason"]
    assert aneuploidy.call_trisomy(score, posterior(0.05, 0.003), "sample QC failed")["result"] == "no-call"
    # Fetal fraction not determinable: the fixed z threshold decides, and the limit is stated.
    unknown = aneuploidy.call_trisomy({**score, "z": 3.4}, None, None)
    assert (
        unknown["result"] == "negative"
        and unknown["minimum_fetal_fraction"] > 0
        and "would have been seen" in unknown["note"]
    )
    assert aneuploidy.call_trisomy({**score, "z": 3.6}, None, None)["result"] == "positive"


def test_bayes_factor_matches_numerical_integration():
    from scipy import integrate, stats

    posterior = aneuploidy.FetalFractionPosterior.from_estimate(0.06, 0.015)
    # The posterior itself, integrated independently: prior lognormal(median 10 %, SD 0.6) x normal likelihood.
    density = lambda f: stats.lognorm.pdf(f, 0.6, scale=0.10) * stats.norm.pdf(0.06, f, 0.015)  # noqa: E731
    normaliser = integrate.quad(density, 0.002, 0.5, points=[0.06])[0]
    assert posterior.median == pytest.approx(
        next(q for q in np.linspace(0.002, 0.5, 20001) if integrate.quad(density, 0.002, q)[0] >= 0.5 * normaliser),
        abs=2e-3,
    )
    for deviation, sd in ((0.0, 0.003), (0.02, 0.003), (0.035, 0.004), (0.01, 0.006)):

        def weighted(f: float, deviation: float = deviation, sd: float = sd) -> float:
            return density(f) * stats.norm.pdf(deviation, f / 2, sd) / stats.norm.pdf(deviation, 0, sd)

        expected = math.log(integrate.quad(weighted, 0.002, 0.5, points=[0.06], limit=200)[0] / normaliser)
        assert aneuploidy.log_bayes_factor(deviation, sd, 1.0, posterior) == pytest.approx(expected, abs=0.02)


def test_z_inflation_measures_a_widened_spread():
    rng = np.random.default_rng(8)
    for true in (1.0, 2.0):
        spreads = [aneuploidy.trimmed_spread(rng.normal(0, true, 19)) for _ in range(2000)]
        assert np.mean(spreads) == pytest.approx(true, rel=0.05)
    # Two real events among the 19 barely move it.
    values = rng.normal(0, 1, 19)
    values[:2] = (12.0, -9.0)
    assert aneuploidy.trimmed_spread(values) < 1.5


@pytest.fixture(scope="module")
def pessimistic_lab():
    """A lab the method was not tuned to: single-end (no fragment sizes), no placental coverage
    pattern, the female chrY background piled into a few bins and heavier than usual."""
    from plasmacount.simulation import LabEffects

    model = GenomeModel.hg38_layout(BIN, seed=6, effects=LabEffects(placental_pattern_sd=0.0, y_hotspot_share=0.03))
    annotation = model.annotation()
    designs = [
        dataclasses.replace(d, chrY_background=d.chrY_background * 3)
        for d in design_cohort("euploid", 60, READS, seed=60, paired=False, prefix="pess")
    ]
    panel = [simulate_counts(d, model, 60, i) for i, d in enumerate(designs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = build_reference(panel, annotation)
    return model, designs, reference


def single_end(model, event=None, ff=0.10, sex="female", index=0, events=None, **changes):
    [design] = design_cohort("euploid", 1, READS, seed=90 + index, paired=False, prefix=f"p{index}")
    design = dataclasses.replace(
        design,
        fetal_fraction=ff,
        fetal_sex=sex,
        fetal_karyotype="46,XY" if sex == "male" else "46,XX",
        sample=f"pess_{index}",
        **changes,
    )
    if event:
        design.events = [{"type": "trisomy", "origin": "fetal", "chrom": f"chr{event[1:]}", "fetal_cn": 3}]
    if events:
        design.events = events
    return simulate_counts(design, model, 90 + index, index)


def test_fetal_sex_learnt_under_heavy_chrY_background(pessimistic_lab):
    _, designs, reference = pessimistic_lab
    truth = [d.fetal_sex for d in designs]
    assert reference.metadata["panel_sexes"] == truth
    assert reference.metadata["sex_model"]["effective_chrY_bins"] < reference.metadata["sex_model"]["n_chrY_bins"]


def test_female_fetal_fraction_not_determinable_calls_on_z(pessimistic_lab):
    model, _, reference = pessimistic_lab
    skill = reference.metadata["qc"]["fetal_fraction_skill"]
    assert skill["fragment_size"] is None and not skill["bin_profile"]["used"]
    assert any("not determinable" in reason for reason in reference.metadata["qc"]["reasons"])
    euploid = analyse_sample(single_end(model, index=1), reference)
    assert euploid["fetal_fraction"]["estimate"] is None and not euploid["fetal_fraction"]["determinable"]
    assert euploid["fetal_fraction"]["methods"]["bin_profile"]["reason"].startswith("no skill")
    assert all(c["result"] == "negative" for c in euploid["calls"]), [
        c for c in euploid["calls"] if c["result"] != "negative"
    ]
    trisomy = analyse_sample(single_end(model, "T21", ff=0.08, index=2), reference)
    assert call(trisomy, "T21")["result"] == "positive" and "z alone" in call(trisomy, "T21")["note"]
    male = analyse_sample(single_end(model, sex="male", ff=0.08, index=3), reference)
    assert male["fetal_sex"] == "male" and abs(male["fetal_fraction"]["estimate"] - 0.08) < 0.015


def test_maternal_duplication_is_masked_from_its_chromosome(pessimistic_lab):
    model, _, reference = pessimistic_lab
    duplication = [
        {
            "type": "cnv",
            "origin": "maternal",
            "chrom": "chr21",
            "start": 25_000_000,
            "end": 30_000_000,
            "fetal_cn": 2,
            "maternal_cn": 3,
            "name": None,
        }
    ]
    result = analyse_sample(single_end(model, sex="male", index=4, events=duplication), reference)
    assert call(result, "T21")["result"] == "negative"
    hits = [c for c in result["cnvs"] if c["chrom"] == "chr21"]
    assert hits and hits[0]["origin"] == "maternal" and hits[0]["type"] == "duplication"
    # Without the masking the duplication alone would have made chr21 stand out.
    assert abs(result["chromosomes"]["chr21"]["z"]) < 3


def test_gains_and_losses_on_many_chromosomes_are_a_pattern(pessimistic_lab):
    model, _, reference = pessimistic_lab
    events = [
        {
            "type": "cnv",
            "origin": "fetal",
            "chrom": chrom,
            "start": 40_000_000,
            "end": 70_000_000,
            "fetal_cn": cn,
            "maternal_cn": 2,
            "name": None,
        }
        for chrom, cn in (("chr2", 1), ("chr5", 3), ("chr8", 3), ("chr11", 1))
    ]
    events.append({"type": "trisomy", "origin": "fetal", "chrom": "chr13", "fetal_cn": 3})
    result = analyse_sample(single_end(model, sex="male", ff=0.15, index=5, events=events), reference)
    assert result["pattern"] is not None and len(result["pattern"]["chromosomes"]) >= 3
    assert call(result, "T13")["result"] == "no-call" and "maternal condition" in call(result, "T13")["reason"]


def test_library_bias_the_panel_never_saw_is_flagged(pessimistic_lab):
    model, _, reference = pessimistic_lab
    for index in range(6, 9):
        result = analyse_sample(single_end(model, index=index, library_bias=0.02, library_bias_seed=index), reference)
        assert (
            result["qc"]["status"] in ("warn", "fail")
            and max(result["qc"]["chromosome_z_inflation"], result["qc"]["window_z_inflation"]) > 1.3
        )
        assert not [c for c in result["calls"] if c["result"] == "positive"] and not result["cnvs"]


def test_real_nipter_trisomy_21_stands_out(shared_data):
    """REAL data: NIPTeR's trisomy 21 sample against its four euploid ones, with our GC correction."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "nipter_real.py"
    spec = importlib.util.spec_from_file_location("nipter_real", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    measured = module.measure(shared_data / "nipter")
    assert measured["gc_z"]["21"] >= 6
    assert abs(measured["gc_z"]["13"]) < 3 and abs(measured["gc_z"]["18"]) < 3
    # The raw shares are what GC moves: chr13 and chr18 stand out there, in opposite directions to chr21.
    assert measured["raw_z"]["13"] < -3 and measured["raw_z"]["18"] < -3


def test_plain_gc_table_import(tmp_path):
    from plasmacount.bins import import_annotations

    table = tmp_path / "gc.tsv"
    table.write_text(
        "chrom\tstart\tend\tgc_percent\n1\t0\t50000\t40.0\n1\t50000\t100000\tNA\n1\t100000\t130000\t55.5\n2\t0\t50000\t61.0\n"
    )
    annotation = import_annotations([table])
    assert annotation.bin_size == 50_000 and [c.name for c in annotation.layout.contigs] == ["1", "2"]
    assert (
        annotation.gc[0] == pytest.approx(0.40)
        and np.isnan(annotation.gc[1])
        and annotation.gc[2] == pytest.approx(0.555)
    )
    assert annotation.n_fraction[1] == 1.0 and annotation.n_fraction[0] == 0.0
    bad = tmp_path / "bad.tsv"
    bad.write_text("chrom\tstart\tend\tgc_percent\n1\t0\t50000\t140.0\n")
    with pytest.raises(DataError, match="outside 0-100"):
        import_annotations([bad])


def test_batch_qc_sees_a_shift_no_sample_shows_alone():
    from plasmacount.nipt import batch_qc

    rng = np.random.default_rng(12)

    def results(shift):
        return [
            {
                "qc": {"status": "pass"},
                "chromosomes": {
                    f"chr{k}": {"z": float(rng.normal(shift if k == 18 else 0.0, 1.0))} for k in range(1, 23)
                },
            }
            for _ in range(48)
        ]

    assert batch_qc(results(0.0))["status"] == "pass"
    shifted = batch_qc(results(1.2))  # each sample's chr18 z is ordinary; together they are not
    assert shifted["status"] == "warn" and any("chr18" in reason for reason in shifted["reasons"])
    assert batch_qc(results(0.0)[:5])["median_chromosome_z"] == {}


def test_panel_distance_flags_a_sample_far_from_the_panel(lab):
    model, _, _, reference = lab
    assert reference.metadata["panel_distance"]["q99"] > reference.metadata["panel_distance"]["median"] > 0
    sample, _ = designed(model, index=80)
    result = analyse_sample(sample, reference)
    assert result["qc"]["panel_distance"] < 1.5 * reference.metadata["panel_distance"]["q99"]
    # A batch effect five times stronger than any in the panel moves the sample off the panel.
    strong = dataclasses.replace(designed(model, index=81)[1], batch_scores=[8.0, -8.0, 4.0])
    result = analyse_sample(simulate_counts(strong, model, 81, 0), reference)
    assert result["qc"]["panel_distance"] > 1.5 * reference.metadata["panel_distance"]["q99"]
    assert any("normalisation-space distance" in reason for reason in result["qc"]["reasons"])


def test_within_sample_correction_removes_a_new_bias_that_follows_bin_properties(pessimistic_lab):
    """A library bias the panel never saw, tied to what bins are (mappability, GC x mappability):
    the within-sample correction takes it out of the sample's bin ratios (without it, the model's
    covariates removed, the pattern stays in them), and the chromosome z stay those of a normal
    sample. (In this 1 Mb synthetic layout the chromosomes' mean properties hardly differ, so the
    uncorrected z hardly move; on real hg38 bins they do: see BENCHMARKS.md.)"""
    from plasmacount.simulation import library_pattern

    model, _, reference = pessimistic_lab
    covariates = reference.model.covariates
    assert covariates is not None and covariates.shape[1] >= 1
    correlations = {True: [], False: []}
    z = {True: [], False: []}
    for index in range(20, 24):
        sample = single_end(
            model, index=index, library_bias=0.05, library_bias_seed=index, library_bias_kind="bin_features"
        )
        design = dataclasses.replace(
            design_cohort("euploid", 1, READS, seed=1)[0], library_bias_seed=index, library_bias_kind="bin_features"
        )
        pattern = library_pattern(design, model)
        assert abs(pattern.std() - 1) < 1e-6 and abs(pattern.mean()) < 1e-6
        for corrected in (True, False):
            reference.model.covariates = covariates if corrected else None
            try:
                profile = reference.model.normalise(reference.align(sample))
                result = analyse_sample(sample, reference)
            finally:
                reference.model.covariates = covariates
            used = profile.autosomal & np.isfinite(profile.log_ratio)
            correlations[corrected].append(np.corrcoef(profile.log_ratio[used], pattern[used])[0, 1])
            z[corrected] += [v["z"] for k, v in result["chromosomes"].items() if not k.endswith(("X", "Y"))]
    assert max(abs(r) for r in correlations[True]) < 0.05
    assert min(correlations[False]) > 0.2
    assert np.std(z[True]) < 1.3


def test_batch_on_two_processes_writes_the_same_files_as_on_one(lab, tmp_path):
    from plasmacount.nipt import run_batch

    model, _, _, reference = lab
    paths = []
    for index, event in enumerate([None, "T21", None]):
        path = tmp_path / f"in_{index}.counts.npz"
        designed(model, event, index=70 + index)[0].save(path)
        paths.append(path)
    one = run_batch(paths, reference, tmp_path / "one", workers=1)
    two = run_batch(paths, reference, tmp_path / "two", workers=2)
    assert [r["sample"] for r in one] == [r["sample"] for r in two] == ["case_70", "case_71", "case_72"]
    assert call(two[1], "T21")["result"] == "positive"
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) > 10
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_a_clear_trisomy_stands_when_only_the_chromosome_z_spread_is_wide(lab, monkeypatch):
    model, _, _, reference = lab
    monkeypatch.setattr(aneuploidy, "z_inflation", lambda scores, excluded: 1.7)
    trisomy = analyse_sample(designed(model, "T21", ff=0.15, index=80)[0], reference)
    assert any("chromosome z spread 1.70" in reason for reason in trisomy["qc"]["reasons"])
    t21 = call(trisomy, "T21")
    assert t21["result"] == "positive" and "despite a chromosome z spread of 1.70x" in t21["note"]
    # The negatives of that sample, and every call of a euploid one, are no-calls.
    assert call(trisomy, "T18")["result"] == "no-call"
    euploid = analyse_sample(designed(model, None, index=81)[0], reference)
    assert all(c["result"] == "no-call" for c in euploid["calls"] if c["event"].startswith("T"))
