/*
 * A control request, parsed and checked against the command table
 * (nc-command.h); see request.c.
 */

#ifndef REQUEST_H
#define REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "nc-command.h"

#define REQUEST_MAX_SERVICE	64	/* bytes of a service name */

struct request {
	enum nc_command	 command;
	bool		 has_service;
	char		 service[REQUEST_MAX_SERVICE + 1];
	json_t		*message;	/* send: any JSON value */
	bool		 json;		/* metrics: as JSON, not text */
	int		 batch;		/* reload: 0 = not given */
	int		 workers;	/* scale: the new size, 0 = not given */
	int		 delta;		/* scale: +-K, 0 = not given */
};

/*
 * 0, or -1 with a message for the client in err. On 0, the caller owns
 * req->message (json_decref).
 */
int		 request_parse(const char *line, size_t len, struct request *,
		    char *err, size_t errlen);
/* A command's name, from the table. */
const char	*request_name(enum nc_command);

#endif /* REQUEST_H */
