/*
 * Accepting when the process is out of fds (or the kernel of memory):
 * the listener is paused and retried every NC_ACCEPT_PAUSE_MS, so it never
 * spins, and the episode is logged when it begins and when it ends, never
 * per connection. Shared by the servers of the library and the master's
 * round-robin listeners.
 */

#ifndef NC_ACCEPT_H
#define NC_ACCEPT_H

#include <stdbool.h>
#include <time.h>

#define NC_ACCEPT_PAUSE_MS	100

struct nc_accept_pause {
	bool		 on;		/* in an episode */
	struct timespec	 since;
	unsigned long	 pauses;	/* of this episode */
};

/* True when accept()'s errno means "no fds or memory now": pause. */
bool	nc_accept_must_pause(int err);
/* A pause; true when it begins an episode (the caller logs it then). */
bool	nc_accept_pause_begin(struct nc_accept_pause *);
/*
 * An accept worked: when that ends an episode, returns true with how long
 * it lasted and how many pauses it took (the caller logs it then).
 */
bool	nc_accept_pause_end(struct nc_accept_pause *, long *ms,
	    unsigned long *pauses);

#endif /* NC_ACCEPT_H */
