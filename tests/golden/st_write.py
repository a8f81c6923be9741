# st_write.py — the minimal safetensors writer the fixture generators share (formats.md A1): u64 LE header length, JSON
# header padded with spaces to a multiple of 8, then the tensors back to back in header order; written to a temp file
# and renamed. Not a reader and not a general library: numpy arrays of the dtypes below only.
import json
import os
import struct

import numpy as np

DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, arr in tensors:
        arr = np.array(arr, order="C")  # not ascontiguousarray: it turns 0-d (loss, num_batches_tracked) into [1]
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
