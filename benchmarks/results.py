"""Writing a benchmark's latest results into its own marked section of BENCHMARKS.md."""

from __future__ import annotations

import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(key: str, body: str, command: str) -> None:
    """Replace (or append) the section between `<!-- key begin -->` and `<!-- key end -->`."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    begin, end = f"<!-- {key} begin -->", f"<!-- {key} end -->"
    block = f"{begin}\n{body}\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}).\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)
