"""Tumour fraction accuracy of `plasmacount tumor` on simulated cohorts with known truth.

The project's OWN SIMULATOR: hg38 layout at 1 Mb bins (ichorCNA's standard). A panel of normals from 30 healthy donors at
10 M fragments; then, at 10 M fragments and at 3 M (about 0.1x, ichorCNA's ultra-low-pass
setting): healthy donors (upper bound of the tumour fraction) and a cancer cohort
(`--cohort cancer`: tumour fraction 1-30 %, 25 % genome-doubled, subclonal events, focal
amplifications): MAE over 5-30 %, split by ploidy, and the share of tumour fractions >= 3 %
detected. The model's settings (priors; the emissions' degrees of freedom, 2.1-4) were compared
on the cohorts of seeds 3, 101 and 202; seeds 707 and 808 were drawn after the last change
(held out; 505 and 606 held out the version before, 303 and 404 the one before that). The spread between seeds is the
benchmark's own noise. Each lab runs twice: with the default effects, and pessimistic, where
every sample's chromosome arms shift as real healthy plasma's do (`PESSIMISTIC_TUMOR_EFFECTS`).

    python benchmarks/tumor_accuracy.py [--patients 300] [--cohort-seeds 3 101 202 707 808] [--effects default pessimistic] [--write]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from plasmacount.simulation import PESSIMISTIC_TUMOR_EFFECTS, GenomeModel, LabEffects, design_cohort, simulate_counts
from plasmacount.tumor import analyse, build_panel
from plasmacount.workers import map_in_processes

LAB_SEED = 21
EFFECTS = {"default": LabEffects(), "pessimistic": PESSIMISTIC_TUMOR_EFFECTS}


def _fit(shared, task) -> dict:
    model, annotation, panel = shared
    design, seed, index = task
    result = analyse(simulate_counts(design, model, seed, index), annotation, panel)
    return {
        key: result[key]
        for key in ("tumor_fraction", "tumor_fraction_low", "tumor_fraction_high", "tumor_detected", "ploidy")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--healthy", type=int, default=200)
    parser.add_argument(
        "--cohort-seeds",
        type=int,
        nargs="+",
        default=[3, 101, 202, 707, 808],
        help="seeds of the cancer cohorts (each seed draws a fresh cohort)",
    )
    parser.add_argument(
        "--effects",
        nargs="+",
        choices=sorted(EFFECTS),
        default=["default", "pessimistic"],
        help="lab effects of the simulated lab: default, or pessimistic (healthy whole-arm shifts as real donors show)",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    lines = [
        "Data: the project's OWN SIMULATOR. hg38 layout, 1 Mb bins; panel of normals from 30 simulated healthy donors at 10 M fragments. "
        "Lab effects: `default` has no healthy whole-arm shifts; `pessimistic` (`simulation.PESSIMISTIC_TUMOR_EFFECTS`) gives every "
        "sample, panel donors included, whole-arm shifts of SD 0.004 log2 rising with the arm's GC (about 0.02 on chr19 and chr22), "
        "as ichorCNA's real HD_ULP donors show.",
        "",
        "| lab effects | fragments | cohort seed | healthy: upper bound <= 3 % | healthy: tumour called | TF MAE 5-30 % (all / diploid / doubled) | "
        "TF >= 3 % detected | 95 % intervals hold the truth (all / detected) | zero-width intervals | seconds per healthy sample |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in args.effects:
        model = GenomeModel.hg38_layout(1_000_000, LAB_SEED, EFFECTS[setting])
        annotation = model.annotation()
        panel = build_panel(
            [simulate_counts(d, model, 1, i) for i, d in enumerate(design_cohort("healthy", 30, 10_000_000, seed=1))],
            annotation,
        )
        panel.null_fits()
        for reads in (10_000_000, 3_000_000):
            start = time.perf_counter()
            healthy = map_in_processes(
                _fit,
                [
                    (d, 2, i)
                    for i, d in enumerate(design_cohort("healthy", args.healthy, reads, seed=2 + reads // 1_000_000))
                ],
                (model, annotation, panel),
                2,
            )
            seconds = 2 * (time.perf_counter() - start) / len(healthy)
            bound = np.mean([r["tumor_fraction_high"] <= 0.03 for r in healthy])
            called = np.mean([r["tumor_detected"] for r in healthy])
            for cohort_seed in args.cohort_seeds:
                designs = design_cohort("cancer", args.patients, reads, seed=cohort_seed + reads // 1_000_000)
                results = map_in_processes(
                    _fit, [(d, cohort_seed, i) for i, d in enumerate(designs)], (model, annotation, panel), 2
                )
                truth = np.array([d.tumor_fraction for d in designs])
                doubled = np.array([d.tumor_genome_doubled for d in designs])
                estimate = np.array([r["tumor_fraction"] for r in results])
                low = np.array([r["tumor_fraction_low"] for r in results])
                high = np.array([r["tumor_fraction_high"] for r in results])
                found = np.array([r["tumor_detected"] for r in results])
                window = (truth >= 0.05) & (truth <= 0.30)
                error = np.abs(estimate - truth)
                detected = np.mean(found[truth >= 0.03])
                held = (low <= truth) & (truth <= high)
                lines.append(
                    f"| {setting} | {reads // 1_000_000} M | {cohort_seed} | {100 * bound:.1f} % of {len(healthy)} | {100 * called:.1f} % | "
                    f"{100 * error[window].mean():.2f} / {100 * error[window & ~doubled].mean():.2f} / "
                    f"{100 * error[window & doubled].mean():.2f} points (n = {window.sum()}, {(window & doubled).sum()} doubled) | "
                    f"{100 * detected:.1f} % | {100 * held.mean():.1f} % / {100 * held[found].mean():.1f} % | {int((high - low <= 0).sum())} | "
                    f"{seconds:.2f} |"
                )
    lines += [
        "",
        "The remaining error sits mostly in genome-doubled tumours: from counts alone, a doubled genome whose changes are even "
        "is a diploid one at tumour fraction 2t / (1 + t), and its odd changes read as diploid changes in half of the tumour "
        "cells (and the other way round). The model weighs the readings by stated priors (genome doubling in about 30 % of "
        "tumours, a near-triploid baseline 10 %, changes of one or two copies equally likely after doubling, about one change "
        "in five subclonal, over the same one- or two-copy steps, a Beta(1, 3) prior on the tumour fraction); the simulator draws doubling in 25 % of its tumours and "
        "no triploid baseline, so the model's priors are not its draws. The interval spans the solutions by their posterior. "
        "Settings were compared on the cohorts of seeds 3, 101 and 202; 707 and 808 were drawn after they were fixed (held out)."
        " With the pessimistic lab effects (arms shifting as in real healthy plasma, which the default lab lacks) the model "
        "still takes out arm shifts of the panel's healthy size, but at 10 M fragments, where counting noise no longer hides them, "
        "some healthy samples keep a bound above 3 % and one in a hundred is called: a limit of the method, not of this run. "
        "Seconds: wall time per sample over 2 processes, noisy (the command-speed section times `tumor` alone).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        from results import write_section

        write_section(
            "tumor",
            "## Tumour fraction (`plasmacount tumor`)\n\n" + report,
            f"python benchmarks/tumor_accuracy.py --patients {args.patients} --healthy {args.healthy} "
            f"--cohort-seeds {' '.join(map(str, args.cohort_seeds))} --effects {' '.join(args.effects)} --write",
        )


if __name__ == "__main__":
    main()
