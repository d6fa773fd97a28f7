"""Tests for napari_sam.weights.download, against a local HTTP server (no internet)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import socket
import threading
import warnings

import pooch.hashes
import pytest

from napari_sam.weights import download
from napari_sam.weights.download import (
    OFFICIAL_WEIGHTS,
    ChecksumMismatchError,
    WeightFile,
    WeightsUnavailableError,
    cache_dir,
    fetch_weights,
    verify_file,
)

NAME = "fake_sam.pth"


@pytest.fixture
def payload():
    return os.urandom(300_000)


@pytest.fixture
def server(tmp_path, payload):
    """Serve a directory holding ``fake_sam.pth``; yields (base_url, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    (root / NAME).write_bytes(payload)
    requests_seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests_seen.append(self.path)
            super().do_GET()

        def do_HEAD(self):  # noqa: N802
            requests_seen.append(self.path)
            super().do_HEAD()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests_seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(path))
    return path


@pytest.fixture
def hash_calls(monkeypatch):
    """Count whole-file hashes, ours and pooch's."""
    calls = {"ours": 0, "pooch": 0}
    ours, theirs = download._sha256, pooch.hashes.file_hash

    def counted_ours(path, *args):
        calls["ours"] += 1
        return ours(path, *args)

    def counted_pooch(*args, **kwargs):
        calls["pooch"] += 1
        return theirs(*args, **kwargs)

    monkeypatch.setattr(download, "_sha256", counted_ours)
    monkeypatch.setattr(pooch.hashes, "file_hash", counted_pooch)
    return calls


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weight_for(server, payload, *, sha256=None, name=NAME):
    url = server[0] + name
    return WeightFile(name, url, sha256 or sha(payload), len(payload))


def test_official_weights_contract():
    base = "https://dl.fbaipublicfiles.com/segment_anything/"
    expected = {
        "sam_vit_b": (
            "sam_vit_b_01ec64.pth",
            375_042_383,
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        ),
        "sam_vit_l": (
            "sam_vit_l_0b3195.pth",
            1_249_524_607,
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        "sam_vit_h": (
            "sam_vit_h_4b8939.pth",
            2_564_550_879,
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
    }
    assert set(OFFICIAL_WEIGHTS) == set(expected)
    for key, (filename, size, digest) in expected.items():
        assert OFFICIAL_WEIGHTS[key] == WeightFile(filename, base + filename, digest, size)


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "a" / "b"))
    assert cache_dir() == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    monkeypatch.delenv("NAPARI_SAM_CACHE")
    monkeypatch.setattr(pooch, "os_cache", lambda project: tmp_path / f"os-{project}")
    assert cache_dir() == tmp_path / "os-napari-sam"
    assert cache_dir().is_dir()


def test_first_download_then_cached_without_request_or_rehash(server, payload, cache, hash_calls):
    weight = weight_for(server, payload)
    path = fetch_weights(weight, progress=False)
    assert path == cache.resolve() / NAME
    assert path.read_bytes() == payload
    assert server[1] == ["/" + NAME]
    assert hash_calls == {"ours": 0, "pooch": 1}  # verified once, by pooch, while downloading
    assert (cache / (NAME + ".sha256")).is_file()

    again = fetch_weights(weight, progress=False)
    assert again == path
    assert server[1] == ["/" + NAME]  # no new request
    assert hash_calls == {"ours": 0, "pooch": 1}  # no rehash


def test_explicit_cache_argument_wins(server, payload, cache, tmp_path):
    other = tmp_path / "other"
    path = fetch_weights(weight_for(server, payload), progress=False, cache=other)
    assert path == other.resolve() / NAME
    assert path.read_bytes() == payload
    assert not (cache / NAME).exists()


def test_wrong_hash_raises_and_leaves_nothing(server, payload, cache):
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_weights(weight_for(server, payload, sha256=wrong), progress=False)
    msg = str(info.value)
    assert NAME in msg and wrong in msg and sha(payload) in msg and "removed" in msg
    assert not (cache / NAME).exists()
    assert list(cache.iterdir()) == []  # no temporary or sidecar files either


def test_server_down_raises_unavailable(payload, cache):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    weight = WeightFile(NAME, f"http://127.0.0.1:{port}/{NAME}", sha(payload), len(payload))
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights(weight, progress=False)
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert str(cache.resolve() / NAME) in msg
    assert "NAPARI_SAM_CACHE" in msg and weight.url in msg and "pretrained=" in msg
    assert not (cache / NAME).exists()


def test_http_error_raises_unavailable(server, payload, cache):
    weight = weight_for(server, payload, name="missing.pth")
    with pytest.raises(WeightsUnavailableError, match="404"):
        fetch_weights(weight, progress=False)
    assert list(cache.iterdir()) == []


def test_preplaced_correct_file_used_without_request(server, payload, cache, hash_calls):
    cache.mkdir()
    (cache / NAME).write_bytes(payload)
    weight = weight_for(server, payload)
    assert fetch_weights(weight, progress=False) == cache.resolve() / NAME
    assert server[1] == []
    assert hash_calls["ours"] == 1  # verified once ...
    fetch_weights(weight, progress=False)
    assert hash_calls["ours"] == 1  # ... and trusted afterwards via the sidecar
    assert server[1] == []


def test_preplaced_corrupt_file_is_redownloaded(server, payload, cache):
    cache.mkdir()
    corrupt = bytearray(payload)
    corrupt[1000] ^= 0xFF  # same size, so the hash (not the size check) must catch it
    (cache / NAME).write_bytes(bytes(corrupt))
    with pytest.warns(UserWarning, match="does not match"):
        path = fetch_weights(weight_for(server, payload), progress=False)
    assert path.read_bytes() == payload
    assert server[1] == ["/" + NAME]


def test_preplaced_truncated_file_offline_is_kept_and_reported(payload, cache, hash_calls):
    cache.mkdir()
    (cache / NAME).write_bytes(payload[:-10])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    weight = WeightFile(NAME, f"http://127.0.0.1:{port}/{NAME}", sha(payload), len(payload))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(WeightsUnavailableError, match="wrong SHA256"):
            fetch_weights(weight, progress=False)
    assert (cache / NAME).read_bytes() == payload[:-10]  # not deleted by a failed attempt
    assert hash_calls["ours"] == 0  # rejected by the size check, without hashing


def test_modified_file_invalidates_sidecar(server, payload, cache, hash_calls):
    weight = weight_for(server, payload)
    path = fetch_weights(weight, progress=False)
    corrupt = bytearray(payload)
    corrupt[0] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning):
        again = fetch_weights(weight, progress=False)
    assert hash_calls["ours"] == 1  # sidecar no longer trusted: rehashed
    assert again.read_bytes() == payload
    assert server[1] == ["/" + NAME] * 2


def test_verify_file(tmp_path, payload):
    path = tmp_path / "x.pth"
    path.write_bytes(payload)
    verify_file(path, sha(payload))
    verify_file(path, "sha256:" + sha(payload).upper())
    with pytest.raises(ChecksumMismatchError) as info:
        verify_file(path, "f" * 64)
    assert str(path) in str(info.value) and sha(payload) in str(info.value)
    assert "f" * 64 in str(info.value)
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "missing.pth", sha(payload))


def test_unavailable_message_names_official_model(cache):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    official = OFFICIAL_WEIGHTS["sam_vit_l"]
    mirror = WeightFile(
        official.filename, f"http://127.0.0.1:{port}/x", official.sha256, official.size
    )
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights(mirror, progress=False)
    msg = str(info.value)
    assert "sam_vit_l (sam_vit_l_0b3195.pth)" in msg
    assert str(cache.resolve() / "sam_vit_l_0b3195.pth") in msg


def xxh(data: bytes) -> str:
    import xxhash

    return xxhash.xxh128(data).hexdigest()


def test_micro_sam_registry_contract():
    from napari_sam.weights import model_entry

    base = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
    expected = {
        "vit_b_lm": ("diplomatic-bug/1.2", "vit_b", "fe9252a29f3f4ea53c15a06de471e186",
                     "708b15ac620e235f90bb38612c4929ba"),
        "vit_l_lm": ("idealistic-rat/1.2", "vit_l", "017f20677997d628426dec80a8018f9d",
                     "2faeafa03819dfe03e7c46a44aaac64a"),
        "vit_b_em_organelles": ("noisy-ox/1.2", "vit_b", "f3bf2ed83d691456bae2c3f9a05fb438",
                                "bb6398956a6b0132c26b631c14f95ce2"),
        "vit_l_em_organelles": ("humorous-crab/1.2", "vit_l", "810b084b6e51acdbf760a993d8619f2d",
                                "334877640bfdaaabce533e3252a17294"),
    }  # fmt: skip
    for key, (record, size, enc, dec) in expected.items():
        entry = model_entry(key)
        assert entry.weights.url == f"{base}{record}/files/{size}.pt"
        assert entry.decoder.url == f"{base}{record}/files/{size}_decoder.pt"
        assert (entry.weights.algorithm, entry.weights.sha256) == ("xxh128", enc)
        assert (entry.decoder.algorithm, entry.decoder.sha256) == ("xxh128", dec)
        assert entry.has_decoder and entry.ais["min_size"] == 100
        arch = model_entry(f"sam_{size}").config
        assert entry.config.encoder_embed_dim == arch.encoder_embed_dim
        assert entry.config.encoder_global_attn_indices == arch.encoder_global_attn_indices
    assert model_entry("vit_b_lm").ais["center_distance_threshold"] == 0.4
    assert not model_entry("sam_vit_b").has_decoder


def test_xxh128_download_verified_and_wrong_hash_refused(server, payload, cache):
    good = WeightFile(NAME, server[0] + NAME, xxh(payload), None, algorithm="xxh128")
    path = fetch_weights(good, progress=False)
    assert path.read_bytes() == payload
    bad = WeightFile("other.pth", server[0] + NAME, "0" * 32, None, algorithm="xxh128")
    with pytest.raises(download.ChecksumMismatchError, match="wrong XXH128"):
        fetch_weights(bad, progress=False)
    assert not (cache / "other.pth").exists()


def test_micro_sam_cache_copy_is_used_read_only(payload, cache, tmp_path, monkeypatch):
    shared = tmp_path / "micro_sam_cache"
    (shared / "models").mkdir(parents=True)
    (shared / "models" / "vit_b_lm").write_bytes(payload)
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(shared))
    port = _free_port()
    weight = WeightFile("vit_b_lm.pt", f"http://127.0.0.1:{port}/x", xxh(payload), None,
                        algorithm="xxh128", micro_sam_key="vit_b_lm")  # fmt: skip
    assert fetch_weights(weight, progress=False) == shared / "models" / "vit_b_lm"
    (shared / "models" / "vit_b_lm").write_bytes(payload[:-1])  # damaged: not used
    with pytest.raises(WeightsUnavailableError):
        fetch_weights(weight, progress=False)
    assert (shared / "models" / "vit_b_lm").stat().st_size == len(payload) - 1  # untouched


def test_offline_message_names_both_files_of_a_micro_sam_model(cache, monkeypatch):
    from napari_sam.weights import factory, registry

    port = _free_port()
    entry = registry.model_entry("vit_b_lm")
    dead = {what: WeightFile(w.filename, f"http://127.0.0.1:{port}/{w.filename}", w.sha256,
                             None, algorithm="xxh128")
            for what, w in (("weights", entry.weights), ("decoder", entry.decoder))}  # fmt: skip
    monkeypatch.setitem(registry._REGISTRY, "vit_b_lm", dataclasses.replace(
        entry, weights=dead["weights"], decoder=dead["decoder"]))  # fmt: skip
    with pytest.raises(WeightsUnavailableError) as err:
        factory.pretrained_paths("vit_b_lm", progress=False)
    text = str(err.value)
    assert str(cache.resolve() / "vit_b_lm.pt") in text
    assert str(cache.resolve() / "vit_b_lm_decoder.pt") in text
    assert "--decoder FILE" in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_preplaced_micro_sam_file_with_wrong_xxh128_offline_is_named_and_kept(
    payload, cache, monkeypatch
):
    """vit_b_lm.pt put in the cache by hand, but not micro-sam's file: the error names it and
    the expected XXH128; the file stays where the user put it."""
    from napari_sam.weights import factory, registry

    entry = registry.model_entry("vit_b_lm")
    port = _free_port()
    dead = dataclasses.replace(entry.weights, url=f"http://127.0.0.1:{port}/vit_b.pt")
    monkeypatch.setitem(registry._REGISTRY, "vit_b_lm", dataclasses.replace(entry, weights=dead))
    cache.mkdir()
    (cache / "vit_b_lm.pt").write_bytes(payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(WeightsUnavailableError) as err:
            factory.pretrained_paths("vit_b_lm", progress=False)
    text = str(err.value)
    assert "vit_b_lm.pt" in text and "XXH128" in text.upper(), text
    assert entry.weights.sha256 in text, text
    assert (cache / "vit_b_lm.pt").read_bytes() == payload
