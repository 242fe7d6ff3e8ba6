"""Which inputs a checkpoint was trained on, told by the data, never by a name or a file the checkpoint names.

A training run stores in its checkpoints (`train_digests`, (N, DIGEST_BYTES) uint8) the blake2b digest of each
training sample it read: the float32 bytes of its frames up to the last one that is not all zero (so the same
recording padded to another length has the same digest). predict.py digests its inputs the same way; an input
is seen in training when its digest is one of them. A checkpoint written before the digests were kept tells
nothing (every input UNKNOWN).
"""
import hashlib

import numpy as np

TRAIN, TEST, UNKNOWN = 1, 0, -1
DIGEST_BYTES = 16


def digest(sample):
    """blake2b digest (DIGEST_BYTES bytes) of one sample (frames, values): its frames up to the last non-zero one,
    as float32."""
    sample = np.asarray(sample, np.float32)
    nonzero = np.flatnonzero(sample.reshape(len(sample), -1).any(axis=1))
    frames = np.ascontiguousarray(sample[:nonzero[-1] + 1 if len(nonzero) else 0])
    return hashlib.blake2b(frames.tobytes(), digest_size=DIGEST_BYTES).digest()


def digests(data, rows):
    """(len(rows), DIGEST_BYTES) uint8: the digest of each sample data[r] for r in rows."""
    out = np.zeros((len(rows), DIGEST_BYTES), np.uint8)
    for i, row in enumerate(rows):
        out[i] = np.frombuffer(digest(data[row]), np.uint8)
    return out


def seen_in_training(stored, inputs):
    """Per input TRAIN (its digest is among the checkpoint's `stored` digests) or TEST, (N,) int8; all UNKNOWN when
    the checkpoint stores none (None)."""
    if stored is None:
        return np.full(len(inputs), UNKNOWN, np.int8)
    known = {bytes(row) for row in np.asarray(stored, np.uint8)}
    return np.array([TRAIN if bytes(row) in known else TEST for row in inputs], np.int8)
