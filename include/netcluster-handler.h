/*
 * netcluster-handler.h: handler modules for netcluster-worker.
 *
 * A module is a shared object that exports one descriptor named
 * `nc_handler` of type `const struct nc_handler`. A service with
 * "handler": "module" and "module": "/path/to/x.so" in netcluster.json
 * runs it: the worker dlopen()s the file, checks the descriptor's
 * api_version, calls init() once with the service's "options" object as
 * JSON text, then connection() for every client, and fini() when it stops.
 * Modules are written against the public API of netcluster.h; the worker
 * provides those functions, so a module needs no link to libnetcluster.
 */

#ifndef NETCLUSTER_HANDLER_H
#define NETCLUSTER_HANDLER_H

#include "netcluster.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NC_HANDLER_API_VERSION	1

/* Marks the descriptor exported, even under -fvisibility=hidden:
 *	NC_HANDLER_EXPORT const struct nc_handler nc_handler = { ... };
 */
#define NC_HANDLER_EXPORT	NC_EXTERN

struct nc_handler {
	int		  api_version;	/* NC_HANDLER_API_VERSION */
	const char	 *name;
	/*
	 * Once, before any connection: options_json is the service's
	 * "options" object ("{}" when there is none). Returns 0, or a
	 * negative code and the worker stops with that error. *state is
	 * passed to the other calls.
	 */
	int		(*init)(const char *options_json, void **state);
	/* A new client; the module listens to its events from here. */
	void		(*connection)(struct nc_socket *, void *state);
	/* The worker stops (may be NULL). */
	void		(*fini)(void *state);
};

#ifdef __cplusplus
}
#endif

#endif /* NETCLUSTER_HANDLER_H */
