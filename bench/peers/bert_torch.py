"""bert_torch.py: the peers' BERT, a PyTorch module in Hugging Face's op order.

The same computation as Hugging Face transformers' modeling_bert.py (BertEmbeddings,
BertSelfAttention with separate query/key/value Linear, view + permute, QK^T / sqrt(d)
+ the extended mask (1 - mask) * -10000, softmax, dropout; BertSelfOutput,
BertIntermediate with erf GELU, BertOutput, BertPooler), written out here because
there is no `transformers` package on this machine. Keeping HF's op order is what lets
ONNX Runtime's BERT fusions recognise the exported graph.

Heads are bertcc's (frontend/bert.c): mlm (transform dense + GELU + LayerNorm, decoder
tied to the word embeddings + bias), nsp (pooled -> Linear(2)), intent (dropout(pooled)
-> Linear), slot (dropout(sequence) -> Linear). Sizes come from a bertcc model XML,
read by the test oracle's reader (tests/oracle/bert_ref.py).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "oracle"))
from bert_ref import load_config  # noqa: E402

MASK_NEG = -10000.0


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.register_buffer("position_ids", torch.arange(c.max_position).expand((1, -1)))

    def forward(self, input_ids, token_type_ids):  # (B, S) each -> (B, S, H)
        position_ids = self.position_ids[:, :input_ids.size(1)]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.hidden_size // c.heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.attention_dropout)

    def split_heads(self, x):  # (B, S, H) -> (B, NH, S, D)
        x = x.view(x.size()[:-1] + (self.heads, self.head_dim))
        return x.permute(0, 2, 1, 3)

    def forward(self, h, ext_mask):  # h (B, S, H), ext_mask (B, 1, 1, S) -> (B, S, H)
        q = self.split_heads(self.query(h))
        k = self.split_heads(self.key(h))
        v = self.split_heads(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = self.dropout(F.softmax(scores + ext_mask, dim=-1))  # (B, NH, S, S)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.heads * self.head_dim,))


class AddNorm(nn.Module):
    """BertSelfOutput / BertOutput: LayerNorm(dropout(dense(x)) + residual)."""

    def __init__(self, c, n_in):
        super().__init__()
        self.dense = nn.Linear(n_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = SelfAttention(c)
        self.attention_output = AddNorm(c, c.hidden_size)
        self.intermediate = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = AddNorm(c, c.intermediate_size)

    def forward(self, h, ext_mask):
        h1 = self.attention_output(self.attention(h, ext_mask), h)
        return self.output(F.gelu(self.intermediate(h1)), h1)


class Bert(nn.Module):
    """forward(input_ids, token_type_ids, attention_mask) -> dict of sequence_output,
    pooled_output and each head's logits, as `bertcc run` names them."""

    def __init__(self, c):
        super().__init__()
        H, heads = c.hidden_size, c.model_heads
        self.heads = [t for t in ("mlm", "nsp", "intent", "slot") if t in heads]
        unsupported = set(heads) - set(self.heads)
        if unsupported:
            raise ValueError(f"heads {sorted(unsupported)} are not in the peers' model")
        self.embeddings = Embeddings(c)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.pooler = nn.Linear(H, H)
        self.dropout = nn.Dropout(c.hidden_dropout)
        if "mlm" in heads:
            self.mlm_transform = nn.Linear(H, H)
            self.mlm_norm = nn.LayerNorm(H, eps=c.layer_norm_eps)
            self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size))
        if "nsp" in heads:
            self.nsp = nn.Linear(H, 2)
        if "intent" in heads:
            self.intent = nn.Linear(H, heads["intent"]["classes"])
        if "slot" in heads:
            self.slot = nn.Linear(H, heads["slot"]["labels"])
        self.apply(self._init)

    @staticmethod
    def _init(m):  # BERT's initialization: N(0, 0.02) weights, zero biases
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)

    def forward(self, input_ids, token_type_ids, attention_mask):
        ext = attention_mask[:, None, None, :].to(torch.float32)
        ext = (1.0 - ext) * MASK_NEG  # (B, 1, 1, S)
        h = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            h = layer(h, ext)
        out = {"sequence_output": h,
               "pooled_output": torch.tanh(self.pooler(h[:, 0]))}
        if "mlm" in self.heads:
            t = self.mlm_norm(F.gelu(self.mlm_transform(h)))
            word = self.embeddings.word_embeddings.weight  # tied decoder (V, H)
            out["mlm_logits"] = torch.matmul(t, word.t()) + self.mlm_bias
        if "nsp" in self.heads:
            out["nsp_logits"] = self.nsp(out["pooled_output"])
        if "intent" in self.heads:
            out["intent_logits"] = self.intent(self.dropout(out["pooled_output"]))
        if "slot" in self.heads:
            out["slot_logits"] = self.slot(self.dropout(h))
        return out


def build(model_xml, seed=0):
    """The peers' model for a bertcc model XML, BERT-initialized from seed."""
    torch.manual_seed(seed)
    return Bert(load_config(model_xml))


def batch(model, B, S, seed=0):
    """Inputs (B, S) int64: random ids, two segments, no padding."""
    g = torch.Generator().manual_seed(seed)
    V = model.embeddings.word_embeddings.num_embeddings
    ids = torch.randint(0, V, (B, S), generator=g)
    types = torch.zeros(B, S, dtype=torch.int64)
    types[:, S // 2:] = 1
    return ids, types, torch.ones(B, S, dtype=torch.int64)


def labels(model, B, S, seed=1):
    """Training labels for every head of the model: MLM at every position."""
    g = torch.Generator().manual_seed(seed)
    V = model.embeddings.word_embeddings.num_embeddings
    out = {}
    if "mlm" in model.heads:
        out["mlm_logits"] = torch.randint(0, V, (B, S), generator=g)
    if "nsp" in model.heads:
        out["nsp_logits"] = torch.randint(0, 2, (B,), generator=g)
    if "intent" in model.heads:
        out["intent_logits"] = torch.randint(0, model.intent.out_features, (B,), generator=g)
    if "slot" in model.heads:
        out["slot_logits"] = torch.randint(0, model.slot.out_features, (B, S), generator=g)
    return out


def loss(out, lab):
    """The sum of each head's mean cross-entropy, as bertcc's loss."""
    return sum(F.cross_entropy(out[k].reshape(-1, out[k].size(-1)), y.reshape(-1))
               for k, y in lab.items())
