#!/usr/bin/python3
"""ort_ops.py: the node types of an ONNX model (ONNX Runtime's optimized graph, as
ort_bench.js --optimized-out writes it), most frequent first.

  ort_ops.py MODEL.onnx [--not-in EXPORTED.onnx]

Prints "Type xCount" joined by ", "; types from a domain other than ONNX's are written
domain:Type (ONNX Runtime's fused kernels live in com.microsoft). --not-in lists only
the types that EXPORTED lacks: what the optimizer fused (LayerNormalization, which ONNX
has, is one at opsets below 17, where the exporter writes it out in primitives).
"""
import sys
sys.dont_write_bytecode = True
import argparse
from collections import Counter

import onnx


def op_types(path):
    graph = onnx.load(path, load_external_data=False).graph
    return Counter(f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                   for n in graph.node)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--not-in", metavar="EXPORTED")
    a = ap.parse_args()
    counts = op_types(a.model)
    if a.not_in:
        exported = op_types(a.not_in)
        counts = Counter({k: v for k, v in counts.items() if k not in exported})
    print(", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
          or "(none)")


if __name__ == "__main__":
    main()
