#!/usr/bin/python3
"""Generate a random test case for `bertcc run` with the PyTorch oracle.

Writes into OUTDIR:
  model.xml                    the model description (DESIGN.md §2)
  weights.safetensors          F32 parameters (DESIGN.md §3), random with
                               non-trivial scale (weights ~ N(0, wstd^2),
                               LayerNorm gamma ~ 1 + N(0, 0.1^2), nonzero biases)
  batch.safetensors            input_ids / token_type_ids / attention_mask and
                               labels for the model's heads (I64, or I32)
  expected.safetensors         bert_ref.py forward output
  expected_grads.safetensors   (with --grads) bert_ref.py --grads output:
                               the forward tensors plus grad.<parameter>

Everything is deterministic for a given command line (--seed, default 0).
Example (the tests/fixtures/run_tiny case):
  /usr/bin/python3 tests/oracle/make_case.py tests/fixtures/run_tiny --vocab 37 \
      --hidden 12 --heads 3 --layers 2 --intermediate 20 --max-position 16 \
      --model-heads mlm,nsp,intent,slot,qa --intent-classes 5 --slot-labels 7 \
      --batch 3 --seq 7 --grads
"""
import sys
sys.dont_write_bytecode = True  # keep tests/oracle free of __pycache__
import argparse
import os

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_ref  # noqa: E402
import st  # noqa: E402

FWD_RTOL, GRAD_RTOL, ATOL = 1e-4, 1e-3, 1e-6  # DESIGN.md §5


def random_params(cfg, g, wstd):
    out = {}
    for n, shp in bert_ref.param_shapes(cfg).items():
        k = bert_ref.param_kind(n)
        if k == "weight":
            a = wstd * g.standard_normal(shp)
        elif k == "ln_weight":
            a = 1.0 + 0.1 * g.standard_normal(shp)
        elif k == "ln_bias":
            a = 0.1 * g.standard_normal(shp)
        else:
            a = 0.2 * g.standard_normal(shp)
        out[n] = a.astype(np.float32)
    return out


def random_batch(cfg, g, B, S, lengths, a):
    """Random batch as {name: int64 array}."""
    mh = cfg.model_heads
    valid = np.zeros((B, S), dtype=bool)
    for b, n in enumerate(lengths):
        valid[b, :n] = True
    batch = {"input_ids": g.integers(0, cfg.vocab_size, (B, S))}
    if not a.no_token_types:
        # sentence A = 0, sentence B = 1 (BERT-style segments); padding 0
        tt = np.zeros((B, S), dtype=np.int64)
        for b, n in enumerate(lengths):
            cut = int(g.integers(1, n)) if n > 1 else n  # both segments non-empty
            tt[b, cut:n] = 1
        batch["token_type_ids"] = np.minimum(tt, cfg.type_vocab_size - 1)
    if not a.no_mask:
        batch["attention_mask"] = valid.astype(np.int64)
    if a.no_labels:
        return batch
    want = set(mh) if not a.all_labels else set(bert_ref.HEAD_TYPES)
    if "mlm" in want:
        lab = g.integers(0, cfg.vocab_size, (B, S))
        keep = valid & (g.random((B, S)) < a.mlm_fraction)
        for b in range(B):  # at least one labelled token per row
            if not keep[b].any():
                keep[b, int(g.integers(0, lengths[b]))] = True
        for r in a.mlm_ignored_rows:
            keep[r] = False
        batch["mlm_labels"] = np.where(keep, lab, -100)
    if "nsp" in want:
        batch["nsp_labels"] = g.integers(0, 2, B)
    if "intent" in want:
        C = mh["intent"]["classes"] if "intent" in mh else 3
        batch["intent_labels"] = g.integers(0, C, B)
    if "slot" in want:
        L = mh["slot"]["labels"] if "slot" in mh else 5
        lab = g.integers(0, L, (B, S))
        keep = valid & (g.random((B, S)) >= 0.2)  # ~20% ignored (sub-word pieces)
        batch["slot_labels"] = np.where(keep, lab, -100)
    if "qa" in want:
        start = np.array([int(g.integers(0, n)) for n in lengths])
        end = np.array([int(g.integers(s, n)) for s, n in zip(start, lengths)])
        batch["start_positions"] = start
        batch["end_positions"] = end
    return batch


def conditioning(cfg, params, batch, grads):
    """Float32-vs-float64 discrepancy of the oracle itself, as a share of the
    DESIGN.md §5 tolerance rtol*max|expected| + atol (1.0 = the whole budget)."""
    r64 = bert_ref.run(cfg, params, batch, grads=grads, dtype=torch.float64,
                       notes=False)
    r32 = bert_ref.run(cfg, params, batch, grads=grads, dtype=torch.float32,
                       notes=False)
    rep = {}
    for k, v in r64.items():
        rtol = GRAD_RTOL if k.startswith("grad.") else FWD_RTOL
        scale = float(np.abs(v).max()) if v.size else 0.0
        err = float(np.abs(r32[k] - v).max()) if v.size else 0.0
        rep[k] = err / (rtol * scale + ATOL)
    return rep


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--name", default=None, help="model name (default: the folder name)")
    ap.add_argument("--vocab", type=int, default=37)
    ap.add_argument("--hidden", type=int, default=12)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=20)
    ap.add_argument("--max-position", type=int, default=16)
    ap.add_argument("--type-vocab", type=int, default=2)
    ap.add_argument("--activation", choices=("gelu", "gelu_tanh"), default="gelu")
    ap.add_argument("--eps", type=float, default=1e-12, help="layer-norm-eps")
    ap.add_argument("--model-heads", default="",
                    help="comma-separated subset of mlm,nsp,intent,slot,qa (default none)")
    ap.add_argument("--intent-classes", type=int, default=5)
    ap.add_argument("--slot-labels", type=int, default=7)
    ap.add_argument("--batch", type=int, default=3, help="B")
    ap.add_argument("--seq", type=int, default=7, help="S")
    ap.add_argument("--lengths", default=None,
                    help="comma-separated valid lengths per row (default: S for every row "
                         "except row 1, which gets S//2+1)")
    ap.add_argument("--ids-dtype", choices=("i64", "i32"), default="i64",
                    help="integer type of every batch tensor")
    ap.add_argument("--no-mask", action="store_true", help="omit attention_mask")
    ap.add_argument("--no-token-types", action="store_true", help="omit token_type_ids")
    ap.add_argument("--no-labels", action="store_true", help="write no labels")
    ap.add_argument("--all-labels", action="store_true",
                    help="write labels for all five heads, even those the model lacks")
    ap.add_argument("--mlm-fraction", type=float, default=0.4,
                    help="share of valid tokens with an mlm label (others -100)")
    ap.add_argument("--mlm-ignored-rows", default="",
                    help="comma-separated rows whose mlm labels are all -100")
    ap.add_argument("--wstd", type=float, default=0.4,
                    help="std of weight matrices and embeddings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grads", action="store_true", help="also write expected_grads")
    a = ap.parse_args(argv)
    a.mlm_ignored_rows = [int(x) for x in a.mlm_ignored_rows.split(",") if x]
    B, S = a.batch, a.seq
    if a.lengths:
        a.lengths = [int(x) for x in a.lengths.split(",")]
        if len(a.lengths) != B:
            ap.error("--lengths needs one entry per row")
    else:
        a.lengths = [S] * B
        if B > 1:
            a.lengths[1] = S // 2 + 1
    if any(not (1 <= n <= S) for n in a.lengths):
        ap.error("lengths must be in [1, S]")
    if a.no_mask and any(n != S for n in a.lengths):
        a.lengths = [S] * B  # without a mask every token is valid
    if any(not (0 <= r < B) for r in a.mlm_ignored_rows):
        ap.error("--mlm-ignored-rows out of range")
    return a


def main(argv=None):
    a = parse_args(argv)
    heads = {}
    for t in (x for x in a.model_heads.split(",") if x):
        if t not in bert_ref.HEAD_TYPES:
            sys.exit(f"make_case: unknown head {t!r}")
        heads[t] = ({"classes": a.intent_classes} if t == "intent" else
                    {"labels": a.slot_labels} if t == "slot" else {})
    name = a.name or os.path.basename(os.path.normpath(a.outdir))
    cfg = bert_ref.Config(name=name, vocab_size=a.vocab, hidden_size=a.hidden,
                          layers=a.layers, heads=a.heads, intermediate_size=a.intermediate,
                          max_position=a.max_position, type_vocab_size=a.type_vocab,
                          activation=a.activation, layer_norm_eps=a.eps, model_heads=heads)
    if a.seq > cfg.max_position:
        sys.exit("make_case: S > max-position")

    g = np.random.default_rng(a.seed)
    params = random_params(cfg, g, a.wstd)
    batch = random_batch(cfg, g, a.batch, a.seq, a.lengths, a)
    idt = np.int64 if a.ids_dtype == "i64" else np.int32
    batch = {k: np.asarray(v).astype(idt) for k, v in batch.items()}

    os.makedirs(a.outdir, exist_ok=True)
    P = lambda f: os.path.join(a.outdir, f)  # noqa: E731
    with open(P("model.xml"), "w") as f:
        f.write(cfg.to_xml())
    st.save(P("weights.safetensors"), params)
    st.save(P("batch.safetensors"), batch)

    # The expected files come from the oracle's own command line.
    common = [P("model.xml"), "--weights", P("weights.safetensors"),
              "--batch", P("batch.safetensors")]
    bert_ref.main(common + ["-o", P("expected.safetensors")])
    if a.grads:
        bert_ref.main(common + ["-o", P("expected_grads.safetensors"), "--grads"])

    # Report how well-conditioned the case is: the oracle's own float32-vs-float64
    # error as a share of the DESIGN.md §5 tolerance budget.
    rep = conditioning(cfg, params, batch, a.grads)
    worst_f = max((v, k) for k, v in rep.items() if not k.startswith("grad."))
    line = (f"{a.outdir}: f32-vs-f64 error / §5 tolerance: "
            f"forward {worst_f[0]:.3f} ({worst_f[1]})")
    bad = worst_f[0] > 0.1
    if a.grads:
        worst_g = max((v, k) for k, v in rep.items() if k.startswith("grad."))
        line += f", grads {worst_g[0]:.3f} ({worst_g[1]})"
        bad |= worst_g[0] > 0.1
    print(line)
    if bad:
        print("make_case: warning: a float32 implementation uses over 10% of the §5 "
              "tolerance here (try a smaller --wstd or another --seed)", file=sys.stderr)
    out = st.load(P("expected.safetensors"))
    for k in ("loss", "mlm_loss", "nsp_loss", "intent_loss", "slot_loss", "qa_loss"):
        if k in out:
            print(f"  {k} = {float(out[k]):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
