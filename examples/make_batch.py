"""Writes examples/batch.safetensors, the bundled example batch for bert-base.

Two sentence pairs (B=2, S=17), token ids from Hugging Face's bert-base-uncased
vocab.txt (also in ../shared/data/bert_vocab; ids are written out here so that this
script needs no data):
  [CLS] the man went to the [MASK] . [SEP] he bought a gallon of milk . [SEP]
  [CLS] the cat sat on the [MASK] . [SEP] it was warm . [SEP] [PAD] [PAD] [PAD]
mlm_labels hold "store" (3573) and "mat" (13523) at the masked positions, -100
elsewhere; nsp_labels say both pairs are consecutive (0 = IsNext).
Run: /usr/bin/python3 examples/make_batch.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
import st  # noqa: E402

S = 17
row0 = [101, 1996, 2158, 2253, 2000, 1996, 103, 1012, 102, 2002, 4149, 1037, 25234, 1997,
        6501, 1012, 102]
# it=2009 was=2001 warm=4010
row1 = [101, 1996, 4937, 2938, 2006, 1996, 103, 1012, 102, 2009, 2001, 4010, 1012, 102]
ids = np.zeros((2, S), np.int64)
ids[0, :len(row0)] = row0
ids[1, :len(row1)] = row1
tt = np.zeros((2, S), np.int64)
tt[0, 9:17] = 1
tt[1, 9:14] = 1
mask = (ids != 0).astype(np.int64)
mlm = np.full((2, S), -100, np.int64)
mlm[0, 6] = 3573
mlm[1, 6] = 13523
nsp = np.zeros((2,), np.int64)
out = os.path.join(os.path.dirname(__file__), "batch.safetensors")
st.save(out, {"input_ids": ids, "token_type_ids": tt, "attention_mask": mask,
              "mlm_labels": mlm, "nsp_labels": nsp})
print("wrote", out)
