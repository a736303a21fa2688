"""DELFI as published (Cristiano et al. 2019) against an independent implementation written from the
method's description, on the hg19 and hg38 layouts; and through `plasmacount fragments`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plasmacount import delfi
from plasmacount.bins import BinAnnotation
from plasmacount.counts import SampleCounts
from plasmacount.genome import CENTROMERE_REGIONS, HG38_LENGTHS, Layout

GRCH37_LENGTHS = {
    "1": 249250621,
    "2": 243199373,
    "3": 198022430,
    "4": 191154276,
    "5": 180915260,
    "6": 171115067,
    "7": 159138663,
    "8": 146364022,
    "9": 141213431,
    "10": 135534747,
    "11": 135006516,
    "12": 133851895,
    "13": 115169878,
    "14": 107349540,
    "15": 102531392,
    "16": 90354753,
    "17": 81195210,
    "18": 78077248,
    "19": 59128983,
    "20": 63025520,
    "21": 48129895,
    "22": 51304566,
    "X": 155270560,
    "Y": 59373566,
}


def sample_on(build: str, seed: int):
    lengths = HG38_LENGTHS.items() if build == "GRCh38" else GRCH37_LENGTHS.items()
    layout = Layout.from_lengths(lengths, 100_000)
    rng = np.random.default_rng(seed)
    gc = np.clip(
        0.41 + np.cumsum(rng.normal(0, 0.01, layout.n_bins)) * 0.1 + rng.normal(0, 0.03, layout.n_bins), 0.3, 0.65
    )
    n_fraction = np.where(rng.random(layout.n_bins) < 0.03, 0.2, 0.0)
    blacklist = np.where(rng.random(layout.n_bins) < 0.02, rng.choice([0.3, 0.7], layout.n_bins), 0.0)
    annotation = BinAnnotation(layout, gc, n_fraction, np.ones(layout.n_bins), blacklist)
    bias = 1 + 3 * (gc - 0.45) - 20 * (gc - 0.45) ** 2
    short = rng.poisson(60 * np.clip(bias, 0.2, None))
    long_ = rng.poisson(250 * np.clip(1 + 1.5 * (gc - 0.45), 0.2, None))
    counts = SampleCounts(
        sample=f"{build}_{seed}",
        layout=layout,
        counts=short + long_ + rng.poisson(20, layout.n_bins),
        paired=True,
        short=short,
        long=long_,
    )
    return counts, annotation


def direct_loess(x, y, at, span=0.75):
    """Local quadratic least squares at each point, tricube weights over the ceil(span n) nearest."""
    k = int(np.ceil(span * len(x)))
    out = []
    for point in at:
        d = np.abs(x - point)
        radius = np.sort(d)[k - 1]
        w = np.clip(1 - (d / radius) ** 3, 0, None) ** 3
        design = np.column_stack([np.ones_like(x), x - point, (x - point) ** 2]) * np.sqrt(w)[:, None]
        out.append(np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)[0][0])
    return np.array(out)


def independent_delfi(counts, annotation, build):
    """Cristiano 2019, step by step: autosome arms, filters, DELFI's gc.correct, 50-bin windows per arm."""
    centromeres = CENTROMERE_REGIONS[build]
    rows = []
    for contig in annotation.layout.contigs:
        key = contig.name.removeprefix("chr")
        if key not in [str(i) for i in range(1, 23)]:
            continue
        low, high = centromeres[key]
        for i in range(contig.n_bins):
            b = contig.first_bin + i
            start, end = i * 100_000, min((i + 1) * 100_000, contig.length)
            arm = key + "p" if end <= low else key + "q" if start >= high else None
            if arm is None or annotation.n_fraction[b] > 0 or annotation.blacklist[b] >= 0.5:
                continue
            rows.append((arm, start, annotation.gc[b], float(counts.short[b]), float(counts.long[b])))
    gc = np.array([r[2] for r in rows])
    corrected = []
    for column in (3, 4):
        values = np.array([r[column] for r in rows])
        grid = np.arange(gc.min(), gc.max() + 0.0005, 0.001)
        trend = direct_loess(gc, values, grid)
        corrected.append(values - direct_loess(grid, trend, gc) + np.median(values))
    windows = []
    arms = list(dict.fromkeys(r[0] for r in rows))
    for arm in arms:
        members = [i for i, r in enumerate(rows) if r[0] == arm]
        if arm.endswith("q"):
            members = members[::-1]
        chunks = [members[i : i + 50] for i in range(0, len(members), 50)]
        chunks = [sorted(c) for c in chunks if len(c) == 50]
        if arm.endswith("q"):
            chunks = chunks[::-1]
        for c in chunks:
            windows.append((arm, rows[c[0]][1], sum(corrected[0][i] for i in c) / sum(corrected[1][i] for i in c)))
    return windows


@pytest.mark.parametrize("build", ["GRCh37", "GRCh38"])
def test_delfi_equals_an_independent_implementation(build):
    counts, annotation = sample_on(build, seed=4)
    result = delfi.profile(counts, annotation)
    expected = independent_delfi(counts, annotation, build)
    assert [(w["arm"], w["start"]) for w in result.windows] == [(arm, start) for arm, start, _ in expected]
    np.testing.assert_allclose(result.ratios, [ratio for _, _, ratio in expected], rtol=1e-9)
    assert 450 <= len(result.windows) <= 560  # DELFI's 504 on hg19 with its own filters
    # GC-corrected short and long no longer follow GC.
    for column in ("short_corrected", "long_corrected"):
        assert abs(np.corrcoef(result.bins["gc"], result.bins[column])[0, 1]) < 0.05
    # FinaleToolkit's window ratio: the mean of the 50 bins' ratios, each GC-corrected on its own.
    mean = delfi.profile(counts, annotation, window_ratio="mean")
    gc, ratio = result.bins["gc"], result.bins["short"] / result.bins["long"]
    grid = np.arange(gc.min(), gc.max() + 0.0005, 0.001)
    corrected = ratio - direct_loess(grid, direct_loess(gc, ratio, grid), gc) + np.median(ratio)
    for window in (mean.windows[0], mean.windows[-1]):
        chosen = (
            (result.bins["arm"] == window["arm"])
            & (result.bins["start"] >= window["start"])
            & (result.bins["start"] < window["end"])
        )
        assert chosen.sum() == 50
        assert window["ratio"] == pytest.approx(np.mean(corrected[chosen]), rel=1e-9)


def test_delfi_panel_correlation_and_features(tmp_path):
    _, annotation = sample_on("GRCh38", 1)
    profiles = [delfi.profile(sample_on("GRCh38", seed)[0], annotation) for seed in (1, 2, 3)]
    panel = delfi.panel_median(profiles)
    delfi.save_panel(panel, tmp_path / "panel.npz")
    loaded = delfi.load_panel(tmp_path / "panel.npz")
    assert loaded["windows"] == panel["windows"] and np.array_equal(loaded["ratio"], panel["ratio"])
    test = delfi.profile(sample_on("GRCh38", 9)[0], annotation)
    summary = delfi.summary(test, loaded)
    known = np.isfinite(test.ratios)
    assert summary["correlation_with_panel"] == pytest.approx(
        np.corrcoef(test.ratios[known], panel["ratio"][known])[0, 1]
    )
    features = delfi.feature_table(test, 0.002, loaded)
    assert sum(name.startswith("ratio_") for name in features) == len(test.windows)
    assert features["mitochondrial_fraction"] == 0.002
    mean, sd = loaded["arm_ratio"]["1p"]
    arm_windows = [w for w in test.windows if w["arm"] == "1p"]
    assert features["z_1p"] == pytest.approx(
        (sum(w["short"] for w in arm_windows) / sum(w["long"] for w in arm_windows) - mean) / sd
    )


def test_delfi_through_the_fragments_command(tmp_path, run_cli):
    counts, annotation = sample_on("GRCh38", seed=5)
    annotation.save(tmp_path / "bins.npz")
    for seed in (5, 6, 7):
        sample, _ = sample_on("GRCh38", seed)
        sample.save(tmp_path / f"s{seed}.counts.npz")
    inputs = [tmp_path / f"s{seed}.counts.npz" for seed in (5, 6, 7)]
    assert (
        run_cli(
            "fragments",
            *inputs,
            "--bins",
            tmp_path / "bins.npz",
            "-o",
            tmp_path / "panel",
            "--make-delfi-panel",
            tmp_path / "panel.npz",
        ).exit_code
        == 0
    )
    assert (
        run_cli(
            "fragments",
            inputs[0],
            "--bins",
            tmp_path / "bins.npz",
            "-o",
            tmp_path / "out",
            "--delfi-panel",
            tmp_path / "panel.npz",
        ).exit_code
        == 0
    )
    result = json.loads((tmp_path / "out" / "GRCh38_5.fragments.json").read_text())
    assert result["delfi"]["windows"] == len(delfi.profile(counts, annotation).windows)
    assert result["delfi"]["correlation_with_panel"] > 0.3
    header = (tmp_path / "out" / "delfi_features.tsv").read_text().splitlines()[0].split("\t")
    assert header[0] == "sample" and "mitochondrial_fraction" in header and any(h.startswith("z_") for h in header)
    rows = (tmp_path / "out" / "GRCh38_5.delfi.tsv").read_text().splitlines()
    assert len(rows) == 1 + result["delfi"]["windows"]
    # The filtered 100 kb bins, raw and corrected: the windows are their 50-bin sums.
    bins = [line.split("\t") for line in (tmp_path / "out" / "GRCh38_5.delfi_bins.tsv").read_text().splitlines()]
    header, bins = bins[0], bins[1:]
    assert header[:3] == ["chrom", "start", "end"] and len(bins) == result["delfi"]["bins"]
    first = rows[1].split("\t")
    members = [b for b in bins if b[header.index("arm")] == first[1] and int(first[2]) <= int(b[1]) < int(first[3])]
    assert len(members) == int(first[4]) == delfi.BINS_PER_WINDOW
    assert sum(float(b[header.index("short_corrected")]) for b in members) == pytest.approx(float(first[5]), rel=1e-5)


def test_finaletoolkit_gc_smoother_is_optional_and_removes_the_gc_trend(monkeypatch):
    counts, annotation = sample_on("GRCh37", seed=11)
    import importlib.util

    if importlib.util.find_spec("loess") is None:  # the `loess` package: non-commercial licence, never a requirement
        with pytest.raises(delfi.UsageError, match="pip install loess"):
            delfi.profile(counts, annotation, gc_smoother="loess_1d")
        return
    default, finaletoolkit = (
        delfi.profile(counts, annotation),
        delfi.profile(counts, annotation, gc_smoother="loess_1d"),
    )
    assert [(w["arm"], w["start"]) for w in default.windows] == [(w["arm"], w["start"]) for w in finaletoolkit.windows]
    for column in ("short_corrected", "long_corrected", "ratio_corrected"):
        assert abs(np.corrcoef(finaletoolkit.bins["gc"], finaletoolkit.bins[column])[0, 1]) < 0.05
        # Two smoothers of one curve: close, not equal.
        relative = np.abs(finaletoolkit.bins[column] - default.bins[column]) / np.abs(default.bins[column])
        assert 0 < np.median(relative) < 0.02
    assert delfi.summary(finaletoolkit)["gc_smoother"] == "loess_1d"
    # Without the package the option is a usage error naming it.
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda name, *a, **k: (
            (_ for _ in ()).throw(ImportError(name)) if name.startswith("loess") else real_import(name, *a, **k)
        ),
    )
    with pytest.raises(delfi.UsageError, match="pip install loess"):
        delfi.profile(counts, annotation, gc_smoother="loess_1d")
