#!/usr/bin/python3
"""dist_projection.py: projected data-parallel scaling of bert-base pre-training (S = 128)
from one node's measured compute and the ring-allreduce cost model (bench/RESULTS-dist.md).

    /usr/bin/python3 bench/dist_projection.py --ms-per-iter MS --batch B --gflop-per-iter G

The three numbers come from `bertcc bench models/bert-base.xml --mode train --batch-size
B --seq-len 128 --threads 2 --json` on this machine (ms_per_iter, batch_size,
gflop_per_iter). Standard library only; every assumption is an option with its default
printed in the output.

Model, per update on N nodes (bucketed ring allreduce, as bertcc's fold moves the same
bytes: train/dist.h):
    T_comm = 2 (N-1)/N * grad_bytes / (link * efficiency) + 2 (N-1) * latency * buckets
    T_compute = b * t_seq (b sequences per node), backward = 2/3 of it
    no overlap:  efficiency = T_compute / (T_compute + T_comm)
    overlap:     efficiency = T_compute / (T_compute + max(0, T_comm - backward))
    communication hides behind backward when b >= T_comm / (2/3 t_seq); global batch N b.
"""
import argparse
import math

# bert-base with the MLM and NSP heads (models/bert-base.xml, Hugging Face
# BertForPreTraining; bench/README.md, Peers): every parameter is trained.
BERT_BASE_PARAMS = 110_106_428
HIDDEN, VOCAB, SEQ = 768, 30522, 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ms-per-iter", type=float, required=True,
                    help="bertcc bench --mode train: ms per training step")
    ap.add_argument("--batch", type=int, required=True, help="its --batch-size")
    ap.add_argument("--gflop-per-iter", type=float, required=True,
                    help="its gflop_per_iter (MLM logits at every position)")
    ap.add_argument("--cores", type=int, default=2, help="cores of the measured node")
    ap.add_argument("--big-cores", type=int, default=32,
                    help="cores of the projected big node (same per-core rate)")
    ap.add_argument("--predictions", type=int, default=20,
                    help="masked positions per sequence the MLM head computes in "
                         "pre-training (bertcc train's --max-predictions, --mlm-gather 1)")
    ap.add_argument("--efficiency", type=float, default=0.9,
                    help="share of the link's line rate an allreduce achieves")
    ap.add_argument("--latency-10g-us", type=float, default=30.0,
                    help="per-message latency on 10 Gbit/s (TCP Ethernet)")
    ap.add_argument("--latency-100g-us", type=float, default=5.0,
                    help="per-message latency on 100 Gbit/s (RDMA)")
    ap.add_argument("--bucket-mib", type=float, default=25.0,
                    help="gradient bucket (bertcc's --dist-bucket-mb default)")
    ap.add_argument("--per-node-batch", type=int, default=32,
                    help="sequences per node per update in the first table")
    ap.add_argument("--global-batch", type=int, default=256,
                    help="sequences per update in the second table (BERT's phase 1)")
    ap.add_argument("--fold-ns", type=float, default=0.55,
                    help="ns per element of bertcc's fold adds (allreduce_bench's 'of which "
                         "adds' over 4 M element passes at 16 MiB, 2 ranks); not in the "
                         "efficiencies, printed as a note")
    a = ap.parse_args()

    grad_bytes = 4 * BERT_BASE_PARAMS  # fp32, no compression
    buckets = math.ceil(grad_bytes / (a.bucket_mib * 2**20))

    # The measured step has the MLM head (transform 768x768 + decoder 768x30522) at all
    # 128 positions; pre-training computes it at `predictions` of them. Forward, input
    # gradient and weight gradient: 3 matmuls of 2 M N K each. The rest of the step runs
    # at the measured GFLOP/s.
    head_per_pos = 6 * HIDDEN * (HIDDEN + VOCAB) / 1e9  # GFLOP per position
    gflop_bench = a.gflop_per_iter / a.batch  # per sequence, as measured
    gflop_pre = gflop_bench - head_per_pos * (SEQ - a.predictions)
    rate = gflop_bench / (a.ms_per_iter / a.batch / 1e3)  # GFLOP/s of this node
    t_seq_here = gflop_pre / rate  # s per pre-training sequence, this node
    nodes = [("this node (%d cores)" % a.cores, t_seq_here),
             ("%d-core node (x%g)" % (a.big_cores, a.big_cores / a.cores),
              t_seq_here * a.cores / a.big_cores)]
    links = [("10 Gbit/s", 10e9 / 8, a.latency_10g_us * 1e-6),
             ("100 Gbit/s", 100e9 / 8, a.latency_100g_us * 1e-6)]

    print("Inputs and assumptions")
    print(f"- measured: {a.ms_per_iter:.0f} ms per bertcc bench train step of {a.batch} x "
          f"{SEQ} tokens, {a.gflop_per_iter:.1f} GFLOP -> {rate:.1f} GFLOP/s")
    print(f"- pre-training step per sequence: {gflop_bench:.2f} GFLOP measured (MLM at all "
          f"{SEQ} positions) - {head_per_pos * (SEQ - a.predictions):.2f} (MLM head at "
          f"{SEQ - a.predictions} fewer) = {gflop_pre:.2f} GFLOP, at the measured rate "
          f"{t_seq_here:.3f} s on this node")
    print(f"- {a.big_cores}-core node: {a.big_cores / a.cores:g}x this node's rate "
          f"({rate * a.big_cores / a.cores:.0f} GFLOP/s), {nodes[1][1] * 1e3:.1f} ms per "
          f"sequence")
    print(f"- gradient: {BERT_BASE_PARAMS:,} parameters x 4 bytes (fp32, uncompressed) = "
          f"{grad_bytes:,} bytes ({grad_bytes / 2**20:.1f} MiB), in {buckets} buckets of "
          f"{a.bucket_mib:g} MiB")
    print(f"- links: line rate x {a.efficiency:g}; latency {a.latency_10g_us:g} us "
          f"(10 Gbit/s), {a.latency_100g_us:g} us (100 Gbit/s) per message, "
          f"2 (N-1) messages per bucket")
    print("- backward = 2/3 of the step; overlap: communication runs during backward only")
    fold_s = BERT_BASE_PARAMS * a.fold_ns * 1e-9
    print(f"- not counted below: bertcc's fold adds, N passes (a copy, N-1 adds) over each "
          f"rank's 1/N slice, so one gradient's worth of elements per rank and update, "
          f"whatever N: "
          f"{BERT_BASE_PARAMS / 1e6:.0f} M x {a.fold_ns:g} ns = {fold_s * 1e3:.0f} ms on "
          f"one thread")
    print()

    def t_comm(n, bw, lat):
        return (2 * (n - 1) / n * grad_bytes / (bw * a.efficiency)
                + 2 * (n - 1) * lat * buckets)

    def eff(compute, comm, overlap):
        exposed = max(0.0, comm - 2 / 3 * compute) if overlap else comm
        return compute / (compute + exposed)

    def table(title, per_node):
        print(title)
        print()
        print("| node | link | N | seq/node | compute s | T_comm s | efficiency, no overlap "
              "| efficiency, overlapped |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for name, t_seq in nodes:
            for lname, bw, lat in links:
                for n in (2, 8, 64):
                    b = per_node(n)
                    c, m = b * t_seq, t_comm(n, bw, lat)
                    print(f"| {name} | {lname} | {n} | {b:g} | {c:.3f} | {m:.3f} | "
                          f"{100 * eff(c, m, False):.1f}% | {100 * eff(c, m, True):.1f}% |")
        print()

    table(f"Per-node batch {a.per_node_batch} sequences (global batch {a.per_node_batch} N)",
          lambda n: a.per_node_batch)
    table(f"Global batch {a.global_batch} sequences ({a.global_batch}/N per node)",
          lambda n: a.global_batch / n)

    print("Where communication hides behind backward: T_comm <= 2/3 b t_seq, so "
          "b >= T_comm / (2/3 t_seq) sequences per node, N b in all")
    print()
    print("| node | link | N | T_comm s | seq/node | global batch |")
    print("|---|---|---:|---:|---:|---:|")
    for name, t_seq in nodes:
        for lname, bw, lat in links:
            for n in (2, 8, 64):
                m = t_comm(n, bw, lat)
                b = math.ceil(m / (2 / 3 * t_seq))
                print(f"| {name} | {lname} | {n} | {m:.3f} | {b} | {n * b} |")


if __name__ == "__main__":
    main()
