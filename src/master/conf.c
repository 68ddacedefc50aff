/*
 * A configuration as checked, shared by what was built from it: the
 * generation (its top-level settings), each pooldef and each listener
 * hold a reference; the text goes to the workers' init in a sealed memfd
 * (dispatch.c), made once.
 */

#include <stdlib.h>
#include <unistd.h>

#include "master.h"

/* A checked configuration, and its text sealed for the workers' init. */
struct conf *
conf_new(struct nc_config *cfg)
{
	struct conf	*c;

	if ((c = calloc(1, sizeof *c)) == NULL)
		return NULL;
	c->refs = 1;
	c->cfg = cfg;
	c->text_fd = -1;
	return c;
}

struct conf *
conf_ref(struct conf *c)
{
	c->refs++;
	return c;
}

void
conf_unref(struct conf *c)
{
	if (c == NULL || --c->refs > 0)
		return;
	if (c->text_fd != -1)
		close(c->text_fd);
	nc_config_free(c->cfg);
	free(c);
}
