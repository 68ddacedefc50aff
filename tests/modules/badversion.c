/* A module built for another version of the handler API: refused. */

#include "netcluster-handler.h"

NC_HANDLER_EXPORT const struct nc_handler nc_handler = {
	.api_version = NC_HANDLER_API_VERSION + 41,
	.name = "badversion",
};
