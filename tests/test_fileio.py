"""The base layer's file helpers: one-line read errors and SHA-256 digests, remembered per file,
size and mtime."""

from __future__ import annotations

import os

import pytest

from jaxfool.base import fileio

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert fileio.file_sha256(path) == ABC_SHA256


def test_read_bytes_errors_name_the_file(tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    assert fileio.read_bytes(tmp_path / "f", KeyError) == b"data"
    with pytest.raises(ValueError, match=r"absent: no such file$"):
        fileio.read_bytes(tmp_path / "absent", ValueError)
    with pytest.raises(ValueError, match=r"not a regular file \(a directory\)"):
        fileio.read_bytes(tmp_path, ValueError)  # a directory


@pytest.fixture
def hashes(monkeypatch):
    """The files `remembered_sha256` really reads."""
    seen = []
    real = fileio.file_sha256
    monkeypatch.setattr(fileio, "file_sha256", lambda p: seen.append(p) or real(p))
    monkeypatch.setattr(fileio, "_SHA256", {})
    return seen


def old_file(path, data: bytes, age_s: float = 60.0):
    """`path` written with `data` and an mtime `age_s` in the past (not "racy")."""
    path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(age_s * 1e9)))
    return path


def test_remembered_sha256_reads_an_unchanged_file_once(tmp_path, hashes):
    path = old_file(tmp_path / "w.bin", b"abc")
    assert fileio.remembered_sha256(path) == ABC_SHA256
    assert fileio.remembered_sha256(tmp_path / "." / "w.bin") == ABC_SHA256
    assert len(hashes) == 1
    old_file(path, b"abcd", age_s=30.0)  # another size and mtime: read again
    assert fileio.remembered_sha256(path) == fileio.file_sha256(path) != ABC_SHA256
    assert len(hashes) == 3


def test_remembered_sha256_does_not_keep_a_file_modified_just_now(tmp_path, hashes):
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"abc")  # a change within the same mtime tick could go unseen
    fileio.remembered_sha256(path)
    fileio.remembered_sha256(path)
    assert len(hashes) == 2


def test_a_digest_taken_elsewhere_is_remembered(tmp_path, hashes):
    """What the converted-weights cache hashed or vouched for is not read again."""
    path = old_file(tmp_path / "w.bin", b"abc")
    st = path.stat()
    fileio.remember_sha256(path, st.st_size, st.st_mtime_ns, "f" * 64, st.st_mtime_ns + 4 * 10**9)
    assert fileio.remembered_sha256(path) == "f" * 64 and hashes == []
    fileio.remember_sha256(path, 3, 7, "e" * 64, 8)  # racy: not kept
    assert fileio._SHA256 == {(str(path.resolve()), st.st_size, st.st_mtime_ns): "f" * 64}
