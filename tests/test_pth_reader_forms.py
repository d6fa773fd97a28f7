"""Tests for micro-sam's checkpoint forms in napari_sam.weights.pth_reader (torch writes them)."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from napari_sam.weights.pth_reader import CheckpointError, read_pth, read_pth_states

torch = pytest.importorskip("torch")


class _Dataset:
    def __init__(self, n):
        self.n, self.items = n, list(range(n))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _net(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    net(torch.randn(2, 1, 3, 3))  # training-mode forward: updates the batch-norm statistics
    return net


def _assert_equal(arrays, state_dict, prefix=""):
    assert list(arrays) == [k[len(prefix) :] for k in state_dict]
    for key, t in state_dict.items():
        arr = arrays[key[len(prefix) :]]
        assert arr.dtype == t.numpy().dtype and arr.shape == tuple(t.shape)
        np.testing.assert_array_equal(arr, t.numpy())


@pytest.fixture(scope="module")
def model():
    return _net(0)


@pytest.fixture(scope="module")
def decoder_sd():
    return _net(1).state_dict()


def test_plain_decoder_file(decoder_sd, tmp_path):
    assert decoder_sd["1.num_batches_tracked"].dtype == torch.int64
    torch.save(decoder_sd, tmp_path / "vit_b_decoder.pt")
    states = read_pth_states(tmp_path / "vit_b_decoder.pt")
    assert states.get("decoder") is None
    _assert_equal(states["model"], decoder_sd)
    assert states["model"]["1.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("container", [dict, collections.OrderedDict])
def test_export(model, decoder_sd, tmp_path, container):
    sd = model.state_dict()
    torch.save(container(model_state=sd, decoder_state=decoder_sd), tmp_path / "export.pt")
    states = read_pth_states(tmp_path / "export.pt")
    _assert_equal(states["model"], sd)
    _assert_equal(states["decoder"], decoder_sd)
    _assert_equal(read_pth(tmp_path / "export.pt"), sd)


def _training_checkpoint(model, decoder_sd, init):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 3, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    model_state = collections.OrderedDict((f"sam.{k}", v) for k, v in model.state_dict().items())
    return {
        "iteration": 10,
        "epoch": 1,
        "best_metric": 0.25,
        "model_state": model_state,
        "decoder_state": decoder_sd,
        "optimizer_state": opt.state_dict(),
        "scheduler_state": sched.state_dict(),
        "init": init,
    }


def test_training_checkpoint(decoder_sd, tmp_path):
    model = _net(2)
    init = {
        "model_class": torch.nn.Conv2d,
        "model": torch.nn.Conv2d(1, 1, 1),
        "device": torch.device("cpu"),
        "dtype": torch.float32,
        "dataset": _Dataset(3),
    }
    ckpt = _training_checkpoint(model, decoder_sd, init)
    torch.save(ckpt, tmp_path / "best.pt")
    states = read_pth_states(tmp_path / "best.pt")
    _assert_equal(states["model"], ckpt["model_state"], prefix="sam.")
    assert "1.num_batches_tracked" in states["model"]
    _assert_equal(states["decoder"], decoder_sd)
    _assert_equal(read_pth(tmp_path / "best.pt"), ckpt["model_state"], prefix="sam.")


def test_payload_in_init_does_not_run(model, decoder_sd, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = _training_checkpoint(model, decoder_sd, {"evil": _Payload(marker), "x": [1]})
    torch.save(ckpt, tmp_path / "best.pt")
    states = read_pth_states(tmp_path / "best.pt")
    _assert_equal(states["decoder"], decoder_sd)
    read_pth(tmp_path / "best.pt")
    assert not marker.exists()


def _refused(path, *fragments):
    for reader in (read_pth, read_pth_states):
        with pytest.raises(CheckpointError) as info:
            reader(path)
        message = str(info.value)
        assert f"cannot read checkpoint '{path}'" in message
        for fragment in ("refuses to load", *fragments):
            assert fragment in message, message


@pytest.mark.parametrize("where", ["model_state", "decoder_state", "plain", "top", "nested"])
def test_payload_outside_init_is_refused(model, decoder_sd, tmp_path, where):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    evil = _Payload(marker)
    if where in ("model_state", "decoder_state"):
        ckpt = _training_checkpoint(model, decoder_sd, {})
        ckpt[where] = {**ckpt[where], "evil": evil}
        obj = ckpt
    elif where == "plain":
        obj = {**decoder_sd, "evil": evil}
    elif where == "nested":
        obj = {"model": decoder_sd, "extra": [{"deep": (evil,)}]}
    else:
        obj = evil
    torch.save(obj, path)
    _refused(path, "system'", "not a tensor-rebuilding global")
    assert not marker.exists()


def test_non_tensor_in_decoder_state(model, decoder_sd, tmp_path):
    path = tmp_path / "export.pt"
    torch.save({"model_state": model.state_dict(), "decoder_state": {**decoder_sd, "n": 3}}, path)
    for reader in (read_pth_states, read_pth):
        with pytest.raises(CheckpointError, match="'decoder_state' holds a dict, not a non-empty"):
            reader(path)


def test_no_model_state_for_read_pth(decoder_sd, tmp_path):
    torch.save({"model_state": None, "decoder_state": decoder_sd}, tmp_path / "d.pt")
    assert read_pth_states(tmp_path / "d.pt")["model"] is None
    with pytest.raises(CheckpointError, match="no 'model_state'"):
        read_pth(tmp_path / "d.pt")
