"""Text through tensorflow-datasets, without TensorFlow: prepared TFDS sets and local text files.

Sources
- `tfds:NAME[/CONFIG][:VERSION]` (tfds:tiny_shakespeare, tfds:lm1b, tfds:c4/en, ...): a data set
  already prepared in `data_dir` in the array_record format. Nothing here ever downloads: TFDS,
  offline, hangs for minutes in HTTP retries, so an unprepared set fails at once with the command
  that prepares it (`python -m lm.data.tfds_text prepare NAME --data-dir DIR`, on a machine with
  network access).
- `text:GLOB` (text:/corpus/*.txt): local UTF-8 files through `LocalText`, a TFDS builder defined
  here, so local corpora get the same prepared, shuffled, split array_record format. Each file is cut
  into documents at blank lines (paragraphs); a fixed 5 % of the documents (at least one) form the
  'validation' split and the rest 'train' -- unless the glob's files lie in split folders
  (`<base>/train/...` and `<base>/validation/...` below the glob's fixed part): then whole files are
  held out, each split its folder's files (lm.data.corpus writes its corpora this way). The prepared copy lives under
  `data_dir/lm_local_text/<hash of the file list, sizes and times>/`, so editing a file prepares anew.

What we found about TFDS without TensorFlow (tensorflow-datasets 4.9.10, no TF installed): a builder
prepared with `file_format='array_record'` is written and read without TF, through
`builder.as_data_source()` (random access; Text values come back as bytes); `tfds.builder_from_directory`
opens a prepared set without the registry or the network. `as_dataset()` and the tfrecord format
need TF. Some catalogue builders read their downloads with `tf.io.gfile` (tiny_shakespeare and lm1b
do), so *preparing* them needs TF even though reading the result does not, and c4 is prepared with
Apache Beam: prepare such sets once where those can be installed, then copy the folder. The legacy
text builders (c4, ...) register only after `import tensorflow_datasets.text`, which needs no TF.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob as globlib
import hashlib
import os
import re
from typing import Any, Iterator, Sequence

VALIDATION_FRACTION = 0.05
LOCAL_BUILDER_NAME = "lm_local_text"


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS data set is not prepared in data_dir (the message says how to prepare it)."""


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str                   # 'tfds', 'text' or 'corpus' (lm.data.corpus)
    name: str                   # TFDS name, or the glob
    config: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        if self.kind in ("text", "corpus"):
            return f"{self.kind}:{self.name}"
        return f"tfds:{self.name}" + (f"/{self.config}" if self.config else "") + \
            (f":{self.version}" if self.version else "")


def parse_source(source: str) -> Source:
    if source.startswith("corpus:"):
        from lm.data import corpus
        corpus.parse(source)
        return Source("corpus", source[len("corpus:"):])
    if source.startswith("text:"):
        return Source("text", os.path.expanduser(source[5:]))
    if source.startswith("tfds:"):
        m = re.fullmatch(r"([A-Za-z0-9_]+)(?:/([A-Za-z0-9_.\-]+))?(?::([0-9.*]+))?", source[5:])
        if not m:
            raise ValueError(f"data source {source!r} is not tfds:NAME[/CONFIG][:VERSION] "
                             "(e.g. tfds:tiny_shakespeare or tfds:c4/en:3.1.0)")
        return Source("tfds", m.group(1), m.group(2), m.group(3))
    raise ValueError(f"data source {source!r} is not known; use 'synthetic', 'tfds:NAME', 'text:GLOB' or "
                     "'corpus:python/DISTS'")


def import_tfds():
    import tensorflow_datasets as tfds
    import tensorflow_datasets.text  # noqa: F401  (registers the legacy text builders: c4, ...)

    return tfds


def corpus_root(data_dir: str | None) -> str:
    """Where corpora (lm.data.corpus) are materialized: <TFDS data dir>/lm_corpora."""
    return os.path.join(default_data_dir(data_dir), "lm_corpora")


def default_data_dir(data_dir: str | None) -> str:
    if data_dir:
        return os.path.expanduser(data_dir)
    from tensorflow_datasets.core import constants

    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", constants.DATA_DIR))


# ---------------------------------------------------------------------------------------------
# Local text files through a project TFDS builder.

def split_documents(text: str) -> list[str]:
    """Paragraphs: text between blank lines, with surrounding blank lines dropped."""
    return [p.strip("\n") for p in re.split(r"\n[ \t\r]*\n", text) if p.strip()]


def _local_files(pattern: str) -> list[str]:
    files = sorted(f for f in globlib.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no files match {pattern!r} (data source text:{pattern}); check the path "
                                "and quote the glob so the shell does not expand it")
    return files


def split_folders(files: Sequence[str], pattern: str) -> list[str] | None:
    """Each file's split when every file lies in `<base>/train/` or `<base>/validation/` (base: the
    glob's part before its first wildcard) and both splits have files; else None."""
    base = os.path.abspath(re.split(r"[*?\[]", pattern, maxsplit=1)[0].rsplit(os.sep, 1)[0] or os.sep)
    splits = [os.path.relpath(os.path.abspath(f), base).split(os.sep, 1)[0] for f in files]
    return splits if set(splits) == {"train", "validation"} else None


def files_fingerprint(files: Sequence[str]) -> str:
    h = hashlib.sha1()
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "c" + h.hexdigest()[:16]


def _make_local_builder_class():
    tfds = import_tfds()

    class LocalText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Local UTF-8 text files, one example per paragraph; 'train' and 'validation' splits."""

        name = LOCAL_BUILDER_NAME
        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Paragraphs of local text files, 5% validation."}

        def __init__(self, *, files: Sequence[str], pattern: str, **kwargs: Any):
            self._files = list(files)
            config = tfds.core.BuilderConfig(name=files_fingerprint(files), description=pattern)
            super().__init__(config=config, **kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description=f"Local text files {self.builder_config.description}",
                features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            documents = []
            for i, path in enumerate(self._files):
                with open(path, encoding="utf-8", errors="replace") as f:
                    documents += [(f"{i}:{j}", d) for j, d in enumerate(split_documents(f.read()))]
            if not documents:
                raise ValueError(f"the corpus {self.builder_config.description!r} is empty: its "
                                 f"{len(self._files)} file(s) hold no text; point text: at files with text")
            folders = split_folders(self._files, self.builder_config.description)
            if folders is not None:
                return {split: self._generate([kd for kd in documents if folders[int(kd[0].split(":")[0])] == split])
                        for split in ("train", "validation")}
            # A fixed pseudo-random 5% of documents (by hash of the key), at least one, for validation.
            ranked = sorted(documents, key=lambda kd: hashlib.sha1(kd[0].encode()).digest())
            n_val = max(1, round(VALIDATION_FRACTION * len(documents))) if len(documents) > 1 else 0
            val_keys = {k for k, _ in ranked[:n_val]}
            return {"train": self._generate([kd for kd in documents if kd[0] not in val_keys]),
                    "validation": self._generate([kd for kd in documents if kd[0] in val_keys])}

        def _generate(self, documents):
            for key, text in documents:
                yield key, {"text": text}

        def _generate_examples(self, **kwargs):  # required abstract method; splits use _generate
            raise NotImplementedError

    return LocalText


_LOCAL_CLASS = None


def quiet_custom_config_warning() -> None:
    """Each local corpus is its own builder config by design; drop TFDS's warning about that."""
    import logging

    logger = logging.getLogger("absl")
    if not any(getattr(f, "_lm_local_text", False) for f in logger.filters):
        flt = logging.Filter()
        flt.filter = lambda record: "Using custom data configuration" not in record.getMessage()  # type: ignore
        flt._lm_local_text = True  # type: ignore[attr-defined]
        logger.addFilter(flt)


def local_text_builder(pattern: str, data_dir: str | None):
    """The LocalText builder for a glob, prepared (array_record) on first use."""
    global _LOCAL_CLASS
    if _LOCAL_CLASS is None:
        _LOCAL_CLASS = _make_local_builder_class()
        quiet_custom_config_warning()
    files = _local_files(pattern)
    if not any(os.path.getsize(f) for f in files):
        raise ValueError(f"the corpus text:{pattern} is empty: all {len(files)} matching file(s) are "
                         "empty; point text: at files with text")
    builder = _LOCAL_CLASS(files=files, pattern=pattern, data_dir=default_data_dir(data_dir),
                           file_format="array_record")
    if not is_prepared(builder.data_dir):
        builder.download_and_prepare(file_format="array_record")
    return builder


def is_prepared(builder_dir: str) -> bool:
    return os.path.isfile(os.path.join(builder_dir, "dataset_info.json"))


# ---------------------------------------------------------------------------------------------
# Catalogue TFDS data sets, opened only when already prepared.

def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else -1 for x in v.split("."))


def prepare_command(source: Source, data_dir: str) -> str:
    name = source.name + (f"/{source.config}" if source.config else "") + \
        (f":{source.version}" if source.version else "")
    return f"python -m lm.data.tfds_text prepare {name} --data-dir {data_dir}"


def tfds_builder(source: Source, data_dir: str | None):
    """A read-only builder of a prepared TFDS data set; fails at once when it is not prepared."""
    tfds = import_tfds()
    data_dir = default_data_dir(data_dir)
    try:
        cls = tfds.builder_cls(source.name)
    except Exception:
        known = tfds.list_builders(with_community_datasets=False)
        close = list(dict.fromkeys(difflib.get_close_matches(source.name, known, n=5)))
        hint = f"did you mean {close}? " if close else ""
        raise ValueError(f"unknown TFDS data set {source.name!r}; {hint}text data sets include "
                         "tiny_shakespeare, lm1b, c4/en, pg19; or use text:/path/*.txt for local files") from None
    configs = [c.name for c in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
    config = source.config
    if config is None and configs:
        config = getattr(cls, "DEFAULT_BUILDER_CONFIG_NAME", None) or configs[0]
    if config is not None and configs and config not in configs:
        raise ValueError(f"TFDS data set {source.name!r} has no config {config!r}; configs: {configs}")
    if config is not None and not configs:
        raise ValueError(f"TFDS data set {source.name!r} has no configs; drop '/{config}'")
    base = os.path.join(data_dir, source.name, *( [config] if config else []))
    versions = sorted((v for v in (os.listdir(base) if os.path.isdir(base) else [])
                       if is_prepared(os.path.join(base, v))), key=_version_key)
    if source.version and source.version in versions:
        versions = [source.version]
    elif source.version:
        versions = []
    if not versions:
        raise DatasetNotPreparedError(
            f"TFDS data set {source.label} is not prepared in {data_dir} (no dataset_info.json under "
            f"{base}/<version>/). Without network TFDS would hang for minutes in HTTP retries, so this "
            f"stops now. Prepare it in advance where the network is reachable: "
            f"`{prepare_command(source, data_dir)}` (array_record format; tiny_shakespeare and lm1b "
            f"need `pip install tensorflow` and c4 needs apache-beam while preparing), then copy that "
            f"folder here and set data.data_dir to it.")
    builder = tfds.builder_from_directory(os.path.join(base, versions[-1]))
    formats = [str(getattr(f, "value", f)) for f in
               [builder.info.file_format, *getattr(builder.info, "alternative_file_formats", [])] if f]
    if "array_record" not in formats:
        raise ValueError(f"{source.label} in {builder.data_dir} is prepared as {formats}, which needs "
                         f"TensorFlow to read; prepare it again with file_format='array_record': "
                         f"`{prepare_command(source, data_dir)}`")
    return builder


# ---------------------------------------------------------------------------------------------
# Both kinds: checks, then documents as Python strings.

def open_builder(source: Source, data_dir: str | None):
    if source.kind == "text":
        return local_text_builder(source.name, data_dir)
    if source.kind == "corpus":
        from lm.data import corpus
        return local_text_builder(corpus.materialize(source.label, corpus_root(data_dir)).glob, data_dir)
    return tfds_builder(source, data_dir)


def check_split_and_feature(builder, label: str, split: str, feature: str) -> None:
    splits = sorted(builder.info.splits.keys())
    base = re.split(r"[\[+]", split)[0]
    if base not in splits:
        raise ValueError(f"split {split!r} is not in {label}; its splits are {splits} "
                         f"(set data.train_split / data.eval_split to one of them)")
    features = builder.info.features
    keys = list(features.keys()) if hasattr(features, "keys") else []
    if feature not in keys:
        raise ValueError(f"{label} has no text feature {feature!r}; its features are {keys} "
                         f"(set data.text_feature to the one holding the text)")
    kind = type(features[feature]).__name__
    if kind != "Text":
        raise ValueError(f"feature {feature!r} of {label} is a {kind}, not Text; set data.text_feature "
                         f"to a Text feature of {keys}")


def iter_documents(builder, split: str, feature: str, *, chunk: int = 1024,
                   limit: int | None = None) -> Iterator[str]:
    """The split's documents in the prepared (shuffled) order, as str."""
    source = builder.as_data_source(split=split)
    n = len(source) if limit is None else min(limit, len(source))
    for lo in range(0, n, chunk):
        idx = list(range(lo, min(n, lo + chunk)))
        items = source.__getitems__(idx) if hasattr(source, "__getitems__") else [source[i] for i in idx]
        for item in items:
            value = item[feature]
            yield value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def split_size(builder, split: str) -> int:
    return len(builder.as_data_source(split=split))


# ---------------------------------------------------------------------------------------------

def prepare(name: str, data_dir: str) -> str:
    """Download and prepare a catalogue data set as array_record (needs network)."""
    source = parse_source("tfds:" + name)
    tfds = import_tfds()
    full = source.name + (f"/{source.config}" if source.config else "") + \
        (f":{source.version}" if source.version else "")
    builder = tfds.builder(full, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    return str(builder.data_dir)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lm.data.tfds_text",
                                     description="Prepare TFDS text data sets for offline use.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download and prepare NAME[/CONFIG] as array_record (needs network)")
    p.add_argument("name")
    p.add_argument("--data-dir", default=default_data_dir(None))
    args = parser.parse_args(argv)
    print(prepare(args.name, args.data_dir))


if __name__ == "__main__":
    main()
