"""Fixtures for the data tests: a small local corpus written to a temporary folder."""

import random

import pytest

WORDS = ("the king and queen of the north walked to a river where the old miller sang "
         "of bread and iron while children ran through fields of barley under grey skies").split()


def write_corpus(folder, n_files=3, paragraphs=60, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        lines = []
        for p in range(paragraphs):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 60))]
            lines.append(f"§{f}.{p} " + " ".join(words) + ".")
        (folder / f"part{f}.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return str(folder / "*.txt")


@pytest.fixture(scope="session")
def corpus_glob(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def make_prepared_catalogue_set(data_dir, name="tiny_shakespeare"):
    """Write a data set in the exact layout `tfds build` leaves in data_dir (here without network)."""
    import numpy as np
    import tensorflow_datasets as tfds

    class Fake(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "id": tfds.features.Scalar(np.int64)}))

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s, n) for s, n in
                    (("train", 40), ("validation", 4), ("test", 4))}

        def _generate_examples(self, split, n):
            for i in range(n):
                yield f"{split}{i}", {"text": f"{split} line {i}: to be or not to be, that is it.\n" * 20,
                                      "id": i}

    Fake.name = name
    builder = Fake(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    return builder


@pytest.fixture(scope="session")
def prepared_tfds_dir(tmp_path_factory):
    """A data_dir holding a prepared 'tiny_shakespeare' (train/validation/test; text and id features)."""
    data_dir = str(tmp_path_factory.mktemp("prepared"))
    make_prepared_catalogue_set(data_dir)
    return data_dir
