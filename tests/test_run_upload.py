"""``emgpose run`` uploads its data once: a rerun with unchanged files reuses the dataset on the gateway
(nothing new in the store), changed files or a dataset the gateway no longer has are uploaded again."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from gateway_support import SMALL, serve_gateway

from emgpose.client import Client
from emgpose.db.migrate import upgrade
from emgpose.run_upload import folder_digest, record_path, upload_once
from emgpose.synth import write_dataset

pytest_plugins = ["gateway_fixtures"]  # fixtures: synth_folder


def test_unchanged_files_reuse_the_upload_and_changed_ones_upload_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synth_folder: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_folder, data)
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    with serve_gateway(monkeypatch, tmp_path, url) as gw, Client(gw.url) as api:
        first = upload_once(api, "synthetic", data)
        assert not first.reused and first.dataset["state"] == "ready"
        assert json.loads(record_path(data).read_text())["dataset"] == first.dataset["id"]

        again = upload_once(api, "synthetic", data)
        assert again.reused and again.dataset["id"] == first.dataset["id"] and again.sha256 == first.sha256
        assert [p.name for p in (gw.store_root / "raw").iterdir()] == [first.dataset["id"]]  # one copy stored

        write_dataset(dataclasses.replace(SMALL, seed=SMALL.seed + 1), data.as_uri())
        assert folder_digest(data) != first.sha256
        changed = upload_once(api, "synthetic", data)
        assert not changed.reused and changed.dataset["id"] != first.dataset["id"]

        record_path(data).write_text(json.dumps({"dataset": "0" * 32, "sha256": changed.sha256}))
        gone = upload_once(api, "synthetic", data)  # the recorded dataset is unknown to this gateway: 404
        assert not gone.reused and gone.dataset["id"] not in (first.dataset["id"], changed.dataset["id"])
