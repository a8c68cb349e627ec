#!/usr/bin/python3
"""torch_bench.py: PyTorch's side of bench/peers.sh, with `bertcc bench`'s interface.

  torch_bench.py MODEL.xml --mode infer|train --batch-size B --seq-len S --threads N
                 --iters K [--warmup W] --json

infer: eval mode under torch.inference_mode(), every output (sequence, pooled, each
head's logits). train: one step = forward in train mode (dropout 0.1), the heads'
summed cross-entropy, backward, clip_grad_norm_(1.0), AdamW step. Prints one JSON
object: ms_per_iter (median of K timed iterations after W untimed ones), tokens_per_s
and peak_rss_mb (this process's ru_maxrss, so run one configuration per process).
"""
import sys
sys.dont_write_bytecode = True
import argparse
import json
import os
import resource
import statistics
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--mode", choices=("infer", "train"), required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="(the only output format)")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 0:
        ap.error("--iters must be >= 1 and --warmup >= 0")

    torch.set_num_threads(a.threads)
    model = bert_torch.build(a.model)
    ids, types, mask = bert_torch.batch(model, a.batch_size, a.seq_len)
    if a.mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode():
                model(ids, types, mask)
    else:
        model.train()
        lab = bert_torch.labels(model, a.batch_size, a.seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

        def step():
            opt.zero_grad(set_to_none=True)
            bert_torch.loss(model(ids, types, mask), lab).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    ms = 1e3 * statistics.median(times)
    print(json.dumps({
        "ms_per_iter": round(ms, 3),
        "tokens_per_s": round(a.batch_size * a.seq_len / (ms * 1e-3), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
