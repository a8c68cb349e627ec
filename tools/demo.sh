#!/usr/bin/env bash
# demo.sh: the bundled default job. Until the task pipelines exist, it compiles
# models/bert-base.xml, runs it (reference backend, BERT's random initialization) on
# the bundled example batch, and prints what it computed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/bertcc-demo-out.safetensors
echo "== IR of models/bert-base.xml after optimization (first lines)"
build/bertcc models/bert-base.xml --emit=opt | head -n 12
echo "   ... ($(build/bertcc models/bert-base.xml --emit=opt | grep -c ' = ') values)"
echo "== bertcc run models/bert-base.xml --batch examples/batch.safetensors"
build/bertcc run models/bert-base.xml --batch examples/batch.safetensors -o "$out"
build/bertcc show "$out"
