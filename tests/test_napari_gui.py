"""Runs the GUI cases (``napari_gui_cases*.py``) in a fresh process on a real X display.

A fresh process because TensorFlow must be loaded after the OpenGL driver (see
``napari_sam._napari._tf``), and the rest of the suite loads TensorFlow first. The display is
``$DISPLAY`` or a private Xvfb (``napari_fixtures.xvfb_display``). The cases all run in one
test here, so that one xdist worker runs them (``$NAPARI_SAM_GUI_CASES`` selects some with a
``-k`` expression); its failure lists every failed case with its traceback.
"""

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from napari_fixtures import xvfb_display

__all__ = ["xvfb_display"]

CASES_FILES = [Path(__file__).with_name(n) for n in ("napari_gui_cases.py",
                                                     "napari_gui_cases_auto.py")]  # fmt: skip
CASES = [
    n.name
    for path in CASES_FILES
    for n in ast.parse(path.read_text()).body
    if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
]
assert len(set(CASES)) == len(CASES), "two GUI cases of one name"


def run_cases(display: str, xml: Path, select: str | None = None) -> dict:
    """Run the cases (``select``: a ``-k`` expression) in a fresh process on ``display``;
    ``{case: (outcome, text, seconds)}``."""
    env = {**os.environ, "DISPLAY": display}
    if env.get("QT_QPA_PLATFORM") == "offscreen":
        del env["QT_QPA_PLATFORM"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
    cmd += [str(p) for p in CASES_FILES]
    cmd += [f"--junitxml={xml}", "-o", "python_files=napari_gui_cases*.py"]
    if select:
        cmd += ["-k", select]
    run = subprocess.run(
        cmd, env=env, cwd=CASES_FILES[0].parents[1], capture_output=True, text=True, timeout=1800
    )
    if not xml.exists():
        pytest.fail(f"the GUI cases did not run (rc {run.returncode}):\n{run.stdout[-4000:]}"
                    f"\n{run.stderr[-4000:]}")  # fmt: skip
    results = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                text = (child.get("message") or "") + "\n" + (child.text or "")
        results[case.get("name")] = (outcome, text, float(case.get("time", 0)))
    print(run.stdout[-3000:])
    return results


def test_gui_cases(xvfb_display, tmp_path):
    """Every GUI case, in one process (one test here, so that one xdist worker runs them:
    ``$NAPARI_SAM_GUI_CASES`` selects some with a ``-k`` expression)."""
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    select = os.environ.get("NAPARI_SAM_GUI_CASES")
    results = run_cases(xvfb_display, tmp_path / "cases.xml", select)
    expected = set(CASES) if not select else set(results)
    bad = {c: r for c, r in results.items() if r[0] not in ("passed", "skipped")}
    lines = [f"{c}: {r[0]} after {r[2]:.1f} s:\n{r[1][-6000:]}" for c, r in sorted(bad.items())]
    lines += [f"{c}: did not run" for c in sorted(expected - set(results))]
    skipped = sorted(c for c, r in results.items() if r[0] == "skipped")
    print(f"GUI cases: {len(results) - len(bad) - len(skipped)} passed, {len(skipped)} skipped")
    if lines:
        pytest.fail(f"{len(lines)} of {len(expected)} GUI case(s) failed:\n" + "\n".join(lines),
                    pytrace=False)  # fmt: skip
