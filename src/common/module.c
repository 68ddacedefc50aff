/*
 * Handler modules: dlopen() with every symbol resolved now (RTLD_NOW), so
 * a module that needs what the program does not export fails here, with
 * dlerror()'s words, and not in the middle of a connection.
 */

#include <dlfcn.h>
#include <stdio.h>

#include "nc-int.h"
#include "nc-module.h"

int
nc_module_load(const char *path, bool now, const struct nc_handler **hp,
    void **dlp, char *err, size_t errlen)
{
	const struct nc_handler	*h;
	void			*dl;

	if ((dl = dlopen(path, (now ? RTLD_NOW : RTLD_LAZY) | RTLD_LOCAL)) ==
	    NULL) {
		snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
		return -1;
	}
	if ((h = dlsym(dl, "nc_handler")) == NULL) {
		snprintf(err, errlen, "%s exports no nc_handler descriptor",
		    path);
		dlclose(dl);
		return -1;
	}
	if (h->api_version != NC_HANDLER_API_VERSION) {
		snprintf(err, errlen, "%s is built for handler API version %d, "
		    "this netcluster has version %d", path, h->api_version,
		    NC_HANDLER_API_VERSION);
		dlclose(dl);
		return -1;
	}
	if (h->init == NULL || h->connection == NULL) {
		snprintf(err, errlen, "%s: its nc_handler has no init or no "
		    "connection function", path);
		dlclose(dl);
		return -1;
	}
	*hp = h;
	if (dlp != NULL)
		*dlp = dl;
	return 0;
}
