"""Runs a real engine, or a decoy that touches a model without running it, for the engine tests.

    run.py onnx MODEL SECONDS         onnxruntime.InferenceSession on the CPU, forward passes
    run.py safetensors MODEL SECONDS  safe_open(framework="numpy") (the file is mapped),
                                      forward passes of the MLP with NumPy while it stays open
    run.py memmap FILE SECONDS        a decoy: numpy.memmap of a large file that is no model,
                                      used as a matrix (CPU busy with a large mapping)

Each runs passes for SECONDS of wall time (at least one), so the run is as long on a fast
machine as on a slow one. Prints one line, `ran N passes: <checksum>`, so the test knows the
work was done.
"""

import sys
import time

import numpy as np

BATCH = 64


def passes(seconds: float):
    """Pass numbers until `seconds` of wall time have gone by (at least one)."""
    deadline = time.monotonic() + seconds
    n = 0
    while n == 0 or time.monotonic() < deadline:
        yield n
        n += 1


def onnx(model: str, seconds: float) -> tuple[int, str]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Two threads at most: the test machine has two cores shared with other work.
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    x = np.random.default_rng(1).standard_normal((BATCH, inp.shape[1]), dtype=np.float32)
    total, n = 0.0, 0
    for n in passes(seconds):
        (y,) = sess.run(None, {inp.name: x})
        total += float(y[0, 0])
    return n + 1, f"{total:.3f}"


def safetensors(model: str, seconds: float) -> tuple[int, str]:
    from safetensors import safe_open

    total, n = 0.0, 0
    with safe_open(model, framework="numpy") as f:
        w1, b1 = f.get_tensor("fc1.weight"), f.get_tensor("fc1.bias")
        w2, b2 = f.get_tensor("fc2.weight"), f.get_tensor("fc2.bias")
        x = np.random.default_rng(2).standard_normal((BATCH, w1.shape[0]), dtype=np.float32)
        for n in passes(seconds):
            h = np.maximum(x @ w1 + b1, 0.0)
            y = h @ w2 + b2
            total += float(y[0, 0])
    return n + 1, f"{total:.3f}"


def memmap(path: str, seconds: float) -> tuple[int, str]:
    # The whole file is mapped; its first 64 MiB are used as a 4096 x 4096 matrix, multiplied
    # like a weight (BLAS, every core): as hot as inference, on data that is no model.
    data = np.memmap(path, dtype=np.float32, mode="r")
    m = data[: 4096 * 4096].reshape(4096, 4096)
    x = np.ones((BATCH, 4096), dtype=np.float32)
    total, n = 0.0, 0
    with np.errstate(all="ignore"):
        for n in passes(seconds):
            total += float((x @ m)[0, 0])
    return n + 1, f"{total:.3f}"


def main() -> int:
    runners = {"onnx": onnx, "safetensors": safetensors, "memmap": memmap}
    if len(sys.argv) != 4 or sys.argv[1] not in runners:
        print(__doc__, file=sys.stderr)
        return 2
    n, checksum = runners[sys.argv[1]](sys.argv[2], float(sys.argv[3]))
    print(f"ran {n} passes: {checksum}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
