"""The simulator against its own truth: dosages, fetal fraction on chrY, overdispersion, reads that map back."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pysam
import pytest

from plasmacount.alignments import CountOptions, count_alignments
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.genome import name_key
from plasmacount.simulation import (
    GenomeModel,
    SampleDesign,
    SimulationRequest,
    _gamma_poisson,
    design_cohort,
    expected_counts,
    fragment_length_distribution,
    run_simulation,
)
from plasmacount.synthetic_genome import make_genome


@pytest.fixture(scope="module")
def model():
    """The genome model without the placental coverage effect, so dosages are exact."""
    full = GenomeModel.from_synthetic(make_genome(1 / 1000, seed=3), seed=3)
    return dataclasses.replace(full, placental_effect=np.ones_like(full.placental_effect))


def read_truth(path):
    with open(path) as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def chromosome_sums(values, layout):
    return {c.name: values[c.first_bin : c.first_bin + c.n_bins].sum() for c in layout.contigs}


def base_design(**changes) -> SampleDesign:
    design = SampleDesign(
        sample="s",
        cohort="nipt",
        reads=1_000_000,
        paired=False,
        read_length=50,
        sex="female",
        fetal_fraction=0.1,
        fetal_sex="female",
        fetal_karyotype="46,XX",
        chrY_background=0.0,
        batch_scores=[0, 0, 0],
    )
    return dataclasses.replace(design, **changes)


def test_trisomy_raises_dosage_by_half_the_fetal_fraction(model):
    euploid, _ = expected_counts(base_design(), model)
    t21 = base_design(
        events=[{"type": "trisomy", "origin": "fetal", "chrom": "chr21", "fetal_cn": 3}], findings=["T21"]
    )
    trisomic, shares = expected_counts(t21, model)
    e, t = chromosome_sums(euploid, model.layout), chromosome_sums(trisomic, model.layout)
    total_e, total_t = sum(v for k, v in e.items() if k != "chr21"), sum(v for k, v in t.items() if k != "chr21")
    assert (t["chr21"] / total_t) / (e["chr21"] / total_e) == pytest.approx(1.05, rel=1e-9)
    # The fetal share of chr21 DNA: 0.1 x 3 copies out of 0.9 x 2 + 0.1 x 3.
    chr21 = model.layout.contig("chr21")
    assert shares["fetal"][chr21.first_bin] == pytest.approx(0.3 / 2.1, rel=1e-9)
    assert shares["fetal"][model.layout.contig("chr1").first_bin] == pytest.approx(0.1, rel=1e-9)


def test_male_fetus_chrY_gives_the_fetal_fraction(model):
    pregnancy, _ = expected_counts(base_design(fetal_sex="male", fetal_karyotype="46,XY", fetal_fraction=0.08), model)
    adult = SampleDesign(
        sample="m",
        cohort="healthy",
        reads=1_000_000,
        paired=False,
        read_length=50,
        sex="male",
        tumor_fraction=0.0,
        chrY_background=0.0,
        batch_scores=[0, 0, 0],
    )
    male, _ = expected_counts(adult, model)
    p, m = chromosome_sums(pregnancy, model.layout), chromosome_sums(male, model.layout)
    autosomes = lambda d: sum(v for k, v in d.items() if name_key(k) not in ("X", "Y"))  # noqa: E731
    assert (p["chrY"] / autosomes(p)) / (m["chrY"] / autosomes(m)) == pytest.approx(0.08, rel=1e-9)
    # chrX is lowered by ff/2 relative to a female pregnancy.
    female, _ = expected_counts(base_design(fetal_fraction=0.08), model)
    f = chromosome_sums(female, model.layout)
    assert (p["chrX"] / autosomes(p)) / (f["chrX"] / autosomes(f)) == pytest.approx(0.96, rel=1e-9)


def test_overdispersion():
    rng = np.random.default_rng(1)
    draws = _gamma_poisson(rng, np.full(200_000, 400.0), 1.25)
    assert draws.mean() == pytest.approx(400, rel=0.005)
    assert draws.var() / draws.mean() == pytest.approx(1.25, rel=0.03)


def test_fragment_size_models():
    lengths = np.arange(5001)
    maternal = fragment_length_distribution("maternal")
    assert 166 <= maternal.argmax() <= 168
    assert 0.12 < maternal[:150].sum() < 0.20  # real plasma: 15.4 % below 150 bp
    assert fragment_length_distribution("fetal")[:150].sum() > 2 * maternal[:150].sum()
    assert 140 <= fragment_length_distribution("fetal").argmax() <= 150
    carrier = fragment_length_distribution("ebv_carrier")
    assert carrier[80:111].sum() > 10 * fragment_length_distribution("ebv_tumour")[80:111].sum()
    assert maternal[501:].sum() > 0  # long cfDNA molecules exist
    assert (maternal * lengths).sum() == pytest.approx(170, abs=5)


def test_cohort_designs():
    designs = design_cohort("nipt", 400, 10_000_000, seed=2)
    findings = [f for d in designs for f in d.findings]
    for event in ("T21", "T18", "T13", "45,X", "47,XXY"):
        assert event in findings
    assert any(f.endswith(":fetal") for f in findings) and any(f.endswith(":maternal") for f in findings)
    sexes = {d.fetal_sex for d in designs}
    assert sexes == {"male", "female"}
    fractions = np.array([d.fetal_fraction for d in designs])
    assert 0.08 < np.median(fractions) < 0.12 and fractions.min() >= 0.02
    assert all(not d.findings for d in design_cohort("euploid", 50, 10_000_000, seed=2))
    cancer = design_cohort("cancer", 100, 10_000_000, seed=2)
    assert max(d.tumor_fraction for d in cancer) <= 0.30 and sum(d.tumor_fraction == 0 for d in cancer) > 0
    ebv = design_cohort("ebv", 200, 10_000_000, seed=2)
    assert {d.ebv_status for d in ebv} == {"negative", "carrier", "npc"}


def test_count_level_cohort_is_deterministic_and_truthful(tmp_path):
    kwargs = dict(cohort="nipt", samples=12, reads=2_000_000, paired=True, seed=9, scale=1 / 1000)
    first = run_simulation(SimulationRequest(output=tmp_path / "a", **kwargs))
    second = run_simulation(SimulationRequest(output=tmp_path / "b", **kwargs))
    for x, y in zip(first, second):
        assert x.read_bytes() == y.read_bytes()
    assert (tmp_path / "a" / "truth.tsv").read_bytes() == (tmp_path / "b" / "truth.tsv").read_bytes()
    truth = read_truth(tmp_path / "a" / "truth.tsv")
    short_share, fetal_fraction = [], []
    for path, row in zip(first, truth):
        counts = SampleCounts.load(path)
        assert counts.sample == row["sample"]
        assert abs(counts.counts.sum() / int(row["reads"]) - 1) < 0.01
        short_share.append(counts.short.sum() / counts.counts.sum())
        fetal_fraction.append(float(row["fetal_fraction"]))
        assert 160 <= counts.fragment_lengths.argmax() <= 168
    # Fetal DNA is shorter: the short-fragment share rises with the fetal fraction (blurred by
    # the sample-to-sample variation of library fragment sizes).
    assert np.corrcoef(short_share, fetal_fraction)[0, 1] > 0.5
    details = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert len(details["samples"]) == 12 and details["settings"]["seed"] == 9


def test_bam_counts_follow_truth(tmp_path):
    paths = run_simulation(
        SimulationRequest(
            output=tmp_path,
            cohort="ebv",
            samples=12,
            reads=150_000,
            paired=True,
            output_format="bam",
            scale=1 / 1000,
            seed=4,
        )
    )
    annotation_path = tmp_path / "genome" / "bins.npz"
    annotation = BinAnnotation.load(annotation_path)
    truth = {row["sample"]: row for row in read_truth(tmp_path / "truth.tsv")}
    for path in paths:
        counts = count_alignments(path, annotation=annotation, options=CountOptions())
        row = truth[counts.sample]
        assert abs(counts.qc["counted"] / int(row["reads"]) - 1) < 0.1
        # Marked duplicates: the designed share of molecules (two records each).
        assert counts.qc["duplicates"] / counts.qc["mapped"] == pytest.approx(float(row["duplicate_rate"]), abs=0.02)
        ebv = dict(zip((o["name"] for o in counts.other_contigs), counts.other_counts))["chrEBV"]
        expected = float(row["ebv_fragments_expected"])
        if row["ebv_status"] == "negative":
            assert ebv == 0
        elif expected > 20:
            assert ebv > 0.5 * expected * 0.8  # the W repeat gets MAPQ 0
        assert 160 <= counts.fragment_lengths.argmax() <= 170


def test_tumour_copy_numbers(model):
    design = SampleDesign(
        sample="c",
        cohort="cancer",
        reads=1_000_000,
        paired=False,
        read_length=50,
        sex="female",
        tumor_fraction=0.2,
        tumor_genome_doubled=True,
        chrY_background=0.0,
        batch_scores=[0, 0, 0],
        events=[
            {"chrom": "chr8", "start": 0, "end": 10**9, "tumour_cn": 6, "clonal_fraction": 1.0},
            {"chrom": "chr3", "start": 0, "end": 10**9, "tumour_cn": 2, "clonal_fraction": 0.5},
        ],
    )
    from plasmacount.simulation import copy_numbers

    tumour = copy_numbers(design, model)["tumour"]
    layout = model.layout
    assert tumour[layout.contig("chr1").first_bin] == 4  # doubled genome
    assert tumour[layout.contig("chr8").first_bin] == 6
    assert tumour[layout.contig("chr3").first_bin] == 3  # half the tumour cells lost two of four copies
    assert copy_numbers(design, model)["tumour"][layout.contig("chr1").first_bin] == 4  # no state carried between calls


def test_bam_output_is_deterministic(tmp_path):
    common = dict(cohort="cancer", samples=2, reads=20_000, paired=True, scale=1 / 1000, seed=12, output_format="bam")
    first = run_simulation(SimulationRequest(output=tmp_path / "a", **common))
    second = run_simulation(SimulationRequest(output=tmp_path / "b", **common))
    for x, y in zip(first, second):
        assert x.read_bytes() == y.read_bytes()


def test_cram_and_fastq_outputs(tmp_path):
    cram_dir, bam_dir = tmp_path / "cram", tmp_path / "bam"
    common = dict(cohort="euploid", samples=1, reads=40_000, paired=True, scale=1 / 1000, seed=6)
    [cram] = run_simulation(SimulationRequest(output=cram_dir, output_format="cram", **common))
    [bam] = run_simulation(SimulationRequest(output=bam_dir, output_format="bam", **common))
    from_cram = count_alignments(cram, bin_size=10_000, reference=cram_dir / "genome" / "genome.fa")
    from_bam = count_alignments(bam, bin_size=10_000)
    np.testing.assert_array_equal(from_cram.counts, from_bam.counts)
    fastqs = run_simulation(SimulationRequest(output=tmp_path / "fastq", output_format="fastq", **common))
    assert [p.name for p in fastqs] == ["euploid_0001_R1.fastq.gz", "euploid_0001_R2.fastq.gz"]
    with pysam.FastxFile(str(fastqs[0])) as r1, pysam.FastxFile(str(fastqs[1])) as r2:
        pairs = list(zip(r1, r2))
    assert len(pairs) > 30_000 and all(a.name.split("/")[0] == b.name.split("/")[0] for a, b in pairs[:100])


def test_fastq_maps_back_with_bwa(tmp_path):
    if shutil.which("bwa") is None:
        pytest.skip("bwa not installed")
    [fastq] = run_simulation(
        SimulationRequest(
            output=tmp_path, cohort="euploid", samples=1, reads=20_000, output_format="fastq", scale=1 / 1000, seed=8
        )
    )
    genome = tmp_path / "genome" / "genome.fa"
    subprocess.run(["bwa", "index", str(genome)], check=True, capture_output=True)
    sam = subprocess.run(
        ["bwa", "mem", "-t", "2", str(genome), str(fastq)], check=True, capture_output=True, text=True
    ).stdout
    records = [line.split("\t") for line in sam.splitlines() if not line.startswith("@")]
    primary = [r for r in records if not int(r[1]) & 0x900]
    mapped = [r for r in primary if not int(r[1]) & 0x4]
    confident = [r for r in mapped if int(r[4]) >= 20]
    assert len(mapped) / len(primary) > 0.97
    assert len(confident) / len(primary) > 0.85
    # chrY outside the pseudo-autosomal region (which maps with MAPQ 0): fetal DNA of a boy, or
    # only the small mis-mapped background for a girl.
    [truth] = read_truth(tmp_path / "truth.tsv")
    on_y = sum(r[2] == "chrY" for r in confident) / len(confident)
    if truth["fetal_sex"] == "female":
        assert on_y < 0.0015
    else:
        assert on_y > 0.1 * float(truth["fetal_fraction"]) * 57 / 6200


def test_lab_effects_are_knobs_recorded_in_the_truth(tmp_path, run_cli):
    import json

    from plasmacount.simulation import GenomeModel, LabEffects

    off = GenomeModel.hg38_layout(1_000_000, seed=4, effects=LabEffects(placental_pattern_sd=0.0))
    strong = GenomeModel.hg38_layout(1_000_000, seed=4, effects=LabEffects(placental_pattern_sd=0.15))
    assert np.all(off.placental_effect == 1.0)
    assert 0.12 < np.std(np.log(strong.placental_effect)) < 0.18
    # Only the knob changes: every other per-bin effect of the lab is the same draw.
    assert np.array_equal(off.stickiness, strong.stickiness) and np.array_equal(off.y_homology, strong.y_homology)

    def hot_bins(model):
        on_y = model.y_homology > 0
        return int((model.y_homology > 2 * 0.03 / on_y.sum()).sum())

    few = GenomeModel.hg38_layout(100_000, seed=4, effects=LabEffects(y_hotspot_share=0.05))
    usual = GenomeModel.hg38_layout(100_000, seed=4)
    assert 0 < hot_bins(few) < 0.5 * hot_bins(usual)
    assert GenomeModel.hg38_layout(100_000, seed=4).y_homology.sum() == pytest.approx(1.0)
    result = run_cli(
        "simulate",
        "-o",
        tmp_path / "sim",
        "--cohort",
        "euploid",
        "--samples",
        "2",
        "--reads",
        "20k",
        "--genome",
        "hg38",
        "--bin-size",
        "1000000",
        "--placental-pattern-sd",
        "0",
        "--chrY-hotspot-share",
        "0.05",
    )
    assert result.exit_code == 0, result.stderr
    settings = json.loads((tmp_path / "sim" / "truth.json").read_text())["settings"]
    assert settings["effects"]["placental_pattern_sd"] == 0.0 and settings["effects"]["y_hotspot_share"] == 0.05
    bad = run_cli("simulate", "-o", tmp_path / "bad", "--placental-pattern-sd", "-1")
    assert bad.exit_code == 2 and "placental" in bad.stderr


def test_pessimistic_ebv_draws_make_npc_and_carriers_overlap():
    """The EBV knobs: by default NPC viral DNA is all nucleosome-sized and carriers' all short;
    the pessimistic setting redraws a third of NPC at carriers' loads and gives carriers up to
    half nucleosome-sized viral DNA, visible in the simulated size histograms."""
    from plasmacount.errors import UsageError
    from plasmacount.simulation import PESSIMISTIC_EBV, EbvDraws, nucleosomal_share, simulate_counts

    default = design_cohort("ebv", 600, 10_000_000, seed=4, paired=True)
    pessimistic = design_cohort("ebv", 600, 10_000_000, seed=4, paired=True, ebv=PESSIMISTIC_EBV)
    # The same people: only the knobs' own draws differ.
    assert [d.ebv_status for d in default] == [d.ebv_status for d in pessimistic]
    npc = [(a, b) for a, b in zip(default, pessimistic) if a.ebv_status == "npc"]
    assert all(nucleosomal_share(a) == 1.0 for a, _ in npc)
    low = sum(b.ebv_fragments_expected <= 30 for _, b in npc) / len(npc)
    assert 0.35 < low < 0.65  # a third redrawn, plus the quarter of the log-uniform range already below 30
    carriers = [b for b in pessimistic if b.ebv_status == "carrier"]
    assert all(nucleosomal_share(d) == 0.0 for d in default if d.ebv_status == "carrier")
    shares = np.array([d.ebv_nucleosomal_share for d in carriers])
    assert shares.max() <= 0.5 and 0.18 < shares.mean() < 0.32
    model = GenomeModel.hg38_layout(1_000_000, 1)
    carrier = max(carriers, key=lambda d: d.ebv_nucleosomal_share)
    carrier.ebv_fragments_expected = 20_000
    counts = simulate_counts(carrier, model, 4, 0)
    row = [o["name"] for o in counts.other_contigs].index("chrEBV")
    histogram = counts.other_fragment_lengths[row]
    expected = carrier.ebv_nucleosomal_share * fragment_length_distribution("ebv_tumour") + (
        1 - carrier.ebv_nucleosomal_share
    ) * fragment_length_distribution("ebv_carrier")
    observed_short = histogram[80:111].sum() / histogram.sum()
    assert abs(observed_short - expected[80:111].sum()) < 0.02
    with pytest.raises(UsageError):
        EbvDraws(npc_low_load_share=1.5)


def test_healthy_arm_shifts_knob():
    """Pessimistic lab effects shift each healthy sample's arms as a whole, GC-rich arms most;
    the default lab has no such shifts."""
    from plasmacount.simulation import PESSIMISTIC_TUMOR_EFFECTS

    default = GenomeModel.hg38_layout(1_000_000, seed=4)
    shifted = GenomeModel.hg38_layout(1_000_000, seed=4, effects=PESSIMISTIC_TUMOR_EFFECTS)
    assert default.arm_shift_sd is None
    layout = default.layout
    keys = layout.bin_keys()
    mappable = (default.mappable > 0) & (shifted.mappable > 0)
    arm_of = shifted.arm_of_bin
    shifts = []
    for design in design_cohort("healthy", 60, 10_000_000, seed=4):
        ratio = np.log2(expected_counts(design, shifted)[0][mappable] / expected_counts(design, default)[0][mappable])
        arms = arm_of[mappable]
        # One shift per arm: constant within every arm.
        for arm in np.unique(arms)[:10]:
            np.testing.assert_allclose(ratio[arms == arm], ratio[arms == arm][0], atol=1e-9)
        shifts.append({arm: ratio[arms == arm][0] for arm in np.unique(arms)})

    def spread(chrom):
        arm = int(arm_of[np.flatnonzero(keys == chrom)[-1]])
        return float(np.std([s[arm] - np.median(list(s.values())) for s in shifts]))

    assert spread("19") > 3 * spread("4")
    assert 0.002 < spread("4") < 0.008
