/* demo_data.h: the bundled Korean voice-assistant data set (`bertcc demo-data`) for
 * --task intent-slot, in the ATIS layout: DIR/{train,dev,test}/{seq.in,seq.out,label}.
 * Intents play_song_by_artist, play_song_by_title, stop_music, volume_up, volume_down,
 * next_song; slots artist and title (BIO). demo_data.c says how it is made. */
#ifndef BERTCC_TASKS_DEMO_DATA_H
#define BERTCC_TASKS_DEMO_DATA_H

#include <stdint.h>

#include "../support/err.h"

typedef struct tk_demo_data_counts {
    int train, dev, test; /* sentences */
    int intents;
} tk_demo_data_counts;

/* Writes the set into dir (made if absent): at most per_intent sentences of each intent,
 * chosen and split by a generator seeded with seed, so the same arguments always give
 * the same files. */
int tk_demo_data_write(const char *dir, uint64_t seed, int64_t per_intent,
                       tk_demo_data_counts *counts, bc_err *e);

#endif
