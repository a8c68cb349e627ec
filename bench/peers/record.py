#!/usr/bin/python3
"""record.py: checks one run's JSON (the last line its side printed) and prints its row
of bench/peers.sh's results.tsv; fails (status 1) when a key is missing or not positive.

  record.py RUN.json ROUND WORKLOAD MODEL.xml MODE BATCH SEQ SIDE
  record.py --header
"""
import sys
sys.dont_write_bytecode = True
import json
import os

COLUMNS = ("round", "workload", "model", "mode", "batch", "seq", "side", "ms_per_iter",
           "peak_rss_mb", "gflop_per_s")


def main():
    if sys.argv[1:] == ["--header"]:
        print("\t".join(COLUMNS))
        return
    path, r, w, model, mode, B, S, side = sys.argv[1:]
    try:
        lines = [line for line in open(path) if line.strip()]
        j = json.loads(lines[-1])
        ms, rss = float(j["ms_per_iter"]), float(j["peak_rss_mb"])
        g = float(j["gflop_per_s"]) if side == "bertcc" else float("nan")
    except (IndexError, KeyError, TypeError, ValueError) as e:
        sys.exit(f"record.py: {path}: no usable JSON ({type(e).__name__}: {e})")
    if not (ms > 0 and rss > 0 and (side != "bertcc" or g > 0)):
        sys.exit(f"record.py: {path}: values not positive: {j}")
    name = os.path.basename(model).removesuffix(".xml")
    print("\t".join(map(str, (r, w, name, mode, B, S, side, ms, rss, g))))


if __name__ == "__main__":
    main()
