"""Viral DNA in plasma: screening for nasopharyngeal carcinoma by Epstein-Barr virus DNA.

NPC cells release EBV DNA into plasma. Lam et al. (PNAS 2018) showed that two measurements
from one blood draw separate NPC from the many non-cancer carriers of EBV DNA: the *amount*
(the share of fragments that map to the EBV genome) and the *size* (NPC-derived EBV DNA is
nucleosome-protected and long, carrier EBV DNA is short). The size ratio is
`% of viral fragments at 80-110 bp / % of autosomal fragments at 80-110 bp`: near 1 for
NPC-like viral DNA, above it for carriers.

Each measurement is weighed on its counts, not as a point estimate (`ScreenModel`): the viral
count is Poisson around a lognormal amount per class (NPC; non-NPC carriers; EBV-negative
plasma with mis-mapped background only), the number of 80-110 bp viral fragments beta-binomial
around the host's share times the class's size ratio (a learnt model weighs every fragment's
length: the viral fragments in four length windows, Dirichlet-multinomial around the host's
window shares times each class's learnt ratios, since with a few dozen fragments most of the
evidence lies in how many are nucleosome-sized). The two log likelihood ratios
(NPC : not NPC) add up; a sample is positive when the sum reaches the model's line. The default
line is where a positive has the published PPV (19.6 %) at the published prevalence (34 NPC in
20,174 men); `--train` learns the classes from labelled samples and sets the line at a stated
specificity among carriers. "Not evaluable" (too few fragments to judge) is kept apart from
"negative"; a second draw (`apply_retest`) makes a positive persistent or transient.

Counts come from a counts file (viral contigs are counted with their own length histograms)
or straight from alignments; with alignments, reads in the BamHI-W repeat (MAPQ 0 there) are
counted separately and viral and host fragments are counted at one MAPQ (default 30).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize, special, stats

from plasmacount.counts import SampleCounts
from plasmacount.errors import DataError, UsageError
from plasmacount.genome import name_key

SCHEMA_VERSION = "1.0"
EBV_NAMES = ("chrEBV", "NC_007605", "NC_007605.1", "EBV")
# BamHI-W (IR1) repeat of NC_007605: about 12 kb to 35 kb of the genome.
EBV_W_REPEAT = (12_000, 35_000)
SHORT_WINDOW = (80, 110)
# Length windows of a learnt size model (bp; the last open-ended): below the short window, Lam's
# short window, the sub-nucleosomal shoulder, nucleosome-sized and longer. With few viral
# fragments most of the evidence sits outside 80-110 bp: NPC-derived EBV DNA is mostly longer
# than 150 bp, carriers' much less so.
SIZE_WINDOWS = ((0, SHORT_WINDOW[0] - 1), SHORT_WINDOW, (SHORT_WINDOW[1] + 1, 149), (150, None))
SHORT_WINDOW_INDEX = SIZE_WINDOWS.index(SHORT_WINDOW)


# Published screening figures the default decision line is derived from (docs/viral.md):
# 34 NPC among 20,174 screened men (Chan et al. 2017), and the sequencing test's positive
# predictive value of 19.6 % at that prevalence (Lam et al. 2018).
SCREENING_PREVALENCE = 34 / 20_174
PUBLISHED_PPV = 0.196


def _default_threshold() -> float:
    """The log likelihood ratio at which a positive has the published PPV at the published prevalence."""
    return math.log(PUBLISHED_PPV / (1 - PUBLISHED_PPV)) - math.log(SCREENING_PREVALENCE / (1 - SCREENING_PREVALENCE))


@dataclass(frozen=True)
class ScreenModel:
    """What NPC and non-NPC plasma look like, and the line a sample's evidence must reach.

    Amount: log10 of viral fragments per million is normal in each class (NPC; non-NPC carriers
    of EBV DNA; a learnt model from 20 samples of a class on has that class's own distribution
    instead), and a share of non-NPC people carry none at all (only mis-mapped background).
    Size: the viral share of 80-110 bp fragments is beta-distributed around the host's share
    times the class's size ratio. The defaults are literature-based assumptions (docs/viral.md),
    to be replaced by `--train` on a lab's own labelled samples."""

    npc_per_million: float = 18.5  # about 1,000 EBV copies/mL at 3,000 genome equivalents/mL
    npc_log10_sd: float = 0.8
    carrier_per_million: float = 0.3  # about 15 copies/mL: the low, transient levels of non-NPC carriers
    carrier_log10_sd: float = 0.6
    carrier_share: float = 0.055  # non-NPC people with detectable plasma EBV DNA (Chan et al. 2017: 5.5 %)
    background_per_million: float = 0.005  # EBV-negative plasma: human reads mis-mapped to the viral genome
    npc_size_ratio: float = 1.0  # NPC-derived EBV DNA is nucleosome-sized, like the host's (Lam et al. 2018)
    carrier_size_ratio: float = 3.0  # carriers' EBV DNA is shorter (an assumption on the size of the effect)
    size_concentration: float = (
        100.0  # beta concentration of one person's share around its class's (ratio SD about 0.4 at 1)
    )
    threshold: float = field(default_factory=_default_threshold)  # log likelihood ratio NPC : non-NPC for "positive"
    min_size_fragments: int = 3  # fewer viral fragments with a length: the size cannot be judged
    specificity: float | None = None  # among non-NPC carriers, when learnt
    # Learnt only: each class's viral share in every SIZE_WINDOWS window relative to the host's
    # (NPC, carriers). Without them the size evidence is Lam's 80-110 bp window alone.
    npc_window_ratios: tuple[float, ...] | None = None
    carrier_window_ratios: tuple[float, ...] | None = None
    # Learnt only: how closely each class's people follow its window profile (Dirichlet-multinomial
    # concentration, fitted by maximum likelihood); None: size_concentration for both.
    npc_size_concentration: float | None = None
    carrier_size_concentration: float | None = None
    # Learnt only: each class's distribution of amounts over AMOUNT_GRID (log10 viral fragments
    # per million), learnt without assuming a shape; None: the lognormal above.
    npc_amount_weights: tuple[float, ...] | None = None
    carrier_amount_weights: tuple[float, ...] | None = None
    source: str = "default (literature; docs/viral.md)"

    def to_json(self) -> dict:
        return asdict(self)


AMOUNT_GRID = np.linspace(-4.0, 4.0, 321)  # viral fragments per million, log10
AMOUNT_SMOOTHING = 0.1  # log10 units: SD of the kernel that smooths a learnt amount distribution


def _log_poisson(k: int | np.ndarray, mean: np.ndarray) -> np.ndarray:
    mean = np.maximum(mean, 1e-300)
    return k * np.log(mean) - mean - special.gammaln(np.asarray(k, dtype=float) + 1)


def _lognormal_weights(median_per_million: float, log10_sd: float) -> np.ndarray:
    weights = stats.norm.pdf(AMOUNT_GRID, math.log10(median_per_million), log10_sd)
    return weights / weights.sum()


def _amount_log_likelihood(k: int, total: int, weights: np.ndarray) -> float:
    """log P(k viral fragments of `total` | the class's distribution of amounts over AMOUNT_GRID)."""
    terms = _log_poisson(k, 10.0**AMOUNT_GRID * total / 1e6) + np.log(np.maximum(weights, 1e-300))
    return float(special.logsumexp(terms))


def amount_log_likelihood_ratio(k: int, total: int, model: ScreenModel) -> float:
    """log P(count | NPC) - log P(count | not NPC: a carrier, or EBV-negative with background only)."""
    npc_weights = (
        np.asarray(model.npc_amount_weights)
        if model.npc_amount_weights
        else _lognormal_weights(model.npc_per_million, model.npc_log10_sd)
    )
    carrier_weights = (
        np.asarray(model.carrier_amount_weights)
        if model.carrier_amount_weights
        else _lognormal_weights(model.carrier_per_million, model.carrier_log10_sd)
    )
    npc = _amount_log_likelihood(k, total, npc_weights)
    carrier = _amount_log_likelihood(k, total, carrier_weights)
    background = float(_log_poisson(k, np.array(model.background_per_million * total / 1e6))[()])
    other = float(np.logaddexp(math.log(model.carrier_share) + carrier, math.log1p(-model.carrier_share) + background))
    return npc - other


def learn_amount_weights(counts: np.ndarray, totals: np.ndarray, iterations: int = 200) -> np.ndarray:
    """A class's distribution of amounts (weights over AMOUNT_GRID) from its samples' viral counts,
    without assuming a shape: the Poisson mixture's mixing distribution by EM, smoothed after each
    step with a Gaussian kernel of AMOUNT_SMOOTHING (the EMS algorithm; Silverman et al., J R
    Stat Soc B 1990). Samples with no viral fragment count too: they say the class can have
    amounts that low."""
    counts, totals = np.asarray(counts, dtype=float), np.asarray(totals, dtype=float)
    log_likelihood = _log_poisson(counts[:, None], 10.0 ** AMOUNT_GRID[None, :] * totals[:, None] / 1e6)
    step = AMOUNT_GRID[1] - AMOUNT_GRID[0]
    offsets = np.arange(-int(4 * AMOUNT_SMOOTHING / step), int(4 * AMOUNT_SMOOTHING / step) + 1) * step
    kernel = np.exp(-0.5 * (offsets / AMOUNT_SMOOTHING) ** 2)
    kernel /= kernel.sum()
    weights = np.full(AMOUNT_GRID.size, 1.0 / AMOUNT_GRID.size)
    for _ in range(iterations):
        joint = log_likelihood + np.log(np.maximum(weights, 1e-300))[None, :]
        responsibilities = np.exp(joint - special.logsumexp(joint, axis=1, keepdims=True))
        weights = np.convolve(responsibilities.mean(axis=0), kernel, mode="same")
        weights /= weights.sum()
    return weights


def _log_beta_binomial(k: int, n: int, mean: float, concentration: float) -> float:
    mean = min(max(mean, 1e-4), 1 - 1e-4)
    a, b = mean * concentration, (1 - mean) * concentration
    return float(
        special.gammaln(n + 1)
        - special.gammaln(k + 1)
        - special.gammaln(n - k + 1)
        + special.betaln(k + a, n - k + b)
        - special.betaln(a, b)
    )


def size_log_likelihood_ratio(short: int, with_length: int, host_share: float, model: ScreenModel) -> float:
    """log P(short of with_length at 80-110 bp | NPC-like size) - log P(... | carrier-like size):
    about 0 from a few fragments, decisive from many."""
    return _log_beta_binomial(
        short, with_length, host_share * model.npc_size_ratio, model.size_concentration
    ) - _log_beta_binomial(short, with_length, host_share * model.carrier_size_ratio, model.size_concentration)


def window_counts(histogram: np.ndarray) -> np.ndarray:
    """Fragments in each SIZE_WINDOWS window (the last takes every longer length)."""
    return np.array(
        [int(histogram[low : (high + 1 if high is not None else None)].sum()) for low, high in SIZE_WINDOWS],
        dtype=np.int64,
    )


def _log_dirichlet_multinomial(counts: np.ndarray, alpha: np.ndarray) -> float:
    """log P(counts | Dirichlet-multinomial with `alpha`), without the multinomial coefficient
    (the same for both classes)."""
    n, total = float(counts.sum()), float(alpha.sum())
    return float(
        special.gammaln(total)
        - special.gammaln(n + total)
        + np.sum(special.gammaln(counts + alpha) - special.gammaln(alpha))
    )


def _window_alpha(host_shares: np.ndarray, ratios: tuple[float, ...], concentration: float) -> np.ndarray:
    """Dirichlet parameters of a class: the host's window shares times the class's ratios, scaled."""
    shares = np.maximum(np.asarray(host_shares, dtype=float) * np.asarray(ratios, dtype=float), 1e-4)
    return concentration * shares / shares.sum()


def window_size_log_likelihood_ratio(viral: np.ndarray, host_shares: np.ndarray, model: ScreenModel) -> float:
    """log P(viral fragments per length window | NPC-like size) - log P(... | carrier-like size),
    each class's window shares being the host's times its learnt ratios (Dirichlet-multinomial:
    people differ around their class's profile by the class's learnt concentration)."""
    viral = np.asarray(viral, dtype=float)
    assert model.npc_window_ratios is not None and model.carrier_window_ratios is not None  # learnt windows only
    npc = _window_alpha(host_shares, model.npc_window_ratios, model.npc_size_concentration or model.size_concentration)
    carrier = _window_alpha(
        host_shares, model.carrier_window_ratios, model.carrier_size_concentration or model.size_concentration
    )
    return _log_dirichlet_multinomial(viral, npc) - _log_dirichlet_multinomial(viral, carrier)


CONCENTRATION_RANGE = (3.0, 3000.0)


def _window_concentration(group: list[dict], ratios: tuple[float, ...] | None) -> float | None:
    """The Dirichlet-multinomial concentration under which the class's samples' window counts are
    most likely (within CONCENTRATION_RANGE); None from fewer than 3 samples with 2+ fragments
    (one fragment says nothing about the spread between people)."""
    if ratios is None:
        return None
    rows = [
        (
            np.array(r["size"]["viral_fragments_by_window"], dtype=float),
            np.array(r["size"]["autosomal_share_by_window"], dtype=float),
        )
        for r in group
        if r["paired"]
        and r["size"].get("viral_fragments_by_window")
        and r["size"].get("autosomal_share_by_window")
        and r["size"]["viral_fragments_with_length"] >= 2
    ]
    if len(rows) < 3:
        return None
    shapes = [(counts, _window_alpha(host, ratios, 1.0)) for counts, host in rows]

    def negative_log_likelihood(log_concentration: float) -> float:
        concentration = math.exp(log_concentration)
        return -sum(_log_dirichlet_multinomial(counts, concentration * shape) for counts, shape in shapes)

    low, high = (math.log(x) for x in CONCENTRATION_RANGE)
    fit = optimize.minimize_scalar(
        negative_log_likelihood, bounds=(low, high), method="bounded", options={"xatol": 1e-3}
    )
    return float(math.exp(fit.x))


def find_viral_contig(counts: SampleCounts, virus: str | None, where: str) -> int:
    """Row of the viral contig among the sample's other contigs (EBV names by default)."""
    names = [contig["name"] for contig in counts.other_contigs]
    wanted = [virus] if virus else list(EBV_NAMES)
    for candidate in wanted:
        for i, name in enumerate(names):
            if name == candidate or name_key(name) == name_key(candidate):
                return i
    present = ", ".join(names[:12]) or "none"
    label = virus or "EBV (chrEBV / NC_007605)"
    raise DataError(
        f"{where}: no viral contig {label} among the contigs outside the bins ({present}); "
        "align to a reference with the viral genome (e.g. GRCh38 analysis set with chrEBV) or pass --virus NAME"
    )


def poisson_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson count."""
    alpha = 1 - confidence
    low = 0.0 if count == 0 else stats.chi2.ppf(alpha / 2, 2 * count) / 2
    high = stats.chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    return float(low), float(high)


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion."""
    if trials == 0:
        return 0.0, 1.0
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else stats.beta.ppf(alpha / 2, successes, trials - successes + 1)
    high = 1.0 if successes == trials else stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes)
    return float(low), float(high)


def analyse(
    counts: SampleCounts,
    row: int,
    model: ScreenModel,
    w_repeat: int | None = None,
    unique_override: int | None = None,
    viral_lengths: np.ndarray | None = None,
    note: str | None = None,
) -> dict:
    """The viral result of one sample (see the module docstring)."""
    name = counts.other_contigs[row]["name"]
    viral = int(unique_override if unique_override is not None else counts.other_counts[row])
    human = int(counts.counts.sum() + sum(int(n) for i, n in enumerate(counts.other_counts) if i != row))
    total = human + viral
    low, high = poisson_interval(viral)
    per_million = 1e6 / total if total else float("nan")
    histogram = viral_lengths if viral_lengths is not None else counts.other_fragment_lengths[row]
    viral_windows = window_counts(histogram)
    notes = [note] if note else []
    size = {
        "evaluable": False,
        "ratio": None,
        "low": None,
        "high": None,
        "viral_fragments_with_length": int(histogram.sum()),
        "viral_fragments_80_110": int(viral_windows[SHORT_WINDOW_INDEX]),
        "viral_share_80_110": None,
        "autosomal_share_80_110": None,
        "profile_mode": None,
        "reason": None,
        "windows": [list(window) for window in SIZE_WINDOWS],
        "viral_fragments_by_window": viral_windows.tolist(),
        "autosomal_share_by_window": None,
    }
    if counts.paired:
        autosomal = counts.fragment_lengths
        host_windows = window_counts(autosomal) / max(int(autosomal.sum()), 1)
        size["autosomal_share_80_110"] = float(host_windows[SHORT_WINDOW_INDEX])
        size["autosomal_share_by_window"] = host_windows.tolist()
        if histogram.sum():
            size["profile_mode"] = int(np.argmax(histogram[:-1]))
    # Size profiles up to 600 bp, for plots: viral counts and the autosomal share per length.
    size["viral_histogram_0_600"] = histogram[:601].astype(int).tolist() if counts.paired else None
    size["autosomal_histogram_0_600"] = counts.fragment_lengths[:601].astype(int).tolist() if counts.paired else None
    result = {
        "schema_version": SCHEMA_VERSION,
        "sample": counts.sample,
        "source": counts.source,
        "virus": name,
        "paired": counts.paired,
        "fragments": {"unique": viral, "low": low, "high": high, "w_repeat": w_repeat, "total_mapped": total},
        "per_million": {"value": viral * per_million, "low": low * per_million, "high": high * per_million},
        "proportion": {
            "value": viral / total if total else None,
            "low": low / total if total else None,
            "high": high / total if total else None,
        },
        "size": size,
        "screen": None,
        "notes": notes,
    }
    return apply_screen(result, model)


def apply_screen(result: dict, model: ScreenModel) -> dict:
    """(Re)compute the size-ratio estimate and the screen under `model`: the amount and the size
    each give a log likelihood ratio (NPC : not NPC) from the counts themselves, so a size ratio
    from 3 fragments weighs as little as it should; their sum against `model.threshold`."""
    size = result["size"]
    n, k = size["viral_fragments_with_length"], size["viral_fragments_80_110"]
    host_share = size["autosomal_share_80_110"]
    size.update(
        {"evaluable": False, "ratio": None, "low": None, "high": None, "viral_share_80_110": None, "reason": None}
    )
    if not result["paired"]:
        size["reason"] = "single-end data: no fragment lengths; the screen uses the amount only"
    elif n < model.min_size_fragments or not host_share:
        size["reason"] = f"{n} viral fragments with a length (at least {model.min_size_fragments} needed)"
    else:
        share_low, share_high = binomial_interval(k, n)
        size.update(
            {
                "evaluable": True,
                "ratio": (k / n) / host_share,
                "low": share_low / host_share,
                "high": share_high / host_share,
                "viral_share_80_110": k / n,
            }
        )
    viral, total = result["fragments"]["unique"], result["fragments"]["total_mapped"]
    screen: dict = {
        "result": "not evaluable",
        "reason": None,
        "log_likelihood_ratio": None,
        "amount_log_likelihood_ratio": None,
        "size_log_likelihood_ratio": None,
        "posterior_at_screening_prevalence": None,
        "count_criterion": None,
        "size_criterion": None,
        "model": model.to_json(),
    }
    result["screen"] = screen
    if total < MINIMUM_HOST_FRAGMENTS:
        screen["reason"] = f"only {total:,} mapped fragments (at least {MINIMUM_HOST_FRAGMENTS:,} needed)"
        return result
    amount = amount_log_likelihood_ratio(viral, total, model)
    size_evidence = 0.0
    if result["paired"] and n and host_share:
        by_window, host_by_window = size.get("viral_fragments_by_window"), size.get("autosomal_share_by_window")
        if model.npc_window_ratios and model.carrier_window_ratios and by_window and host_by_window:
            size_evidence = window_size_log_likelihood_ratio(np.array(by_window), np.array(host_by_window), model)
        else:
            size_evidence = size_log_likelihood_ratio(k, n, host_share, model)
    score = amount + size_evidence
    prior = math.log(SCREENING_PREVALENCE / (1 - SCREENING_PREVALENCE))
    posterior = 1 / (1 + math.exp(-min(max(score + prior, -700), 700)))
    size_unjudged = result["paired"] and n < model.min_size_fragments
    if size_unjudged and score >= model.threshold / 2:
        # No positive without the size: a few fragments of a shallow library prove little.
        outcome, reason = "not evaluable", "NPC-like amount but too few viral fragments to judge their size: retest"
    elif score >= model.threshold:
        outcome = "positive"
        reason = (
            ("amount and size NPC-like" if size_evidence > 0 else "amount NPC-like enough on its own")
            if result["paired"]
            else "amount only (single-end data)"
        )
    else:
        outcome = "negative"
        reason = (
            "no viral DNA beyond background"
            if amount < 0 and viral <= 2
            else "viral DNA short (carrier-like)"
            if size_evidence < 0 and amount > 0
            else "evidence below the line"
        )
    screen.update(
        {
            "result": outcome,
            "reason": reason,
            "log_likelihood_ratio": score,
            "amount_log_likelihood_ratio": amount,
            "size_log_likelihood_ratio": size_evidence if result["paired"] else None,
            "posterior_at_screening_prevalence": posterior,
            "count_criterion": bool(amount > 0),
            "size_criterion": None if not result["paired"] or not n else bool(size_evidence > 0),
        }
    )
    return result


MINIMUM_HOST_FRAGMENTS = 100_000


def apply_retest(result: dict, previous: dict) -> dict:
    """A second draw (Chan et al. 2017): positive only when both draws are; a positive that does
    not persist is transient, and a first draw that was not positive leaves this one as it is."""
    screen = result["screen"]
    before = previous["screen"]["result"]
    screen["retest"] = {"previous_result": before, "previous_source": previous.get("source")}
    if before == "positive":
        if screen["result"] == "positive":
            screen["reason"] = "persistently positive (both draws)"
        elif screen["result"] == "negative":
            screen["reason"] = "transient: positive at the first draw, negative now"
    return result


LEARNING_FOLDS = 5


def learn_model(results: list[dict], labels: dict[str, str], specificity: float = 0.95) -> ScreenModel:
    """The class models from labelled samples (NPC and not NPC), and the line at which the non-NPC
    carriers (non-NPC samples with viral DNA beyond background) show at least `specificity` with
    SPECIFICITY_CONFIDENCE confidence (`specificity_line`).

    Each carrier's score comes from a model learnt without it (LEARNING_FOLDS folds): a model
    scores its own training carriers as more carrier-like than new ones, so a line from in-sample
    scores lets more than 1 - specificity of a lab's next carriers through. The class models
    themselves come from all samples."""
    if not 0.5 <= specificity < 1:
        raise UsageError(f"--specificity must be between 0.5 and 1, not {specificity}")
    known = sorted((r for r in results if r["sample"] in labels), key=lambda r: r["sample"])
    npc = [r for r in known if labels[r["sample"]].lower() in NPC_LABELS]
    other = [r for r in known if labels[r["sample"]].lower() not in NPC_LABELS]
    if not npc or not other:
        raise UsageError(
            f"the training labels name {len(npc)} NPC and {len(other)} other samples among the inputs; both are needed"
        )
    model, carriers = _class_models(npc, other)
    carrier_names = {r["sample"] for r in carriers}

    def scored(group: list[dict], fitted: ScreenModel) -> np.ndarray:
        return np.array([apply_screen(_copy(r), fitted)["screen"]["log_likelihood_ratio"] for r in group])

    # Folds dealt within each class in name order (every fold gets NPC, carriers and EBV-negative men).
    fold_of = {
        r["sample"]: i % LEARNING_FOLDS
        for group in (npc, carriers, [r for r in other if r["sample"] not in carrier_names])
        for i, r in enumerate(group)
    }
    carrier_scores: list[float] = []
    npc_scores: list[float] = []
    how = f"out-of-fold scores, {LEARNING_FOLDS} folds"
    try:
        for fold in range(LEARNING_FOLDS):
            fitted, _ = _class_models(
                [r for r in npc if fold_of[r["sample"]] != fold], [r for r in other if fold_of[r["sample"]] != fold]
            )
            carrier_scores.extend(scored([r for r in carriers if fold_of[r["sample"]] == fold], fitted))
            npc_scores.extend(scored([r for r in npc if fold_of[r["sample"]] == fold], fitted))
    except DataError:
        # Too few labelled NPC to leave a fold out: in-sample scores, said in the model's source.
        carrier_scores, npc_scores, how = (
            list(scored(carriers, model)),
            list(scored(npc, model)),
            "in-sample scores (too few NPC for folds)",
        )
    if not carrier_scores:
        carrier_scores = list(scored(other, model))
    threshold, reached = specificity_line(np.array(carrier_scores), specificity)
    shown = (
        ""
        if reached
        else f" (too few carriers to show it at {SPECIFICITY_CONFIDENCE:.0%} confidence: line above all of them)"
    )
    return dataclasses.replace(
        model,
        threshold=threshold,
        specificity=specificity,
        source=f"learnt from {len(npc)} labelled NPC and {len(other)} other samples ({len(carriers)} carriers); "
        f"line where specificity among carriers is at least {specificity:.3f} at "
        f"{SPECIFICITY_CONFIDENCE:.0%} confidence{shown} ({how}); carriers at or above it "
        f"{float(np.mean(np.array(carrier_scores) >= threshold)):.3f}, NPC sensitivity in the same scores "
        f"{float(np.mean(np.array(npc_scores) >= threshold)):.3f}",
    )


SPECIFICITY_CONFIDENCE = 0.95


def specificity_line(carrier_scores: np.ndarray, specificity: float) -> tuple[float, bool]:
    """The lowest line (never below 0: the evidence must favour NPC) at which the carriers'
    specificity is at least `specificity` with SPECIFICITY_CONFIDENCE confidence: the one-sided
    Clopper-Pearson upper bound of the share of carriers reaching it is at most 1 - specificity.
    A line at the plain quantile would let through more than 1 - specificity of the next
    carriers about half of the time. Returns the line and whether that bound could be reached
    (False: too few carriers; the line is then above every one of them)."""
    ordered = np.sort(np.asarray(carrier_scores, dtype=float))[::-1]
    n = ordered.size
    allowed = -1
    for k in range(n):  # k carriers at or above the line
        if float(stats.beta.ppf(SPECIFICITY_CONFIDENCE, k + 1, n - k)) > 1 - specificity:
            break
        allowed = k
    if allowed < 0:
        return (max(0.0, float(ordered[0]) + 1e-9) if n else 0.0), False
    # Just above the score of the first carrier beyond the allowed ones (ties stay below).
    return max(0.0, float(ordered[allowed]) + 1e-9), True


def _class_models(npc: list[dict], other: list[dict]) -> tuple[ScreenModel, list[dict]]:
    """The amount and size models of NPC and non-NPC samples (line at 0), and which of the
    non-NPC samples are carriers."""
    defaults = ScreenModel()
    per_million = lambda r: 1e6 * r["fragments"]["unique"] / max(r["fragments"]["total_mapped"], 1)  # noqa: E731
    npc_amounts = np.log10([per_million(r) for r in npc if r["fragments"]["unique"] > 0])
    if npc_amounts.size < 3:
        raise DataError("fewer than 3 labelled NPC samples have viral fragments; cannot learn the NPC amount")
    # Background: what the lower half of the non-NPC samples carry; carriers: non-NPC samples
    # beyond what background explains (Poisson, 1 in 1,000).
    ordered = sorted(other, key=per_million)
    lower = ordered[: max(1, len(ordered) // 2)]
    background = max(
        1e6 * sum(r["fragments"]["unique"] for r in lower) / max(sum(r["fragments"]["total_mapped"] for r in lower), 1),
        1e-4,
    )
    carriers = [
        r
        for r in other
        if r["fragments"]["unique"] > stats.poisson.ppf(0.999, background * r["fragments"]["total_mapped"] / 1e6)
    ]
    carrier_amounts = np.log10([per_million(r) for r in carriers]) if carriers else np.array([])

    def spread(values: np.ndarray, floor: float) -> float:
        return max(floor, float(1.4826 * np.median(np.abs(values - np.median(values)))))

    def ratio(group: list[dict]) -> list[float]:
        return [
            r["size"]["ratio"]
            for r in group
            if r["size"]["evaluable"] and r["size"]["viral_fragments_with_length"] >= 20
        ]

    npc_ratios, carrier_ratios = ratio(npc), ratio(carriers)
    npc_windows, carrier_windows = _window_ratios(npc), _window_ratios(carriers)
    if not (npc_windows and carrier_windows):
        npc_windows = carrier_windows = None
    model = ScreenModel(
        npc_per_million=float(10 ** np.median(npc_amounts)),
        npc_log10_sd=spread(npc_amounts, 0.3),
        carrier_per_million=float(10 ** np.median(carrier_amounts))
        if carrier_amounts.size >= 3
        else defaults.carrier_per_million,
        carrier_log10_sd=spread(carrier_amounts, 0.3) if carrier_amounts.size >= 3 else defaults.carrier_log10_sd,
        carrier_share=min(0.5, max(len(carriers) / len(other), 0.01)),
        background_per_million=background,
        npc_size_ratio=float(np.median(npc_ratios)) if len(npc_ratios) >= 3 else defaults.npc_size_ratio,
        carrier_size_ratio=float(np.median(carrier_ratios))
        if len(carrier_ratios) >= 3
        else defaults.carrier_size_ratio,
        min_size_fragments=defaults.min_size_fragments,
        threshold=0.0,
        npc_window_ratios=npc_windows,
        carrier_window_ratios=carrier_windows,
        npc_size_concentration=_window_concentration(npc, npc_windows),
        carrier_size_concentration=_window_concentration(carriers, carrier_windows),
        npc_amount_weights=_amount_weights(npc),
        carrier_amount_weights=_amount_weights(carriers),
    )
    return model, carriers


MINIMUM_SAMPLES_FOR_AMOUNT_SHAPE = 20


def _amount_weights(group: list[dict]) -> tuple[float, ...] | None:
    """The class's amount distribution without a shape assumed, from at least
    MINIMUM_SAMPLES_FOR_AMOUNT_SHAPE samples (fewer: the lognormal), rounded so the model file
    stays readable and identical across machines."""
    if len(group) < MINIMUM_SAMPLES_FOR_AMOUNT_SHAPE:
        return None
    weights = learn_amount_weights(
        np.array([r["fragments"]["unique"] for r in group]),
        np.array([max(r["fragments"]["total_mapped"], 1) for r in group]),
    )
    return tuple(float(f"{w:.6g}") for w in weights)


NPC_LABELS = ("npc", "positive", "1", "case")


def _window_ratios(group: list[dict]) -> tuple[float, ...] | None:
    """A class's viral share per length window relative to the host's, from its samples' fragments
    pooled (each sample's host shares weighted by its viral fragments); None from fewer than 3
    samples with lengths or 50 fragments."""
    rows = [
        r
        for r in group
        if r["paired"]
        and r["size"].get("viral_fragments_by_window")
        and r["size"].get("autosomal_share_by_window")
        and r["size"]["viral_fragments_with_length"] > 0
    ]
    viral = np.array([r["size"]["viral_fragments_by_window"] for r in rows], dtype=float).reshape(-1, len(SIZE_WINDOWS))
    if len(rows) < 3 or viral.sum() < 50:
        return None
    host = np.array([r["size"]["autosomal_share_by_window"] for r in rows], dtype=float)
    expected = (host * viral.sum(axis=1, keepdims=True)).sum(axis=0)
    # Half a fragment in every window: a window no training fragment fell into is rare, not impossible.
    return tuple(float(x) for x in (viral.sum(axis=0) + 0.5) / np.maximum(expected, 1e-9))


def _copy(result: dict) -> dict:
    return json.loads(json.dumps(result))


def from_alignments(
    path: str | os.PathLike,
    virus: str | None,
    model: ScreenModel,
    min_mapq: int = 30,
    reference: str | os.PathLike | None = None,
    bin_size: int = 100_000,
) -> dict:
    """Count the alignments, then re-read the viral contig for the W repeat and the viral MAPQ threshold."""
    import pysam

    from plasmacount.alignments import (
        DEFAULT_MAX_PAIR_LENGTH,
        CountOptions,
        alignment_kind,
        count_alignments,
        pair_is_fragment,
        prepare_cram_environment,
        stands_for_pair,
    )

    path = Path(path)
    # The host's size profile at the viral reads' MAPQ: the two are compared.
    counts = count_alignments(path, bin_size=bin_size, options=CountOptions(min_mapq=min_mapq), reference=reference)
    row = find_viral_contig(counts, virus, str(path))
    name = counts.other_contigs[row]["name"]
    is_ebv = any(name_key(name) == name_key(n) for n in EBV_NAMES)
    prepare_cram_environment()
    unique = w_repeat = 0
    lengths = np.zeros(counts.fragment_lengths.size, dtype=np.int64)
    mode = "rc" if alignment_kind(path) == "cram" else "rb"
    with pysam.AlignmentFile(str(path), mode, reference_filename=str(reference) if reference else None) as alignments:
        for read in alignments.fetch(name):
            if read.is_unmapped or read.is_secondary or read.is_supplementary or read.is_qcfail or read.is_duplicate:
                continue
            if read.is_paired:
                # The counter's pair rule, so the viral fragments are the ones its host profile counts.
                fragment, _ = pair_is_fragment(
                    read.flag,
                    read.reference_start,
                    read.next_reference_start,
                    read.next_reference_id == read.reference_id,
                    read.template_length,
                    DEFAULT_MAX_PAIR_LENGTH,
                )
                if not fragment or not stands_for_pair(read.flag, read.reference_start, read.next_reference_start):
                    continue
            in_repeat = is_ebv and EBV_W_REPEAT[0] <= read.reference_start < EBV_W_REPEAT[1]
            if in_repeat:
                w_repeat += 1
                continue
            if read.mapping_quality < min_mapq:
                continue
            unique += 1
            if read.is_paired:
                lengths[min(abs(read.template_length), lengths.size - 1)] += 1
    return analyse(
        counts,
        row,
        model,
        w_repeat if is_ebv else None,
        unique,
        lengths,
        note=f"unique viral fragments at MAPQ >= {min_mapq}, outside the BamHI-W repeat",
    )


def from_counts(counts: SampleCounts, virus: str | None, model: ScreenModel, where: str) -> dict:
    row = find_viral_contig(counts, virus, where)
    mapq = counts.filters.get("min_mapq")
    note = (
        (
            f"viral fragments as counted (MAPQ >= {mapq}); the BamHI-W repeat is not separable in a counts file: "
            "analyse the BAM/CRAM for it"
        )
        if mapq is not None
        else "viral fragments as counted"
    )
    return analyse(counts, row, model, None, note=note)


@dataclass(frozen=True)
class ViralOptions:
    """How every input of a batch is read: the viral contig (None: EBV), the unique viral reads'
    MAPQ and the FASTA of CRAM input (alignments only)."""

    virus: str | None = None
    min_mapq: int = 30
    fasta: str | os.PathLike | None = None


def _batch_inputs(sources: Sequence[str | os.PathLike]) -> list[tuple[str, SampleCounts | None]]:
    """Each input with its counts (None for BAM/CRAM, counted when analysed), refused before any
    counting when two share a sample name: their outputs would overwrite each other."""
    from plasmacount.alignments import sample_name
    from plasmacount.counts import input_kind, load_counts
    from plasmacount.files import check_unique_inputs

    inputs = [
        (str(source), None if input_kind(source) in ("bam", "cram") else load_counts(source)) for source in sources
    ]
    check_unique_inputs(
        [(sample_name(source) if counts is None else counts.sample, source) for source, counts in inputs]
    )
    return inputs


def run_batch(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    model: ScreenModel = ScreenModel(),
    options: ViralOptions = ViralOptions(),
    labels: Mapping[str, str] | None = None,
    specificity: float = 0.95,
    previous: Mapping[str, dict] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], ScreenModel]:
    """Screen every input (counts, or indexed BAM/CRAM) and write the outputs; with `labels`
    (sample: npc / other) the model is learnt from these samples first (`learn_model`), and a
    sample in `previous` (sample: its first draw's result) is judged as a retest. Returns the
    results and the model they were screened with."""
    inputs = _batch_inputs(sources)
    results = []
    for i, (source, counts) in enumerate(inputs):
        if counts is None:
            results.append(from_alignments(source, options.virus, model, options.min_mapq, options.fasta))
        else:
            results.append(from_counts(counts, options.virus, model, source))
        if progress:
            progress(i + 1, len(inputs))
    if labels is not None:
        model = learn_model(results, dict(labels), specificity)
        results = [apply_screen(result, model) for result in results]
    if previous:
        results = [apply_retest(r, previous[r["sample"]]) if r["sample"] in previous else r for r in results]
    write_outputs(results, output, model)
    return results, model


def read_previous(paths: Sequence[str | os.PathLike]) -> dict[str, dict]:
    """The first draw's `<sample>.viral.json` results, by sample, for a retest."""
    previous = {}
    for path in paths:
        try:
            earlier = json.loads(Path(path).read_text())
            if not isinstance(earlier.get("screen"), dict) or "result" not in earlier["screen"]:
                raise KeyError("screen")
            previous[earlier["sample"]] = earlier
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(
                f"{path}: not a <sample>.viral.json result ({error}); pass the first draw's viral results"
            ) from None
    return previous


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """A two-column TSV: sample, label (npc / other); a header line is allowed."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: training labels not found; check the path")
    labels = {}
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or (number == 1 and fields[0].lower() == "sample"):
                continue
            if len(fields) < 2:
                raise DataError(f"{path}: line {number} needs two tab-separated columns: sample and label")
            labels[fields[0]] = fields[1]
    return labels


def write_outputs(results: list[dict], output: str | os.PathLike, model: ScreenModel) -> list[Path]:
    from plasmacount.files import atomic_output, check_unique_samples, sample_file_stem, table_cell, write_json

    check_unique_samples([r["sample"] for r in results])
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        written.append(write_json(output / f"{sample_file_stem(result['sample'])}.viral.json", result))
    path = output / "viral.tsv"
    columns = [
        "sample",
        "virus",
        "fragments",
        "per_million",
        "proportion",
        "proportion_low",
        "proportion_high",
        "w_repeat",
        "size_ratio",
        "size_ratio_low",
        "size_ratio_high",
        "log_likelihood_ratio",
        "screen",
        "reason",
    ]
    with atomic_output(path, "w") as stream:
        stream.write("\t".join(columns) + "\n")
        for r in results:
            values = [
                r["sample"],
                r["virus"],
                r["fragments"]["unique"],
                r["per_million"]["value"],
                r["proportion"]["value"],
                r["proportion"]["low"],
                r["proportion"]["high"],
                r["fragments"]["w_repeat"],
                r["size"]["ratio"],
                r["size"]["low"],
                r["size"]["high"],
                r["screen"]["log_likelihood_ratio"],
                r["screen"]["result"],
                r["screen"]["reason"],
            ]
            stream.write("\t".join(table_cell(v, ".6g") for v in values) + "\n")
    written.append(path)
    write_json(output / "viral_model.json", model.to_json())
    return written


def load_model(path: str | os.PathLike) -> ScreenModel:
    """A screen model written by an earlier run (its viral_model.json)."""
    try:
        data = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(ScreenModel)}
        if not isinstance(data, dict) or "threshold" not in data:
            raise TypeError("no 'threshold'")
        fields = {k: v for k, v in data.items() if k in names}
        for key in ("npc_window_ratios", "carrier_window_ratios"):
            if fields.get(key) is not None:
                fields[key] = tuple(float(x) for x in fields[key])
                if len(fields[key]) != len(SIZE_WINDOWS) or not all(x > 0 for x in fields[key]):
                    raise TypeError(f"'{key}' needs {len(SIZE_WINDOWS)} positive numbers")
        for key in ("npc_amount_weights", "carrier_amount_weights"):
            if fields.get(key) is not None:
                fields[key] = tuple(float(x) for x in fields[key])
                if len(fields[key]) != AMOUNT_GRID.size or min(fields[key]) < 0 or not sum(fields[key]) > 0:
                    raise TypeError(f"'{key}' needs {AMOUNT_GRID.size} weights, none negative")
        for key in ("npc_size_concentration", "carrier_size_concentration"):
            if fields.get(key) is not None:
                if isinstance(fields[key], bool) or not isinstance(fields[key], (int, float)) or not fields[key] > 0:
                    raise TypeError(f"'{key}' needs a positive number")
                fields[key] = float(fields[key])
        return ScreenModel(**fields)
    except FileNotFoundError:
        raise DataError(f"{path}: screen model file not found; check the path") from None
    except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path}: not a viral screen model ({error}); use the viral_model.json that `viral` writes"
        ) from None
