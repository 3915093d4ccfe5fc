"""The generated stubs in v1/ match proto/ (scripts/gen_stubs.py --check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_up_to_date():
    pytest.importorskip("grpc_tools", reason="requires grpcio-tools (pip install -e .[dev])")
    result = subprocess.run([sys.executable, "scripts/gen_stubs.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
