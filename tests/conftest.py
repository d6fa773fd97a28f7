import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Tests never write converted weights or downloads into the user's real cache.
os.environ["NAPARI_SAM_CACHE"] = tempfile.mkdtemp(prefix="napari-sam-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under xdist every worker (and the CLI processes it starts) gets its share of the cores for
# TensorFlow's and torch's thread pools: with each pool as wide as the machine, two workers
# on two cores ran a quarter slower (spinning threads fighting over the cores).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, _share)
# The apps' encoder dtype is "auto" (bfloat16 where the CPU has it natively and it is faster);
# the suite compares against float32 references, so it pins float32 on every CPU kind
# (tests of "auto" itself unset this).
os.environ["NAPARI_SAM_DTYPE"] = "float32"
# ultralytics (the TinyViT reference) keeps its settings in a folder of its own, not the user's
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="napari-sam-test-yolo-"))
# TensorFlow's settings (napari_sam._tensorflow.TENSORFLOW_DEFAULTS: oneDNN off, the pooling CPU
# allocator), made by importing napari_sam before any test module imports TensorFlow first
import napari_sam  # noqa: E402,F401

# The longest tests first (measured with --durations, 2026-12-06), so that the two xdist
# workers start them at once and the short ones fill in around them, instead of one worker
# finishing a long test alone at the end. The order of the other tests is kept.
LONGEST_FIRST = (
    "test_napari_gui.py::test_gui_cases",
    "test_microsam_files.py::test_full_size_vit_l_models_from_micro_sam_files",
    "test_notebooks.py::test_notebook_runs[03_batch_with_dask.ipynb]",
    "test_parity.py::test_full_size_vit_b",
    "test_training.py::test_resume_and_reproducibility",
    "test_tile_resume.py::test_ctrl_c_then_kill_9_then_resume_tile_by_tile",
    "test_training.py::test_loss_goes_down_and_weights_round_trip",
    "test_large_inputs.py::test_bench_large_image_quick",
)  # (tests sharing a costly module fixture with others stay with them)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item):
        name = item.nodeid.split("tests/", 1)[-1]
        return rank.get(name, len(rank))

    items.sort(key=key)  # stable: the other tests keep their order
