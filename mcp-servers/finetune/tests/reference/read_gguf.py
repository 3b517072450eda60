"""Reads GGUF files with the `gguf` package (llama.cpp's own Python reader, from PyPI) and
compares each matrix, dequantized by it, with the same matrix in an f32 GGUF file of the same
model: what another reader makes of the bytes we wrote.

    python read_gguf.py REFERENCE.gguf FILE.gguf...

Prints JSON: {"gguf": version, "files": {FILE: {"file_type": n, "tensors": {name: {"type":
"Q4_K", "shape": [...], "error": relative RMS error against the reference}}}}}.
`tests/reference.rs` runs it with the `gguf` .ci/run installs.
"""

import json
import sys
from importlib.metadata import version

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def tensors(path):
    reader = GGUFReader(path)
    field = reader.get_field("general.file_type")
    file_type = int(field.parts[field.data[0]][0])
    out = {}
    for tensor in reader.tensors:
        values = dequantize(tensor.data, tensor.tensor_type).astype(np.float64)
        out[tensor.name] = (tensor.tensor_type.name, [int(n) for n in tensor.shape], values)
    return file_type, out


def main():
    _, reference = tensors(sys.argv[1])
    files = {}
    for path in sys.argv[2:]:
        file_type, read = tensors(path)
        report = {}
        for name, (kind, shape, values) in read.items():
            expected = reference[name][2]
            if values.shape != expected.shape:
                raise SystemExit(f"{path}: {name} is {values.shape}, the reference {expected.shape}")
            rms = np.sqrt(np.mean(expected**2))
            error = float(np.sqrt(np.mean((values - expected) ** 2)) / rms) if rms else 0.0
            report[name] = {"type": kind, "shape": shape, "error": error}
        files[path] = {"file_type": file_type, "tensors": report}
    print(json.dumps({"gguf": version("gguf"), "files": files}))


if __name__ == "__main__":
    main()
