"""The QC vocabulary: two-level limits, the rule that reasons decide a status, and the report's QC
table judging with the analysis's own limits."""

import math

import pytest

from plasmacount import nipt
from plasmacount.quality import FAIL, PASS, WARN, Findings, Limits
from plasmacount.report import SampleResults, qc_rows


def test_limits_judge_above_and_below_a_floor():
    ceiling = Limits(warn=1.6, fail=3.0)
    assert [ceiling.status(v) for v in (1.0, 1.6, 1.61, 3.0, 3.01)] == [PASS, PASS, WARN, WARN, FAIL]
    floor = Limits(warn=3_000_000, fail=500_000, floor=True)
    assert [floor.status(v) for v in (4e6, 3e6, 2.9e6, 5e5, 4.9e5)] == [PASS, PASS, WARN, WARN, FAIL]
    # A measurement that could not be made is not a QC failure of its own.
    assert ceiling.status(math.nan) == floor.status(math.nan) == PASS
    assert ceiling.expectation("1.6") == "<= 1.6" and floor.expectation("3M") == ">= 3M"


def test_a_fail_limit_inside_the_warn_limit_is_refused():
    with pytest.raises(ValueError, match="beyond the warn limit"):
        Limits(warn=3.0, fail=1.6)
    with pytest.raises(ValueError, match="beyond the warn limit"):
        Limits(warn=500_000, fail=3_000_000, floor=True)


def test_reasons_decide_the_status_failing_first():
    findings = Findings()
    assert findings.status == PASS and findings.reasons == []
    findings.check(2.0, Limits(warn=1.5, fail=2.5), "warned")
    findings.check(1.0, Limits(warn=1.5, fail=2.5), "not listed")
    assert findings.status == WARN
    findings.add(FAIL, "failed")
    assert findings.status == FAIL and findings.reasons == ["failed", "warned"]
    with pytest.raises(ValueError, match="unknown QC level"):
        findings.add("PASS", "capitals are not the vocabulary")


def _prenatal_entry(**qc) -> SampleResults:
    values = {
        "status": PASS,
        "reasons": [],
        "counted_reads": 10_000_000,
        "bin_variance_ratio": 1.0,
        "gc_residual": 0.01,
        "chr21_cv": 0.001,
        "chr21_poisson_cv": 0.001,
    } | qc
    return SampleResults("s", {"nipt": {"qc": values, "fetal_fraction": {"estimate": 0.1}}})


def _row_status(entry: SampleResults, check: str) -> str:
    return next(status for name, _, _, status in qc_rows(entry) if name == check)


@pytest.mark.parametrize(
    "check, field, limits",
    [
        ("bin variance vs Poisson", "bin_variance_ratio", nipt.BIN_VARIANCE_LIMITS),
        ("GC bias left after correction", "gc_residual", nipt.GC_RESIDUAL_LIMITS),
        ("counted fragments", "counted_reads", nipt.COUNTED_READS_LIMITS),
    ],
)
def test_the_report_table_judges_with_the_analysis_limits(check, field, limits):
    # Just inside and just beyond each of the analysis's limits, the table says what the analysis says.
    step = -1 if limits.floor else 1
    for limit, beyond in ((limits.warn, WARN), (limits.fail, FAIL)):
        assert _row_status(_prenatal_entry(**{field: limit}), check) != beyond
        assert _row_status(_prenatal_entry(**{field: limit + step * 1e-6 * max(1.0, abs(limit))}), check) == beyond


def test_the_report_table_judges_chr21_cv_against_its_counting_limit():
    limits = nipt.CHR21_CV_EXCESS_LIMITS
    assert _row_status(_prenatal_entry(chr21_cv=0.001 * (limits.warn + 0.1)), "chr21 CV") == WARN
    assert _row_status(_prenatal_entry(chr21_cv=0.001 * (limits.fail + 0.1)), "chr21 CV") == FAIL
    assert _row_status(_prenatal_entry(), "chr21 CV") == PASS
