"""The EBV screen: amounts with exact intervals, size ratio, two-criterion result, training, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pysam
import pytest
from independent import faces_its_mate

from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError
from plasmacount.genome import Layout
from plasmacount.simulation import GenomeModel, design_cohort, simulate_counts, write_bam
from plasmacount.synthetic_genome import make_genome
from plasmacount.viral import EBV_W_REPEAT, ScreenModel, from_alignments, from_counts, poisson_interval


@pytest.fixture(scope="module")
def model():
    return GenomeModel.hg38_layout(1_000_000, seed=3)


def ebv_sample(model, status, expected, paired=True, index=0):
    [design] = design_cohort("ebv", 1, 10_000_000, seed=100 + index, paired=paired)
    design = dataclasses.replace(design, ebv_status=status, ebv_fragments_expected=expected, sample=f"{status}_{index}")
    return simulate_counts(design, model, 100 + index, index)


def test_npc_carrier_and_negative(model):
    npc = from_counts(ebv_sample(model, "npc", 400, index=1), None, ScreenModel(), "npc")
    assert npc["virus"] == "chrEBV" and npc["fragments"]["unique"] > 300
    assert npc["screen"]["result"] == "positive" and npc["size"]["evaluable"] and npc["size"]["ratio"] < 3
    assert npc["proportion"]["low"] < npc["proportion"]["value"] < npc["proportion"]["high"]
    carrier = from_counts(ebv_sample(model, "carrier", 25, index=2), None, ScreenModel(), "carrier")
    assert carrier["screen"]["count_criterion"] and carrier["screen"]["result"] == "negative"
    assert carrier["size"]["ratio"] > 10
    nothing = from_counts(ebv_sample(model, "negative", 0, index=3), None, ScreenModel(), "none")
    assert nothing["fragments"]["unique"] == 0 and nothing["screen"]["result"] == "negative"
    assert nothing["fragments"]["high"] == pytest.approx(3.689, abs=0.001)  # exact Poisson upper bound for 0


def test_poisson_interval_is_exact():
    from scipy import stats

    low, high = poisson_interval(10)
    assert stats.poisson.cdf(10, high) == pytest.approx(0.025, abs=1e-6)
    assert stats.poisson.sf(9, low) == pytest.approx(0.025, abs=1e-6)


def test_single_end_uses_the_count_only(model):
    result = from_counts(ebv_sample(model, "npc", 400, paired=False, index=4), None, ScreenModel(), "se")
    assert result["screen"]["result"] == "positive" and "single-end" in result["screen"]["reason"]
    assert result["size"]["ratio"] is None and "single-end" in result["size"]["reason"]


def test_no_viral_contig_names_what_is_there(run_cli, tmp_path):
    layout = Layout.from_lengths([("chr1", 1_000_000)], 100_000)
    counts = SampleCounts(
        sample="x",
        layout=layout,
        counts=np.ones(layout.n_bins, dtype=np.int64),
        other_contigs=[{"name": "chrM", "length": 16569}, {"name": "chrUn_1", "length": 5000}],
    )
    with pytest.raises(DataError, match="chrM, chrUn_1"):
        from_counts(counts, None, ScreenModel(), "x.npz")
    counts.save(tmp_path / "x.npz")
    result = run_cli("viral", tmp_path / "x.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "chrM" in result.stderr and not (tmp_path / "out" / "viral.tsv").exists()
    result = run_cli("viral", tmp_path / "x.npz", "-o", tmp_path / "out", "--virus", "HPV16")
    assert result.exit_code == 1 and "HPV16" in result.stderr


def test_training_and_reuse(model, tmp_path, run_cli):
    samples = [
        ebv_sample(model, status, expected, index=10 + i)
        for i, (status, expected) in enumerate(
            [("npc", 60), ("npc", 900), ("carrier", 20), ("negative", 0), ("carrier", 12), ("npc", 15)]
        )
    ]
    paths = []
    for sample in samples:
        path = tmp_path / f"{sample.sample}.counts.npz"
        sample.save(path)
        paths.append(path)
    labels = tmp_path / "labels.tsv"
    labels.write_text("sample\tlabel\n" + "".join(f"{s.sample}\t{s.sample.split('_')[0]}\n" for s in samples))
    assert run_cli("viral", *paths, "-o", tmp_path / "train", "--train", labels).exit_code == 0
    learnt = json.loads((tmp_path / "train" / "viral_model.json").read_text())
    assert (
        "learnt from 3 labelled NPC" in learnt["source"] and learnt["specificity"] == 0.95 and learnt["threshold"] >= 0
    )
    for sample in samples:
        result = json.loads((tmp_path / "train" / f"{sample.sample}.viral.json").read_text())
        assert (result["screen"]["result"] == "positive") == sample.sample.startswith("npc")
    assert (
        run_cli("viral", *paths, "-o", tmp_path / "again", "--model", tmp_path / "train" / "viral_model.json").exit_code
        == 0
    )
    assert (tmp_path / "again" / "viral.tsv").read_text() == (tmp_path / "train" / "viral.tsv").read_text()
    assert run_cli("viral", *paths, "-o", tmp_path / "x", "--model", labels, "--train", labels).exit_code == 2


def test_alignments_count_the_w_repeat_apart(tmp_path):
    genome = make_genome(1 / 1000, seed=2)
    model = GenomeModel.from_synthetic(genome, 2)
    [design] = design_cohort("ebv", 1, 100_000, seed=9, paired=True)
    design = dataclasses.replace(design, ebv_status="npc", ebv_fragments_expected=600, sample="npc_bam")
    contigs = list(zip(genome.names, genome.lengths))
    bam = tmp_path / "npc.bam"
    write_bam(bam, design, model, genome, contigs, 9, 0)
    pysam.index(str(bam))
    result = from_alignments(bam, None, ScreenModel(), min_mapq=30)
    unique = w_repeat = 0
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch("chrEBV"):
            if (
                read.is_secondary
                or read.is_supplementary
                or read.is_qcfail
                or read.is_duplicate
                or read.mate_is_unmapped
            ):
                continue
            if read.next_reference_id != read.reference_id or not (read.is_proper_pair or faces_its_mate(read, 5000)):
                continue
            if (
                read.is_reverse
                if read.is_reverse != read.mate_is_reverse
                else (
                    read.reference_start > read.next_reference_start
                    or (read.reference_start == read.next_reference_start and not read.is_read1)
                )
            ):
                continue
            if EBV_W_REPEAT[0] <= read.reference_start < EBV_W_REPEAT[1]:
                w_repeat += 1
            elif read.mapping_quality >= 30:
                unique += 1
    assert result["fragments"]["unique"] == unique > 300
    assert result["fragments"]["w_repeat"] == w_repeat > 0
    assert result["screen"]["result"] == "positive"


def test_a_size_ratio_from_a_few_fragments_weighs_little():
    from plasmacount.viral import size_log_likelihood_ratio

    model = ScreenModel()
    few = size_log_likelihood_ratio(3, 3, 0.06, model)  # all 3 short: a ratio of 17, yet modest evidence
    many = size_log_likelihood_ratio(100, 300, 0.06, model)  # a third short of 300: clearly carrier-like
    npc_like = size_log_likelihood_ratio(18, 300, 0.06, model)  # the host's share: clearly NPC-like
    assert -4 < few < 0 and many < -10 and npc_like > 3 and abs(size_log_likelihood_ratio(1, 3, 0.06, model)) < 1


def test_default_line_is_the_published_ppv_at_the_published_prevalence():
    import math

    from plasmacount.viral import PUBLISHED_PPV, SCREENING_PREVALENCE

    model = ScreenModel()
    posterior_odds = math.exp(model.threshold) * SCREENING_PREVALENCE / (1 - SCREENING_PREVALENCE)
    assert posterior_odds / (1 + posterior_odds) == pytest.approx(PUBLISHED_PPV)


def test_not_evaluable_is_not_negative_and_a_retest_decides(model, tmp_path, run_cli):
    from plasmacount.viral import apply_retest, apply_screen

    npc = from_counts(ebv_sample(model, "npc", 400, index=20), None, ScreenModel(), "npc")
    # Two viral fragments at an NPC-like amount (a shallow library): the size cannot be judged.
    shallow = json.loads(json.dumps(npc))
    shallow["fragments"].update(unique=2, total_mapped=150_000)
    shallow["size"].update(viral_fragments_with_length=2, viral_fragments_80_110=0)
    assert apply_screen(shallow, ScreenModel())["screen"]["result"] == "not evaluable"
    carrier = from_counts(ebv_sample(model, "carrier", 25, index=21), None, ScreenModel(), "carrier")
    assert apply_retest(json.loads(json.dumps(npc)), npc)["screen"]["reason"] == "persistently positive (both draws)"
    transient = apply_retest(json.loads(json.dumps(carrier)), npc)["screen"]
    assert (
        transient["result"] == "negative"
        and transient["reason"].startswith("transient")
        and transient["retest"]["previous_result"] == "positive"
    )
    # Through the command line: the first draw's results as --previous.
    ebv_sample(model, "npc", 400, index=20).save(tmp_path / "npc_20.counts.npz")
    assert run_cli("viral", tmp_path / "npc_20.counts.npz", "-o", tmp_path / "first").exit_code == 0
    result = run_cli(
        "viral",
        tmp_path / "npc_20.counts.npz",
        "-o",
        tmp_path / "second",
        "--previous",
        tmp_path / "first" / "npc_20.viral.json",
    )
    assert result.exit_code == 0
    second = json.loads((tmp_path / "second" / "npc_20.viral.json").read_text())
    assert second["screen"]["result"] == "positive" and second["screen"]["retest"]["previous_result"] == "positive"
    result = run_cli(
        "viral", tmp_path / "npc_20.counts.npz", "-o", tmp_path / "third", "--previous", tmp_path / "npc_20.counts.npz"
    )
    assert result.exit_code == 1 and "not a <sample>.viral.json" in result.stderr


def test_a_learnt_size_model_weighs_every_fragment_length(tmp_path):
    """With window ratios (learnt), 20 viral fragments mostly nucleosome-sized are NPC-like
    evidence although only one of them is in 80-110 bp; 20 with a carrier's spread of lengths are
    carrier-like; the model file keeps the ratios, and a file with the wrong number is refused."""
    from plasmacount.viral import SIZE_WINDOWS, load_model, window_size_log_likelihood_ratio

    host = np.array([0.01, 0.06, 0.15, 0.78])
    model = dataclasses.replace(
        ScreenModel(), npc_window_ratios=(0.1, 0.3, 1.0, 1.08), carrier_window_ratios=(8.0, 5.5, 1.6, 0.4)
    )
    npc_like = window_size_log_likelihood_ratio(np.array([0, 1, 3, 16]), host, model)
    carrier_like = window_size_log_likelihood_ratio(np.array([2, 7, 5, 6]), host, model)
    assert npc_like > 4 and carrier_like < -4
    assert size_log_likelihood_ratio_for(1, 20) < npc_like  # Lam's window alone sees far less in the same fragments
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model.to_json()))
    assert load_model(path) == model
    path.write_text(json.dumps({**model.to_json(), "npc_window_ratios": [1.0] * (len(SIZE_WINDOWS) - 1)}))
    with pytest.raises(DataError, match="npc_window_ratios"):
        load_model(path)


def size_log_likelihood_ratio_for(short: int, with_length: int) -> float:
    from plasmacount.viral import size_log_likelihood_ratio

    return size_log_likelihood_ratio(short, with_length, 0.06, ScreenModel())


def test_each_class_spread_is_learnt_by_maximum_likelihood():
    """The Dirichlet-multinomial matches scipy's (up to the multinomial coefficient, the same for
    both classes), and the concentration fitted to 300 people drawn at 30 comes back near 30."""
    from scipy import special, stats

    from plasmacount.viral import _log_dirichlet_multinomial, _window_alpha, _window_concentration

    host, ratios = np.array([0.01, 0.06, 0.15, 0.78]), (2.0, 2.0, 1.0, 0.8)
    counts, alpha = np.array([1, 4, 9, 26]), np.array([0.4, 2.5, 3.0, 12.0])
    coefficient = special.gammaln(counts.sum() + 1) - special.gammaln(counts + 1).sum()
    assert _log_dirichlet_multinomial(counts, alpha) + coefficient == pytest.approx(
        stats.dirichlet_multinomial.logpmf(counts, alpha, counts.sum()), abs=1e-9
    )
    rng = np.random.default_rng(8)
    shape = _window_alpha(host, ratios, 1.0)
    people = [
        {
            "paired": True,
            "size": {
                "viral_fragments_by_window": rng.multinomial(40, rng.dirichlet(30 * shape)).tolist(),
                "autosomal_share_by_window": host.tolist(),
                "viral_fragments_with_length": 40,
            },
        }
        for _ in range(300)
    ]
    assert 22 < _window_concentration(people, ratios) < 40
    assert _window_concentration(people[:2], ratios) is None


def test_the_learnt_line_comes_from_carriers_left_out(model, tmp_path):
    """With enough labelled NPC the line is set on out-of-fold scores, and the model file keeps
    both classes' learnt spreads and amount distributions (checked on load)."""
    from plasmacount.viral import learn_model, load_model

    designs = design_cohort("ebv", 160, 10_000_000, seed=31, paired=True)
    results = [
        from_counts(simulate_counts(d, model, 500 + i, i), None, ScreenModel(), d.sample) for i, d in enumerate(designs)
    ]
    labels = {d.sample: d.ebv_status for d in designs}
    learnt = learn_model(results, labels, 0.9)
    assert "out-of-fold scores, 5 folds" in learnt.source and learnt.threshold >= 0
    assert learnt.npc_size_concentration and learnt.carrier_size_concentration
    assert learnt.npc_size_concentration != learnt.carrier_size_concentration
    assert len(learnt.carrier_amount_weights) == len(learnt.npc_amount_weights) == 321
    path = tmp_path / "viral_model.json"
    path.write_text(json.dumps(learnt.to_json()))
    assert load_model(path) == learnt
    path.write_text(json.dumps({**learnt.to_json(), "carrier_amount_weights": [-1.0] * 321}))
    with pytest.raises(DataError, match="carrier_amount_weights"):
        load_model(path)


def test_the_line_shows_the_stated_specificity_with_confidence():
    """Out of 200 carrier scores, the line lets through the most carriers k whose Clopper-Pearson
    upper bound (one-sided, SPECIFICITY_CONFIDENCE) stays within 1 - specificity: k + 1 would
    not. With too few carriers to show it, the line sits above all of them and says so."""
    from scipy import stats

    from plasmacount.viral import SPECIFICITY_CONFIDENCE, specificity_line

    scores = np.random.default_rng(5).normal(-3, 2, 200)
    line, reached = specificity_line(scores, 0.95)
    k = int((scores >= line).sum())
    assert reached and 0 < k < 10  # the plain 95 % quantile would let 10 through
    assert (
        stats.beta.ppf(SPECIFICITY_CONFIDENCE, k + 1, 200 - k)
        <= 0.05
        < stats.beta.ppf(SPECIFICITY_CONFIDENCE, k + 2, 200 - k - 1)
    )
    line, reached = specificity_line(scores[:30], 0.95)
    assert not reached and line > scores[:30].max()
    assert specificity_line(np.full(200, -5.0), 0.95) == (0.0, True)  # never below 0


def test_an_amount_distribution_is_learnt_without_a_shape():
    """Counts from two groups of people (30 % at 0.3 per million, 70 % at 30) give back a
    distribution with about 30 % of its mass below 3 per million, and the share of people with
    at most 5 viral fragments it predicts is the one observed."""
    from plasmacount.viral import AMOUNT_GRID, learn_amount_weights

    rng = np.random.default_rng(12)
    per_million = np.where(rng.random(600) < 0.3, 0.3, 30.0)
    totals = np.full(600, 10_000_000)
    counts = rng.poisson(per_million * totals / 1e6)
    weights = learn_amount_weights(counts, totals)
    assert weights.sum() == pytest.approx(1.0)
    assert 0.25 < weights[AMOUNT_GRID < np.log10(3.0)].sum() < 0.35
    from scipy import stats

    predicted = float((weights * stats.poisson.cdf(5, 10.0**AMOUNT_GRID * 10)).sum())
    # The smoothing widens each group a little, which costs a little at low counts.
    assert predicted == pytest.approx(float(np.mean(counts <= 5)), abs=0.03)
    assert predicted == pytest.approx(float(np.mean(per_million < 1)) * stats.poisson.cdf(5, 3.0), abs=0.03)
