/*
 * Loading handler modules (netcluster-handler.h), for netclusterd -t and
 * netcluster-worker. Not installed.
 */

#ifndef NC_MODULE_H
#define NC_MODULE_H

#include <stdbool.h>
#include <stddef.h>

#include "netcluster-handler.h"

/*
 * dlopen()s path (resolving every symbol now, or only as it is used: a
 * program that only checks, such as netclusterd -t, does not carry every
 * function of the API) and checks its `nc_handler` descriptor: 0 and *h (and
 * the handle in *dl, for dlclose), or -1 with a message naming the path
 * and dlerror() or the version found.
 */
int	nc_module_load(const char *path, bool now,
	    const struct nc_handler **h, void **dl, char *err, size_t errlen);

#endif /* NC_MODULE_H */
