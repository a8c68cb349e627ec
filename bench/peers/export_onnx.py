#!/usr/bin/python3
"""export_onnx.py: the peers' BERT (bert_torch.py) in eval mode as an ONNX model.

  export_onnx.py MODEL.xml --opset N -o OUT.onnx

Inputs input_ids, token_type_ids, attention_mask: int64 (batch, seq), both axes dynamic
as Hugging Face's exports have them; outputs sequence_output, pooled_output and each
head's logits, as `bertcc run` computes them.
"""
import sys
sys.dont_write_bytecode = True
import argparse
import os

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_torch  # noqa: E402


class Outputs(torch.nn.Module):
    """The model's dict of outputs as a tuple, in a fixed order, for the exporter."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.names = ["sequence_output", "pooled_output"] + [t + "_logits" for t in model.heads]

    def forward(self, input_ids, token_type_ids, attention_mask):
        out = self.model(input_ids, token_type_ids, attention_mask)
        return tuple(out[n] for n in self.names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--opset", type=int, required=True)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    m = Outputs(bert_torch.build(a.model)).eval()
    inputs = bert_torch.batch(m.model, 2, 16)
    names = ["input_ids", "token_type_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    for n in m.names:
        axes[n] = {0: "batch"} if n in ("pooled_output", "nsp_logits", "intent_logits") \
            else {0: "batch", 1: "seq"}
    tmp = a.output + ".tmp"
    with torch.no_grad():
        torch.onnx.export(m, inputs, tmp, input_names=names, output_names=m.names,
                          dynamic_axes=axes, opset_version=a.opset, do_constant_folding=True)
    os.replace(tmp, a.output)  # a killed export leaves no half-written model behind


if __name__ == "__main__":
    main()
