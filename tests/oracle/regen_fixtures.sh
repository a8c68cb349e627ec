#!/bin/sh
# Regenerates tests/fixtures/run_* with the PyTorch oracle (deterministic:
# the files come out byte-identical). Run from the repository root.
set -e
PY=/usr/bin/python3
MC=tests/oracle/make_case.py
F=tests/fixtures
$PY $MC $F/run_tiny --vocab 37 --hidden 12 --heads 3 --layers 2 --intermediate 20 \
    --max-position 16 --type-vocab 2 --activation gelu \
    --model-heads mlm,nsp,intent,slot,qa --intent-classes 5 --slot-labels 7 \
    --batch 3 --seq 7 --lengths 7,4,7 --grads
$PY $MC $F/run_tanh_noheads --vocab 11 --hidden 10 --heads 2 --layers 1 --intermediate 7 \
    --max-position 8 --activation gelu_tanh --batch 2 --seq 5 --ids-dtype i32 --no-mask
$PY $MC $F/run_mlm_nsp --vocab 29 --hidden 8 --heads 1 --layers 3 --intermediate 13 \
    --max-position 12 --model-heads mlm,nsp --batch 4 --seq 9 --lengths 9,6,9,3 \
    --mlm-ignored-rows 2 --grads
