/* cmd_demo_data.c: `bertcc demo-data -o DIR` — writes the bundled default data set
 * (tasks/demo_data.h), so that the first command of the README trains on something
 * without any download. */
#include <stdio.h>
#include <string.h>

#include "../../tasks/demo_data.h"
#include "args.h"
#include "driver.h"

static const char *out, *seed_s, *per_s, *threads, *backend;
static const arg_opt opts[] = {
    {"o", "DIR", "where to write DIR/{train,dev,test}/{seq.in,seq.out,label} (required)",
     &out},
    {"seed", "N", "the shuffle and the split (default 0)", &seed_s},
    {"per-intent", "N", "at most N sentences of each intent (default 500)", &per_s},
    {"threads", "N", "accepted for uniformity; unused here", &threads},
    {"backend", "jit|ref", "accepted for uniformity; unused here", &backend},
    {NULL, NULL, NULL, NULL},
};

static const char about[] =
    "Writes a small Korean voice-assistant data set in the ATIS layout for\n"
    "bertcc train --task intent-slot: intents play_song_by_artist,\n"
    "play_song_by_title, stop_music, volume_up, volume_down, next_song;\n"
    "slots artist and title (BIO). Deterministic for a seed.";

int cmd_demo_data(int argc, char **argv)
{
    int help;
    const char *pos[1];
    if (args_parse(argc, argv, 2, opts, pos, 0, &help, "demo-data") < 0)
        return 1;
    if (help)
        return args_usage("bertcc demo-data -o DIR [--seed N] [--per-intent N]", about,
                          opts),
               0;
    if (!out)
        return driver_fail("demo-data: -o DIR is required (see --help)");
    long long seed = 0, per = 500, nthreads = 0;
    if ((seed_s && args_int(seed_s, "seed", 0, (long long)(~0ULL >> 1), &seed)) ||
        (per_s && args_int(per_s, "per-intent", 10, 1000000, &per)) ||
        (threads && args_int(threads, "threads", 1, 1024, &nthreads)))
        return 1;
    if (backend && strcmp(backend, "jit") && strcmp(backend, "ref"))
        return driver_fail("--backend must be jit or ref");
    bc_err e;
    tk_demo_data_counts n;
    if (tk_demo_data_write(out, (uint64_t)seed, per, &n, &e))
        return fprintf(stderr, "bertcc demo-data: %s\n", e.msg), 1;
    fprintf(stderr,
            "bertcc demo-data: %s: train %d, dev %d, test %d sentences, %d intents\n", out,
            n.train, n.dev, n.test, n.intents);
    return 0;
}
