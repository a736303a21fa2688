"""Reading views of analysis results: what a written result JSON says, read in one place.

The analyses (`nipt`, `tumor`, `viral`) write plain JSON, and the report, the review app, the
demo and the CLI all read it back. They read it through these frozen views, so each question
("which calls are positive?", "did QC fail?", "what fetal fraction?") has one answer and a
field renamed in a writer is renamed here once. A view wraps the mapping it was read from
(`data`) for the parts that are shown as they are (figures, tables of segments).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from plasmacount.quality import FAIL

POSITIVE, NEGATIVE, NO_CALL = "positive", "negative", "no-call"


@dataclass(frozen=True)
class Call:
    """One prenatal finding's call: a trisomy or a sex-chromosome karyotype."""

    event: str
    result: str  # POSITIVE, NEGATIVE or NO_CALL
    z: float | None
    log_bayes_factor: float | None
    score: float | None  # a sex-chromosome karyotype's posterior
    reason: str | None  # why no call was made
    note: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Call:
        return cls(
            str(data["event"]),
            str(data["result"]),
            data.get("z"),
            data.get("log_bayes_factor"),
            data.get("score"),
            data.get("reason"),
            data.get("note"),
        )


@dataclass(frozen=True)
class CopyNumberCall:
    """A sub-chromosomal deletion or duplication called by `nipt`."""

    chrom: str
    start: int
    end: int
    size: int
    kind: str  # "deletion" or "duplication"
    copy_ratio: float
    z: float
    origin: str  # fetal, maternal or uncertain
    syndrome: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CopyNumberCall:
        return cls(
            str(data["chrom"]),
            int(data["start"]),
            int(data["end"]),
            int(data["size"]),
            str(data["type"]),
            float(data["copy_ratio"]),
            float(data["z"]),
            str(data["origin"]),
            data.get("syndrome"),
        )


@dataclass(frozen=True)
class _Result:
    """What every result has: the mapping read and the sample it is of."""

    data: Mapping[str, Any]

    @property
    def sample(self) -> str:
        return str(self.data["sample"])


@dataclass(frozen=True)
class NiptResult(_Result):
    """A prenatal test's result (`<sample>.nipt.json`)."""

    @property
    def qc_status(self) -> str:
        return str(self.data["qc"]["status"])

    @property
    def qc_reasons(self) -> list[str]:
        return list(self.data["qc"].get("reasons", []))

    @property
    def failed(self) -> bool:
        return self.qc_status == FAIL

    @property
    def fetal_sex(self) -> str:
        return str(self.data.get("fetal_sex", ""))

    @property
    def fetal_fraction(self) -> float | None:
        """The fetal fraction estimate (None when it is not determinable)."""
        return self.data["fetal_fraction"]["estimate"]

    @cached_property
    def calls(self) -> list[Call]:
        return [Call.from_json(c) for c in self.data["calls"]]

    def calls_with(self, result: str) -> list[Call]:
        return [c for c in self.calls if c.result == result]

    def is_positive(self, event: str) -> bool:
        return any(c.event == event and c.result == POSITIVE for c in self.calls)

    @cached_property
    def copy_number_calls(self) -> list[CopyNumberCall]:
        return [CopyNumberCall.from_json(c) for c in self.data["cnvs"]]


@dataclass(frozen=True)
class TumorResult(_Result):
    """A tumour-fraction result (`<sample>.tumor.json`)."""

    @property
    def detected(self) -> bool:
        return bool(self.data["tumor_detected"])

    @property
    def tumor_fraction(self) -> float:
        return float(self.data["tumor_fraction"])

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % interval (from 0 to a one-sided upper bound when no tumour DNA is detected)."""
        return float(self.data["tumor_fraction_low"]), float(self.data["tumor_fraction_high"])

    @property
    def ploidy(self) -> float:
        return float(self.data["ploidy"])

    @property
    def altered_segments(self) -> list[Mapping[str, Any]]:
        return [s for s in self.data["segments"] if s["event"] != "neutral"]

    @property
    def cna_score(self) -> int:
        """Lo's copy-number aberration score: the arms whose |z| exceeds tumor.CNA_ARM_Z."""
        return int(self.data["cna_score"])


@dataclass(frozen=True)
class ViralResult(_Result):
    """A viral DNA screen's result (`<sample>.viral.json`)."""

    @property
    def screen_result(self) -> str:
        """positive, negative or not evaluable."""
        return str(self.data["screen"]["result"])

    @property
    def positive(self) -> bool:
        return self.screen_result == POSITIVE

    @property
    def size_ratio(self) -> float | None:
        return self.data["size"]["ratio"]

    @property
    def virus(self) -> str:
        """The viral contig screened (chrEBV for the EBV screen)."""
        return str(self.data["virus"])


def read_results(results: Mapping[str, Any]) -> tuple[NiptResult | None, TumorResult | None, ViralResult | None]:
    """A sample's prenatal, tumour and viral results (keyed by analysis, as the report collects
    them and the review app stores them), each as its view, or None where the sample has none."""
    nipt, tumor, viral = (results.get(name) for name in ("nipt", "tumor", "viral"))
    return (
        NiptResult(nipt) if nipt else None,
        TumorResult(tumor) if tumor else None,
        ViralResult(viral) if viral else None,
    )
