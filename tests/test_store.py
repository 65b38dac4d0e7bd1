"""The object store: the same test bodies on LocalStore and on S3Store (against a moto server)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from emgpose.errors import InvalidInput, NotFound, StoreError
from emgpose.settings import Settings
from emgpose.store import LocalStore, ObjectStore, S3Store, open_store

MIB = 1024 * 1024
BAD_KEYS = ["", "/abs/key", "a/../b", "..", "a//b", "a/", "./a", ".tmp/x", "a/.tmp-1"]


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Multipart transfers above 5 MiB (the S3 minimum part size), so a 12 MiB object takes 3 parts."""
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    monkeypatch.setattr(S3Store, "transfer_config", config)


def _raw_names(store: ObjectStore) -> list[str]:
    """Every object below the store's root as the backend sees it, temporary ones included."""
    if isinstance(store, LocalStore):
        root = Path(store.root)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert isinstance(store, S3Store)
    pages = store._client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store._root)
    return sorted(o["Key"][len(store._root) :] for page in pages for o in page.get("Contents", []))


def _plant_leftovers(store: ObjectStore) -> None:
    """Temporary objects as a crashed writer would leave them."""
    if isinstance(store, LocalStore):
        for rel in (".tmp-crashed", "a/.tmp-crashed"):
            path = Path(store.root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"partial")
        return
    assert isinstance(store, S3Store)
    for rel in (".tmp/crashed", "a/.tmp/crashed"):
        store._client.put_object(Bucket=store.bucket, Key=store._root + rel, Body=b"partial")


def test_put_get_round_trip(store_uri: str, tmp_path: Path) -> None:
    store = open_store(store_uri)
    store.put_bytes("a/b.bin", b"\x00payload\xff")
    assert store.get_bytes("a/b.bin") == b"\x00payload\xff"
    assert store.exists("a/b.bin")
    assert not store.exists("a/c.bin")
    assert not store.exists("a")  # a folder is not an object
    store.put_bytes("a/b.bin", b"second")
    assert store.get_bytes("a/b.bin") == b"second"
    source = tmp_path / "upload.txt"
    source.write_bytes(b"from a file")
    store.put_file("f/upload.txt", str(source))
    store.get_file("f/upload.txt", str(tmp_path / "down" / "copy.txt"))
    assert (tmp_path / "down" / "copy.txt").read_bytes() == b"from a file"
    assert store.url("a/b.bin") == store.uri + "/a/b.bin"


def test_missing_key_raises_not_found_naming_it(store_uri: str, tmp_path: Path) -> None:
    store = open_store(store_uri)
    store.put_bytes("present", b"x")
    with pytest.raises(NotFound, match="missing/key.bin") as info:
        store.get_bytes("missing/key.bin")
    assert store.url("missing/key.bin") in str(info.value)
    assert info.value.status == 404
    with pytest.raises(NotFound, match="missing/key.bin"):
        with store.open_read("missing/key.bin"):
            pass
    with pytest.raises(NotFound, match="missing/key.bin"):
        with store.local_path("missing/key.bin"):
            pass
    with pytest.raises(NotFound, match="missing/key.bin"):
        store.move("missing/key.bin", "elsewhere")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with pytest.raises(NotFound, match="missing/key.bin"):
        store.get_file("missing/key.bin", str(downloads / "target.bin"))
    assert list(downloads.iterdir()) == []  # no partial download left behind
    assert not store.exists("elsewhere")


def test_list_is_sorted_recursive_and_filters_by_folder(store_uri: str) -> None:
    store = open_store(store_uri)
    for key in ["b.txt", "ab/c.bin", "a/y/z.bin", "a/x.bin"]:
        store.put_bytes(key, key.encode())
    assert store.list() == ["a/x.bin", "a/y/z.bin", "ab/c.bin", "b.txt"]
    assert store.list("a") == ["a/x.bin", "a/y/z.bin"]
    assert store.list("a/") == ["a/x.bin", "a/y/z.bin"]
    assert store.list("a/y") == ["a/y/z.bin"]
    assert store.list("nothing") == []
    assert store.list("b.txt") == []  # an object is not a folder


def test_list_never_shows_temporary_objects(store_uri: str) -> None:
    store = open_store(store_uri)
    store.put_bytes("a/real.bin", b"x")
    _plant_leftovers(store)
    assert len(_raw_names(store)) == 3  # the leftovers are really there
    assert store.list() == ["a/real.bin"]
    assert store.list("a") == ["a/real.bin"]
    with store.open_write("a/new.bin") as f:
        f.write(b"half")
        assert store.list() == ["a/real.bin"]
    assert store.list() == ["a/new.bin", "a/real.bin"]


def test_delete(store_uri: str) -> None:
    store = open_store(store_uri)
    store.put_bytes("k/one", b"1")
    store.put_bytes("k/two", b"2")
    store.delete("k/one")
    assert not store.exists("k/one")
    assert store.list() == ["k/two"]
    store.delete("k/one")  # missing is fine
    store.delete("never/was")


def test_move_replaces_destination(store_uri: str) -> None:
    store = open_store(store_uri)
    store.put_bytes("src.bin", b"new")
    store.put_bytes("dir/dst.bin", b"old")
    store.move("src.bin", "dir/dst.bin")
    assert not store.exists("src.bin")
    assert store.get_bytes("dir/dst.bin") == b"new"
    store.move("dir/dst.bin", "other/place.bin")
    assert store.list() == ["other/place.bin"]
    store.move("other/place.bin", "other/place.bin")  # onto itself: nothing changes
    assert store.get_bytes("other/place.bin") == b"new"


def test_child_store(store_uri: str) -> None:
    store = open_store(store_uri)
    child = store.child("runs/1/")
    assert child.uri == store.uri + "/runs/1"
    assert type(child) is type(store)
    assert child.uri in repr(child)
    child.put_bytes("model.json", b"{}")
    assert store.get_bytes("runs/1/model.json") == b"{}"
    assert child.list() == ["model.json"]
    assert store.list() == ["runs/1/model.json"]
    assert open_store(child.uri).get_bytes("model.json") == b"{}"
    assert child.child("deeper").uri == store.uri + "/runs/1/deeper"
    with pytest.raises(InvalidInput):
        store.child("")


def test_streaming_large_object(
    store_uri: str, small_parts: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(S3Store, "spool_max_size", MIB)
    store = open_store(store_uri)
    data = os.urandom(12 * MIB)
    with store.open_write("big/blob.bin") as f:
        for start in range(0, len(data), MIB):
            f.write(data[start : start + MIB])
    digest = hashlib.sha256()
    with store.open_read("big/blob.bin") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()
    with store.local_path("big/blob.bin") as path:
        assert Path(path).name == "blob.bin"
        assert Path(path).read_bytes() == data
    if isinstance(store, S3Store):
        assert not Path(path).exists()  # the downloaded copy is gone
    store.get_file("big/blob.bin", str(tmp_path / "blob.bin"))
    assert (tmp_path / "blob.bin").read_bytes() == data
    store.move("big/blob.bin", "big/moved.bin")
    assert store.get_bytes("big/moved.bin") == data
    assert _raw_names(store) == ["big/moved.bin"]


def test_s3_big_writes_are_multipart(s3_store_uri: str, small_parts: None) -> None:
    store = open_store(s3_store_uri)
    assert isinstance(store, S3Store)
    store.put_bytes("big.bin", os.urandom(12 * MIB))
    head = store._client.head_object(Bucket=store.bucket, Key=store._root + "big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB


def test_failed_write_leaves_nothing(store_uri: str) -> None:
    store = open_store(store_uri)
    with pytest.raises(RuntimeError, match="boom"):
        with store.open_write("a/new.bin") as f:
            f.write(b"partial" * 1000)
            raise RuntimeError("boom")
    assert not store.exists("a/new.bin")
    assert store.list() == []
    assert _raw_names(store) == []


def test_failed_write_keeps_the_old_object(store_uri: str) -> None:
    store = open_store(store_uri)
    store.put_bytes("a/model.json", b"version 1")
    with pytest.raises(RuntimeError, match="boom"):
        with store.open_write("a/model.json") as f:
            f.write(b"version 2, half written")
            raise RuntimeError("boom")
    assert store.get_bytes("a/model.json") == b"version 1"
    assert _raw_names(store) == ["a/model.json"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(store_uri: str, key: str) -> None:
    store = open_store(store_uri)
    with pytest.raises(InvalidInput, match="invalid key"):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidInput, match="invalid key"):
        store.get_bytes(key)
    with pytest.raises(InvalidInput, match="invalid key"):
        store.exists(key)
    with pytest.raises(InvalidInput, match="invalid key"):
        store.delete(key)
    with pytest.raises(InvalidInput, match="invalid key"):
        store.move("fine", key)
    assert _raw_names(store) == []


@pytest.mark.parametrize(
    "uri", ["ftp://host/path", "http://example.com/x", "", "file://relative/no-dot", "gs://b/p"]
)
def test_open_store_refuses_unknown_uris(uri: str) -> None:
    with pytest.raises(InvalidInput, match="s3://") as info:
        open_store(uri)
    assert repr(uri) in str(info.value) or uri == ""


@pytest.mark.parametrize("uri", ["s3://", "s3://Bad_Bucket/x", "s3://bucket/a/../b"])
def test_open_store_refuses_bad_s3_uris(uri: str) -> None:
    with pytest.raises(InvalidInput):
        open_store(uri, Settings())


def test_open_store_local_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("file://./rel/store")
    assert isinstance(relative, LocalStore)
    assert relative.root == str(tmp_path / "rel" / "store")
    assert relative.uri == "file://" + str(tmp_path / "rel" / "store")
    relative.put_bytes("k", b"v")
    assert open_store("rel/store").get_bytes("k") == b"v"
    assert open_store(f"file://{tmp_path}/rel/store/").get_bytes("k") == b"v"
    assert open_store(relative.uri).uri == relative.uri


def test_unreachable_endpoint_raises_store_error(free_tcp_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{free_tcp_port}"
    settings = Settings(s3_endpoint_url=endpoint, s3_connect_timeout=1, s3_max_attempts=1)
    store = open_store("s3://some-bucket/prefix", settings)
    started = time.monotonic()
    for call in (lambda: store.put_bytes("k", b"v"), lambda: store.get_bytes("k"), store.list):
        with pytest.raises(StoreError, match="some-bucket") as info:
            call()
        assert endpoint in str(info.value)
        assert info.value.status == 503
    assert time.monotonic() - started < 10


def test_missing_bucket_is_not_found(s3_server: str, tmp_path: Path) -> None:
    store = open_store("s3://no-such-bucket-here/prefix", Settings(s3_endpoint_url=s3_server))
    calls = [
        lambda: store.get_bytes("k"),
        lambda: store.put_bytes("k", b"v"),
        lambda: store.exists("k"),
        lambda: store.list(),
        lambda: store.get_file("k", str(tmp_path / "k")),
    ]
    for call in calls:
        with pytest.raises(NotFound, match="no bucket 'no-such-bucket-here'"):
            call()


def test_sweep_removes_a_folder_and_what_killed_writers_left(store_uri: str) -> None:
    store = open_store(store_uri)
    for key in ("job/a.bin", "job/sessions/b.bin", "jobs-other/c.bin"):
        store.put_bytes(key, b"x")
    if isinstance(store, LocalStore):  # a writer SIGKILLed mid-write leaves its temporary file
        Path(store.root, "job", "sessions", ".tmp-killed").write_bytes(b"half")
    store.sweep("job")
    assert store.list() == ["jobs-other/c.bin"]
    if isinstance(store, LocalStore):
        assert not Path(store.root, "job").exists()
        with pytest.raises(InvalidInput, match="not the root"):
            store.sweep("")
