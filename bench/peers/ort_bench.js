// ort_bench.js: ONNX Runtime's side of bench/peers.sh (inference only), with
// `bertcc bench`'s interface.
//
//   node ort_bench.js MODEL.onnx --batch-size B --seq-len S --threads N --iters K
//        --vocab V [--warmup W] [--optimized-out FILE] --json
//
// One session on the CPU execution provider with every graph optimization (the BERT
// fusions are level 2), intraOpNumThreads = N, one inter-op thread. Inputs as
// bert_torch.batch has them: random ids below V, two segments, no padding. Prints one JSON
// object: ms_per_iter (median of K timed runs after W untimed ones), tokens_per_s,
// peak_rss_mb (this process's maxRSS). --optimized-out writes the optimized graph,
// whose node types peers.sh counts.
'use strict';
const ort = require('onnxruntime-node');

function parseArgs(argv) {
  const a = { warmup: 1, iters: 5, optimizedOut: '' };
  const flags = {
    '--batch-size': 'B', '--seq-len': 'S', '--threads': 'threads', '--iters': 'iters',
    '--warmup': 'warmup', '--vocab': 'vocab', '--optimized-out': 'optimizedOut',
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') continue;
    if (flags[argv[i]] && i + 1 < argv.length) {
      const k = flags[argv[i]];
      a[k] = k === 'optimizedOut' ? argv[++i] : Number(argv[++i]);
    } else if (!argv[i].startsWith('-') && !a.model) {
      a.model = argv[i];
    } else {
      throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.model) throw new Error('usage: ort_bench.js MODEL.onnx --batch-size B --seq-len S ' +
                                '--threads N --iters K --vocab V [--warmup W] [--optimized-out F] --json');
  for (const k of ['B', 'S', 'threads', 'iters', 'vocab']) {
    if (!Number.isInteger(a[k]) || a[k] < 1) throw new Error(`${k} needs a positive integer`);
  }
  if (!Number.isInteger(a.warmup) || a.warmup < 0) throw new Error('--warmup needs an integer >= 0');
  return a;
}

function median(v) {
  const s = [...v].sort((x, y) => x - y), n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const opts = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
  if (a.optimizedOut) {
    opts.optimizedModelFilePath = a.optimizedOut;
    opts.logSeverityLevel = 3; // its warning: the saved graph is tied to this CPU (we only read it)
  }
  const session = await ort.InferenceSession.create(a.model, opts);

  const n = a.B * a.S, vocab = BigInt(a.vocab);
  const ids = new BigInt64Array(n), types = new BigInt64Array(n), mask = new BigInt64Array(n);
  let seed = 12345n; // a 64-bit LCG: reproducible ids without a dependency
  for (let i = 0; i < n; i++) {
    seed = (seed * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    ids[i] = (seed >> 33n) % vocab;
    types[i] = i % a.S >= Math.floor(a.S / 2) ? 1n : 0n;
    mask[i] = 1n;
  }
  const dims = [a.B, a.S];
  const feeds = {
    input_ids: new ort.Tensor('int64', ids, dims),
    token_type_ids: new ort.Tensor('int64', types, dims),
    attention_mask: new ort.Tensor('int64', mask, dims),
  };
  for (let i = 0; i < a.warmup; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < a.iters; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const ms = median(times);
  console.log(JSON.stringify({
    ms_per_iter: Number(ms.toFixed(3)),
    tokens_per_s: Number((n / (ms * 1e-3)).toFixed(1)),
    peak_rss_mb: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    onnxruntime: ort.env.versions.node, threads: a.threads,
  }));
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message}`);
  process.exit(1);
});
