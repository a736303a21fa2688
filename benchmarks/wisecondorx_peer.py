"""plasmacount beside WisecondorX on the same simulated NIPT cohorts: calls, fetal sex and time.

WisecondorX (CC BY-NC-SA: run only, never copied into plasmacount) is installed into a
temporary folder from a snapshot of its public repository given with `--source` (a source tree
or a git directory), with its Python dependencies in a virtual environment there; its `predict`
needs R with DNAcopy and jsonlite (Debian: `apt-get install r-base-core r-bioc-dnacopy
r-cran-jsonlite`). Both tools get the same count-level samples of the project's OWN SIMULATOR in
its pessimistic lab (`nipt_accuracy.SETTINGS["pessimistic"]`: single-end, no placental pattern,
concentrated chrY background), 100 kb bins: WisecondorX reads them as its own `.npz` (the
per-chromosome bin counts `convert` would write at 100 kb), so alignment and counting are out of
the comparison. WisecondorX builds `newref --nipt --binsize 100000` from the same 200 euploid
pregnancies, calls with its chromosome z (`predict --bed`, `_statistics.txt`) at z >= 3 (NIPTeR's
and most labs' line) and at plasmacount's 3.5, and tells fetal sex with `gender`. WisecondorX
has no fetal fraction, no no-call and no maternal/fetal label; its columns say so.

The repository's newest commit (0f637d0, "add ref qc to newref", 2026-03-05) calls a function
it does not import after writing its reference, so `newref` ends in a NameError; `--revision`
picks the commit to run (from a git directory), and this benchmark runs its parent, 58e1747.

    python benchmarks/wisecondorx_peer.py --source PATH [--revision 58e1747] [--quick] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nipt_accuracy import SETTINGS, Lab, annotation_and_source, designs, population_ff_at_least  # noqa: E402

from plasmacount.genome import name_key  # noqa: E402
from plasmacount.nipt import analyse_sample  # noqa: E402
from plasmacount.simulation import simulate_counts, with_finding  # noqa: E402

WCX_KEYS = {**{str(i): str(i) for i in range(1, 23)}, "X": "23", "Y": "24"}


def install(source: Path, folder: Path, revision: str) -> Path:
    """WisecondorX from `source` (at `revision` when it is a git directory) into `folder`/venv;
    returns its command."""
    tree = folder / "wisecondorx-src"
    if (source / "HEAD").exists() and (source / "objects").is_dir():  # a git directory
        tree.mkdir()
        archive = subprocess.run(
            ["git", f"--git-dir={source}", "archive", revision], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    else:
        shutil.copytree(source, tree)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(tree)], check=True)
    check = subprocess.run(
        ["Rscript", "-e", "suppressMessages({library(DNAcopy); library(jsonlite)})"], capture_output=True
    )
    if check.returncode != 0:
        sys.exit(
            "WisecondorX predict needs R with DNAcopy and jsonlite: apt-get install r-base-core r-bioc-dnacopy r-cran-jsonlite"
        )
    return venv / "bin" / "WisecondorX"


def run_peer(arguments: list[str]) -> None:
    """Run a WisecondorX command; on failure stop with its last lines of output (not a traceback)."""
    done = subprocess.run(arguments, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        sys.exit(f"WisecondorX {arguments[1]} failed (exit {done.returncode}):\n{tail}")


def write_wcx(sample, path: Path) -> None:
    """A sample as WisecondorX's convert writes it: per chromosome '1'..'24', counts per bin."""
    per_chromosome = {}
    for contig in sample.layout.contigs:
        key = WCX_KEYS.get(name_key(contig.name))
        if key:
            per_chromosome[key] = sample.counts[contig.first_bin : contig.first_bin + contig.n_bins].astype(np.int32)
    np.savez_compressed(path, binsize=sample.layout.bin_size, sample=per_chromosome, quality={})


def wcx_predict(command: Path, npz: Path, reference: Path, folder: Path) -> dict:
    out = folder / npz.stem
    run_peer([str(command), "predict", str(npz), str(reference), str(out), "--bed", "--seed", "1"])
    z = {}
    for line in Path(f"{out}_statistics.txt").read_text().splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 4 and fields[0] in ([str(i) for i in range(1, 23)] + ["X"]):
            try:
                z[fields[0]] = float(fields[3])
            except ValueError:
                z[fields[0]] = float("nan")
    sex = subprocess.run(
        [str(command), "gender", str(npz), str(reference)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return {"z": z, "sex": sex}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="WisecondorX source tree or git directory")
    parser.add_argument(
        "--revision", default="58e1747", help="commit to run, when --source is a git directory (default: 58e1747)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="wisecondorx-"))
    command = install(args.source.resolve(), folder, args.revision)
    version = subprocess.run(
        [str(folder / "venv" / "bin" / "pip"), "show", "wisecondorx"], capture_output=True, text=True
    ).stdout
    version = next((line.split()[-1] for line in version.splitlines() if line.startswith("Version")), "?")
    annotation, _, source = annotation_and_source(folder)
    effects, paired, background = SETTINGS["pessimistic"]
    lab = Lab(annotation, effects, paired, background)
    scale = 0.25 if args.quick else 1.0
    n = lambda k: max(4, int(k * scale))  # noqa: E731

    panel_designs = designs(200, 10_000_000, 101, paired, background)
    panel = [simulate_counts(d, lab.model, 101, i) for i, d in enumerate(panel_designs)]
    panel_paths = []
    for sample in panel:
        path = folder / "panel" / f"{sample.sample}.npz"
        path.parent.mkdir(exist_ok=True)
        write_wcx(sample, path)
        panel_paths.append(str(path))
    start = time.perf_counter()
    from plasmacount.reference import build_reference

    lab.reference = build_reference(panel, annotation)
    ours_reference = time.perf_counter() - start
    start = time.perf_counter()
    run_peer(
        [
            str(command),
            "newref",
            *panel_paths,
            str(folder / "wcx_ref.npz"),
            "--nipt",
            "--binsize",
            "100000",
            "--cpus",
            "2",
        ]
    )
    theirs_reference = time.perf_counter() - start

    cases = []  # (label, design, seed, index, event)
    for i, d in enumerate(designs(n(100), 10_000_000, 1103, paired, background)):
        cases.append(("euploid", d, 1103, i, None))
    rng = np.random.default_rng(1105)
    base = designs(n(30) * 3, 10_000_000, 1105, paired, background)
    for j, event in enumerate(("T21", "T18", "T13")):
        for i, d in enumerate(base[j * n(30) : (j + 1) * n(30)]):
            cases.append((event, with_finding(d, event, population_ff_at_least(rng, 0.04)), 1105, 1000 * j + i, event))
    rng = np.random.default_rng(1107)
    for i, d in enumerate(designs(n(30), 10_000_000, 1107, paired, background)):
        chrom = str(rng.choice(["chr13", "chr18", "chr21"]))
        start_at = int(
            rng.uniform(
                {"chr13": 20e6, "chr18": 1e6, "chr21": 15e6}[chrom],
                {"chr13": 105e6, "chr18": 73e6, "chr21": 40e6}[chrom],
            )
        )
        size = int(rng.uniform(2e6, 5e6))
        design = dataclasses.replace(
            d,
            events=[
                {
                    "type": "cnv",
                    "origin": "maternal",
                    "chrom": chrom,
                    "start": start_at,
                    "end": start_at + size,
                    "fetal_cn": 3 if rng.random() < 0.5 else 2,
                    "maternal_cn": 3,
                    "name": None,
                }
            ],
        )
        cases.append(("maternal duplication", design, 1107, i, f"T{chrom[3:]}"))
    for i, d in enumerate(designs(n(30), 10_000_000, 1108, paired, background)):
        cases.append(
            (
                "library bias 0.5 %",
                dataclasses.replace(d, library_bias=0.005, library_bias_seed=1108 * 1000 + i),
                1108,
                i,
                None,
            )
        )

    ours, theirs, ours_seconds, theirs_seconds = [], [], 0.0, 0.0
    npz_paths = []
    samples = []
    for label, design, seed, index, _ in cases:
        sample = simulate_counts(design, lab.model, seed, index)
        path = folder / "cases" / f"{label.replace(' ', '_').replace('%', 'pc')}_{index}.npz"
        path.parent.mkdir(exist_ok=True)
        write_wcx(sample, path)
        npz_paths.append(path)
        samples.append(sample)
    start = time.perf_counter()
    ours = [analyse_sample(sample, lab.reference) for sample in samples]
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(pool.map(lambda p: wcx_predict(command, p, folder / "wcx_ref.npz", folder / "cases"), npz_paths))
    theirs_seconds = time.perf_counter() - start

    rows = []
    for label in ("euploid", "T21", "T18", "T13", "maternal duplication", "library bias 0.5 %"):
        chosen = [k for k, case in enumerate(cases) if case[0] == label]
        if label in ("T21", "T18", "T13"):
            key = label[1:]
            ours_cell = f"{sum(next(c for c in ours[k]['calls'] if c['event'] == label)['result'] == 'positive' for k in chosen)}/{len(chosen)} found"
            theirs3 = sum(theirs[k]["z"].get(key, float("nan")) >= 3 for k in chosen)
            theirs35 = sum(theirs[k]["z"].get(key, float("nan")) >= 3.5 for k in chosen)
            rows.append(
                f"| {label}, FF >= 4 % | {ours_cell} | {theirs3}/{len(chosen)} (z >= 3); {theirs35}/{len(chosen)} (z >= 3.5) |"
            )
            continue
        if label == "maternal duplication":
            ours_bad = sum(
                next(c for c in ours[k]["calls"] if c["event"] == cases[k][4])["result"] == "positive" for k in chosen
            )
            theirs_bad = sum(theirs[k]["z"].get(cases[k][4][1:], 0.0) >= 3 for k in chosen)
            labelled = sum(any(c["origin"] == "maternal" for c in ours[k]["cnvs"]) for k in chosen)
            rows.append(
                f"| maternal 2-5 Mb duplication on chr13/18/21: trisomy called | {ours_bad}/{len(chosen)} (CNV labelled maternal "
                f"{labelled}/{len(chosen)}) | {theirs_bad}/{len(chosen)} (z >= 3; no maternal/fetal label) |"
            )
            continue
        ours_positive = sum(
            any(c["result"] == "positive" for c in ours[k]["calls"] if c["event"].startswith("T")) for k in chosen
        )
        ours_no_call = sum(any(c["result"] == "no-call" for c in ours[k]["calls"]) for k in chosen)
        theirs3 = sum(any(theirs[k]["z"].get(str(i), 0.0) >= 3 for i in range(1, 23)) for k in chosen)
        theirs35 = sum(any(theirs[k]["z"].get(str(i), 0.0) >= 3.5 for i in range(1, 23)) for k in chosen)
        rows.append(
            f"| {label}: samples with a false positive trisomy | {ours_positive}/{len(chosen)} ({ours_no_call} with a no-call) | "
            f"{theirs3}/{len(chosen)} (z >= 3); {theirs35}/{len(chosen)} (z >= 3.5) |"
        )
        if label == "euploid":
            truth = [cases[k][1].fetal_sex for k in chosen]
            ours_sex = sum(ours[k]["fetal_sex"] == t for k, t in zip(chosen, truth))
            theirs_sex = sum(
                {"male": "male", "female": "female"}.get(theirs[k]["sex"], "?") == t for k, t in zip(chosen, truth)
            )
            rows.append(f"| euploid: fetal sex correct | {ours_sex}/{len(chosen)} | {theirs_sex}/{len(chosen)} |")
    lines = [
        f"Data: the project's OWN SIMULATOR, pessimistic lab ({source}, single-end, 10 M reads, 200-pregnancy reference). "
        f"WisecondorX {version} (commit {args.revision}) from its public repository, run in a temporary folder (never copied into plasmacount).",
        "",
        "| measure | plasmacount | WisecondorX |",
        "|---|---|---|",
        *rows,
        f"| reference from 200 samples (2 cores) | {ours_reference:.1f} s | {theirs_reference:.1f} s (`newref --cpus 2`) |",
        f"| {len(cases)} samples analysed | {ours_seconds:.1f} s (one process) | {theirs_seconds:.1f} s (`predict` + `gender`, 2 at a time) |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    shutil.rmtree(folder, ignore_errors=True)
    if args.write:
        from results import write_section

        write_section(
            "wisecondorx",
            "## Prenatal testing beside WisecondorX (same simulated cohorts)\n\n" + report,
            f"python benchmarks/wisecondorx_peer.py --source WISECONDORX_SNAPSHOT --revision {args.revision}{' --quick' if args.quick else ''} --write",
        )


if __name__ == "__main__":
    main()
