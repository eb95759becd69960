"""TFDS without TensorFlow: a project builder for local text, prepared catalogue sets, fast failures."""

import time

import pytest

from lm.data import tfds_text


def test_local_text_is_prepared_shuffled_and_split(corpus_glob, tfds_dir, monkeypatch):
    builder = tfds_text.local_text_builder(corpus_glob, tfds_dir)
    assert set(builder.info.splits.keys()) == {"train", "validation"}
    train = list(tfds_text.iter_documents(builder, "train", "text"))
    val = list(tfds_text.iter_documents(builder, "validation", "text"))
    assert len(train) + len(val) == 180 and len(val) == 9
    assert not set(train) & set(val)
    assert all(d.startswith("§") for d in train + val)
    # Opening it again reuses the prepared files (same folder, no re-preparation).
    monkeypatch.setattr(type(builder), "download_and_prepare", lambda *a, **k: 1 / 0)
    again = tfds_text.local_text_builder(corpus_glob, tfds_dir)
    assert again.data_dir == builder.data_dir


def test_prepared_order_is_shuffled(corpus_glob, tfds_dir):
    builder = tfds_text.local_text_builder(corpus_glob, tfds_dir)
    first_words = [d.split()[0] for d in tfds_text.iter_documents(builder, "train", "text")]
    assert first_words != sorted(first_words, key=lambda w: tuple(map(int, w[1:].split("."))))


def test_missing_files_and_empty_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="no files match"):
        tfds_text.local_text_builder(str(tmp_path / "nothing" / "*.txt"), str(tmp_path / "d"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        tfds_text.local_text_builder(str(tmp_path / "empty.txt"), str(tmp_path / "d"))
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    with pytest.raises(ValueError, match="empty"):
        tfds_text.local_text_builder(str(tmp_path / "blank.txt"), str(tmp_path / "d"))


def test_unknown_dataset_suggests_names(tmp_path):
    with pytest.raises(ValueError, match="tiny_shakespeare"):
        tfds_text.tfds_builder(tfds_text.parse_source("tfds:tiny_shakespear"), str(tmp_path))


def test_unprepared_dataset_fails_at_once_with_the_prepare_command(tmp_path):
    tfds_text.import_tfds()                                  # import TFDS outside the timed part
    t0 = time.time()
    with pytest.raises(tfds_text.DatasetNotPreparedError, match="lm.data.tfds_text prepare lm1b"):
        tfds_text.tfds_builder(tfds_text.parse_source("tfds:lm1b"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data_dir"):
        tfds_text.tfds_builder(tfds_text.parse_source("tfds:c4/en"), str(tmp_path))
    assert time.time() - t0 < 5


def test_unknown_config(tmp_path):
    with pytest.raises(ValueError, match="no config 'xx'"):
        tfds_text.tfds_builder(tfds_text.parse_source("tfds:c4/xx"), str(tmp_path))


def test_prepared_catalogue_dataset_opens_without_network(prepared_tfds_dir):
    source = tfds_text.parse_source("tfds:tiny_shakespeare")
    builder = tfds_text.tfds_builder(source, prepared_tfds_dir)
    docs = list(tfds_text.iter_documents(builder, "validation", "text"))
    assert len(docs) == 4 and all(d.startswith("validation line") for d in docs)
    with pytest.raises(ValueError, match="no text feature 'content'"):
        tfds_text.check_split_and_feature(builder, "x", "train", "content")
    with pytest.raises(ValueError, match="is a Scalar, not Text"):
        tfds_text.check_split_and_feature(builder, "x", "train", "id")
    with pytest.raises(ValueError, match="splits are"):
        tfds_text.check_split_and_feature(builder, "x", "dev", "text")
    tfds_text.check_split_and_feature(builder, "x", "train[:50%]", "text")


def test_parse_source():
    assert tfds_text.parse_source("tfds:c4/en:3.1.0") == tfds_text.Source("tfds", "c4", "en", "3.1.0")
    assert tfds_text.parse_source("text:/a/*.txt") == tfds_text.Source("text", "/a/*.txt")
    with pytest.raises(ValueError):
        tfds_text.parse_source("tfds:bad name")
