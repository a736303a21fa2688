"""Writing simulated reads as BAM and FASTQ, fast enough for 10-million-read samples.

Simulated reads all have one read length and one name length, so every mapped record has the
same size and a whole batch of records is one NumPy structured array written as bytes. The
BAM stream is cut into BGZF blocks and compressed with libdeflate on worker threads. Index
and CRAM conversion are left to htslib (through pysam).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import deflate
import numpy as np

from plasmacount.files import atomic_output

BGZF_BLOCK_INPUT = 65280
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
NAME_LENGTH = 12  # 11 characters + NUL
# 4-bit BAM base codes indexed by ASCII.
_NIBBLE = np.full(256, 15, dtype=np.uint8)
for _letter, _code in zip(b"ACGTN", (1, 2, 4, 8, 15)):
    _NIBBLE[_letter] = _code
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTN", b"TGCAN"):
    _COMPLEMENT[_a] = _b


def reg2bin(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The BAM index bin of 0-based half-open intervals (SAM specification, section 5.3)."""
    start = np.asarray(start, dtype=np.int64)
    last = np.asarray(end, dtype=np.int64) - 1
    result = np.zeros(start.shape, dtype=np.int64)
    done = np.zeros(start.shape, dtype=bool)
    for shift, offset in ((14, 4681), (17, 585), (20, 73), (23, 9), (26, 1)):
        here = ~done & ((start >> shift) == (last >> shift))
        result[here] = offset + (start[here] >> shift)
        done |= here
    return result


def record_dtype(read_length: int, n_cigar: int, tag_bytes: int) -> np.dtype:
    return np.dtype(
        [
            ("block_size", "<i4"),
            ("ref", "<i4"),
            ("pos", "<i4"),
            ("l_read_name", "u1"),
            ("mapq", "u1"),
            ("bin", "<u2"),
            ("n_cigar", "<u2"),
            ("flag", "<u2"),
            ("l_seq", "<i4"),
            ("next_ref", "<i4"),
            ("next_pos", "<i4"),
            ("tlen", "<i4"),
            ("name", f"S{NAME_LENGTH}"),
            ("cigar", "<u4", (n_cigar,)),
            ("seq", "u1", ((read_length + 1) // 2,)),
            ("qual", "u1", (read_length,)),
            ("tags", "u1", (tag_bytes,)),
        ]
    )


def read_names(indices: np.ndarray) -> np.ndarray:
    """Fixed-width names 'r' + 10 digits."""
    return np.char.add(b"r", np.char.zfill(np.asarray(indices).astype("S10"), 10))


def pack_sequence(bases: np.ndarray) -> np.ndarray:
    """ASCII bases (n x L) to BAM 4-bit packed sequence (n x ceil(L/2))."""
    codes = _NIBBLE[bases]
    if codes.shape[1] % 2:
        codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), dtype=np.uint8)], axis=1)
    return (codes[:, 0::2] << 4) | codes[:, 1::2]


def reverse_complement(bases: np.ndarray) -> np.ndarray:
    return _COMPLEMENT[bases[:, ::-1]]


def _tags(read_group: str, mismatches: np.ndarray, n: int) -> np.ndarray:
    """RG:Z, NM:C, AS:C, XS:C as bwa writes them (fixed width)."""
    prefix = b"RGZ" + read_group.encode() + b"\0"
    width = len(prefix) + 12
    tags = np.zeros((n, width), dtype=np.uint8)
    tags[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    p = len(prefix)
    for name, values in ((b"NMC", mismatches), (b"ASC", None), (b"XSC", None)):
        tags[:, p : p + 3] = np.frombuffer(name, dtype=np.uint8)
        tags[:, p + 3] = values if values is not None else 0
        p += 4
    return tags


class BamWriter:
    """Stream of BAM bytes compressed into BGZF blocks on `threads` threads; written atomically."""

    def __init__(
        self,
        path: str | os.PathLike,
        header_text: str,
        contigs: Sequence[tuple[str, int]],
        threads: int = 2,
        level: int = 4,
    ):
        self.path = Path(path)
        self._context = atomic_output(self.path, "wb")
        self._stream = self._context.__enter__()
        self._pool = ThreadPoolExecutor(max(1, threads))
        self._level = level
        self._pending = bytearray()
        text = header_text.encode()
        header = bytearray(b"BAM\x01" + struct.pack("<i", len(text)) + text + struct.pack("<i", len(contigs)))
        for name, length in contigs:
            encoded = name.encode() + b"\0"
            header += struct.pack("<i", len(encoded)) + encoded + struct.pack("<i", length)
        self.write(bytes(header))

    def _compress(self, data: bytes) -> bytes:
        payload = deflate.deflate_compress(data, self._level)
        size = len(payload) + 25
        return (
            b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00"
            + struct.pack("<H", size)
            + payload
            + struct.pack("<II", deflate.crc32(data), len(data))
        )

    def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= 64 * BGZF_BLOCK_INPUT:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        n_blocks = len(self._pending) // BGZF_BLOCK_INPUT + (
            1 if final and len(self._pending) % BGZF_BLOCK_INPUT else 0
        )
        view = memoryview(bytes(self._pending))
        chunks = [view[i * BGZF_BLOCK_INPUT : (i + 1) * BGZF_BLOCK_INPUT] for i in range(n_blocks)]
        for block in self._pool.map(lambda chunk: self._compress(chunk.tobytes()), chunks):
            self._stream.write(block)
        self._pending = bytearray(view[n_blocks * BGZF_BLOCK_INPUT :])

    def close(self) -> None:
        self._flush(final=True)
        self._stream.write(BGZF_EOF)
        self._pool.shutdown()
        self._context.__exit__(None, None, None)

    def abort(self, error: BaseException) -> None:
        self._pool.shutdown()
        self._context.__exit__(type(error), error, error.__traceback__)


def mapped_records(
    ref: np.ndarray,
    pos: np.ndarray,
    flag: np.ndarray,
    mapq: np.ndarray,
    next_ref: np.ndarray,
    next_pos: np.ndarray,
    tlen: np.ndarray,
    names: np.ndarray,
    bases: np.ndarray,
    qualities: np.ndarray,
    mismatches: np.ndarray,
    read_group: str,
) -> np.ndarray:
    """BAM records (a structured array; `.tobytes()` is the BAM stream) of placed reads with one
    M CIGAR operation; `bases` are forward-strand ASCII."""
    n, read_length = bases.shape
    tags = _tags(read_group, mismatches, n)
    dtype = record_dtype(read_length, 1, tags.shape[1])
    records = np.zeros(n, dtype=dtype)
    records["block_size"] = dtype.itemsize - 4
    records["ref"], records["pos"] = ref, pos
    records["l_read_name"] = NAME_LENGTH
    records["mapq"] = mapq
    records["bin"] = reg2bin(pos, pos + read_length)
    records["n_cigar"] = 1
    records["flag"] = flag
    records["l_seq"] = read_length
    records["next_ref"], records["next_pos"], records["tlen"] = next_ref, next_pos, tlen
    records["name"] = names
    records["cigar"][:, 0] = read_length << 4
    records["seq"] = pack_sequence(bases)
    records["qual"] = qualities
    records["tags"] = tags
    return records


def unplaced_records(
    flag: np.ndarray, names: np.ndarray, bases: np.ndarray, qualities: np.ndarray, read_group: str
) -> bytes:
    """BAM records of unmapped reads without a position (sorted last)."""
    n, read_length = bases.shape
    prefix = np.frombuffer(b"RGZ" + read_group.encode() + b"\0", dtype=np.uint8)
    dtype = record_dtype(read_length, 0, prefix.size)
    records = np.zeros(n, dtype=dtype)
    records["block_size"] = dtype.itemsize - 4
    records["ref"], records["pos"], records["next_ref"], records["next_pos"] = -1, -1, -1, -1
    records["l_read_name"] = NAME_LENGTH
    records["bin"] = 4680
    records["flag"] = flag
    records["l_seq"] = read_length
    records["name"] = names
    records["seq"] = pack_sequence(bases)
    records["qual"] = qualities
    records["tags"] = prefix
    return records.tobytes()


def fastq_records(names: np.ndarray, bases: np.ndarray, qualities: np.ndarray, suffix: bytes = b"") -> bytes:
    """FASTQ text of reads as sequenced (`bases` in read orientation, qualities as Phred values)."""
    n, read_length = bases.shape
    name_width = names.dtype.itemsize + len(suffix)
    width = 1 + name_width + 1 + read_length + 3 + read_length + 1
    text = np.empty((n, width), dtype=np.uint8)
    text[:, 0] = ord("@")
    full_names = np.char.add(names, suffix) if suffix else names
    text[:, 1 : 1 + name_width] = np.frombuffer(full_names.astype(f"S{name_width}").tobytes(), dtype=np.uint8).reshape(
        n, name_width
    )
    p = 1 + name_width
    text[:, p] = ord("\n")
    text[:, p + 1 : p + 1 + read_length] = bases
    p += 1 + read_length
    text[:, p : p + 3] = np.frombuffer(b"\n+\n", dtype=np.uint8)
    text[:, p + 3 : p + 3 + read_length] = qualities + 33
    text[:, -1] = ord("\n")
    return text.tobytes()


@contextlib.contextmanager
def open_fastq(path: str | os.PathLike) -> Iterator[gzip.GzipFile]:
    """A gzip FASTQ written atomically (fixed header time, so the same reads give the same bytes)."""
    with atomic_output(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0, filename="") as stream:
            yield stream
