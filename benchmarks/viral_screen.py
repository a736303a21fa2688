"""The EBV screen for nasopharyngeal carcinoma on simulated cohorts with known truth.

Cohorts from `plasmacount simulate --cohort ebv` (10 M paired-end fragments; 70 % without EBV
DNA, 20 % non-cancer carriers with 1-30 short EBV fragments per 10 M, 10 % NPC with 5-5,000
long EBV fragments per 10 M): a training cohort to learn the model (`viral --train --specificity 0.95`) and an
test cohort drawn with another seed, screened with the learnt model and with the default one. Reports NPC
sensitivity, the share of carriers and of EBV-negative men screened positive, for the screen
and for its amount criterion alone. Twice: with the simulator's default EBV draws, and with the
pessimistic ones (`--ebv-npc-low-load-share 0.33 --ebv-carrier-nucleosomal-share 0.5`: a third of
NPC with carrier-like loads, carriers' viral DNA up to half nucleosome-sized).

    python benchmarks/viral_screen.py [--samples 2000] [--seeds 73 74] [--write]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


PESSIMISTIC = ["--ebv-npc-low-load-share", "0.33", "--ebv-carrier-nucleosomal-share", "0.5"]


def simulate(directory: Path, samples: int, seed: int, draws: list[str]) -> list[str]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "plasmacount",
            "--quiet",
            "simulate",
            "-o",
            str(directory),
            "--cohort",
            "ebv",
            "--samples",
            str(samples),
            "--reads",
            "10M",
            "--paired",
            "--genome",
            "hg38",
            "--seed",
            str(seed),
            "--prefix",
            f"s{seed}",
        ]
        + draws,
        check=True,
    )
    return sorted(str(p) for p in directory.glob("*.counts.npz"))


def truth(directory: Path) -> dict[str, str]:
    with open(directory / "truth.tsv") as stream:
        return {row["sample"]: row["ebv_status"] for row in csv.DictReader(stream, delimiter="\t")}


def evaluate(output: Path, status: dict[str, str]) -> dict:
    rows = {}
    for path in output.glob("*.viral.json"):
        result = json.loads(path.read_text())
        rows[result["sample"]] = result
    npc = [s for s, v in status.items() if v == "npc"]
    others = [s for s, v in status.items() if v != "npc"]
    carriers = [s for s, v in status.items() if v == "carrier"]
    positive = {s for s, r in rows.items() if r["screen"]["result"] == "positive"}
    count_only = {s for s, r in rows.items() if r["screen"]["count_criterion"]}
    not_evaluable = sum(rows[s]["screen"]["result"] == "not evaluable" for s in npc)
    return {
        "npc": len(npc),
        "others": len(others),
        "carriers": len(carriers),
        "sensitivity": sum(s in positive for s in npc) / len(npc),
        "npc_not_evaluable": not_evaluable,
        "specificity": 1 - sum(s in positive for s in others) / len(others),
        "false_positives": sum(s in positive for s in others),
        "false_positive_carriers": sum(s in positive for s in carriers),
        "count_only_sensitivity": sum(s in count_only for s in npc) / len(npc),
        "count_only_specificity": 1 - sum(s in count_only for s in others) / len(others),
        "count_only_false_positives": sum(s in count_only for s in others),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs=2,
        default=[73, 74],
        metavar=("TRAIN", "TEST"),
        help="cohort seeds (default 73 74, drawn after the settings were fixed on 71 72)",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    lines = []
    for setting, draws in (("default", []), ("pessimistic", PESSIMISTIC)):
        here = scratch / setting
        train_paths = simulate(here / "train", args.samples // 2, args.seeds[0], draws)
        test_paths = simulate(here / "test", args.samples, args.seeds[1], draws)
        labels = here / "labels.tsv"
        labels.write_text("sample\tlabel\n" + "".join(f"{s}\t{v}\n" for s, v in truth(here / "train").items()))
        cli = [sys.executable, "-m", "plasmacount", "--quiet", "viral"]
        subprocess.run(
            cli + train_paths + ["-o", str(here / "trained"), "--train", str(labels), "--specificity", "0.95"],
            check=True,
        )
        start = time.perf_counter()
        subprocess.run(
            cli + test_paths + ["-o", str(here / "learnt"), "--model", str(here / "trained" / "viral_model.json")],
            check=True,
        )
        seconds = time.perf_counter() - start
        subprocess.run(cli + test_paths + ["-o", str(here / "default")], check=True)
        status = truth(here / "test")
        learnt = json.loads((here / "trained" / "viral_model.json").read_text())
        lines += [
            f"**{setting.capitalize()} EBV draws** ({' '.join(draws) or 'simulate defaults'}). Data: the project's OWN SIMULATOR "
            f"(`simulate --cohort ebv`). Test cohort: {args.samples} simulated men (10 M paired-end fragments); the model learnt on "
            f"{args.samples // 2} others, drawn with another seed ({learnt['source']}; specificity set for: {learnt['specificity']}; "
            f"line: log likelihood ratio >= {learnt['threshold']:.2f}). Default model: literature-based, line at the published PPV "
            f"(Lam et al. 2018) at the published prevalence (log likelihood ratio >= 4.97), not fitted to any data. `viral` on the "
            f"test cohort: {seconds:.1f} s.",
            "",
            "| model | NPC detected | not evaluable (NPC) | specificity (negatives + carriers) | carriers positive | EBV-negative positive | "
            "amount alone (log LR > 0): sensitivity, specificity |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("learnt", "default"):
            m = evaluate(here / name, status)
            lines.append(
                f"| {name} | {100 * m['sensitivity']:.1f} % of {m['npc']} | {m['npc_not_evaluable']} | {100 * m['specificity']:.2f} % of {m['others']} | "
                f"{m['false_positive_carriers']} of {m['carriers']} ({100 * m['false_positive_carriers'] / max(m['carriers'], 1):.1f} %) | "
                f"{m['false_positives'] - m['false_positive_carriers']} | {100 * m['count_only_sensitivity']:.1f} %, "
                f"{100 * m['count_only_specificity']:.2f} % |"
            )
        lines.append("")
    lines += [
        "",
        "Published beside it (real plasma, not comparable cohort for cohort): the sequencing test of Lam et al. (PNAS 2018) "
        "found NPC at a PPV of 19.6 % among 20,174 screened men, against 11.0 % for two-draw qPCR (Chan et al., NEJM 2017: "
        "sensitivity 97.1 %, specificity 98.6 %). The default line reproduces that PPV at that prevalence by construction; "
        "how many NPC it finds depends on how NPC and carriers differ in a lab's own plasma, which is why `--train` exists. "
        + (
            "The settings (length windows, learnt spreads and amount shapes, out-of-fold line at 95 % confidence) were chosen "
            "looking at the cohorts of seeds 71 and 72; these rows are from seeds drawn after they were fixed (held out)."
            if args.seeds != [71, 72]
            else "Seeds 71 and 72 are the development cohorts the settings were chosen on: these rows are not held out."
        ),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        from results import write_section

        write_section(
            "viral",
            "## EBV screen for nasopharyngeal carcinoma (`plasmacount viral`)\n\n" + report,
            f"python benchmarks/viral_screen.py --samples {args.samples} --seeds {args.seeds[0]} {args.seeds[1]} --write",
        )


if __name__ == "__main__":
    main()
