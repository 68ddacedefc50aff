/*
 * A control request, parsed and checked; see request.c.
 */

#ifndef REQUEST_H
#define REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define REQUEST_MAX_SERVICE	64	/* bytes of a service name */

enum request_command {
	REQ_STATUS,
	REQ_WORKERS,
	REQ_CONNECTIONS,
	REQ_RELOAD,
	REQ_UPGRADE,
	REQ_STOP,
	REQ_SEND,
	REQ_METRICS,
	REQ_DRAIN,
	REQ_UNDRAIN
};

struct request {
	enum request_command	 command;
	bool			 has_service;
	char			 service[REQUEST_MAX_SERVICE + 1];
	json_t			*message;	/* send: any JSON value */
	bool			 json;		/* metrics: as JSON, not text */
};

/*
 * 0, or -1 with a message for the client in err. On 0, the caller owns
 * req->message (json_decref).
 */
int		 request_parse(const char *line, size_t len, struct request *,
		    char *err, size_t errlen);
const char	*request_name(enum request_command);

#endif /* REQUEST_H */
