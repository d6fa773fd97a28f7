"""Download and cache the official Segment Anything (SAM) checkpoints.

Files are fetched with :func:`pooch.retrieve`, which streams to a temporary file in the cache
directory and moves it into place only after its SHA256 matches, so a failed or corrupt download
never leaves a file under the final name. A verified file gets a small ``<file>.sha256`` sidecar
(hash, size, mtime) so later calls do not rehash multi-GB checkpoints while the file is unchanged.

A cached file with the wrong hash (truncated, or a different file put there by hand) is not used:
a warning is issued and the file is downloaded again; the bad file is only replaced once the new
download has been verified, so it is left untouched if the download fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import warnings
from dataclasses import dataclass

import pooch
import requests

from .._atomic import write_atomic
from .defaults import OFFLINE_MODEL

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
CACHE_ENV = "NAPARI_SAM_CACHE"


@dataclass(frozen=True)
class WeightFile:
    """A downloadable checkpoint file.

    Attributes
    ----------
    filename : str
        Name of the file in the cache directory.
    url : str
        Where to download it from.
    sha256 : str
        Expected hash of the file, lowercase hex (SHA256 unless ``algorithm`` says otherwise).
    size : int or None
        Expected size in bytes, if known (used as a quick check before hashing).
    algorithm : str
        ``"sha256"`` (Meta's files) or ``"xxh128"`` (micro-sam's, as its registry records).
    micro_sam_key : str or None
        The file's name in micro-sam's cache (``vit_b_lm``, ``vit_b_lm_decoder``): a verified
        copy there is used as it is, so a file micro-sam downloaded is not downloaded again.
    """

    filename: str
    url: str
    sha256: str
    size: int | None = None
    algorithm: str = "sha256"
    micro_sam_key: str | None = None

    @property
    def known_hash(self) -> str:
        """The hash as pooch's ``known_hash`` (``"<algorithm>:<hex>"``)."""
        return f"{self.algorithm}:{_normalize(self.sha256, self.algorithm)}"


def _official(filename: str, sha256: str, size: int) -> WeightFile:
    return WeightFile(filename, BASE_URL + filename, sha256, size)


OFFICIAL_WEIGHTS: dict[str, WeightFile] = {
    "sam_vit_b": _official(
        "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375_042_383,
    ),
    "sam_vit_l": _official(
        "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        1_249_524_607,
    ),
    "sam_vit_h": _official(
        "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        2_564_550_879,
    ),
}


class WeightsUnavailableError(RuntimeError):
    """The weights are not in the cache and could not be downloaded."""


class ChecksumMismatchError(ValueError):
    """A file's SHA256 does not match the expected one."""


def cache_dir() -> pathlib.Path:
    """Return the weights cache directory, creating it if needed.

    Returns
    -------
    pathlib.Path
        ``$NAPARI_SAM_CACHE`` if set and non-empty, else ``pooch.os_cache("napari-sam")``.
    """
    env = os.environ.get(CACHE_ENV)
    path = pathlib.Path(env).expanduser() if env else pathlib.Path(pooch.os_cache("napari-sam"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    if algorithm == "xxh128":
        import xxhash

        digest = xxhash.xxh128()
    else:
        digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalize(sha256: str, algorithm: str = "sha256") -> str:
    return sha256.lower().removeprefix(f"{algorithm}:")


def verify_file(path: str | os.PathLike, sha256: str) -> None:
    """Check that a file has the expected SHA256 (always hashes the whole file).

    Parameters
    ----------
    path : str or os.PathLike
        The file to check, e.g. a user-supplied checkpoint.
    sha256 : str
        Expected hash, hex, optionally prefixed with ``"sha256:"``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ChecksumMismatchError
        If the hash differs.
    """
    expected, actual = _normalize(sha256), _sha256(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"File {os.fspath(path)} has the wrong SHA256: expected {expected}, got {actual}. "
            "It is truncated, corrupt or not the expected checkpoint; download it again."
        )


def _stamp(path: pathlib.Path, sha256: str) -> dict:
    st = path.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_sidecar(path: pathlib.Path, sha256: str) -> None:
    """Record that ``path`` was verified; best effort (a read-only cache just rehashes)."""
    stamp = json.dumps(_stamp(path, sha256)).encode()
    try:
        write_atomic(path.with_name(path.name + ".sha256"), lambda f: f.write(stamp))
    except OSError:
        pass


def _is_verified(path: pathlib.Path, weight: WeightFile) -> bool:
    """Whether ``path`` holds ``weight``, hashing only if the sidecar does not vouch for it."""
    expected = _normalize(weight.sha256, weight.algorithm)
    if weight.size is not None and path.stat().st_size != weight.size:
        return False
    try:
        if json.loads(path.with_name(path.name + ".sha256").read_text()) == _stamp(path, expected):
            return True
    except (OSError, ValueError):
        pass
    if _sha256(path, weight.algorithm) != expected:
        return False
    _write_sidecar(path, expected)
    return True




def short_reason(err: Exception, limit: int = 120) -> str:
    """``Type: message`` of a download error, on one line, at most ``limit`` characters."""
    text = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 3].rstrip(" .") + "..."


def offline_advice() -> str:
    """The sentence naming the model that works offline (before the copy advice)."""
    return f"The shipped model {OFFLINE_MODEL!r} works offline."


def _unavailable(weight: WeightFile, target: pathlib.Path, err: Exception, bad: bool) -> str:
    names = [name for name, w in OFFICIAL_WEIGHTS.items() if w.filename == weight.filename]
    label = f"{names[0]} ({weight.filename})" if names else weight.filename
    algo = weight.algorithm.upper()
    existing = f" The file at {target} has the wrong {algo} and was not used." if bad else ""
    return (
        f"Could not download the SAM checkpoint {label} ({short_reason(err, 80)}).{existing} "
        f"{offline_advice()} To use this one offline, give a local copy (--weights FILE, "
        f"pretrained=FILE), or download {weight.url} ({algo} {weight.sha256}; cache folder: "
        f"${CACHE_ENV}) and copy it to exactly:\n    {target}"
    )


MICRO_SAM_CACHE_ENV = "MICROSAM_CACHEDIR"


def micro_sam_cache() -> pathlib.Path:
    """Where micro-sam keeps its downloads: ``$MICROSAM_CACHEDIR/models`` or its pooch cache."""
    env = os.environ.get(MICRO_SAM_CACHE_ENV)
    base = pathlib.Path(env).expanduser() if env else pathlib.Path(pooch.os_cache("micro_sam"))
    return base / "models"


def _shared_copy(weight: WeightFile) -> pathlib.Path | None:
    """micro-sam's own verified copy of ``weight`` (read, never written), if it has one."""
    if weight.micro_sam_key is None:
        return None
    path = micro_sam_cache() / weight.micro_sam_key
    try:
        if path.is_file() and _sha256(path, weight.algorithm) == _normalize(
            weight.sha256, weight.algorithm
        ):
            return path
    except OSError:
        pass
    return None


_NETWORK_ERRORS = (requests.exceptions.RequestException, ConnectionError, TimeoutError)


def fetch_weights(
    weight: WeightFile, *, progress: bool = True, cache: str | os.PathLike | None = None
) -> pathlib.Path:
    """Return the local path of a checkpoint, downloading and verifying it if needed.

    Parameters
    ----------
    weight : WeightFile
        The checkpoint to get, e.g. ``OFFICIAL_WEIGHTS["sam_vit_b"]``.
    progress : bool, default True
        Show a tqdm progress bar while downloading.
    cache : str or os.PathLike, optional
        Cache directory; defaults to :func:`cache_dir`.

    Returns
    -------
    pathlib.Path
        Path of the verified file in the cache directory.

    Raises
    ------
    WeightsUnavailableError
        If the file is not cached and the download fails (no network, HTTP error, ...).
    ChecksumMismatchError
        If the downloaded file has the wrong SHA256 (the download is removed).
    """
    directory = pathlib.Path(cache).expanduser() if cache is not None else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory.resolve() / weight.filename
    shared = _shared_copy(weight)
    if shared is not None:
        return shared
    bad = False
    if target.is_file():
        if _is_verified(target, weight):
            return target
        bad = True
        warnings.warn(
            f"Cached file {target} does not match the expected {weight.algorithm.upper()} "
            f"{weight.sha256}; "
            f"downloading it again from {weight.url}.",
            stacklevel=2,
        )
    expected = _normalize(weight.sha256, weight.algorithm)
    try:
        path = pooch.retrieve(
            weight.url,
            known_hash=weight.known_hash,
            fname=weight.filename,
            path=directory,
            progressbar=progress,
        )
    except _NETWORK_ERRORS as err:
        raise WeightsUnavailableError(_unavailable(weight, target, err, bad)) from err
    except ValueError as err:
        match = re.search(r"but got ([0-9a-fA-F]{32,64})", str(err))
        if match is None:
            raise
        raise ChecksumMismatchError(
            f"Downloaded file {weight.filename} from {weight.url} has the wrong "
            f"{weight.algorithm.upper()}: "
            f"expected {expected}, got {match.group(1).lower()}. The corrupt download was "
            f"removed{'' if bad else f' (nothing was written to {target})'}. Try again; if "
            "this persists, the file on the server or the expected hash has changed."
        ) from err
    path = pathlib.Path(path)
    _write_sidecar(path, expected)  # pooch has just verified the hash
    return path
