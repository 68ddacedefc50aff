/*
 * Pausing accepts when the process is out of fds; see nc-accept.h.
 */

#include <errno.h>

#include "nc-accept.h"

bool
nc_accept_must_pause(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM;
}

bool
nc_accept_pause_begin(struct nc_accept_pause *p)
{
	p->pauses++;
	if (p->on)
		return false;
	p->on = true;
	p->pauses = 1;
	clock_gettime(CLOCK_MONOTONIC, &p->since);
	return true;
}

bool
nc_accept_pause_end(struct nc_accept_pause *p, long *ms,
    unsigned long *pauses)
{
	struct timespec	now;

	if (!p->on)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	*ms = (now.tv_sec - p->since.tv_sec) * 1000 +
	    (now.tv_nsec - p->since.tv_nsec) / 1000000;
	*pauses = p->pauses;
	p->on = false;
	p->pauses = 0;
	return true;
}
