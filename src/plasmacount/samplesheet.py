"""The sample sheet of a workflow run: which samples, from which files, in which role.

A tab-separated table with a header. Columns:
- `sample` (required): a name of letters, digits, `.`, `_` and `-`, unique in the sheet;
- the input, exactly one of: `fastq_1` (and `fastq_2` for paired-end reads), `bam` (a BAM or
  CRAM, coordinate-sorted and indexed), or `counts` (a counts file from an earlier run);
- `role` (optional, default `test`): `test` samples are analysed and reported; `reference`
  samples (euploid pregnancies) build the prenatal reference; `normal` samples (healthy
  donors) build the tumour panel of normals.

The sheet is checked as a whole before any job runs, so that a missing file in row 57 does not
surface after hours of alignment; every error names the row.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from plasmacount.errors import DataError

ROLES = ("test", "reference", "normal")
INPUT_COLUMNS = ("fastq_1", "bam", "counts")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SampleRow:
    sample: str
    role: str
    fastq_1: str | None = None
    fastq_2: str | None = None
    bam: str | None = None
    counts: str | None = None

    @property
    def input_kind(self) -> str:
        return "fastq" if self.fastq_1 else "bam" if self.bam else "counts"

    @property
    def paired(self) -> bool:
        return bool(self.fastq_2)


def read_sample_sheet(path: str | os.PathLike, base: str | os.PathLike | None = None) -> list[SampleRow]:
    """Read and check a sample sheet; relative paths are taken from `base` (default: the sheet's folder)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sample sheet not found")
    base = Path(base) if base is not None else path.parent
    with open(path, newline="") as stream:
        lines = [line for line in stream if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    columns = reader.fieldnames or []
    if "sample" not in columns:
        raise DataError(
            f"{path}: no 'sample' column in the header (tab-separated; columns: sample, fastq_1, fastq_2, bam, counts, role)"
        )
    if not any(column in columns for column in INPUT_COLUMNS):
        raise DataError(f"{path}: no input column; give fastq_1 (and fastq_2), bam or counts")
    rows: list[SampleRow] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(reader, start=2):  # line 1 is the header
        where = f"{path} row {number}"
        if None in record:
            raise DataError(f"{where}: more fields than the header has columns; check the tabs")
        values = {key: (value or "").strip() for key, value in record.items()}
        sample = values.get("sample", "")
        if not sample:
            raise DataError(f"{where}: empty sample name")
        if not NAME.match(sample):
            raise DataError(
                f"{where}: sample name {sample!r} has characters other than letters, digits, '.', '_' and '-'"
            )
        if sample in seen:
            raise DataError(
                f"{where}: sample {sample!r} appears twice (also row {seen[sample]}); sample names must be unique"
            )
        seen[sample] = number
        role = values.get("role") or "test"
        if role not in ROLES:
            raise DataError(f"{where} (sample {sample}): role {role!r} is not one of {', '.join(ROLES)}")
        given = [column for column in INPUT_COLUMNS if values.get(column)]
        if len(given) != 1:
            raise DataError(
                f"{where} (sample {sample}): give exactly one input of fastq_1, bam or counts "
                f"({'none' if not given else ', '.join(given)} given)"
            )
        if values.get("fastq_2") and not values.get("fastq_1"):
            raise DataError(f"{where} (sample {sample}): fastq_2 without fastq_1")
        resolved = {}
        for column in ("fastq_1", "fastq_2", "bam", "counts"):
            if values.get(column):
                file = Path(values[column])
                file = file if file.is_absolute() else base / file
                if not file.is_file():
                    raise DataError(
                        f"{where} (sample {sample}): {column} file {values[column]!r} not found (looked for {file})"
                    )
                resolved[column] = str(file.resolve())
        rows.append(SampleRow(sample=sample, role=role, **resolved))
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows
