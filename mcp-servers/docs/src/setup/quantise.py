# Run by mcp-docs's set-up (src/setup.rs) in its venv: python -c THIS SOURCE FLOAT_DIR INT8_DIR.
# Folds the int8 weights' Cast/Mul of SOURCE into float initializers (FLOAT_DIR/model.onnx),
# then quantises that per channel with dynamic int8 activations (INT8_DIR/model.onnx). Each file
# is written beside its place and renamed into it.
import os
import sys
import tempfile

import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

source, float_dir, int8_dir = sys.argv[1:4]
os.makedirs(float_dir, exist_ok=True)
fp32 = os.path.join(float_dir, "model.onnx")
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
options.optimized_model_filepath = fp32 + ".partial"
ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
os.replace(fp32 + ".partial", fp32)
with tempfile.TemporaryDirectory(dir=int8_dir) as scratch:
    partial = os.path.join(scratch, "model.onnx")
    quantize_dynamic(fp32, partial, per_channel=True, weight_type=QuantType.QInt8)
    os.replace(partial, os.path.join(int8_dir, "model.onnx"))
