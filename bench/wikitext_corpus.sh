#!/usr/bin/env bash
# wikitext_corpus.sh: WikiText (tokenized, as in ../shared/data/wikitext2) to the
# pre-training corpus format: one sentence per line, a blank line between documents.
#
#   bash bench/wikitext_corpus.sh ../shared/data/wikitext2/valid.txt ... > corpus.txt
#
# An article starts at a " = Title = " line (one '='); section headings (" = = ... = = ")
# are dropped; paragraphs are split into sentences after " . ", " ? " and " ! "; the
# tokenization marks "@-@", "@,@" and "@.@" become "-", "," and ".", and "<unk>" the
# [UNK] token (kept whole by the tokenizer). Without this, each
# paragraph is a document of one "sentence", and BERT's pair maker gives such documents
# only random next segments (Google's create_instances_from_document does too), which
# leaves next-sentence prediction nothing to learn.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: wikitext_corpus.sh WIKITEXT.txt... > corpus.txt" >&2; exit 2; }
for f in "$@"; do
  [ -r "$f" ] || { echo "wikitext_corpus.sh: cannot read $f" >&2; exit 1; }
done
awk '
  /^ = [^=].* = *$/ { if (docs++) print ""; next }      # a new article
  /^ = = / || /^ *$/ { next }                            # headings, blank lines
  {
    gsub(/ @-@ /, "-"); gsub(/ @,@ /, ","); gsub(/ @\.@ /, "."); gsub(/<unk>/, "[UNK]")
    sub(/^ +/, ""); sub(/ +$/, "")
    n = split($0, w, " ")
    line = ""
    for (i = 1; i <= n; i++) {
      line = line (line == "" ? "" : " ") w[i]
      if ((w[i] == "." || w[i] == "?" || w[i] == "!") && i < n) { print line; line = "" }
    }
    if (line != "") print line
  }
' "$@"
