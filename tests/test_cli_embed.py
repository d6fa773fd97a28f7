"""``napari-sam embed``: end to end in a subprocess (kill -9, resume), and every bad input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tifffile

from napari_sam.cli import main
from napari_sam.stacks import StackView
from napari_sam.stacks.encoder import ModelEncoder
from napari_sam.stacks.store import EmbeddingStore
from napari_sam.weights import create_model
from napari_sam.weights.key_map import export_state_dict

# small architecture for the in-process cases: fast
from small_configs import TINY_JSON as SMALL

# slower (~0.1 s a slice on a CPU) so that the killed run is caught in the middle
SLOW = dict(SMALL, input_size=[512, 512])
N_SLOW = 12


def assert_labels_agree(got, want, min_agreement=0.99):
    """Label images of two separate TensorFlow computations agree up to a few pixels.

    For outputs of other processes, runs or batch shapes: oneDNN's float rounding depends on
    the batch shape and the CPU kind (AVX2 vs AVX-512), so a logit at the mask threshold can
    flip a pixel, and a near-tie can change an argmax-chosen candidate or the order of ids.
    Each id of ``got`` is matched one to one with the id of ``want`` it overlaps most
    (background with background); at least ``min_agreement`` of the pixels must agree then.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)  # ids compared, not dtypes
    pairs, overlap = np.unique(np.stack([got.ravel(), want.ravel()]), axis=1, return_counts=True)
    used_got, used_want, agree = set(), set(), 0
    for k in np.argsort(-overlap, kind="stable"):
        a, b = (int(v) for v in pairs[:, k])
        if a in used_got or b in used_want or (a == 0) != (b == 0):
            continue
        used_got.add(a)
        used_want.add(b)
        agree += int(overlap[k])
    fraction = agree / got.size
    assert fraction >= min_agreement, f"labels agree on {fraction:.2%} of the pixels only"


def overrides(cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        out += ["--override", f"{k}={v}".replace(" ", "")]
    return out


def write_weights(path, cfg, seed=0):
    keras.utils.set_random_seed(seed)
    model = create_model("sam_vit_b", **cfg)
    np.savez(path, **export_state_dict(model))
    return path


def stack(n, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, (n, h, w)).astype(np.uint16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    tifffile.imwrite(d / "stack.tif", stack(3), metadata={"axes": "ZYX"})
    return d, write_weights(d / "small.npz", SMALL)


def run_main(capsys, *argv):
    """main() in process: (exit code, stdout, stderr lines)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def cli(*argv, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "napari_sam.cli", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, **kwargs)


def kill_9_when(argv, ready, log_path, timeout: float, env=None) -> None:
    """Run ``napari-sam *argv`` in a subprocess and SIGKILL it as soon as ``ready()`` holds.

    Fails if the run ends (or ``timeout`` seconds pass) before it could be killed.
    """
    cmd = [sys.executable, "-m", "napari_sam.cli", *map(str, argv)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if ready():
                    break
                time.sleep(0.01)
            assert proc.poll() is None, "the run ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_help_is_fast_and_complete(capsys):
    code = (
        "import sys, napari_sam.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "embed" in proc.stdout
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("INPUT", "--model", "--weights", "--out", "--axes", "--channels",
                   "--normalization", "--batch-size", "--overwrite", "--override",
                   "percentile:LOW,HIGH", "fixed:VMIN,VMAX", "examples:"):  # fmt: skip
        assert option in text, option


def test_embed_kill_9_then_resume(tmp_path, capsys):
    data = stack(N_SLOW, 160, 200, seed=1)
    tifffile.imwrite(tmp_path / "big.tif", data, metadata={"axes": "ZYX"})
    weights = write_weights(tmp_path / "slow.npz", SLOW)
    out = tmp_path / "big.emb"
    argv = ["embed", tmp_path / "big.tif", "--model", "sam_vit_b", "--weights", weights,
            "--out", out, *overrides(SLOW)]  # fmt: skip
    records = out / "records"
    kill_9_when(
        argv, lambda: records.is_dir() and len(list(records.glob("*.json"))) >= 2,
        tmp_path / "log", timeout=90,
    )  # fmt: skip
    done = len(list(records.glob("*.json")))
    assert 2 <= done < N_SLOW
    code, stdout, err = run_main(capsys, *argv)  # the resume, in this process
    assert code == 0, err
    assert f"computed {N_SLOW - done} slice(s), reused {done} of {N_SLOW}" in stdout
    assert f"{N_SLOW}/{N_SLOW}" in "\n".join(err)  # the progress bar finished
    # every slice equals a fresh in-process computation, to float rounding: the stored slices
    # come from another process and another model instance (oneDNN's rounding can differ
    # between runs, batch shapes and CPU kinds), so not bit for bit (the store's own bit-exact
    # round trip is tested in test_embedding_store.py and test_stack_predictor.py)
    model = create_model("sam_vit_b", pretrained=weights, **SLOW)
    enc = ModelEncoder(model)
    view = StackView(tmp_path / "big.tif")
    stored = EmbeddingStore.open(view, enc, path=out, memory_budget=0)
    fresh = EmbeddingStore.open(view, enc)  # memory only
    real, calls = enc.encode, []
    enc.encode = lambda images: calls.append(len(images)) or real(images)
    got = [stored.get(i) for i in range(N_SLOW)]
    assert calls == [], "the resumed store was incomplete"
    for i in range(N_SLOW):
        np.testing.assert_allclose(got[i], fresh.get(i), rtol=1e-4, atol=1e-5)
    assert len(calls) == N_SLOW
    # other settings in a real process: exactly one line on stderr (TensorFlow's start-up
    # log held back), exit code 2, and the complete store is left as it was
    res = cli(*argv, "--normalization", "minmax")
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith("napari-sam: error: --out: ")
    assert len(list(records.glob("*.json"))) == N_SLOW


def test_store_from_other_settings(files, capsys):
    d, weights = files
    base = ["embed", d / "stack.tif", "--model", "sam_vit_b", "--weights", weights,
            "--out", d / "s.emb", *overrides(SMALL)]  # fmt: skip
    code, out, err = run_main(capsys, *base)
    assert code == 0 and "computed 3 slice(s), reused 0 of 3" in out
    code, out, err = run_main(capsys, *base)
    assert code == 0 and "computed 0 slice(s), reused 3 of 3" in out
    code, out, err = run_main(capsys, *base, "--normalization", "minmax")
    assert code == 2 and len(err) == 1
    assert re.match(r"napari-sam: error: --out: .*normalisation: stored .*--overwrite", err[0])
    code, out, err = run_main(capsys, *base, "--normalization", "minmax", "--overwrite")
    assert code == 0 and "computed 3 slice(s), reused 0 of 3" in out
    # other weights: refused too (the encoder signature hashes every weight)
    other = write_weights(d / "other.npz", SMALL, seed=1)
    code, out, err = run_main(capsys, *base[:5], other, *base[6:], "--normalization", "minmax")
    assert code == 2 and len(err) == 1 and "encoder signature: stored" in err[0]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", r"INPUT: '.*nope\.tif' does not exist"),
        ("axes", r"--axes: 'YX' has 2 letters but the data has 3 dimensions"),
        ("tiff_axes", r"--axes: cannot tell what the axes \['Q'\].*pass them explicitly"),
        ("channel", r"--channels: channel index 2 is out of range; the image has 1 channel"),
        ("zero", r"INPUT: axis Z has size zero"),
        ("npy_axes", r"--axes: required for 'a\.npy'"),
        ("model", r"--model: unknown model 'sam_vit_x'; available: .*sam_vit_b"),
        ("weights", r"--weights: '.*missing\.npz': no such file"),
        ("mismatch", r"--weights: the checkpoint does not fit model 'sam_vit_b'"),
        ("override", r"--override: 'encoder_depth=3': expected KEY=VALUE with KEY a model conf"),
        ("json", r"--override: 'input_size=\[64': the value is not valid JSON"),
        ("norm", r"--normalization: 'percentile:5': mode .percentile. takes 0 or 2 values"),
        ("channels", r"--channels: 'blue:1': mode: expected one of"),
        ("batch", r"--batch-size: expected a positive integer, got 0"),
        ("out_file", r"--out: '.*stack\.tif' is a file; expected a store directory"),
        ("required", r"the following arguments are required: --out"),
    ],
)
def test_bad_input_one_line_exit_2(files, tmp_path, capsys, case, expected):
    d, weights = files
    inp, extra = d / "stack.tif", []
    out, model, ov = tmp_path / "s.emb", "sam_vit_b", overrides(SMALL)
    if case == "missing":
        inp = tmp_path / "nope.tif"
    elif case == "axes":
        extra = ["--axes", "YX"]
    elif case == "tiff_axes":
        inp = tmp_path / "q.tif"
        tifffile.imwrite(inp, stack(2))  # no axes metadata: tifffile reports QYX
    elif case == "channel":
        extra = ["--channels", "single:2"]
    elif case in ("zero", "npy_axes"):
        inp = tmp_path / "a.npy"
        np.save(inp, np.zeros((0, 8, 8), np.uint8) if case == "zero" else stack(2))
        extra = ["--axes", "ZYX"] if case == "zero" else []
    elif case == "model":
        model = "sam_vit_x"
    elif case == "weights":
        weights = tmp_path / "missing.npz"
    elif case == "mismatch":
        ov = overrides(dict(SMALL, encoder_embed_dim=64))  # another architecture
    elif case == "override":
        ov = ["--override", "encoder_depth=3"]
    elif case == "json":
        ov = ["--override", "input_size=[64"]
    elif case == "norm":
        extra = ["--normalization", "percentile:5"]
    elif case == "channels":
        extra = ["--channels", "blue:1"]
    elif case == "batch":
        extra = ["--batch-size", "0"]
    elif case == "out_file":
        out = d / "stack.tif"
    argv = ["embed", inp, "--model", model, "--weights", weights, "--out", out, *ov, *extra]
    if case == "required":
        argv = ["embed", inp, "--model", model, "--weights", weights, *ov]
    code, stdout, err = run_main(capsys, *argv)
    assert code == 2, (stdout, err)
    assert len(err) == 1, err
    assert err[0].startswith("napari-sam: error: ")
    assert re.search(expected, err[0]), err[0]
    if case != "out_file":
        assert not out.exists()  # nothing written for bad input
