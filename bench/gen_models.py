#!/usr/bin/env python3
"""Generate the benchmark models of bench/run.py into bench/models/.

Each architecture is written twice:
  NAME_fp32.onnx  float, opset 13, Conv/Gemm followed by BatchNormalization
                  (left unfolded on purpose: folding it is every runtime's job)
  NAME_int8.onnx  QDQ int8 from onnxruntime's quantize_static after
                  quant_pre_process: per-channel i8 weights, u8 activations,
                  MinMax calibration on 16 seeded random samples.

Weights are seeded random (He-normal, so activations keep a sane range through
deep stacks); BatchNorm statistics are random but well conditioned. Latency
does not depend on weight values, only on shapes, so the shapes follow the
published references exactly:
  kws_dscnn   MLPerf Tiny keyword spotting reference, DS-CNN (small):
              mlcommons/tiny benchmark/training/keyword_spotting/keras_model.py
  vww_mbv1    MLPerf Tiny visual wake words reference, MobileNetV1 alpha=0.25,
              96x96x3 input, 2 classes (benchmark/training/visual_wake_words)
  ic_resnet8  MLPerf Tiny image classification reference, ResNet-8 for
              CIFAR-10 (benchmark/training/image_classification/keras_model.py)
  ad_fcae     MLPerf Tiny anomaly detection reference, the 640-128x4-8-128x4-640
              dense autoencoder (benchmark/training/anomaly_detection/keras_model.py)
  mbv2_224    MobileNetV2 alpha=1.0 at 224x224, Sandler et al. 2018, table 2
  resnet18_224 ResNet-18 (He et al. 2016, table 1, basic blocks [2,2,2,2])

Usage: python3 bench/gen_models.py [--out DIR] [--only NAME[,NAME...]]
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
CALIB_SAMPLES = 16


class Builder:
    """Accumulates nodes and initializers; names are unique by counter."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, prefix, arr):
        nm = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def node(self, op, inputs, prefix=None, **attrs):
        out = self.name(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    # --- layers ---------------------------------------------------------
    def bn(self, x, c):
        r = self.rng
        gamma = r.uniform(0.5, 1.5, c).astype(np.float32)
        beta = r.normal(0.0, 0.1, c).astype(np.float32)
        mean = r.normal(0.0, 0.1, c).astype(np.float32)
        var = r.uniform(0.5, 1.5, c).astype(np.float32)
        return self.node(
            "BatchNormalization",
            [x, self.const("bn_g", gamma), self.const("bn_b", beta),
             self.const("bn_m", mean), self.const("bn_v", var)],
            "bn", epsilon=1e-3)

    def conv(self, x, cin, cout, k, stride=1, pads=None, group=1, bias=False):
        kh, kw = (k, k) if isinstance(k, int) else k
        if pads is None:
            pads = [kh // 2, kw // 2, kh // 2, kw // 2]
        fan_in = (cin // group) * kh * kw
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in),
                            (cout, cin // group, kh, kw)).astype(np.float32)
        ins = [x, self.const("conv_w", w)]
        if bias:
            ins.append(self.const("conv_b", self.rng.normal(0, 0.05, cout).astype(np.float32)))
        return self.node("Conv", ins, "conv", kernel_shape=[kh, kw],
                         strides=[stride, stride], pads=list(pads), group=group)

    def relu(self, x):
        return self.node("Relu", [x], "relu")

    def relu6(self, x):
        lo = self.const("clip_lo", np.array(0.0, np.float32))
        hi = self.const("clip_hi", np.array(6.0, np.float32))
        return self.node("Clip", [x, lo, hi], "relu6")

    def gemm(self, x, cin, cout):
        w = self.rng.normal(0.0, np.sqrt(2.0 / cin), (cout, cin)).astype(np.float32)
        b = self.rng.normal(0.0, 0.05, cout).astype(np.float32)
        return self.node("Gemm", [x, self.const("fc_w", w), self.const("fc_b", b)],
                         "fc", transB=1)

    def gap_flatten(self, x):
        return self.node("Flatten", [self.node("GlobalAveragePool", [x], "gap")], "flatten", axis=1)

    def finish(self, name, in_name, in_shape, out):
        inp = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)
        outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
        g = helper.make_graph(self.nodes, name, [inp], [outp], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="qc-bench-gen")
        m.ir_version = 8
        m = onnx.shape_inference.infer_shapes(m)
        onnx.checker.check_model(m)
        return m


# ---------------------------------------------------------------------------
def kws_dscnn():
    """DS-CNN small: Conv 64 (10x4, stride 2, 'same') BN ReLU, then 4 x
    [DW 3x3 BN ReLU, PW 64 BN ReLU], AvgPool over the 25x5 map, FC 12, softmax."""
    b = Builder(101)
    x = "input"
    # 'same' for 49x10 with kernel 10x4 stride 2: out 25x5, pad H 9 (4/5), W 2 (1/1)
    y = b.relu(b.bn(b.conv(x, 1, 64, (10, 4), stride=2, pads=[4, 1, 5, 1]), 64))
    for _ in range(4):
        y = b.relu(b.bn(b.conv(y, 64, 64, 3, group=64), 64))
        y = b.relu(b.bn(b.conv(y, 64, 64, 1), 64))
    y = b.node("AveragePool", [y], "avgpool", kernel_shape=[25, 5])
    y = b.node("Flatten", [y], "flatten", axis=1)
    y = b.node("Softmax", [b.gemm(y, 64, 12)], "softmax", axis=1)
    return b.finish("kws_dscnn", x, [1, 1, 49, 10], y)


def vww_mbv1():
    """MobileNetV1 alpha=0.25 at 96x96: the standard 13 DW/PW blocks with
    every width scaled by 0.25, global average pool, FC 2, softmax."""
    b = Builder(102)
    a = 0.25
    x = "input"
    c = int(32 * a)
    y = b.relu(b.bn(b.conv(x, 3, c, 3, stride=2, pads=[0, 0, 1, 1]), c))
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    for cout, s in blocks:
        co = int(cout * a)
        # Keras 'same' with stride 2 on even sizes pads bottom/right only.
        pads = [1, 1, 1, 1] if s == 1 else [0, 0, 1, 1]
        y = b.relu(b.bn(b.conv(y, c, c, 3, stride=s, pads=pads, group=c), c))
        y = b.relu(b.bn(b.conv(y, c, co, 1), co))
        c = co
    y = b.node("Softmax", [b.gemm(b.gap_flatten(y), c, 2)], "softmax", axis=1)
    return b.finish("vww_mbv1", x, [1, 3, 96, 96], y)


def ic_resnet8():
    """ResNet-8 for CIFAR-10: Conv 16 BN ReLU, three stacks (16 s1, 32 s2,
    64 s2) of one basic block each; the strided stacks add a 1x1 strided
    conv shortcut (no BN there, as in the reference); AvgPool 8, FC 10."""
    b = Builder(103)
    x = "input"
    y = b.relu(b.bn(b.conv(x, 3, 16, 3), 16))
    cin = 16
    for cout, s in [(16, 1), (32, 2), (64, 2)]:
        pads = [1, 1, 1, 1] if s == 1 else [0, 0, 1, 1]
        t = b.relu(b.bn(b.conv(y, cin, cout, 3, stride=s, pads=pads), cout))
        t = b.bn(b.conv(t, cout, cout, 3), cout)
        sc = y if s == 1 else b.conv(y, cin, cout, 1, stride=s, pads=[0, 0, 0, 0], bias=True)
        y = b.relu(b.node("Add", [sc, t], "add"))
        cin = cout
    y = b.node("AveragePool", [y], "avgpool", kernel_shape=[8, 8])
    y = b.node("Flatten", [y], "flatten", axis=1)
    y = b.node("Softmax", [b.gemm(y, 64, 10)], "softmax", axis=1)
    return b.finish("ic_resnet8", x, [1, 3, 32, 32], y)


def ad_fcae():
    """Dense autoencoder 640 -> 128 x4 -> 8 -> 128 x4 -> 640, each hidden
    layer Dense BN ReLU, the output layer Dense only."""
    b = Builder(104)
    x = "input"
    y, c = x, 640
    for width in [128, 128, 128, 128, 8, 128, 128, 128, 128]:
        y = b.relu(b.bn(b.gemm(y, c, width), width))
        c = width
    y = b.gemm(y, c, 640)
    return b.finish("ad_fcae", x, [1, 640], y)


def mbv2_224():
    """MobileNetV2 alpha=1.0, 224x224, table 2 of the paper: conv 32 s2,
    bottlenecks (t,c,n,s), conv 1x1 1280, global pool, FC 1000. ReLU6 as
    Clip(0, 6); residual add when stride 1 and channels match."""
    b = Builder(105)
    x = "input"
    y = b.relu6(b.bn(b.conv(x, 3, 32, 3, stride=2), 32))
    c = 32
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for t, co, n, s in table:
        for i in range(n):
            stride = s if i == 0 else 1
            h = c * t
            inp = y
            z = y
            if t != 1:
                z = b.relu6(b.bn(b.conv(z, c, h, 1), h))
            z = b.relu6(b.bn(b.conv(z, h, h, 3, stride=stride, group=h), h))
            z = b.bn(b.conv(z, h, co, 1), co)
            y = b.node("Add", [inp, z], "add") if stride == 1 and c == co else z
            c = co
    y = b.relu6(b.bn(b.conv(y, c, 1280, 1), 1280))
    y = b.gemm(b.gap_flatten(y), 1280, 1000)
    return b.finish("mbv2_224", x, [1, 3, 224, 224], y)


def resnet18_224():
    """ResNet-18: conv 7x7/2 64 BN ReLU, maxpool 3x3/2, four stages of two
    basic blocks (64, 128, 256, 512; stride 2 from the second stage, 1x1
    conv+BN projection shortcut there), global pool, FC 1000."""
    b = Builder(106)
    x = "input"
    y = b.relu(b.bn(b.conv(x, 3, 64, 7, stride=2), 64))
    y = b.node("MaxPool", [y], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 64
    for co, s in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for i in range(2):
            stride = s if i == 0 else 1
            t = b.relu(b.bn(b.conv(y, c, co, 3, stride=stride), co))
            t = b.bn(b.conv(t, co, co, 3), co)
            sc = y
            if stride != 1 or c != co:
                sc = b.bn(b.conv(y, c, co, 1, stride=stride, pads=[0, 0, 0, 0]), co)
            y = b.relu(b.node("Add", [sc, t], "add"))
            c = co
    y = b.gemm(b.gap_flatten(y), 512, 1000)
    return b.finish("resnet18_224", x, [1, 3, 224, 224], y)


MODELS = {
    "kws_dscnn": kws_dscnn,
    "vww_mbv1": vww_mbv1,
    "ic_resnet8": ic_resnet8,
    "ad_fcae": ad_fcae,
    "mbv2_224": mbv2_224,
    "resnet18_224": resnet18_224,
}


def input_shape(model):
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


def quantize(fp32_path, int8_path, shape, seed):
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(seed)
            self.data = iter([{"input": rng.standard_normal(shape).astype(np.float32)}
                              for _ in range(CALIB_SAMPLES)])

        def get_next(self):
            return next(self.data, None)

    with tempfile.TemporaryDirectory() as td:
        pre = os.path.join(td, "pre.onnx")
        quant_pre_process(fp32_path, pre)
        quantize_static(pre, int8_path, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "models"))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    for name in names:
        if name not in MODELS:
            sys.exit(f"unknown model {name!r}; known: {', '.join(MODELS)}")
        m = MODELS[name]()
        fp32 = os.path.join(args.out, f"{name}_fp32.onnx")
        int8 = os.path.join(args.out, f"{name}_int8.onnx")
        onnx.save(m, fp32)
        quantize(fp32, int8, input_shape(m), seed=1000 + list(MODELS).index(name))
        print(f"{name}: {fp32} ({os.path.getsize(fp32) / 1e6:.1f} MB), "
              f"{int8} ({os.path.getsize(int8) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
