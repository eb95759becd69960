"""`python tests/record_batches.py HASHES.jsonl [lm-train args...]`: lm-train that also records the
SHA-256 of every global training batch it puts on the devices (process 0 appends
{"step", "sha256"} lines to HASHES.jsonl). A test helper: the hash is of the whole global batch,
gathered from all processes, so runs on different meshes and process counts compare directly."""

import hashlib
import json
import sys

import numpy as np


def _install(path: str) -> None:
    import jax
    from jax.experimental import multihost_utils

    from lm.data import pipeline

    original = pipeline.BatchStream.device_batch

    def recording(self, step, sharding, *args):
        array = original(self, step, sharding, *args)
        if self.dataset.split == "train":
            full = np.asarray(multihost_utils.process_allgather(array, tiled=True))
            if jax.process_index() == 0:
                with open(path, "a") as f:
                    f.write(json.dumps({"step": int(step), "shape": list(full.shape),
                                        "sha256": hashlib.sha256(full.tobytes()).hexdigest()}) + "\n")
        return array

    pipeline.BatchStream.device_batch = recording


if __name__ == "__main__":
    _install(sys.argv[1])
    from lm.train import main
    sys.exit(main(sys.argv[2:]))
