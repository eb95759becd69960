"""Checkpoint folders go through etils.epath: local paths absolute, URLs (gs://) untouched."""

import os

from lm.checkpoint import resolve


def test_local_paths_become_absolute_and_urls_stay_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(resolve("runs/a/checkpoints")) == os.path.join(str(tmp_path), "runs/a/checkpoints")
    assert str(resolve("gs://bucket/runs/a/checkpoints")) == "gs://bucket/runs/a/checkpoints"
    assert str(resolve("gs://bucket/runs/a/checkpoints") / "10") == "gs://bucket/runs/a/checkpoints/10"
