// make_fixture.mjs: makes the tokenizer fixtures of tests/test_tokenizer.c from Hugging
// Face's own tokenizer, @huggingface/tokenizers 0.2.0 (Tokenizers.js, pure JS, offline).
//
//   cd tests/tokenizer && npm install && node make_fixture.mjs [SHARED_DATA_DIR]
//
// SHARED_DATA_DIR defaults to ../../../shared/data (the vocabularies are not in the
// repository). For each (sentence list, vocabulary, options) case below it builds a
// tokenizer.json as Hugging Face writes one for BertTokenizerFast: a BertNormalizer
// (clean_text, handle_chinese_chars, strip_accents as given, lowercase as given), a
// BertPreTokenizer, a WordPiece model ("##", [UNK], 100 characters) and the five
// special tokens as added tokens with normalized=false. It writes, for sentence i
// (line i of sentences_*.txt, lines split on "\n" only), line i of
// ../fixtures/tokenizer/hf_CASE.ids: the ids without [CLS]/[SEP], separated by spaces.
// Tokenizers.js gives no offsets, so there are no offset fixtures.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "..", "fixtures", "tokenizer");
const shared = process.argv[2] ?? join(here, "..", "..", "..", "shared", "data");

const VOCABS = {
  bert_uncased: join(shared, "bert_vocab", "bert-base-uncased-vocab.txt"),
  krbert: join(shared, "krbert_vocab", "vocab_char_16424.txt"),
};

// name, sentence list, vocabulary, BertNormalizer lowercase and strip_accents
const CASES = [
  ["en.bert_uncased.lower", "en", "bert_uncased", true, null],
  ["en.bert_uncased.lower_keep_accents", "en", "bert_uncased", true, false],
  ["ko.krbert.cased", "ko", "krbert", false, null],
  ["ko.bert_uncased.lower", "ko", "bert_uncased", true, null],
  ["en.krbert.cased", "en", "krbert", false, null],
];

// As transformers' load_vocab: id = line number; a repeated token keeps its last line.
function loadVocab(path) {
  let lines = readFileSync(path, "utf8").split(/\r\n|\r|\n/);
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  const vocab = {};
  lines.forEach((tok, i) => {
    vocab[tok] = i;
  });
  return vocab;
}

function tokenizerJson(vocab, lowercase, stripAccents) {
  const added = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    .filter((t) => t in vocab)
    .map((t) => ({
      id: vocab[t],
      content: t,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: stripAccents,
      lowercase,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

for (const [name, lang, vocabName, lowercase, stripAccents] of CASES) {
  const text = readFileSync(join(fixtures, `sentences_${lang}.txt`), "utf8");
  const sentences = text.split("\n");
  if (sentences[sentences.length - 1] !== "") throw new Error("sentence list must end in a newline");
  sentences.pop();
  const tok = new Tokenizer(tokenizerJson(loadVocab(VOCABS[vocabName]), lowercase, stripAccents), {
    do_lower_case: lowercase,
  });
  const out = sentences.map((s) => tok.encode(s, { add_special_tokens: false }).ids.join(" "));
  writeFileSync(join(fixtures, `hf_${name}.ids`), out.join("\n") + "\n");
  console.log(`hf_${name}.ids: ${sentences.length} sentences`);
}
