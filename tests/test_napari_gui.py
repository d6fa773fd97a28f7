"""Runs the GUI cases (``napari_gui_cases*.py``) in a fresh process on a real X display.

A fresh process because TensorFlow must be loaded after the OpenGL driver (see
``napari_sam._napari._tf``), and the rest of the suite loads TensorFlow first. The display is
``$DISPLAY`` or a private Xvfb (``napari_fixtures.xvfb_display``); each case is one test here,
and the process runs the cases selected here only (e.g. with ``-k``).
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


def selected_cases(session) -> list[str]:
    """The cases of :func:`test_gui` this pytest session runs (after ``-k`` / ``-m``)."""
    items = [i for i in session.items if getattr(i, "originalname", "") == "test_gui"]
    return [i.callspec.params["case"] for i in items if i.path == Path(__file__)]


@pytest.fixture(scope="module")
def gui_results(xvfb_display, tmp_path_factory, request):
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    xml = tmp_path_factory.mktemp("gui") / "cases.xml"
    env = {**os.environ, "DISPLAY": xvfb_display}
    if env.get("QT_QPA_PLATFORM") == "offscreen":
        del env["QT_QPA_PLATFORM"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
    cmd += [str(p) for p in CASES_FILES]
    cmd += [f"--junitxml={xml}", "-o", "python_files=napari_gui_cases*.py"]
    cases = selected_cases(request.session)
    if cases and len(cases) < len(CASES):
        cmd += ["-k", " or ".join(cases)]
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


@pytest.mark.xdist_group("gui")  # one worker runs them all, in one process (--dist loadgroup)
@pytest.mark.parametrize("case", CASES)
def test_gui(case, gui_results):
    outcome, text, seconds = gui_results.get(case, ("missing", "case did not run", 0))
    if outcome == "skipped":
        pytest.skip(text)
    if outcome != "passed":
        pytest.fail(f"{case}: {outcome} after {seconds:.1f} s:\n{text[-6000:]}", pytrace=False)
