"""The no-download corpus (Python source of pinned pure-Python packages) on a small slice."""

import os

import pytest

from lm.data import corpus, tfds_text

SLICE = "corpus:python/absl-py,optax/120000"


def test_recipe_is_deterministic_hashed_and_split_by_file(tmp_path):
    a = corpus.materialize(SLICE, str(tmp_path / "a"))
    b = corpus.materialize(SLICE, str(tmp_path / "b"))
    assert a.sha256 == b.sha256 and os.path.basename(a.folder) == os.path.basename(b.folder)
    assert a.train_files and a.validation_files
    rel = lambda files, folder: {os.path.relpath(f, folder).split(os.sep, 1)[1] for f in files}
    assert not rel(a.train_files, a.folder) & rel(a.validation_files, a.folder)     # whole files held out
    assert rel(a.train_files, a.folder) == rel(b.train_files, b.folder)
    # The cap: training text stops at the first file past 120 kB; each copy is byte-identical.
    assert 120_000 <= a.train_bytes < 120_000 + max(os.path.getsize(f) for f in a.train_files)
    assert a.train_bytes == sum(os.path.getsize(f) for f in a.train_files)
    for fa, fb in zip(a.train_files, b.train_files):
        assert open(fa, "rb").read() == open(fb, "rb").read()
    record = a.record()
    assert record["versions"]["optax"] and record["sha256"] == a.sha256 and record["source"] == SLICE
    # Another cap is another corpus (another hash), and the same call again reuses the folder.
    c = corpus.materialize("corpus:python/absl-py,optax/60000", str(tmp_path / "a"))
    assert c.sha256 != a.sha256
    assert corpus.materialize(SLICE, str(tmp_path / "a")).folder == a.folder


def test_bad_recipes_fail_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="not installed"):
        corpus.materialize("corpus:python/no-such-dist-xyz", str(tmp_path))
    with pytest.raises(ValueError, match="not a pure-Python wheel"):
        corpus.materialize("corpus:python/numpy", str(tmp_path))
    with pytest.raises(ValueError, match="corpus:python/DIST"):
        corpus.parse("corpus:stdlib")
    with pytest.raises(ValueError, match="twice"):
        corpus.parse("corpus:python/jax,jax")
    assert not os.listdir(tmp_path)                 # nothing written


def test_local_text_builder_reads_the_split_folders(tmp_path):
    c = corpus.materialize(SLICE, str(tmp_path / "corpora"))
    builder = tfds_text.open_builder(tfds_text.parse_source(SLICE), str(tmp_path / "tfds"))
    val = list(tfds_text.iter_documents(builder, "validation", "text"))
    train = list(tfds_text.iter_documents(builder, "train", "text"))
    held_out = "\n\n".join(open(f, encoding="utf-8").read() for f in c.validation_files)
    trained = "\n\n".join(open(f, encoding="utf-8").read() for f in c.train_files)
    assert all(d in held_out for d in val) and all(d in trained for d in train)
    assert len(val) == sum(len(tfds_text.split_documents(open(f, encoding="utf-8", errors="replace").read()))
                           for f in c.validation_files)
    # A plain folder of files (no split folders) keeps the 5 % of paragraphs rule.
    assert tfds_text.split_folders([str(tmp_path / "x" / "a.txt")], str(tmp_path / "x" / "*.txt")) is None
