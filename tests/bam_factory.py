"""Small BAM/CRAM files for tests, written with pysam: random flags, positions, MAPQ and TLEN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam

CONTIGS = [
    ("chr1", 2_000_000),
    ("chr2", 1_500_000),
    ("chrX", 800_000),
    ("chrY", 300_000),
    ("chrM", 16_569),
    ("chrEBV", 171_823),
]


def header(contigs=CONTIGS, sort_order: str | None = "coordinate") -> dict:
    result = {"SQ": [{"SN": name, "LN": length} for name, length in contigs], "RG": [{"ID": "rg1", "SM": "testsample"}]}
    if sort_order:
        result["HD"] = {"VN": "1.6", "SO": sort_order}
    return result


def random_records(seed: int, n: int, paired: bool, contigs=CONTIGS, unplaced: int = 50) -> list[dict]:
    """Records with every combination of the 12 flag bits (paired) or of the non-pair bits."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        flag = i % 4096
        if not paired:
            flag &= ~(0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x80)
        ref = int(rng.integers(len(contigs)))
        length = contigs[ref][1]
        pos = int(rng.integers(0, length - 1000))
        tlen = int(rng.integers(40, 1500)) if rng.random() < 0.97 else int(rng.integers(1500, 7000))
        # Mates left or right of this read, on the same contig mostly, sometimes at the same spot.
        u = rng.random()
        mate_pos = pos if u < 0.05 else pos + tlen - 50 if u < 0.55 else max(0, pos - tlen + 50)
        mate_ref = ref if rng.random() < 0.95 else int(rng.integers(len(contigs)))
        signed = tlen if mate_pos >= pos else -tlen
        records.append(
            {
                "flag": flag,
                "ref": ref,
                "pos": pos,
                "mapq": int(rng.choice([0, 1, 5, 19, 20, 21, 30, 37, 60, 255])),
                "mate_ref": mate_ref if flag & 0x1 else -1,
                "mate_pos": mate_pos if flag & 0x1 else -1,
                "tlen": signed if flag & 0x1 else 0,
                "name": f"q{i}",
            }
        )
    # Fragment pairs at identical positions, to exercise the tie rule and duplicate removal.
    for i in range(200):
        ref, pos = int(rng.integers(2)), int(rng.integers(0, 100_000))
        flag1 = (0x1 | 0x2 | 0x20 | 0x40) if paired else 0
        for copy in range(2):
            records.append(
                {
                    "flag": flag1,
                    "ref": ref,
                    "pos": pos,
                    "mapq": 60,
                    "mate_ref": ref if paired else -1,
                    "mate_pos": pos + (0 if copy else 120) if paired else -1,
                    "tlen": 170 if paired else 0,
                    "name": f"d{i}_{copy}",
                }
            )
            if paired:
                records.append(
                    {
                        "flag": 0x1 | 0x2 | 0x10 | 0x80,
                        "ref": ref,
                        "pos": pos + (0 if copy else 120),
                        "mapq": 60,
                        "mate_ref": ref,
                        "mate_pos": pos,
                        "tlen": -170,
                        "name": f"d{i}_{copy}",
                    }
                )
    records.sort(key=lambda r: (r["ref"], r["pos"]))
    for i in range(unplaced):
        flag = 0x4 | ((0x1 | 0x8 | 0x40) if paired else 0)
        records.append(
            {"flag": flag, "ref": -1, "pos": -1, "mapq": 0, "mate_ref": -1, "mate_pos": -1, "tlen": 0, "name": f"u{i}"}
        )
    return records


def write_bam(
    path: Path, records: list[dict], contigs=CONTIGS, sort_order: str | None = "coordinate", index: bool = True
) -> Path:
    with pysam.AlignmentFile(str(path), "wb", header=header(contigs, sort_order)) as out:
        for r in records:
            a = pysam.AlignedSegment(out.header)
            a.query_name = r["name"]
            a.flag = r["flag"]
            a.reference_id = r["ref"]
            a.reference_start = r["pos"]
            a.mapping_quality = r["mapq"]
            a.cigarstring = "50M" if r["ref"] >= 0 else None
            a.query_sequence = "ACGTACGTAC" * 5
            a.query_qualities = pysam.qualitystring_to_array("F" * 50)
            a.next_reference_id = r["mate_ref"]
            a.next_reference_start = r["mate_pos"]
            a.template_length = r["tlen"]
            a.set_tag("RG", "rg1")
            out.write(a)
    if index:
        pysam.index(str(path))
    return path


def write_reference(path: Path, contigs=CONTIGS, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as out:
        for name, length in contigs:
            sequence = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, length)].tobytes().decode()
            out.write(f">{name}\n")
            for i in range(0, length, 60):
                out.write(sequence[i : i + 60] + "\n")
    pysam.faidx(str(path))
    return path
