#!/usr/bin/python3
"""Compare a `bertcc run` output with an expected file (DESIGN.md §5 rule).

  compare.py EXPECTED.safetensors OUT.safetensors [--rtol 1e-4] [--grad-rtol 1e-3] [--atol 1e-6]

Every tensor of EXPECTED must be in OUT with the same shape (a scalar may be [] or
[1]) and satisfy max|out - expected| <= rtol * max|expected| + atol, where rtol is
--grad-rtol for grad.* tensors. Tensors only in OUT are listed. Exit status 0 when
everything passes, 1 otherwise.
"""
import sys
sys.dont_write_bytecode = True  # keep tests/oracle free of __pycache__
import argparse
import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def compare(exp, out, rtol=1e-4, grad_rtol=1e-3, atol=1e-6, verbose=True):
    ok = True
    for k, e in exp.items():
        if k not in out:
            print(f"MISSING {k}")
            ok = False
            continue
        o = out[k]
        if o.shape != e.shape and not (e.size == 1 and o.size == 1 and e.ndim + o.ndim <= 1):
            print(f"SHAPE   {k}: {list(o.shape)} != expected {list(e.shape)}")
            ok = False
            continue
        e64 = e.astype(np.float64).reshape(o.shape)
        o64 = o.astype(np.float64)
        err = float(np.abs(o64 - e64).max()) if e.size else 0.0
        if np.isnan(o64).any():
            err = float("inf")
        tol = (grad_rtol if k.startswith("grad.") else rtol) * \
            (float(np.abs(e64).max()) if e.size else 0.0) + atol
        good = err <= tol
        ok &= good
        if verbose or not good:
            print(f"{'ok     ' if good else 'FAIL   '} {k}: max err {err:.3g} (tol {tol:.3g})")
    for k in out:
        if k not in exp:
            print(f"extra   {k}")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("expected")
    ap.add_argument("out")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--grad-rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-6)
    ap.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    a = ap.parse_args(argv)
    ok = compare(st.load(a.expected), st.load(a.out), a.rtol, a.grad_rtol, a.atol,
                 verbose=not a.quiet)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
