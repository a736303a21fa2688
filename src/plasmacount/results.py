"""Reading views of analysis results: what a written result JSON says, read in one place.

The analyses (`nipt`, `tumor`, `viral`, `fragments`) write plain JSON, and the report, the review app, the
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
    minimum_fetal_fraction: float | None  # the lowest fetal fraction at which this test sees the finding

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
            data.get("minimum_fetal_fraction"),
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
    log2_ratio: float
    bins: int

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
            float(data["log2_ratio"]),
            int(data["bins"]),
        )


@dataclass(frozen=True)
class TumorSegment:
    """A run of bins in one copy-number state, from `tumor`'s HMM path."""

    chrom: str
    start: int
    end: int
    bins: int
    log2_ratio: float
    copy_number: float  # the tumour's copy number
    subclonal: bool
    event: str  # gain, loss or neutral, against the tumour's baseline

    @property
    def altered(self) -> bool:
        return self.event != "neutral"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TumorSegment:
        return cls(
            str(data["chrom"]),
            int(data["start"]),
            int(data["end"]),
            int(data["bins"]),
            float(data["log2_ratio"]),
            float(data["copy_number"]),
            bool(data["subclonal"]),
            str(data["event"]),
        )


@dataclass(frozen=True)
class TumorSolution:
    """One reading of a tumour's profile (a baseline copy number) with its posterior, as ichorCNA lists its solutions."""

    baseline_copy_number: int
    tumor_fraction: float
    probability: float
    chosen: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TumorSolution:
        return cls(
            int(data["baseline_copy_number"]),
            float(data["tumor_fraction"]),
            float(data["probability"]),
            bool(data.get("chosen")),
        )


@dataclass(frozen=True)
class ChromosomeScore:
    """One chromosome's z-score and ratio against the reference, as written (None where not finite)."""

    z: float | None
    ratio: float | None


@dataclass(frozen=True)
class ArmScore:
    """One chromosome arm's mean log2 ratio and z-score (Lo's genome-wide approach)."""

    bins: int
    mean_log2: float | None
    z: float | None


@dataclass(frozen=True)
class SexChromosomeDoses:
    """The X dosage change and the chrY dose as a fetal fraction, each with its SD."""

    x_change: float
    x_sd: float
    y_fetal_fraction: float
    y_sd: float
    best_karyotype: str | None  # the karyotype of the highest posterior


@dataclass(frozen=True)
class NiptQc:
    """A prenatal sample's QC: status, reasons and the measures they judge (None where not measured)."""

    status: str
    reasons: tuple[str, ...]
    counted_reads: int | None
    bin_variance_ratio: float | None
    chr21_cv: float | None
    chr21_poisson_cv: float | None
    gc_residual: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NiptQc:
        return cls(
            str(data["status"]),
            tuple(data.get("reasons") or ()),
            data.get("counted_reads"),
            data.get("bin_variance_ratio"),
            data.get("chr21_cv"),
            data.get("chr21_poisson_cv"),
            data.get("gc_residual"),
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

    @cached_property
    def qc(self) -> NiptQc:
        return NiptQc.from_json(self.data["qc"])

    @property
    def qc_status(self) -> str:
        return self.qc.status

    @property
    def qc_reasons(self) -> list[str]:
        return list(self.qc.reasons)

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

    @cached_property
    def chromosomes(self) -> dict[str, ChromosomeScore]:
        """Each chromosome's score by its name, in the order written (empty for a failed sample)."""
        return {
            name: ChromosomeScore(values.get("z"), values.get("ratio"))
            for name, values in (self.data.get("chromosomes") or {}).items()
        }

    def z_of(self, key: str) -> float | None:
        """The z of the chromosome whose key (genome.name_key) is `key`, if scored."""
        from plasmacount.genome import name_key

        return next((score.z for name, score in self.chromosomes.items() if name_key(name) == key), None)

    @property
    def sex_chromosome_doses(self) -> SexChromosomeDoses | None:
        """The X dosage and chrY dose the karyotypes are judged on (None where either is unknown)."""
        sexes = self.data.get("sex_chromosomes") or {}
        if sexes.get("x_change") is None or sexes.get("y_fetal_fraction") is None:
            return None
        return SexChromosomeDoses(
            sexes["x_change"], sexes["x_sd"], sexes["y_fetal_fraction"], sexes["y_sd"], sexes.get("best_karyotype")
        )


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

    @cached_property
    def segments(self) -> list[TumorSegment]:
        return [TumorSegment.from_json(s) for s in self.data["segments"]]

    @property
    def altered_segments(self) -> list[TumorSegment]:
        return [s for s in self.segments if s.altered]

    @cached_property
    def arms(self) -> dict[str, ArmScore]:
        """Each arm's score by its name ('1p'), in the order written."""
        return {
            name: ArmScore(int(values["bins"]), values.get("mean_log2"), values.get("z"))
            for name, values in (self.data.get("arms") or {}).items()
        }

    @property
    def panel_donors(self) -> int | None:
        """The healthy donors of the panel of normals it was judged against (None without one)."""
        panel = self.data.get("panel_of_normals") or {}
        return panel.get("samples") or None

    @property
    def bins_used(self) -> int:
        return int(self.data["bins_used"])

    @property
    def bin_size(self) -> int:
        return int(self.data["bin_size"])

    @property
    def noise_scale(self) -> float:
        """The emissions' fitted SD (natural-log copy ratio)."""
        return float(self.data["noise_scale"])

    @property
    def sex(self) -> str | None:
        """female or male, from the chrY reads (None where not inferred)."""
        return self.data.get("sex") or None

    @property
    def chrY_read_share(self) -> float | None:
        return self.data.get("chrY_read_share")

    @cached_property
    def solutions(self) -> list[TumorSolution]:
        """The readings of a detected tumour, most probable first (none when not detected)."""
        return [TumorSolution.from_json(s) for s in self.data.get("solutions", [])]

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
    def viral_fragments(self) -> int:
        """Unique viral fragments (outside the BamHI-W repeat with alignments)."""
        return int(self.data["fragments"]["unique"])

    @property
    def mapped_fragments(self) -> int:
        """All mapped fragments of the sample, the viral share's denominator."""
        return int(self.data["fragments"]["total_mapped"])

    @property
    def log_likelihood_ratio(self) -> float | None:
        """The screen's evidence, NPC : not NPC (amount and size added)."""
        return self.data["screen"].get("log_likelihood_ratio")

    @property
    def model_size_ratios(self) -> tuple[float | None, float | None]:
        """The screen model's NPC-like and carrier-like size ratios."""
        model = self.data["screen"].get("model") or {}
        return model.get("npc_size_ratio"), model.get("carrier_size_ratio")

    @property
    def viral_fragments_interval(self) -> tuple[float, float]:
        """The 95 % Poisson interval of the expected viral fragments."""
        return float(self.data["fragments"]["low"]), float(self.data["fragments"]["high"])

    @property
    def per_million(self) -> float:
        """Viral fragments per million mapped fragments."""
        return float(self.data["per_million"]["value"])

    @property
    def size_ratio_interval(self) -> tuple[float, float]:
        return float(self.data["size"]["low"]), float(self.data["size"]["high"])

    @property
    def size_reason(self) -> str | None:
        """Why the size is not evaluable."""
        return self.data["size"].get("reason")

    @property
    def size_evaluable(self) -> bool:
        """Whether enough viral fragments had a length to judge their sizes."""
        return bool(self.data["size"]["evaluable"])

    @property
    def viral_size_histogram(self) -> list[int] | None:
        """Viral fragments per length 0-600 bp (None where not kept)."""
        return self.data["size"].get("viral_histogram_0_600")

    @property
    def host_size_histogram(self) -> list[int] | None:
        """The host's autosomal fragments per length 0-600 bp, at the viral reads' MAPQ."""
        return self.data["size"].get("autosomal_histogram_0_600")

    @property
    def virus(self) -> str:
        """The viral contig screened (chrEBV for the EBV screen)."""
        return str(self.data["virus"])


@dataclass(frozen=True)
class FragmentSizes:
    """A sample's fragment-size statistics as written (each None where there were no lengths)."""

    fragments: int | None
    mode: int | None
    median: float | None
    mean: float | None
    share_below_150: float | None
    share_above_250: float | None
    share_above_1000: float | None
    periodicity_period: float | None
    periodicity_amplitude: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> FragmentSizes:
        data = data or {}
        return cls(
            data.get("fragments"),
            data.get("mode"),
            data.get("median"),
            data.get("mean"),
            data.get("share_below_150"),
            data.get("share_above_250"),
            data.get("share_above_1000"),
            data.get("periodicity_period"),
            data.get("periodicity_amplitude"),
        )


@dataclass(frozen=True)
class EndMotif:
    """A fragment-end k-mer and its share of all ends."""

    motif: str
    frequency: float


@dataclass(frozen=True)
class FragmentsResult(_Result):
    """A fragmentomics result (`<sample>.fragments.json`)."""

    @cached_property
    def size(self) -> FragmentSizes:
        return FragmentSizes.from_json(self.data.get("size"))

    @property
    def short_range(self) -> tuple[int, int]:
        low, high = self.data.get("short_range") or (100, 150)
        return int(low), int(high)

    @property
    def long_range(self) -> tuple[int, int]:
        low, high = self.data.get("long_range") or (151, 220)
        return int(low), int(high)

    @property
    def short_long_ratio(self) -> float | None:
        """Short over long fragments, genome-wide."""
        return (self.data.get("short_long_ratio") or {}).get("genome")

    @property
    def _motifs(self) -> Mapping[str, Any]:
        return self.data.get("end_motifs") or {}

    @property
    def motif_diversity(self) -> float | None:
        """The end motifs' diversity score (normalised Shannon entropy)."""
        return self._motifs.get("diversity")

    @property
    def motif_ends(self) -> int | None:
        return self._motifs.get("ends")

    @property
    def motif_length(self) -> int:
        return int(self._motifs.get("k", 4))

    @property
    def top_motifs(self) -> list[EndMotif]:
        """The commonest end motifs, commonest first."""
        return [EndMotif(str(m["motif"]), float(m["frequency"])) for m in self._motifs.get("top") or []]

    @property
    def mitochondrial_fraction(self) -> float | None:
        return (self.data.get("mitochondrial") or {}).get("fraction")


def read_results(results: Mapping[str, Any]) -> tuple[NiptResult | None, TumorResult | None, ViralResult | None]:
    """A sample's prenatal, tumour and viral results (keyed by analysis, as the report collects
    them and the review app stores them), each as its view, or None where the sample has none."""
    nipt, tumor, viral = (results.get(name) for name in ("nipt", "tumor", "viral"))
    return (
        NiptResult(nipt) if nipt else None,
        TumorResult(tumor) if tumor else None,
        ViralResult(viral) if viral else None,
    )
