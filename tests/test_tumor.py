"""Tumour fraction: real ichorCNA data, simulated healthy and cancer plasma, panels of normals, outputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from plasmacount.bins import import_annotations
from plasmacount.counts import import_wig
from plasmacount.simulation import GenomeModel, design_cohort, simulate_counts
from plasmacount.tumor import (
    CLONAL_STATES,
    SUBCLONAL,
    SUBCLONE_FRACTIONS,
    NormalPanel,
    analyse,
    build_panel,
    initial_weights,
    jump_weights,
)


@pytest.fixture(scope="module")
def lab():
    model = GenomeModel.hg38_layout(1_000_000, seed=8)
    healthy = [
        simulate_counts(d, model, 80, i) for i, d in enumerate(design_cohort("healthy", 16, 10_000_000, seed=80))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        panel = build_panel(healthy, model.annotation())
    return model, panel


def test_real_mbc315_matches_ichorcna(shared_data, tmp_path, run_cli):
    data = shared_data / "ichorcna"
    annotation = import_annotations([data / "gc_hg19_1000kb.wig", data / "map_hg19_1000kb.wig"])
    sample = import_wig(data / "MBC_315.ctDNA.reads.wig")
    for panel in (
        None,
        NormalPanel.load(data / "HD_ULP_PoN_1Mb_median_normAutosome_mapScoreFiltered_median.tsv.gz", sample.layout),
    ):
        result = analyse(sample, annotation, panel)
        # ichorCNA's published fit of this sample: tumour fraction 0.255-0.27, ploidy 1.90.
        assert 0.24 <= result["tumor_fraction"] <= 0.29 and result["tumor_detected"]
        assert 1.8 <= result["ploidy"] <= 2.0
        assert result["tumor_fraction_low"] <= result["tumor_fraction"] <= result["tumor_fraction_high"]
    # Both time points through the command line.
    annotation.save(tmp_path / "hg19.npz")
    result = run_cli(
        "tumor",
        data / "MBC_315.ctDNA.reads.wig",
        data / "MBC_315_T2.ctDNA.reads.wig",
        "--bins",
        tmp_path / "hg19.npz",
        "--panel",
        data / "HD_ULP_PoN_1Mb_median_normAutosome_mapScoreFiltered_median.tsv.gz",
        "-o",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.stderr
    rows = (tmp_path / "out" / "tumor.tsv").read_text().splitlines()
    assert len(rows) == 3
    first = json.loads((tmp_path / "out" / "MBC_315.ctDNA.tumor.json").read_text())
    second = json.loads((tmp_path / "out" / "MBC_315_T2.ctDNA.tumor.json").read_text())
    assert second["tumor_fraction"] < first["tumor_fraction"]
    seg = (tmp_path / "out" / "tumor.seg").read_text().splitlines()
    assert seg[0] == "ID\tchrom\tloc.start\tloc.end\tnum.mark\tseg.mean" and len(seg) > 20


def test_healthy_plasma_has_a_low_upper_bound(lab):
    model, panel = lab
    for index, design in enumerate(design_cohort("healthy", 6, 10_000_000, seed=81)):
        result = analyse(simulate_counts(design, model, 81, index), model.annotation(), panel)
        assert result["tumor_fraction_high"] <= 0.03
        assert not result["tumor_detected"] and result["tumor_fraction"] == 0.0


def test_diploid_tumour_fraction_recovered(lab):
    model, panel = lab
    [design] = design_cohort("cancer", 1, 10_000_000, seed=5)
    for tf in (0.08, 0.2):
        events = [
            {
                "type": "cnv",
                "origin": "tumour",
                "chrom": c,
                "start": s,
                "end": e,
                "tumour_cn": cn,
                "clonal_fraction": 1.0,
                "name": n,
            }
            for c, s, e, cn, n in (
                ("chr1", 125_000_000, 248_000_000, 3, "1q gain"),
                ("chr8", 46_000_000, 145_000_000, 3, "8q gain"),
                ("chr16", 37_000_000, 90_000_000, 1, "16q loss"),
                ("chr3", 0, 90_000_000, 1, "3p loss"),
            )
        ]
        import dataclasses

        case = dataclasses.replace(
            design, tumor_fraction=tf, tumor_genome_doubled=False, events=events, sample=f"tf{tf}"
        )
        result = analyse(simulate_counts(case, model, 5, int(tf * 100)), model.annotation(), panel)
        assert result["tumor_detected"]
        assert abs(result["tumor_fraction"] - tf) <= 0.03
        assert result["ploidy"] == pytest.approx(2.0, abs=0.2)
        gains = [s for s in result["segments"] if s["chrom"] == "chr8" and s["start"] < 60_000_000 < s["end"]]
        assert gains and gains[0]["event"] == "gain"


def test_genome_doubled_tumour_read_as_doubled(lab):
    """A doubled genome with two one-copy (odd) and two two-copy (even) changes. Read as diploid
    at TF 0.18, its odd changes would need subclonal states in exactly half of the tumour cells."""
    import dataclasses

    model, panel = lab
    [design] = design_cohort("cancer", 1, 10_000_000, seed=5)
    events = [
        {
            "type": "cnv",
            "origin": "tumour",
            "chrom": c,
            "start": s,
            "end": e,
            "tumour_cn": cn,
            "clonal_fraction": 1.0,
            "name": n,
        }
        for c, s, e, cn, n in (
            ("chr5", 0, 48_000_000, 5, "5p gain"),
            ("chr4", 0, 190_000_000, 2, "4 loss"),
            ("chr18", 18_000_000, 80_000_000, 3, "18q loss"),
            ("chr6", 0, 59_000_000, 6, "6p gain"),
        )
    ]
    case = dataclasses.replace(design, tumor_fraction=0.10, tumor_genome_doubled=True, events=events, sample="doubled")
    result = analyse(simulate_counts(case, model, 5, 2), model.annotation(), panel)
    assert result["tumor_detected"]
    assert result["ploidy"] == pytest.approx(4.0, abs=0.3)
    assert abs(result["tumor_fraction"] - 0.10) <= 0.02
    clonal = {
        s["chrom"]: s["copy_number"]
        for s in result["segments"]
        if s["bins"] > 30 and s["event"] != "neutral" and not s["subclonal"]
    }
    assert clonal == {"chr4": 2, "chr5": 5, "chr6": 6, "chr18": 3}


def test_state_changes_have_the_same_make_up_for_every_baseline():
    baselines = np.array([2.0, 3.0, 4.0])
    weights = jump_weights(baselines)
    initial = initial_weights(weights, baselines)
    for rows in (weights, initial):
        np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    clonal = {int(b): dict(zip(CLONAL_STATES, row)) for b, row in zip(baselines, weights)}
    # Same return share; after doubling one- and two-copy changes are equally likely, each half a diploid change.
    assert clonal[2][2] == clonal[3][3] == clonal[4][4]
    after_doubling = [clonal[4][copies] for copies in (2, 3, 5, 6)]
    np.testing.assert_allclose(after_doubling, after_doubling[0])
    assert after_doubling[0] == pytest.approx(clonal[2][3] / 2, rel=0.02)
    assert clonal[4][7] < after_doubling[0] / 10
    assert initial[0, CLONAL_STATES.index(2)] == initial[2, CLONAL_STATES.index(4)]
    # Subclonal changes take the same near steps: one copy from a diploid genome, one or two after
    # doubling (each half as likely), with the same total weight per direction.
    subclonal = {int(b): dict(zip(SUBCLONAL, row[len(CLONAL_STATES) :])) for b, row in zip(baselines, weights)}
    share = SUBCLONE_FRACTIONS[3]
    assert subclonal[4][(1, share)] == pytest.approx(subclonal[4][(2, share)])
    assert subclonal[4][(-2, share)] == pytest.approx(subclonal[2][(-1, share)] / 2, rel=0.02)
    assert subclonal[2][(2, share)] < subclonal[2][(1, share)] / 10
    assert sum(subclonal[2].values()) == pytest.approx(sum(subclonal[4].values()), rel=0.02)


def test_panel_round_trip_and_bad_input(lab, tmp_path, run_cli):
    model, panel = lab
    panel.save(tmp_path / "pon.npz")
    again = NormalPanel.load(tmp_path / "pon.npz", model.layout)
    np.testing.assert_array_equal(np.nan_to_num(again.median), np.nan_to_num(panel.median))
    assert again.components.shape == panel.components.shape
    [design] = design_cohort("healthy", 1, 10_000_000, seed=9)
    simulate_counts(design, model, 9, 0).save(tmp_path / "s.npz")
    model.annotation().save(tmp_path / "bins.npz")
    other = GenomeModel.hg38_layout(500_000, seed=8)
    build_panel(
        [simulate_counts(d, other, 9, i) for i, d in enumerate(design_cohort("healthy", 4, 1_000_000, seed=9))],
        other.annotation(),
    ).save(tmp_path / "pon500.npz")
    result = run_cli(
        "tumor",
        tmp_path / "s.npz",
        "--bins",
        tmp_path / "bins.npz",
        "--panel",
        tmp_path / "pon500.npz",
        "-o",
        tmp_path / "o",
    )
    assert result.exit_code == 1 and "bp bins" in result.stderr
    result = run_cli(
        "tumor", tmp_path / "s.npz", "--bins", tmp_path / "bins.npz", "--make-panel", "-o", tmp_path / "one.npz"
    )
    assert result.exit_code == 2 and "at least 3" in result.stderr
    result = run_cli(
        "tumor", tmp_path / "s.npz", "--bins", tmp_path / "bins.npz", "--size-select", "-o", tmp_path / "o2"
    )
    assert result.exit_code == 2 and "paired-end" in result.stderr


def test_real_healthy_donors_each_against_the_other_26(shared_data):
    """ichorCNA's 27 REAL healthy-donor plasma profiles (HD_ULP, hg19, 1 Mb), each fitted against
    a panel of the other 26 (`NormalPanel.null_fits`). Target (issue 12): no tumour call, upper
    bound <= 3 % for at least 26 (LUCAS non-cancer ichorCNA: median 0.68 %, maximum 2.23 %)."""
    data = shared_data / "ichorcna"
    layout = import_wig(data / "MBC_315.ctDNA.reads.wig").layout
    panel = NormalPanel.load(data / "HD_ULP_PoN_1Mb_median_normAutosome_mapScoreFiltered_median.tsv.gz", layout)
    assert panel.donors.shape == (27, layout.n_bins) and panel.samples[0] == "HD1.ctDNA.QC.FC16207543"
    null = panel.null_fits()
    assert len(null) == 27 and all(fit["gain"] < 10 for fit in null)
    bounds = np.array([fit["upper"] for fit in null])
    assert (bounds <= 0.03).sum() >= 26 and np.median(bounds) < 0.015 and np.all(bounds > 0)


def test_mbc315_at_3_mb_bins_is_not_read_as_tetraploid(shared_data):
    """ichorCNA users see MBC_315 jump to a tetraploid reading at coarse bins (its issue #42)."""
    from plasmacount.counts import SampleCounts

    data = shared_data / "ichorcna"
    annotation = import_annotations([data / "gc_hg19_1000kb.wig", data / "map_hg19_1000kb.wig"])
    sample = import_wig(data / "MBC_315.ctDNA.reads.wig")
    coarse = sample.merged(3)
    result = analyse(coarse, annotation.merged(3), None)
    assert result["tumor_detected"] and 0.18 <= result["tumor_fraction"] <= 0.34 and 1.7 <= result["ploidy"] <= 2.3
    assert isinstance(coarse, SampleCounts)


def test_intervals_are_never_zero_wide(lab):
    from plasmacount.tumor import posterior_quantiles

    x = np.array([0.2, 0.2005, 0.201, 0.25])
    low, high = posterior_quantiles(x, np.array([-1e4, 0.0, -1e4, -1e5]), (0.025, 0.975))
    assert 0.2 < low < 0.2005 < high < 0.201
    model, panel = lab
    for index, design in enumerate(design_cohort("cancer", 8, 10_000_000, seed=12)):
        result = analyse(simulate_counts(design, model, 12, index), model.annotation(), panel)
        assert result["tumor_fraction_high"] > result["tumor_fraction_low"]
        if result["tumor_detected"]:
            assert result["tumor_fraction_low"] < result["tumor_fraction"] < result["tumor_fraction_high"]
            assert sum(s["probability"] for s in result["solutions"]) == pytest.approx(1.0)
            [chosen] = [s for s in result["solutions"] if s["chosen"]]
            assert chosen["baseline_copy_number"] == result["baseline_copy_number"] and chosen[
                "tumor_fraction"
            ] == pytest.approx(result["tumor_fraction"], abs=1e-4)


def test_sex_and_chrX_of_women_and_men(lab):
    """chrX is judged on its own level: a woman's two copies are not a gain against a panel of men and women."""
    import dataclasses

    model, panel = lab
    [design] = design_cohort("healthy", 1, 10_000_000, seed=14)
    for sex in ("female", "male"):
        result = analyse(
            simulate_counts(dataclasses.replace(design, sex=sex, sample=sex), model, 14, 0), model.annotation(), panel
        )
        profile = result["profile"]
        on_x = np.array([name == "chrX" for name in profile.chrom]) & np.isfinite(profile.value)
        assert result["sex"] == sex and abs(float(np.median(profile.value[on_x]))) < 0.05
        assert result["chrX_median_log2"] == pytest.approx(0.0 if sex == "female" else -1.0, abs=0.25)
        assert not result["tumor_detected"]


def test_centromeres_are_masked_and_a_homozygous_deletion_has_copy_number_zero(lab):
    import dataclasses

    from plasmacount.genome import centromere_bins

    model, panel = lab
    [design] = design_cohort("cancer", 1, 10_000_000, seed=15)
    events = [
        {
            "type": "cnv",
            "origin": "tumour",
            "chrom": "chr9",
            "start": 70_000_000,
            "end": 90_000_000,
            "tumour_cn": 0,
            "clonal_fraction": 1.0,
            "name": "9q deletion of both copies",
        },
        {
            "type": "cnv",
            "origin": "tumour",
            "chrom": "chr8",
            "start": 46_000_000,
            "end": 145_000_000,
            "tumour_cn": 3,
            "clonal_fraction": 1.0,
            "name": "8q gain",
        },
    ]
    case = dataclasses.replace(design, tumor_fraction=0.5, tumor_genome_doubled=False, events=events, sample="homd")
    result = analyse(simulate_counts(case, model, 15, 0), model.annotation(), panel)
    assert result["tumor_detected"] and result["bins_masked_centromere"] > 0
    assert np.all(np.isnan(result["profile"].value[centromere_bins(model.layout)]))
    zero = [s for s in result["segments"] if s["chrom"] == "chr9" and s["copy_number"] == 0]
    assert zero and sum(s["bins"] for s in zero) >= 15


def test_degrees_of_freedom_follow_the_tails_of_the_noise():
    """Gaussian noise fits near the top of the range, Student-t noise with 3 degrees of freedom
    near 3 (checked against scipy's own t fit of the same differences), constant data at the
    heaviest tail allowed."""
    from scipy import stats

    from plasmacount.tumor import DEGREES_OF_FREEDOM_RANGE, tail_degrees_of_freedom

    rng = np.random.default_rng(5)
    breaks = np.zeros(3000, dtype=bool)
    breaks[::300] = True
    wide = (2.1, 30.0)
    assert tail_degrees_of_freedom(rng.normal(0, 0.1, 3000), breaks, wide) > 15
    assert tail_degrees_of_freedom(rng.normal(0, 0.1, 3000), breaks) == pytest.approx(
        DEGREES_OF_FREEDOM_RANGE[1], abs=0.01
    )
    heavy = rng.standard_t(3, 3000) * 0.1
    nu = tail_degrees_of_freedom(heavy, breaks, wide)
    differences = np.diff(heavy)[~breaks[1:]] / np.sqrt(2)
    reference, _, _ = stats.t.fit(differences, floc=0)
    assert abs(nu - reference) < 0.05 * reference and 2.5 < nu < 6
    assert tail_degrees_of_freedom(np.zeros(3000), breaks) == DEGREES_OF_FREEDOM_RANGE[0]
