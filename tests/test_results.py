"""The reading views of result JSON (results.py) against the JSON the analyses wrote."""

from __future__ import annotations

import json

import pytest

from plasmacount.quality import FAIL
from plasmacount.results import NO_CALL, POSITIVE, Call, NiptResult, TumorResult, ViralResult, read_results


def _written(folder, suffix):
    paths = sorted(folder.glob(f"*{suffix}"))
    assert paths, f"no {suffix} in {folder}"
    return [json.loads(path.read_text()) for path in paths]


def test_nipt_view_reads_what_nipt_wrote(demo_output):
    results = _written(demo_output / "nipt", ".nipt.json")
    positives_seen = 0
    for data in results:
        view = NiptResult(data)
        assert view.sample == data["sample"]
        assert view.failed == (data["qc"]["status"] == FAIL)
        assert view.fetal_fraction == data["fetal_fraction"]["estimate"]
        assert [c.event for c in view.calls] == [c["event"] for c in data["calls"]]
        for result in (POSITIVE, NO_CALL):
            assert [c.event for c in view.calls_with(result)] == [
                c["event"] for c in data["calls"] if c["result"] == result
            ]
        positives_seen += len(view.calls_with(POSITIVE))
        for cnv, raw in zip(view.copy_number_calls, data["cnvs"], strict=True):
            assert (cnv.chrom, cnv.start, cnv.end, cnv.kind, cnv.origin) == (
                raw["chrom"],
                raw["start"],
                raw["end"],
                raw["type"],
                raw["origin"],
            )
    # The demo batch holds trisomies: a view that never finds a positive would pass the loop above.
    assert positives_seen > 0
    assert NiptResult(results[0]).is_positive("no such event") is False


def test_tumor_and_viral_views_read_what_was_written(demo_output):
    for data in _written(demo_output / "tumor", ".tumor.json"):
        view = TumorResult(data)
        assert view.detected is data["tumor_detected"]
        assert view.interval == (data["tumor_fraction_low"], data["tumor_fraction_high"])
        assert len(view.altered_segments) == sum(s["event"] != "neutral" for s in data["segments"])
        for segment, raw in zip(view.segments, data["segments"], strict=True):
            assert (segment.chrom, segment.start, segment.end, segment.bins, segment.log2_ratio) == (
                raw["chrom"],
                raw["start"],
                raw["end"],
                raw["bins"],
                raw["log2_ratio"],
            )
            assert (segment.copy_number, segment.subclonal, segment.event) == (
                raw["copy_number"],
                raw["subclonal"],
                raw["event"],
            )
        assert [(s.baseline_copy_number, s.tumor_fraction, s.probability, s.chosen) for s in view.solutions] == [
            (s["baseline_copy_number"], s["tumor_fraction"], s["probability"], s["chosen"])
            for s in data.get("solutions", [])
        ]
        assert (view.bins_used, view.bin_size, view.noise_scale) == (
            data["bins_used"],
            data["bin_size"],
            data["noise_scale"],
        )
        assert view.panel_donors == data["panel_of_normals"]["samples"]
    screens = [ViralResult(data) for data in _written(demo_output / "viral", ".viral.json")]
    assert {v.screen_result for v in screens} >= {"positive", "negative"}
    assert all(v.positive == (v.data["screen"]["result"] == "positive") for v in screens)
    for v in screens:
        raw = v.data
        assert (v.viral_fragments, v.mapped_fragments, v.per_million) == (
            raw["fragments"]["unique"],
            raw["fragments"]["total_mapped"],
            raw["per_million"]["value"],
        )
        assert v.size_evaluable == raw["size"]["evaluable"]
        assert v.viral_size_histogram == raw["size"].get("viral_histogram_0_600")
    # Some tumours of the demo are detected with more than one reading: the solutions are read, not empty.
    assert any(TumorResult(d).solutions for d in _written(demo_output / "tumor", ".tumor.json"))


def test_nipt_qc_view_reads_every_measure(demo_output):
    for data in _written(demo_output / "nipt", ".nipt.json"):
        qc = NiptResult(data).qc
        for name in ("status", "counted_reads", "bin_variance_ratio", "chr21_cv", "chr21_poisson_cv", "gc_residual"):
            assert getattr(qc, name) == data["qc"].get(name), name
        assert list(qc.reasons) == list(data["qc"].get("reasons") or [])
    assert any(NiptResult(d).qc.counted_reads for d in _written(demo_output / "nipt", ".nipt.json"))


def test_a_call_needs_its_event_and_result():
    with pytest.raises(KeyError):
        Call.from_json({"result": POSITIVE})
    call = Call.from_json({"event": "T21", "result": POSITIVE})
    assert (call.z, call.reason, call.note) == (None, None, None)


def test_read_results_gives_a_view_for_each_analysis_present():
    assert read_results({}) == (None, None, None)
    nipt, tumor, viral = read_results({"nipt": {"sample": "a"}, "viral": {"sample": "a"}})
    assert isinstance(nipt, NiptResult) and isinstance(viral, ViralResult) and tumor is None


def test_fragments_view_reads_what_fragments_wrote(demo_output):
    from plasmacount.results import FragmentsResult

    for data in _written(demo_output / "fragments", ".fragments.json"):
        view = FragmentsResult(data)
        for name in ("fragments", "mode", "median", "mean", "share_below_150", "periodicity_amplitude"):
            assert getattr(view.size, name) == data["size"].get(name), name
        assert view.size.fragments and view.size.mode  # the demo's BAMs are paired-end: sizes are there
        assert view.motif_diversity == data["end_motifs"]["diversity"]
        assert [(m.motif, m.frequency) for m in view.top_motifs] == [
            (m["motif"], m["frequency"]) for m in data["end_motifs"]["top"]
        ]
        assert view.top_motifs and view.short_long_ratio == data["short_long_ratio"]["genome"]


def test_chromosome_arm_and_sex_chromosome_views(demo_output):
    from plasmacount.genome import name_key

    doses_seen = 0
    for data in _written(demo_output / "nipt", ".nipt.json"):
        view = NiptResult(data)
        assert list(view.chromosomes) == list(data.get("chromosomes") or {})
        for name, score in view.chromosomes.items():
            assert (score.z, score.ratio) == (data["chromosomes"][name]["z"], data["chromosomes"][name]["ratio"])
            assert view.z_of(name_key(name)) == score.z
        doses = view.sex_chromosome_doses
        if doses is not None:
            doses_seen += 1
            assert doses.x_change == data["sex_chromosomes"]["x_change"]
            assert doses.y_sd == data["sex_chromosomes"]["y_sd"]
    assert doses_seen > 0
    for data in _written(demo_output / "tumor", ".tumor.json"):
        arms = TumorResult(data).arms
        assert arms and list(arms) == list(data["arms"])
        assert all(
            arm.z == data["arms"][name]["z"] and arm.bins == data["arms"][name]["bins"] for name, arm in arms.items()
        )
