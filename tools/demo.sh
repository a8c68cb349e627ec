#!/usr/bin/env bash
# demo.sh: the bundled default job. Until the task pipelines exist, it compiles
# models/bert-base.xml, runs it (BERT's random initialization) on the bundled example
# batch, and prints what it computed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build/bertcc models/bert-base.xml --emit=opt -o "$tmp/bert-base.ir"
echo "== models/bert-base.xml after optimization: $(grep -c ' = ' "$tmp/bert-base.ir") values; the first lines:"
head -n 12 "$tmp/bert-base.ir"
echo "   ..."
echo "== bertcc run models/bert-base.xml --batch examples/batch.safetensors"
build/bertcc run models/bert-base.xml --batch examples/batch.safetensors -o "$tmp/out.safetensors"
build/bertcc show "$tmp/out.safetensors"
