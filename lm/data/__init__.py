"""Data: the synthetic language (default), TFDS/local text, sentencepiece, the batch pipeline."""

from lm.data.pipeline import (BatchStream, Dataset, SyntheticDataset, TokenDataset, build_dataset,
                              floor_of, process_rows, to_device)

__all__ = ["BatchStream", "Dataset", "SyntheticDataset", "TokenDataset", "build_dataset", "floor_of",
           "process_rows", "to_device"]
