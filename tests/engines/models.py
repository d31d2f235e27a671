"""Writes small but real models for the engine tests, with names the tests assert on.

    models.py gguf PATH         a llama-architecture GGUF that llama.cpp loads and generates with
    models.py onnx PATH         a MatMul+Add ONNX graph for onnxruntime's CPU provider
    models.py safetensors PATH  a two-layer MLP's weights in safetensors

Every model is larger than the sensor's default size threshold (32 MiB): the engines map or
read a model of realistic size, not a stub. Weights are random with a fixed seed (the
safetensors header's metadata order is not fixed, so its digest can change from run to run:
the tests hash the file they wrote). Prints nothing; exits non-zero on error.
"""

import sys

import numpy as np

GGUF_NAME = "modelwatch-tiny-llama"
ONNX_GRAPH = "modelwatch-tiny-onnx"
ONNX_PRODUCER = "modelwatch-tests"
SAFETENSORS_NAME = "modelwatch-tiny-mlp"

# ONNX: y = x @ W + b with W of 4096 x 2560 float32 (40 MiB).
ONNX_IN, ONNX_OUT = 4096, 2560
# safetensors: h = relu(x @ W1 + b1); y = h @ W2 + b2, 48 MiB of float32.
ST_IN, ST_HIDDEN, ST_OUT = 2048, 4096, 1024


def gguf(path: str) -> None:
    import gguf as g

    rng = np.random.default_rng(7)
    # A minimal SentencePiece-style vocabulary: the three specials, the 256 byte tokens (byte
    # fallback makes any prompt tokenizable), and a few word pieces.
    pieces = ["\u2581the", "\u2581a", "\u2581model", "\u2581is", "\u2581on", "\u2581sensor", "\u2581"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [g.TokenType.UNKNOWN, g.TokenType.CONTROL, g.TokenType.CONTROL]
    types += [g.TokenType.BYTE] * 256 + [g.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i + 1) for i in range(len(pieces))]
    n_vocab = len(tokens)
    # About 80 MiB of F32 (above the 32 MiB threshold with room to spare); a token costs about
    # 40 MFLOP, a few milliseconds on one core.
    n_embd, n_ff, n_layer, n_head = 512, 1536, 6, 8

    w = g.GGUFWriter(path, "llama")
    w.add_name(GGUF_NAME)
    w.add_license("apache-2.0")
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(g.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def t(name: str, *shape: int, scale: float = 0.02) -> None:
        # numpy shape is (rows, cols) = ggml's (ne1, ne0): weights are stored [out, in].
        w.add_tensor(name, (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32))

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    t("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        ones(f"blk.{i}.attn_norm.weight", n_embd)
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_k.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_v.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        ones(f"blk.{i}.ffn_norm.weight", n_embd)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    ones("output_norm.weight", n_embd)
    t("output.weight", n_vocab, n_embd)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def onnx(path: str) -> None:
    import onnx as o
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    weight = numpy_helper.from_array(rng.standard_normal((ONNX_IN, ONNX_OUT), dtype=np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal((ONNX_OUT,), dtype=np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        ONNX_GRAPH,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", ONNX_IN])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", ONNX_OUT])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, producer_name=ONNX_PRODUCER, opset_imports=[helper.make_opsetid("", 17)])
    # onnxruntime 1.2x reads IR version 10 at most.
    model.ir_version = 9
    o.checker.check_model(model)
    o.save(model, path)


def safetensors(path: str) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(13)
    tensors = {
        "fc1.weight": rng.standard_normal((ST_IN, ST_HIDDEN), dtype=np.float32) * 0.02,
        "fc1.bias": np.zeros(ST_HIDDEN, dtype=np.float32),
        "fc2.weight": rng.standard_normal((ST_HIDDEN, ST_OUT), dtype=np.float32) * 0.02,
        "fc2.bias": np.zeros(ST_OUT, dtype=np.float32),
    }
    save_file(tensors, path, metadata={"name": SAFETENSORS_NAME, "license": "apache-2.0"})


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("gguf", "onnx", "safetensors"):
        print(__doc__, file=sys.stderr)
        return 2
    {"gguf": gguf, "onnx": onnx, "safetensors": safetensors}[sys.argv[1]](sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
