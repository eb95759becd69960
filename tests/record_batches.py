"""`python tests/record_batches.py HASHES.jsonl [lm-train args...]`: lm-train that also records the
SHA-256 of every global training batch it puts on the devices (process 0 appends
{"step", "sha256"} lines to HASHES.jsonl). A test helper: the hash is of the whole global batch,
gathered from all processes, so runs on different meshes and process counts compare directly.
Batches reach the devices a block of steps at a time (BatchStream.device_block): each step of
the block is hashed from the slot the train step reads (lm.step_blocks.StepBlocks)."""

import hashlib
import json
import sys

import numpy as np


def _install(path: str) -> None:
    import jax
    from jax.experimental import multihost_utils

    from lm.data import pipeline

    original = pipeline.BatchStream.device_block

    def recording(self, start, stop, blocks, sharding):
        array = original(self, start, stop, blocks, sharding)
        if self.dataset.split == "train":
            full = np.asarray(multihost_utils.process_allgather(array, tiled=True))
            if jax.process_index() == 0:
                with open(path, "a") as f:
                    for step in range(start, stop):
                        batch = full[blocks.slot(step)]
                        f.write(json.dumps({"step": int(step), "shape": list(batch.shape),
                                            "sha256": hashlib.sha256(batch.tobytes()).hexdigest()}) + "\n")
        return array

    pipeline.BatchStream.device_block = recording


if __name__ == "__main__":
    _install(sys.argv[1])
    from lm.train import main
    sys.exit(main(sys.argv[2:]))
