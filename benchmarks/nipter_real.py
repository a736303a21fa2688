"""Real NIPT data: does the trisomy 21 sample of NIPTeR stand out from its four euploid samples?

The five REAL samples of the NIPTeR package (`../shared/data/nipter/`: sample101-104 euploid,
Trisomy04 = its trisomy 21 case; GRCh37, 50 kb bins, 12.8-17.4 M reads) and NIPTeR's GC table,
imported the way a user would (`bins --import`, counts from a `chrom start end count` TSV). Per
sample, each chromosome's share of the autosomal reads is computed raw and after plasmacount's
GC correction (`gc.fit_gc_curve`: a local linear curve through GC strata, fitted per sample on
coverage over the median profile of the euploid samples, the same function the reference uses).
The trisomy sample's share of each chromosome is then a z-score against the four euploid ones
(mean and SD of the four), and each euploid one against the other three.

Four euploid samples are far too few for a panel of normals: this is a check on real counts that
the GC correction removes what GC moves, not an accuracy figure.

    python benchmarks/nipter_real.py [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "nipter"
EUPLOID = ["sample101", "sample102", "sample103", "sample104"]
TRISOMY = "Trisomy04"
AUTOSOMES = [str(i) for i in range(1, 23)]

from plasmacount.bins import import_annotations  # noqa: E402
from plasmacount.counts import import_tsv  # noqa: E402
from plasmacount.gc import fit_gc_curve  # noqa: E402


def shares(counts: np.ndarray, keys: np.ndarray, use: np.ndarray) -> dict[str, float]:
    total = counts[use & np.isin(keys, AUTOSOMES)].sum()
    return {key: float(counts[use & (keys == key)].sum() / total) for key in AUTOSOMES}


def measure(data: Path = DATA) -> dict:
    """z of the trisomy sample's chromosome shares against the euploid ones, raw and GC-corrected."""
    annotation = import_annotations([data / "gc_GRCh37.50kb.tsv.gz"])
    names = EUPLOID + [TRISOMY]
    samples = [import_tsv(data / f"{name}.50kb.tsv.gz", sample=name) for name in names]
    layout = annotation.layout
    keys = layout.bin_keys()
    counts = np.array([s.on_layout(layout).counts if s.layout != layout else s.counts for s in samples], dtype=float)
    gc = annotation.gc
    autosomal = np.isin(keys, AUTOSOMES)
    # Usable bins: known GC, reads in every sample, not far from the typical bin (repeats, gaps).
    typical = np.median(counts[:, autosomal], axis=1, keepdims=True)
    relative = counts / typical
    use = (
        np.isfinite(gc)
        & (counts > 0).all(axis=0)
        & (np.median(relative, axis=0) > 0.3)
        & (np.median(relative, axis=0) < 3)
    )
    median_profile = np.median(relative[: len(EUPLOID)], axis=0)
    corrected = []
    for row in counts:
        over_median = np.where(use, row / np.where(median_profile > 0, median_profile, np.nan), 0.0)
        curve = fit_gc_curve(np.nan_to_num(over_median), gc, use & autosomal, n_strata=60)
        corrected.append(row / curve.factors)
    corrected = np.array(corrected)
    raw_shares = [shares(row, keys, use) for row in counts]
    corrected_shares = [shares(row, keys, use) for row in corrected]

    def z_table(table):
        euploid = np.array([[table[i][k] for k in AUTOSOMES] for i in range(len(EUPLOID))])
        trisomy = np.array([table[len(EUPLOID)][k] for k in AUTOSOMES])
        z = (trisomy - euploid.mean(axis=0)) / euploid.std(axis=0, ddof=1)
        cv = euploid.std(axis=0, ddof=1) / euploid.mean(axis=0)
        # Each euploid sample against the other three: how far normal samples stray.
        loo = []
        for i in range(len(EUPLOID)):
            others = np.delete(euploid, i, axis=0)
            loo.append((euploid[i] - others.mean(axis=0)) / others.std(axis=0, ddof=1))
        return dict(zip(AUTOSOMES, z)), dict(zip(AUTOSOMES, cv)), np.array(loo)

    raw_z, raw_cv, raw_loo = z_table(raw_shares)
    gc_z, gc_cv, gc_loo = z_table(corrected_shares)
    return {
        "names": names,
        "reads": counts.sum(axis=1),
        "usable": int(use.sum()),
        "bins": layout.n_bins,
        "raw_z": raw_z,
        "raw_cv": raw_cv,
        "raw_loo": raw_loo,
        "gc_z": gc_z,
        "gc_cv": gc_cv,
        "gc_loo": gc_loo,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is not present: this benchmark needs the shared real data")
    m = measure()
    names, counts_total = m["names"], m["reads"]
    raw_z, raw_cv, raw_loo, gc_z, gc_cv, gc_loo = (
        m["raw_z"],
        m["raw_cv"],
        m["raw_loo"],
        m["gc_z"],
        m["gc_cv"],
        m["gc_loo"],
    )
    reads = ", ".join(f"{name} {counts_total[i] / 1e6:.1f} M" for i, name in enumerate(names))
    lines = [
        "Data: REAL (NIPTeR package samples, GRCh37, 50 kb bins; "
        f"{m['usable']:,} of {m['bins']:,} bins usable). Reads: {reads}.",
        "",
        f"`{TRISOMY}` (trisomy 21) against the four euploid samples, z of each chromosome's share of autosomal reads:",
        "",
        "| chromosome | raw z | GC-corrected z | euploid CV raw | euploid CV GC-corrected |",
        "|---|---|---|---|---|",
    ]
    for key in ("13", "18", "21"):
        lines.append(
            f"| chr{key} | {raw_z[key]:+.1f} | {gc_z[key]:+.1f} | {100 * raw_cv[key]:.2f} % | {100 * gc_cv[key]:.2f} % |"
        )
    others = [k for k in AUTOSOMES if k not in ("13", "18", "21")]
    lines += [
        f"| other 19 autosomes, largest abs(z) | {max(abs(raw_z[k]) for k in others):.1f} | {max(abs(gc_z[k]) for k in others):.1f} | | |",
        "",
        "Euploid samples each against the other three (leave one out), largest abs(z) on chr13/18/21: "
        f"raw {np.abs(raw_loo[:, [12, 17, 20]]).max():.1f}, GC-corrected {np.abs(gc_loo[:, [12, 17, 20]]).max():.1f}. "
        "(With three samples as the reference z follows a t distribution with 2 degrees of freedom: each value exceeds 4 by chance 7 % of the time.)",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        from results import write_section

        write_section(
            "nipter_real",
            "## Real NIPT samples (NIPTeR): trisomy 21 against euploid\n\n" + report,
            "python benchmarks/nipter_real.py --write",
        )


if __name__ == "__main__":
    main()
