#!/usr/bin/python3
"""table.py: bench/peers.sh's markdown tables from its results.tsv.

  table.py RESULTS.tsv --sgemm SGEMM.md... --ops OPS.tsv --cpu NAME --versions TEXT
           --load TEXT --threads N --rounds R --iters K

Each side's number is the median over rounds of its runs' medians; ORT takes the faster
opset. The sgemm limit is the median over rounds (one matmul_bench table each) of the
best OpenBLAS rate of the round. Fails (status 1) when a run is missing, rather than print a table with holes.
"""
import sys
sys.dont_write_bytecode = True
import argparse
import csv
import statistics

PEERS = ("ort12", "ort14", "pytorch")


def fail(msg):
    print(f"table.py: {msg}", file=sys.stderr)
    sys.exit(1)


def sgemm_limit(path):
    """The best OpenBLAS GFLOP/s in matmul_bench's table, its shape, and its header."""
    best, shape, header = 0.0, "", ""
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("LLVM"):
            header = line.strip()
        elif len(cells) == 10 and "=" in cells[0]:
            g = float(cells[8])
            if g > best:
                best, shape = g, f"{cells[0]}, M={cells[1]} N={cells[2]} K={cells[3]}"
    if best <= 0:
        fail(f"no OpenBLAS rate in {path}")
    return best, shape, header


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--sgemm", nargs="+", required=True)
    for k in ("--ops", "--cpu", "--versions", "--load"):
        ap.add_argument(k, required=True)
    for k in ("--threads", "--rounds", "--iters"):
        ap.add_argument(k, type=int, required=True)
    a = ap.parse_args()

    runs, order, meta = {}, [], {}  # (workload, side) -> [row], workloads in run order
    for row in csv.DictReader(open(a.results), delimiter="\t"):
        w = row["workload"]
        if w not in meta:
            order.append(w)
            meta[w] = row
        runs.setdefault((w, row["side"]), []).append(row)
    if not order:
        fail(f"{a.results} holds no runs")
    with_bertcc = any(s == "bertcc" for _, s in runs)
    for w in order:
        sides = (("bertcc",) if with_bertcc else ()) + \
            (PEERS if meta[w]["mode"] == "infer" else ("pytorch",))
        for s in sides:
            n = len(runs.get((w, s), []))
            if n != a.rounds:
                fail(f"{w}: {s} has {n} runs, expected {a.rounds}")

    def med(w, s, key="ms_per_iter"):
        return statistics.median(float(r[key]) for r in runs[(w, s)])

    def peak(w, s):
        return max(float(r["peak_rss_mb"]) for r in runs[(w, s)])

    if len(a.sgemm) != a.rounds:
        fail(f"{len(a.sgemm)} sgemm tables, expected {a.rounds}")
    per_round = [sgemm_limit(f) for f in a.sgemm]
    limit = statistics.median(g for g, _, _ in per_round)
    blas = per_round[0][2]
    print(f"Host: {a.cpu}, {a.threads} threads. Each number is the median over {a.rounds} "
          f"rounds of one process's median of {a.iters} iterations; rounds interleave the "
          "sides. Ratios are peer ms / bertcc ms (above 1: bertcc is faster). Peak RSS: the "
          "largest over rounds, one process per run.")
    print(f"Load average (1, 5, 15 min) before / after the rounds: {a.load}.")
    print(f"Versions: {a.versions}. {blas}")
    print(f"sgemm limit: {limit:.1f} GFLOP/s, the median over rounds of OpenBLAS's best "
          f"rate over the BERT shapes at {a.threads} threads; per round: "
          + "; ".join(f"{g:.1f} ({shape})" for g, shape, _ in per_round) + ".")
    if not with_bertcc:
        print("bertcc: skipped (--no-bertcc).")
    print()
    print("| workload | bertcc ms | ORT ms | PyTorch ms | ORT / bertcc | PyTorch / bertcc "
          "| bertcc GFLOP/s (% of sgemm) | peak RSS MB bertcc / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in order:
        m = meta[w]
        label = f"{m['model']} {m['mode']} B={m['batch']} S={m['seq']}"
        pt = med(w, "pytorch")
        ort, opset = None, None
        if m["mode"] == "infer":
            ort, opset = min((med(w, "ort12"), 12), (med(w, "ort14"), 14))
        ort_s = f"{ort:.1f} (opset {opset})" if ort else "—"
        if with_bertcc:
            b, g = med(w, "bertcc"), med(w, "bertcc", "gflop_per_s")
            cells = [f"{b:.1f}", ort_s, f"{pt:.1f}", f"{ort / b:.2f}" if ort else "—",
                     f"{pt / b:.2f}", f"{g:.1f} ({100 * g / limit:.0f} %)",
                     f"{peak(w, 'bertcc'):.0f} / {peak(w, 'pytorch'):.0f}"]
        else:
            cells = ["skipped", ort_s, f"{pt:.1f}", "—", "—", "—",
                     f"— / {peak(w, 'pytorch'):.0f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")

    print()
    print("Every run (ms per iteration, round 1, 2, ...):")
    print()
    print("| workload | side | ms per round | median | peak RSS MB |")
    print("|---|---|---|---:|---:|")
    for w in order:
        for s in ("bertcc",) + PEERS:
            if (w, s) in runs:
                ms = ", ".join(f"{float(r['ms_per_iter']):.1f}" for r in runs[(w, s)])
                print(f"| {w} | {s} | {ms} | {med(w, s):.1f} | {peak(w, s):.0f} |")

    print()
    print("What ONNX Runtime fused: node types of its optimized graph that the exported "
          "graph lacks (com.microsoft: ONNX Runtime's own kernels):")
    print()
    print("| model | opset | fused nodes |")
    print("|---|---:|---|")
    for row in sorted(csv.reader(open(a.ops), delimiter="\t")):
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main()
