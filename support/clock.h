/* clock.h: the one clock every layer times things with. */
#ifndef BERTCC_SUPPORT_CLOCK_H
#define BERTCC_SUPPORT_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC), for durations. */
double bc_now(void);

#endif
