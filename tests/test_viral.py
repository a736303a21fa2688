"""The EBV screen: amounts with exact intervals, size ratio, two-criterion result, training, bad input."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pysam
import pytest

from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError
from plasmacount.genome import Layout
from plasmacount.simulation import GenomeModel, design_cohort, simulate_counts, write_bam
from plasmacount.synthetic_genome import make_genome
from plasmacount.viral import EBV_W_REPEAT, ScreenCutoffs, from_alignments, from_counts, poisson_interval


@pytest.fixture(scope="module")
def model():
    return GenomeModel.hg38_layout(1_000_000, seed=3)


def ebv_sample(model, status, expected, paired=True, index=0):
    [design] = design_cohort("ebv", 1, 10_000_000, seed=100 + index, paired=paired)
    design = dataclasses.replace(design, ebv_status=status, ebv_fragments_expected=expected, sample=f"{status}_{index}")
    return simulate_counts(design, model, 100 + index, index)


def test_npc_carrier_and_negative(model):
    npc = from_counts(ebv_sample(model, "npc", 400, index=1), None, ScreenCutoffs(), "npc")
    assert npc["virus"] == "chrEBV" and npc["fragments"]["unique"] > 300
    assert npc["screen"]["result"] == "positive" and npc["size"]["evaluable"] and npc["size"]["ratio"] < 3
    assert npc["proportion"]["low"] < npc["proportion"]["value"] < npc["proportion"]["high"]
    carrier = from_counts(ebv_sample(model, "carrier", 25, index=2), None, ScreenCutoffs(), "carrier")
    assert carrier["screen"]["count_criterion"] and carrier["screen"]["result"] == "negative"
    assert carrier["size"]["ratio"] > 10
    nothing = from_counts(ebv_sample(model, "negative", 0, index=3), None, ScreenCutoffs(), "none")
    assert nothing["fragments"]["unique"] == 0 and nothing["screen"]["result"] == "negative"
    assert nothing["fragments"]["high"] == pytest.approx(3.689, abs=0.001)  # exact Poisson upper bound for 0


def test_poisson_interval_is_exact():
    from scipy import stats

    low, high = poisson_interval(10)
    assert stats.poisson.cdf(10, high) == pytest.approx(0.025, abs=1e-6)
    assert stats.poisson.sf(9, low) == pytest.approx(0.025, abs=1e-6)


def test_single_end_uses_the_count_only(model):
    result = from_counts(ebv_sample(model, "npc", 400, paired=False, index=4), None, ScreenCutoffs(), "se")
    assert result["screen"]["result"] == "positive" and "single-end" in result["screen"]["reason"]
    assert result["size"]["ratio"] is None and "single-end" in result["size"]["reason"]


def test_no_viral_contig_names_what_is_there(run_cli, tmp_path):
    layout = Layout.from_lengths([("chr1", 1_000_000)], 100_000)
    counts = SampleCounts(sample="x", layout=layout, counts=np.ones(layout.n_bins, dtype=np.int64),
                          other_contigs=[{"name": "chrM", "length": 16569}, {"name": "chrUn_1", "length": 5000}])
    with pytest.raises(DataError, match="chrM, chrUn_1"):
        from_counts(counts, None, ScreenCutoffs(), "x.npz")
    counts.save(tmp_path / "x.npz")
    result = run_cli("viral", tmp_path / "x.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "chrM" in result.stderr and not (tmp_path / "out" / "viral.tsv").exists()
    result = run_cli("viral", tmp_path / "x.npz", "-o", tmp_path / "out", "--virus", "HPV16")
    assert result.exit_code == 1 and "HPV16" in result.stderr


def test_training_and_reuse(model, tmp_path, run_cli):
    samples = [ebv_sample(model, status, expected, index=10 + i) for i, (status, expected) in
               enumerate([("npc", 60), ("npc", 900), ("carrier", 20), ("negative", 0), ("carrier", 12), ("npc", 15)])]
    paths = []
    for sample in samples:
        path = tmp_path / f"{sample.sample}.counts.npz"
        sample.save(path)
        paths.append(path)
    labels = tmp_path / "labels.tsv"
    labels.write_text("sample\tlabel\n" + "".join(f"{s.sample}\t{s.sample.split('_')[0]}\n" for s in samples))
    assert run_cli("viral", *paths, "-o", tmp_path / "train", "--train", labels).exit_code == 0
    cutoffs = json.loads((tmp_path / "train" / "viral_cutoffs.json").read_text())
    assert "learnt from 3 labelled NPC" in cutoffs["source"]
    for sample in samples:
        result = json.loads((tmp_path / "train" / f"{sample.sample}.viral.json").read_text())
        assert (result["screen"]["result"] == "positive") == sample.sample.startswith("npc")
    assert run_cli("viral", *paths, "-o", tmp_path / "again", "--cutoffs", tmp_path / "train" / "viral_cutoffs.json").exit_code == 0
    assert (tmp_path / "again" / "viral.tsv").read_text() == (tmp_path / "train" / "viral.tsv").read_text()
    assert run_cli("viral", *paths, "-o", tmp_path / "x", "--cutoffs", labels, "--train", labels).exit_code == 2


def test_alignments_count_the_w_repeat_apart(tmp_path):
    genome = make_genome(1 / 1000, seed=2)
    model = GenomeModel.from_synthetic(genome, 2)
    [design] = design_cohort("ebv", 1, 100_000, seed=9, paired=True)
    design = dataclasses.replace(design, ebv_status="npc", ebv_fragments_expected=600, sample="npc_bam")
    contigs = list(zip(genome.names, genome.lengths))
    bam = tmp_path / "npc.bam"
    write_bam(bam, design, model, genome, contigs, 9, 0)
    pysam.index(str(bam))
    result = from_alignments(bam, None, ScreenCutoffs(), min_mapq=30)
    unique = w_repeat = 0
    with pysam.AlignmentFile(str(bam)) as alignments:
        for read in alignments.fetch("chrEBV"):
            if read.is_secondary or read.is_supplementary or read.is_qcfail or read.is_duplicate or not read.is_proper_pair:
                continue
            if read.reference_start > read.next_reference_start or (read.reference_start == read.next_reference_start and not read.is_read1):
                continue
            if EBV_W_REPEAT[0] <= read.reference_start < EBV_W_REPEAT[1]:
                w_repeat += 1
            elif read.mapping_quality >= 30:
                unique += 1
    assert result["fragments"]["unique"] == unique > 300
    assert result["fragments"]["w_repeat"] == w_repeat > 0
    assert result["screen"]["result"] == "positive"
