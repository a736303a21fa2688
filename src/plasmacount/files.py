"""Output files that appear whole or not at all, and the archive container of plasmacount's own files.

Every output is first written to a hidden temporary file beside its destination and renamed
into place only when complete, so a failure never leaves a partial file behind.

plasmacount's own data files (counts, bin annotations) are ZIP archives of NumPy `.npy` arrays
plus a `metadata.json` member: readable with `numpy.load(path)` and any JSON parser, no pickle.
The archive is written with fixed timestamps and member order so that the same content gives
the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from plasmacount.errors import DataError

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to `path` only if the block succeeds (for
    writers that open files by name: the compiled counter, htslib)."""
    destination = Path(path)
    directory = destination.parent if str(destination.parent) else Path(".")
    if not directory.is_dir():
        raise DataError(f"{destination}: output folder {directory} does not exist; create it first")
    if destination.is_dir():
        raise DataError(f"{destination}: is a folder; give a file name to write")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=directory)
        os.close(handle)
    except OSError as error:
        raise DataError(
            f"{destination}: cannot write in {directory} ({error.strerror or error}); check the folder's permissions and free space"
        ) from None
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        # The message names the file the user asked for, not the hidden temporary beside it.
        if error.filename in (temporary, None) or str(error.filename) == str(temporary):
            raise DataError(
                f"{destination}: writing failed ({error.strerror or error}); check free space and permissions"
            ) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; rename it to `path` only if the block succeeds."""
    with atomic_path(path) as temporary, open(temporary, mode) as stream:
        yield stream


SAFE_NAME_LENGTH = 100


def sample_file_stem(sample: str) -> str:
    """The file-name stem for a sample's files: the name itself when it is a safe single path
    component (letters, digits, '.', '_', '+', '-'; not starting with '.' or '-'; up to 100
    characters), else a safe stem made from it plus 8 hex digits of its SHA-1, so two names that
    differ stay apart. The real name is kept inside the files. Sample names come from read
    groups, `--sample` and file names, and must never choose where a file is written
    (`../../x`, `a/b`, `/etc/x`)."""
    import hashlib

    name = str(sample)
    allowed = lambda c: c.isalnum() or c in "._+-"  # noqa: E731
    if (
        name
        and len(name) <= SAFE_NAME_LENGTH
        and all(allowed(c) for c in name)
        and name[0] not in ".-"
        and ".." not in name
        and name.isprintable()
    ):
        return name
    stem = "".join(c if allowed(c) and c.isprintable() else "_" for c in name)[: SAFE_NAME_LENGTH - 9].lstrip(".-")
    stem = re.sub(r"\.{2,}", "_", stem) or "sample"
    return f"{stem}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def check_unique_samples(names: list[str]) -> None:
    """Refuse a batch in which two samples share a name: their files and rows would overwrite
    each other without a word."""
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        shown = ", ".join(repr(n) for n in repeated[:5])
        raise DataError(
            f"sample names repeat in this batch: {shown}; give each sample its own name (count --sample, or the read group's SM)"
        )


def check_unique_inputs(named: Sequence[tuple[str, str | os.PathLike]]) -> None:
    """Refuse a batch whose inputs, given as (sample name, input path), share a sample name,
    before any is analysed: naming both files."""
    first: dict[str, str] = {}
    for name, source in named:
        if name in first:
            raise DataError(
                f"{source}: sample name {name!r} appears twice in this batch (also {first[name]}); "
                "give each sample its own name (count --sample, or the read group's SM)"
            )
        first[name] = str(source)


def json_safe(value: Any) -> Any:
    """JSON-ready copy: NaN and infinities become null, NumPy scalars become Python numbers."""
    import math

    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def table_cell(value: Any, float_format: str = ".4f") -> str:
    """A TSV cell: NA for missing or non-finite numbers, floats in `float_format`, the rest as text."""
    import math

    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return "NA"
    if isinstance(value, (float, np.floating)):
        text = format(float(value), float_format)
        # A value a rounding error below zero prints as -0.000: the same number as 0.000.
        return text[1:] if text.startswith("-") and not text.strip("-0.") else text
    return str(value)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as sorted, indented JSON (NaN as null), atomically."""
    with atomic_output(path, "w") as stream:
        json.dump(json_safe(data), stream, indent=1, sort_keys=True)
        stream.write("\n")
    return Path(path)


def write_archive(path: str | os.PathLike, metadata: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write `metadata` and `arrays` as a deterministic archive at `path`, atomically."""
    with atomic_output(path, "wb") as stream:
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            info = zipfile.ZipInfo("metadata.json", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            text = json.dumps(metadata, indent=1, sort_keys=True) + "\n"
            archive.writestr(info, text.encode())
            for name in sorted(arrays):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())


def read_archive(
    path: str | os.PathLike, expected_format: str, supported_major: int
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read an archive written by `write_archive`, checking its format name and major version."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
            arrays = {}
            for name in archive.namelist():
                if name.endswith(".npy"):
                    with archive.open(name) as member:
                        arrays[name[:-4]] = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as error:
        raise DataError(
            f"{path}: not a readable plasmacount {expected_format} file ({error}); recreate it with plasmacount"
        ) from error
    if metadata.get("format") != expected_format:
        raise DataError(f"{path}: this is a {metadata.get('format', 'unknown')!r} file, not a {expected_format!r} file")
    major = int(str(metadata.get("format_version", "0")).split(".")[0])
    if major != supported_major:
        raise DataError(
            f"{path}: {expected_format} format version {metadata.get('format_version')} is not supported "
            f"(this plasmacount reads version {supported_major}.x); recreate the file"
        )
    return metadata, arrays
