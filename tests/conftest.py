"""Shared fixtures: the real data folder (tests skip without it) and a CLI runner."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from plasmacount.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory) -> Path:
    """`plasmacount demo` run once for every test that reads its outputs."""
    output = tmp_path_factory.mktemp("demo") / "demo"
    code = 0
    try:
        main(["--quiet", "demo", str(output)])
    except SystemExit as exit:
        code = exit.code
    logging.getLogger("plasmacount").handlers[:] = []
    assert code == 0, f"demo exited with {code}"
    return output


@dataclass
class CliResult:
    exit_code: int
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """Run `plasmacount ARGS` in this process; returns the exit code and what went to stderr."""

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        logging.getLogger("plasmacount").handlers[:] = []
        return CliResult(code, captured.err)

    return run
