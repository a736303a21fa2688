"""Speed of `plasmacount reference` (200 samples) and `nipt` (96 samples) through the command line.

The project's OWN SIMULATOR, pessimistic lab (see nipt_accuracy.py), 10 M reads, 100 kb bins.
Targets (issue 11): each <= 60 s on 2 cores. Run on a quiet machine: timings are wall clock.

    python benchmarks/nipt_speed.py [--write]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nipt_accuracy import SETTINGS, Lab, annotation_and_source, designs  # noqa: E402

from plasmacount.reference import Reference  # noqa: E402
from plasmacount.simulation import simulate_counts  # noqa: E402


def timing(lab, scratch: Path, annotation_path: Path) -> list[str]:
    panel_dir, batch_dir = scratch / "panel", scratch / "batch"
    panel_dir.mkdir()
    batch_dir.mkdir()
    panel = []
    for i, design in enumerate(designs(200, 10_000_000, 201, lab.paired, lab.background)):
        path = panel_dir / f"{design.sample}.counts.npz"
        simulate_counts(design, lab.model, 201, i).save(path)
        panel.append(str(path))
    batch = []
    for i, design in enumerate(designs(96, 10_000_000, 202, lab.paired, lab.background, cohort="nipt")):
        path = batch_dir / f"{design.sample}.counts.npz"
        simulate_counts(design, lab.model, 202, i).save(path)
        batch.append(str(path))
    cli = [sys.executable, "-m", "plasmacount", "--quiet"]
    start = time.perf_counter()
    subprocess.run(
        cli + ["reference", *panel, "--bins", str(annotation_path), "-o", str(scratch / "ref.npz")], check=True
    )
    reference_seconds = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(
        cli + ["nipt", *batch, "--reference", str(scratch / "ref.npz"), "-o", str(scratch / "out")], check=True
    )
    nipt_seconds = time.perf_counter() - start
    qc = Reference.load(scratch / "ref.npz").metadata["qc"]
    return [
        f"Timing (2 cores, command line, pessimistic lab): `reference` on 200 samples {reference_seconds:.1f} s (target <= 60 s); "
        f"`nipt` on 96 samples {nipt_seconds:.1f} s (target <= 60 s). That reference's QC: {qc['status']} "
        f"({'; '.join(qc['reasons']) or 'no reasons'}).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    annotation, annotation_path, source = annotation_and_source(scratch)
    lab = Lab(annotation, *SETTINGS["pessimistic"])
    lines = [f"Data: the project's OWN SIMULATOR ({source}), pessimistic lab.", ""] + timing(
        lab, scratch, annotation_path
    )
    report = "\n".join(lines)
    print(report)
    if args.write:
        from results import write_section

        write_section(
            "nipt-speed",
            "## Prenatal testing speed (`plasmacount reference` + `nipt`)\n\n" + report,
            "python benchmarks/nipt_speed.py --write",
        )


if __name__ == "__main__":
    main()
