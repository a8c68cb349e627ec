#!/usr/bin/python3
"""Independent PyTorch oracle for `bertcc run` (DESIGN.md §2-§5).

The model follows Hugging Face transformers' modeling_bert.py in eval mode
(BertEmbeddings, BertSelfAttention with the extended mask (1 - mask) * -10000
added to QK^T / sqrt(head_dim), BertSelfOutput / BertIntermediate / BertOutput,
BertPooler, BertLMPredictionHead with the decoder tied to the word embeddings,
BertOnlyNSPHead) plus the bertcc fine-tuning heads (intent, slot, qa).
Parameter names are exactly DESIGN.md §3.

Usage:
  bert_ref.py MODEL.xml --weights W.safetensors --batch B.safetensors -o OUT.safetensors [--grads]
  bert_ref.py MODEL.xml --init-seed N --save-weights W.safetensors [--batch ... -o ...]
  bert_ref.py --selfcheck

Computation runs in float64 by default (--dtype float32 to mimic a float32
implementation); outputs are written as F32.
"""
import sys
sys.dont_write_bytecode = True  # keep tests/oracle free of __pycache__
import argparse
import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

HEAD_TYPES = ("mlm", "nsp", "intent", "slot", "qa")
MASK_NEG = -10000.0


class OracleError(Exception):
    pass


# --------------------------------------------------------------------------- config

class Config:
    def __init__(self, **kw):
        # BertConfig defaults
        self.name = "bert"
        self.vocab_size = 30522
        self.hidden_size = 768
        self.layers = 12
        self.heads = 12
        self.intermediate_size = 3072
        self.max_position = 512
        self.type_vocab_size = 2
        self.activation = "gelu"
        self.layer_norm_eps = 1e-12
        self.hidden_dropout = 0.1
        self.attention_dropout = 0.1
        self.model_heads = {}  # type -> dict of attributes (classes / labels as int)
        for k, v in kw.items():
            if not hasattr(self, k):
                raise OracleError(f"unknown config key {k}")
            setattr(self, k, v)
        self.validate()

    def validate(self):
        for k in ("vocab_size", "hidden_size", "layers", "heads", "intermediate_size",
                  "max_position", "type_vocab_size"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) <= 0:
                raise OracleError(f"{k} must be a positive integer")
        if self.hidden_size % self.heads:
            raise OracleError("hidden-size must divide by heads")
        if self.activation not in ("gelu", "gelu_tanh"):
            raise OracleError(f"unknown activation {self.activation!r}")
        if "intent" in self.model_heads and self.model_heads["intent"].get("classes", 0) <= 0:
            raise OracleError("intent head needs classes > 0")
        if "slot" in self.model_heads and self.model_heads["slot"].get("labels", 0) <= 0:
            raise OracleError("slot head needs labels > 0")

    @property
    def head_dim(self):
        return self.hidden_size // self.heads

    def to_xml(self):
        act = self.activation
        lines = [f'<bert name="{self.name}">',
                 f'  <encoder vocab-size="{self.vocab_size}" hidden-size="{self.hidden_size}" '
                 f'layers="{self.layers}" heads="{self.heads}"',
                 f'           intermediate-size="{self.intermediate_size}" '
                 f'max-position="{self.max_position}" type-vocab-size="{self.type_vocab_size}"',
                 f'           activation="{act}" layer-norm-eps="{self.layer_norm_eps!r}"',
                 f'           hidden-dropout="{self.hidden_dropout!r}" '
                 f'attention-dropout="{self.attention_dropout!r}"/>']
        for t in HEAD_TYPES:
            if t not in self.model_heads:
                continue
            if t == "intent":
                lines.append(f'  <head type="intent" classes="{self.model_heads[t]["classes"]}"/>')
            elif t == "slot":
                lines.append(f'  <head type="slot" labels="{self.model_heads[t]["labels"]}"/>')
            else:
                lines.append(f'  <head type="{t}"/>')
        lines.append("</bert>")
        return "\n".join(lines) + "\n"


_ENC_ATTRS = {
    "vocab-size": ("vocab_size", int), "hidden-size": ("hidden_size", int),
    "layers": ("layers", int), "heads": ("heads", int),
    "intermediate-size": ("intermediate_size", int), "max-position": ("max_position", int),
    "type-vocab-size": ("type_vocab_size", int), "activation": ("activation", str),
    "layer-norm-eps": ("layer_norm_eps", float), "hidden-dropout": ("hidden_dropout", float),
    "attention-dropout": ("attention_dropout", float),
}

_HF_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size",
    "num_hidden_layers": "layers", "num_attention_heads": "heads",
    "intermediate_size": "intermediate_size", "max_position_embeddings": "max_position",
    "type_vocab_size": "type_vocab_size", "layer_norm_eps": "layer_norm_eps",
    "hidden_dropout_prob": "hidden_dropout", "attention_probs_dropout_prob": "attention_dropout",
}


def load_config(path):
    """Parse a bertcc model XML (DESIGN.md §2), or a Hugging Face config.json."""
    if path.endswith(".json"):
        with open(path) as f:
            j = json.load(f)
        kw = {v: j[k] for k, v in _HF_KEYS.items() if k in j}
        act = j.get("hidden_act", "gelu")
        kw["activation"] = {"gelu": "gelu", "gelu_new": "gelu_tanh",
                            "gelu_pytorch_tanh": "gelu_tanh"}.get(act, act)
        return Config(**kw)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise OracleError(f"{path}: {e}")
    if root.tag != "bert":
        raise OracleError(f"{path}: root element must be <bert>")
    kw = {"name": root.get("name", "bert")}
    heads = {}
    enc_seen = False
    for el in root:
        if el.tag == "encoder":
            if enc_seen:
                raise OracleError(f"{path}: duplicate <encoder>")
            enc_seen = True
            for a, v in el.attrib.items():
                if a not in _ENC_ATTRS:
                    raise OracleError(f"{path}: unknown encoder attribute {a!r}")
                key, conv = _ENC_ATTRS[a]
                try:
                    kw[key] = conv(v)
                except ValueError:
                    raise OracleError(f"{path}: bad value {v!r} for {a}")
        elif el.tag == "head":
            t = el.get("type")
            if t not in HEAD_TYPES:
                raise OracleError(f"{path}: unknown head type {t!r}")
            if t in heads:
                raise OracleError(f"{path}: duplicate head {t!r}")
            h = {}
            for a, v in el.attrib.items():
                if a == "type":
                    continue
                if (t, a) in (("intent", "classes"), ("slot", "labels")):
                    h[a] = int(v)
                else:
                    raise OracleError(f"{path}: unknown attribute {a!r} on head {t}")
            heads[t] = h
        else:
            raise OracleError(f"{path}: unknown element <{el.tag}>")
    if not enc_seen:
        raise OracleError(f"{path}: missing <encoder>")
    kw["model_heads"] = heads
    return Config(**kw)


# ----------------------------------------------------------------------- parameters

def param_shapes(cfg):
    """Ordered {name: shape} of every parameter, DESIGN.md §3."""
    V, H, I = cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size
    P, T = cfg.max_position, cfg.type_vocab_size
    s = {}
    e = "bert.embeddings."
    s[e + "word_embeddings.weight"] = (V, H)
    s[e + "position_embeddings.weight"] = (P, H)
    s[e + "token_type_embeddings.weight"] = (T, H)
    s[e + "LayerNorm.weight"] = (H,)
    s[e + "LayerNorm.bias"] = (H,)
    for i in range(cfg.layers):
        p = f"bert.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            s[p + f"attention.self.{n}.weight"] = (H, H)
            s[p + f"attention.self.{n}.bias"] = (H,)
        s[p + "attention.output.dense.weight"] = (H, H)
        s[p + "attention.output.dense.bias"] = (H,)
        s[p + "attention.output.LayerNorm.weight"] = (H,)
        s[p + "attention.output.LayerNorm.bias"] = (H,)
        s[p + "intermediate.dense.weight"] = (I, H)
        s[p + "intermediate.dense.bias"] = (I,)
        s[p + "output.dense.weight"] = (H, I)
        s[p + "output.dense.bias"] = (H,)
        s[p + "output.LayerNorm.weight"] = (H,)
        s[p + "output.LayerNorm.bias"] = (H,)
    s["bert.pooler.dense.weight"] = (H, H)
    s["bert.pooler.dense.bias"] = (H,)
    mh = cfg.model_heads
    if "mlm" in mh:
        s["cls.predictions.transform.dense.weight"] = (H, H)
        s["cls.predictions.transform.dense.bias"] = (H,)
        s["cls.predictions.transform.LayerNorm.weight"] = (H,)
        s["cls.predictions.transform.LayerNorm.bias"] = (H,)
        s["cls.predictions.bias"] = (V,)
    if "nsp" in mh:
        s["cls.seq_relationship.weight"] = (2, H)
        s["cls.seq_relationship.bias"] = (2,)
    if "intent" in mh:
        C = mh["intent"]["classes"]
        s["intent.classifier.weight"] = (C, H)
        s["intent.classifier.bias"] = (C,)
    if "slot" in mh:
        L = mh["slot"]["labels"]
        s["slot.classifier.weight"] = (L, H)
        s["slot.classifier.bias"] = (L,)
    if "qa" in mh:
        s["qa_outputs.weight"] = (2, H)
        s["qa_outputs.bias"] = (2,)
    return s


def param_kind(name):
    """'ln_weight', 'ln_bias', 'bias' or 'weight' (for initialization)."""
    if ".LayerNorm." in name:
        return "ln_weight" if name.endswith(".weight") else "ln_bias"
    if name.endswith(".bias") or name == "cls.predictions.bias":
        return "bias"
    return "weight"


def init_params(cfg, seed):
    """BERT initialization: normal(0, 0.02) weights/embeddings, LayerNorm 1/0, biases 0."""
    g = np.random.default_rng(seed)
    out = {}
    for n, shp in param_shapes(cfg).items():
        k = param_kind(n)
        if k == "weight":
            out[n] = (g.standard_normal(shp) * 0.02).astype(np.float32)
        elif k == "ln_weight":
            out[n] = np.ones(shp, np.float32)
        else:
            out[n] = np.zeros(shp, np.float32)
    return out


def canonical_name(n):
    """Map older Hugging Face spellings to DESIGN.md §3 names."""
    if n.startswith(("embeddings.", "encoder.", "pooler.")):
        n = "bert." + n
    if ".LayerNorm." in n:
        if n.endswith(".gamma"):
            n = n[:-len(".gamma")] + ".weight"
        elif n.endswith(".beta"):
            n = n[:-len(".beta")] + ".bias"
    return n


def load_params(cfg, path):
    raw = st.load(path)
    shapes = param_shapes(cfg)
    got = {}
    decoder = None
    for n, a in raw.items():
        c = canonical_name(n)
        if c == "cls.predictions.decoder.weight":
            decoder = a
            continue
        if c in shapes:
            if not np.issubdtype(a.dtype, np.floating):
                raise OracleError(f"{path}: tensor {n} is not floating point")
            got[c] = a.astype(np.float32)
        elif c != "bert.embeddings.position_ids":
            print(f"note: {path}: unused tensor {n}", file=sys.stderr)
    for n, shp in shapes.items():
        if n not in got:
            raise OracleError(f"{path}: missing parameter {n}")
        if tuple(got[n].shape) != tuple(shp):
            raise OracleError(f"{path}: parameter {n} has shape {list(got[n].shape)}, "
                              f"expected {list(shp)}")
    if decoder is not None and "mlm" in cfg.model_heads:
        if not np.array_equal(decoder.astype(np.float32),
                              got["bert.embeddings.word_embeddings.weight"]):
            raise OracleError(f"{path}: cls.predictions.decoder.weight differs from the "
                              "word embeddings (must be tied)")
    return {n: got[n] for n in shapes}


# ---------------------------------------------------------------------------- model

def activation(cfg, x):
    if cfg.activation == "gelu":
        return F.gelu(x)  # erf form (HF GELUActivation)
    return F.gelu(x, approximate="tanh")  # HF NewGELUActivation / gelu_pytorch_tanh


def linear(p, prefix, x):
    return F.linear(x, p[prefix + ".weight"], p[prefix + ".bias"])


def layer_norm(cfg, p, prefix, x):
    return F.layer_norm(x, (x.shape[-1],), p[prefix + ".weight"], p[prefix + ".bias"],
                        cfg.layer_norm_eps)


def embeddings(cfg, p, ids, tt):
    S = ids.shape[1]
    pos = torch.arange(S, dtype=torch.long).unsqueeze(0).expand_as(ids)
    e = "bert.embeddings."
    x = (F.embedding(ids, p[e + "word_embeddings.weight"])
         + F.embedding(tt, p[e + "token_type_embeddings.weight"])
         + F.embedding(pos, p[e + "position_embeddings.weight"]))
    return layer_norm(cfg, p, e + "LayerNorm", x)


def extended_mask(mask, dtype):
    """HF get_extended_attention_mask: [B,S] -> [B,1,1,S], (1 - m) * -10000."""
    m = mask[:, None, None, :].to(dtype)
    return (1.0 - m) * MASK_NEG


def self_attention(cfg, p, prefix, h, ext_mask):
    """HF BertSelfAttention (absolute positions, eval mode)."""
    B, S, H = h.shape
    nh, d = cfg.heads, cfg.head_dim

    def split(x):  # transpose_for_scores
        return x.view(B, S, nh, d).permute(0, 2, 1, 3)

    q = split(linear(p, prefix + ".query", h))
    k = split(linear(p, prefix + ".key", h))
    v = split(linear(p, prefix + ".value", h))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d)
    scores = scores + ext_mask
    probs = F.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(B, S, H)
    return ctx


def bert_layer(cfg, p, i, h, ext_mask):
    pre = f"bert.encoder.layer.{i}."
    ctx = self_attention(cfg, p, pre + "attention.self", h, ext_mask)
    # BertSelfOutput
    att = layer_norm(cfg, p, pre + "attention.output.LayerNorm",
                     linear(p, pre + "attention.output.dense", ctx) + h)
    # BertIntermediate
    inter = activation(cfg, linear(p, pre + "intermediate.dense", att))
    # BertOutput
    return layer_norm(cfg, p, pre + "output.LayerNorm",
                      linear(p, pre + "output.dense", inter) + att)


def ce_loss(logits, labels):
    """Mean cross-entropy ignoring -100; 0.0 (not NaN) when every label is ignored."""
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=-100, reduction="mean")


def forward(cfg, p, batch):
    """p: {name: tensor}; batch: {name: LongTensor}. Returns ordered {name: tensor}."""
    ids = batch["input_ids"]
    B, S = ids.shape
    tt = batch.get("token_type_ids")
    if tt is None:
        tt = torch.zeros_like(ids)
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    dtype = p["bert.embeddings.LayerNorm.weight"].dtype
    ext = extended_mask(mask, dtype)

    h = embeddings(cfg, p, ids, tt)
    for i in range(cfg.layers):
        h = bert_layer(cfg, p, i, h, ext)
    seq = h
    pooled = torch.tanh(linear(p, "bert.pooler.dense", seq[:, 0]))

    out = {"sequence_output": seq, "pooled_output": pooled}
    losses = {}
    mh = cfg.model_heads
    if "mlm" in mh:
        t = activation(cfg, linear(p, "cls.predictions.transform.dense", seq))
        t = layer_norm(cfg, p, "cls.predictions.transform.LayerNorm", t)
        logits = F.linear(t, p["bert.embeddings.word_embeddings.weight"],
                          p["cls.predictions.bias"])
        out["mlm_logits"] = logits
        if "mlm_labels" in batch:
            losses["mlm_loss"] = ce_loss(logits, batch["mlm_labels"])
    if "nsp" in mh:
        logits = linear(p, "cls.seq_relationship", pooled)
        out["nsp_logits"] = logits
        if "nsp_labels" in batch:
            losses["nsp_loss"] = ce_loss(logits, batch["nsp_labels"])
    if "intent" in mh:
        logits = linear(p, "intent.classifier", pooled)
        out["intent_logits"] = logits
        if "intent_labels" in batch:
            losses["intent_loss"] = ce_loss(logits, batch["intent_labels"])
    if "slot" in mh:
        logits = linear(p, "slot.classifier", seq)
        out["slot_logits"] = logits
        if "slot_labels" in batch:
            losses["slot_loss"] = ce_loss(logits, batch["slot_labels"])
    if "qa" in mh:
        logits = linear(p, "qa_outputs", seq)
        start, end = logits.split(1, dim=-1)
        start = start.squeeze(-1).contiguous()
        end = end.squeeze(-1).contiguous()
        out["start_logits"] = start
        out["end_logits"] = end
        if "start_positions" in batch and "end_positions" in batch:
            losses["qa_loss"] = (ce_loss(start, batch["start_positions"])
                                 + ce_loss(end, batch["end_positions"])) / 2
    out.update(losses)
    if losses:
        out["loss"] = sum(losses.values())
    return out


# ---------------------------------------------------------------------------- batch

LABEL_HEAD = {"mlm_labels": "mlm", "nsp_labels": "nsp", "intent_labels": "intent",
              "slot_labels": "slot", "start_positions": "qa", "end_positions": "qa"}
BATCH_KEYS = ("input_ids", "token_type_ids", "attention_mask") + tuple(LABEL_HEAD)


def check_batch(cfg, raw, path="batch", notes=True):
    """Validate a batch dict of integer numpy arrays; return {name: LongTensor}."""
    if "input_ids" not in raw:
        raise OracleError(f"{path}: missing input_ids")
    for n, a in raw.items():
        if n not in BATCH_KEYS:
            if notes:
                print(f"note: {path}: unused tensor {n}", file=sys.stderr)
            continue
        if a.dtype not in (np.int32, np.int64):
            raise OracleError(f"{path}: {n} must be I32 or I64, got {a.dtype}")
    ids = raw["input_ids"]
    if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 1:
        raise OracleError(f"{path}: input_ids must be [B, S] with B, S >= 1")
    B, S = ids.shape
    if S > cfg.max_position:
        raise OracleError(f"{path}: sequence length {S} > max-position {cfg.max_position}")
    mh = cfg.model_heads

    def rng_check(n, lo, hi, allow_ignore=False):
        a = raw[n]
        bad = (a < lo) | (a >= hi)
        if allow_ignore:
            bad &= a != -100
        if bad.any():
            raise OracleError(f"{path}: {n} out of range [{lo}, {hi})")

    rng_check("input_ids", 0, cfg.vocab_size)
    out = {}
    for n in BATCH_KEYS:
        if n not in raw:
            continue
        head = LABEL_HEAD.get(n)
        if head is not None and head not in mh:
            if notes:
                print(f"note: {path}: {n} ignored (model has no {head} head)",
                      file=sys.stderr)
            continue
        a = raw[n]
        want = (B,) if n in ("nsp_labels", "intent_labels", "start_positions",
                             "end_positions") else (B, S)
        if tuple(a.shape) != want:
            raise OracleError(f"{path}: {n} has shape {list(a.shape)}, expected {list(want)}")
        if n == "token_type_ids":
            rng_check(n, 0, cfg.type_vocab_size)
        elif n == "attention_mask":
            rng_check(n, 0, 2)
        elif n == "mlm_labels":
            rng_check(n, 0, cfg.vocab_size, True)
        elif n == "slot_labels":
            rng_check(n, 0, mh["slot"]["labels"], True)
        elif n == "nsp_labels":
            rng_check(n, 0, 2, True)
        elif n == "intent_labels":
            rng_check(n, 0, mh["intent"]["classes"], True)
        elif n in ("start_positions", "end_positions"):
            rng_check(n, 0, S)
        out[n] = torch.from_numpy(a.astype(np.int64))
    if ("start_positions" in out) != ("end_positions" in out):
        raise OracleError(f"{path}: start_positions and end_positions must come together")
    return out


# ------------------------------------------------------------------------- running

def run(cfg, params_np, batch_np, grads=False, dtype=torch.float64, path="batch",
        notes=True):
    """Returns {name: float32 numpy array} exactly as `bertcc run` writes."""
    batch = check_batch(cfg, batch_np, path, notes)
    p = {n: torch.tensor(a, dtype=dtype, requires_grad=grads) for n, a in params_np.items()}
    with torch.set_grad_enabled(grads):
        out = forward(cfg, p, batch)
        if grads:
            if "loss" not in out:
                raise OracleError("--grads needs labels for at least one head of the model")
            names = list(p)
            gs = torch.autograd.grad(out["loss"], [p[n] for n in names], allow_unused=True)
    res = {k: v.detach().to(torch.float32).numpy().copy() for k, v in out.items()}
    if grads:
        for n, g in zip(names, gs):
            if g is None:
                g = torch.zeros_like(p[n])
            res["grad." + n] = g.detach().to(torch.float32).numpy().copy()
    return res


# ------------------------------------------------------------------------ selfcheck

def _attention_loop(cfg, p, prefix, h, mask):
    """Straightforward per-batch, per-head, per-query loop (no batched matmuls)."""
    B, S, H = h.shape
    d = cfg.head_dim
    Wq, bq = p[prefix + ".query.weight"], p[prefix + ".query.bias"]
    Wk, bk = p[prefix + ".key.weight"], p[prefix + ".key.bias"]
    Wv, bv = p[prefix + ".value.weight"], p[prefix + ".value.bias"]
    ctx = torch.zeros(B, S, H, dtype=h.dtype)
    for b in range(B):
        for hd in range(cfg.heads):
            sl = slice(hd * d, (hd + 1) * d)
            for i in range(S):
                q = h[b, i] @ Wq[sl].T + bq[sl]
                sc = []
                for j in range(S):
                    k = h[b, j] @ Wk[sl].T + bk[sl]
                    s = float((q * k).sum()) / math.sqrt(d)
                    if int(mask[b, j]) == 0:
                        s += MASK_NEG
                    sc.append(s)
                mx = max(sc)
                ex = [math.exp(s - mx) for s in sc]
                z = sum(ex)
                acc = torch.zeros(d, dtype=h.dtype)
                for j in range(S):
                    acc += (ex[j] / z) * (h[b, j] @ Wv[sl].T + bv[sl])
                ctx[b, i, sl] = acc
    return ctx


def _ce_manual(logits, labels):
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    tot, n = 0.0, 0
    for r in range(logits.shape[0]):
        y = int(labels[r])
        if y == -100:
            continue
        row = logits[r].tolist()
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        tot += lse - row[y]
        n += 1
    return tot / n if n else 0.0


def _random_params(cfg, g, std=0.5):
    out = {}
    for n, shp in param_shapes(cfg).items():
        k = param_kind(n)
        if k == "ln_weight":
            out[n] = 1.0 + 0.2 * g.standard_normal(shp)
        else:
            out[n] = std * g.standard_normal(shp)
    return out


def selfcheck(verbose=True):
    import tempfile
    torch.manual_seed(0)
    g = np.random.default_rng(1234)

    def ok(msg, err, tol):
        if verbose:
            print(f"  {msg}: max err {err:.3g} (tol {tol:g})")
        if not err <= tol:
            raise AssertionError(f"selfcheck failed: {msg}: {err} > {tol}")

    with tempfile.TemporaryDirectory() as td:
        st._selfcheck(td)
        if verbose:
            print("  safetensors round trip: ok")

        cfg = Config(vocab_size=13, hidden_size=12, layers=2, heads=3, intermediate_size=10,
                     max_position=9, type_vocab_size=3, activation="gelu",
                     layer_norm_eps=1e-12,
                     model_heads={"mlm": {}, "nsp": {}, "intent": {"classes": 4},
                                  "slot": {"labels": 5}, "qa": {}})
        # XML round trip
        xp = os.path.join(td, "m.xml")
        with open(xp, "w") as f:
            f.write(cfg.to_xml())
        c2 = load_config(xp)
        assert vars(c2) == vars(cfg), (vars(c2), vars(cfg))
        if verbose:
            print("  XML round trip: ok")

        pn = _random_params(cfg, g)
        p = {n: torch.tensor(a, dtype=torch.float64) for n, a in pn.items()}
        B, S = 3, 6
        mask = torch.ones(B, S, dtype=torch.long)
        mask[1, 4:] = 0
        mask[2, 1:] = 0
        h = torch.tensor(g.standard_normal((B, S, 12)))
        pre = "bert.encoder.layer.0.attention.self"

        # 1. attention vs a per-head loop
        a1 = self_attention(cfg, p, pre, h, extended_mask(mask, torch.float64))
        a2 = _attention_loop(cfg, p, pre, h, mask)
        ok("attention vs per-head loop", (a1 - a2).abs().max().item(), 1e-12)

        # 2. a whole layer vs torch.nn.TransformerEncoderLayer (post-norm)
        for act in ("gelu", "gelu_tanh"):
            cfg.activation = act
            L = torch.nn.TransformerEncoderLayer(
                12, 3, dim_feedforward=10, dropout=0.0,
                activation=(lambda x: F.gelu(x, approximate="tanh")) if act == "gelu_tanh"
                else "gelu",
                layer_norm_eps=1e-12, batch_first=True, norm_first=False).double().eval()
            pl = "bert.encoder.layer.0."
            with torch.no_grad():
                L.self_attn.in_proj_weight.copy_(torch.cat(
                    [p[pl + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]))
                L.self_attn.in_proj_bias.copy_(torch.cat(
                    [p[pl + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]))
                L.self_attn.out_proj.weight.copy_(p[pl + "attention.output.dense.weight"])
                L.self_attn.out_proj.bias.copy_(p[pl + "attention.output.dense.bias"])
                L.norm1.weight.copy_(p[pl + "attention.output.LayerNorm.weight"])
                L.norm1.bias.copy_(p[pl + "attention.output.LayerNorm.bias"])
                L.linear1.weight.copy_(p[pl + "intermediate.dense.weight"])
                L.linear1.bias.copy_(p[pl + "intermediate.dense.bias"])
                L.linear2.weight.copy_(p[pl + "output.dense.weight"])
                L.linear2.bias.copy_(p[pl + "output.dense.bias"])
                L.norm2.weight.copy_(p[pl + "output.LayerNorm.weight"])
                L.norm2.bias.copy_(p[pl + "output.LayerNorm.bias"])
            # with grad enabled (parameters require grad), so the nested-tensor fast
            # path, which zeroes padded positions, is not taken
            ref = L(h, src_key_padding_mask=(mask == 0)).detach()
            ours = bert_layer(cfg, p, 0, h, extended_mask(mask, torch.float64))
            ok(f"layer ({act}) vs nn.TransformerEncoderLayer",
               (ours - ref).abs().max().item(), 1e-10)
        cfg.activation = "gelu"

        # 3. activations vs closed forms (HF GELUActivation / NewGELUActivation)
        x = torch.linspace(-6, 6, 101, dtype=torch.float64)
        erf = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
        tanh = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        ok("gelu erf", (activation(cfg, x) - erf).abs().max().item(), 1e-14)
        cfg.activation = "gelu_tanh"
        ok("gelu tanh", (activation(cfg, x) - tanh).abs().max().item(), 1e-14)
        cfg.activation = "gelu"

        # 4. embeddings vs nn.Embedding / nn.LayerNorm modules
        ids = torch.tensor(g.integers(0, 13, (B, S)))
        tt = torch.tensor(g.integers(0, 3, (B, S)))
        e = "bert.embeddings."
        we = torch.nn.Embedding.from_pretrained(p[e + "word_embeddings.weight"])
        pe = torch.nn.Embedding.from_pretrained(p[e + "position_embeddings.weight"])
        te = torch.nn.Embedding.from_pretrained(p[e + "token_type_embeddings.weight"])
        ln = torch.nn.LayerNorm(12, eps=1e-12).double()
        with torch.no_grad():
            ln.weight.copy_(p[e + "LayerNorm.weight"])
            ln.bias.copy_(p[e + "LayerNorm.bias"])
            ref = ln(we(ids) + pe(torch.arange(S)) + te(tt))
        ok("embeddings vs nn modules", (embeddings(cfg, p, ids, tt) - ref).abs().max().item(),
           1e-12)

        # 5. full forward: heads and losses vs manual formulas
        mlm = torch.tensor(g.integers(0, 13, (B, S)))
        mlm[0] = -100
        mlm[1, :2] = -100
        batch = {"input_ids": ids.numpy(), "token_type_ids": tt.numpy(),
                 "attention_mask": mask.numpy(), "mlm_labels": mlm.numpy(),
                 "nsp_labels": g.integers(0, 2, B), "intent_labels": g.integers(0, 4, B),
                 "slot_labels": np.where(mask.numpy() == 1, g.integers(0, 5, (B, S)), -100),
                 "start_positions": g.integers(0, S, B), "end_positions": g.integers(0, S, B)}
        out = forward(cfg, p, check_batch(cfg, batch))
        seq, pooled = out["sequence_output"], out["pooled_output"]
        hh = embeddings(cfg, p, ids, tt)
        for i in range(cfg.layers):
            hh = bert_layer(cfg, p, i, hh, extended_mask(mask, torch.float64))
        ok("sequence_output", (seq - hh).abs().max().item(), 0)
        pool_ref = torch.tanh(seq[:, 0] @ p["bert.pooler.dense.weight"].T
                              + p["bert.pooler.dense.bias"])
        ok("pooler", (pooled - pool_ref).abs().max().item(), 1e-14)
        t = seq @ p["cls.predictions.transform.dense.weight"].T \
            + p["cls.predictions.transform.dense.bias"]
        t = 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        t = (t - mu) / torch.sqrt(var + 1e-12) * p["cls.predictions.transform.LayerNorm.weight"] \
            + p["cls.predictions.transform.LayerNorm.bias"]
        mlm_ref = t @ p[e + "word_embeddings.weight"].T + p["cls.predictions.bias"]
        ok("mlm logits (tied decoder)", (out["mlm_logits"] - mlm_ref).abs().max().item(), 1e-12)
        qa = seq @ p["qa_outputs.weight"].T + p["qa_outputs.bias"]
        ok("qa start/end split", max((out["start_logits"] - qa[..., 0]).abs().max().item(),
                                     (out["end_logits"] - qa[..., 1]).abs().max().item()), 1e-14)
        bt = {k: torch.as_tensor(v) for k, v in batch.items()}
        manual = {
            "mlm_loss": _ce_manual(out["mlm_logits"], bt["mlm_labels"]),
            "nsp_loss": _ce_manual(out["nsp_logits"], bt["nsp_labels"]),
            "intent_loss": _ce_manual(out["intent_logits"], bt["intent_labels"]),
            "slot_loss": _ce_manual(out["slot_logits"], bt["slot_labels"]),
            "qa_loss": (_ce_manual(out["start_logits"], bt["start_positions"])
                        + _ce_manual(out["end_logits"], bt["end_positions"])) / 2,
        }
        for k, v in manual.items():
            ok(k + " vs manual CE", abs(out[k].item() - v), 1e-12)
        ok("loss = sum", abs(out["loss"].item() - sum(manual.values())), 1e-12)
        z = ce_loss(torch.randn(4, 3, dtype=torch.float64, requires_grad=True),
                    torch.full((4,), -100))
        ok("all-ignored CE is 0", abs(z.item()), 0)

        # 6. all-padding row gives no NaN
        m0 = batch["attention_mask"].copy()
        m0[2] = 0
        o = forward(cfg, p, check_batch(cfg, dict(batch, attention_mask=m0)))
        assert all(torch.isfinite(v).all() for v in o.values()), "NaN with all-padding row"
        if verbose:
            print("  all-padding row finite: ok")

        # 7. gradients: gradcheck of the whole loss, tied embedding included
        small = Config(vocab_size=5, hidden_size=4, layers=1, heads=2, intermediate_size=3,
                       max_position=4, type_vocab_size=2, activation="gelu_tanh",
                       layer_norm_eps=1e-5,
                       model_heads={"mlm": {}, "nsp": {}, "intent": {"classes": 3},
                                    "slot": {"labels": 2}, "qa": {}})
        sp = _random_params(small, g)
        names = list(sp)
        sb = {"input_ids": g.integers(0, 5, (2, 3)), "attention_mask": np.array([[1, 1, 1],
                                                                                 [1, 1, 0]]),
              "mlm_labels": np.array([[1, -100, 4], [0, 2, -100]]),
              "nsp_labels": np.array([0, 1]), "intent_labels": np.array([2, 0]),
              "slot_labels": np.array([[0, 1, -100], [1, 1, -100]]),
              "start_positions": np.array([0, 2]), "end_positions": np.array([1, 2])}
        sbt = check_batch(small, sb)
        leaves = [torch.tensor(sp[n], requires_grad=True) for n in names]

        def f(*xs):
            return forward(small, dict(zip(names, xs)), sbt)["loss"]

        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)
        if verbose:
            print("  gradcheck of the full loss (all heads, tied embedding): ok")
        # run() grads equal autograd of the same float64 forward
        r = run(small, {n: a.astype(np.float32) for n, a in sp.items()}, sb, grads=True)
        assert set(k for k in r if k.startswith("grad.")) == {"grad." + n for n in names}

        # 8. file-level round trip through the CLI code path
        wp, bp, op = (os.path.join(td, x) for x in ("w.safetensors", "b.safetensors",
                                                      "o.safetensors"))
        st.save(wp, {n: a.astype(np.float32) for n, a in pn.items()})
        st.save(bp, {k: np.asarray(v, np.int32) for k, v in batch.items()})
        main([xp, "--weights", wp, "--batch", bp, "-o", op])
        o = st.load(op)
        ref = run(cfg, {n: a.astype(np.float32) for n, a in pn.items()}, batch)
        assert set(o) == set(ref)
        for k in o:
            assert o[k].dtype == np.float32 and np.array_equal(o[k], ref[k]), k
        assert o["loss"].shape == ()

        # 9. float32 vs float64 agreement (conditioning of this random case)
        r32 = run(cfg, {n: a.astype(np.float32) for n, a in pn.items()}, batch,
                  dtype=torch.float32)
        worst = max(np.abs(r32[k] - ref[k]).max() / max(np.abs(ref[k]).max(), 1e-30)
                    for k in ref)
        ok("float32 vs float64 forward (relative)", worst, 1e-4)
    print("selfcheck: all ok")
    return True


# ------------------------------------------------------------------------------ CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", help="bertcc model XML (or HF config.json)")
    ap.add_argument("--weights", help="parameters (safetensors)")
    ap.add_argument("--init-seed", type=int, help="initialize parameters as BERT does instead")
    ap.add_argument("--save-weights", help="write the parameters used to this file")
    ap.add_argument("--batch", help="batch (safetensors, I32/I64)")
    ap.add_argument("-o", "--output", help="output safetensors")
    ap.add_argument("--grads", action="store_true", help="also write grad.<param>")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="computation precision (outputs are always F32)")
    ap.add_argument("--selfcheck", action="store_true", help="run internal consistency checks")
    a = ap.parse_args(argv)
    if a.selfcheck:
        selfcheck()
        return 0
    if not a.model:
        ap.error("MODEL is required")
    cfg = load_config(a.model)
    if (a.weights is None) == (a.init_seed is None):
        ap.error("give exactly one of --weights and --init-seed")
    params = load_params(cfg, a.weights) if a.weights else init_params(cfg, a.init_seed)
    if a.save_weights:
        st.save(a.save_weights, params)
    if a.batch is None and a.output is None:
        if not a.save_weights:
            ap.error("nothing to do: give --batch and -o, or --save-weights")
        return 0
    if a.batch is None or a.output is None:
        ap.error("--batch and -o go together")
    batch = st.load(a.batch)
    res = run(cfg, params, batch, grads=a.grads, dtype=getattr(torch, a.dtype), path=a.batch)
    st.save(a.output, res)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OracleError, st.SafetensorsError) as e:
        print(f"bert_ref: error: {e}", file=sys.stderr)
        sys.exit(1)
