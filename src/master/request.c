/*
 * A control request: one line of JSON, {"command": NAME} with an optional
 * "service": NAME; "send" takes a service and a "message" (any JSON value
 * of at most NC_CLUSTER_MESSAGE_MAX bytes). Parsing is apart from the socket so that it can be
 * checked (and fuzzed) on its own; it needs nothing of the master.
 */

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "netcluster.h"
#include "request.h"

static const char *const request_names[] = {
	[REQ_STATUS] = "status",
	[REQ_WORKERS] = "workers",
	[REQ_CONNECTIONS] = "connections",
	[REQ_RELOAD] = "reload",
	[REQ_UPGRADE] = "upgrade",
	[REQ_STOP] = "stop",
	[REQ_SEND] = "send",
	[REQ_METRICS] = "metrics",
	[REQ_DRAIN] = "drain",
	[REQ_UNDRAIN] = "undrain"
};

const char *
request_name(enum request_command cmd)
{
	return request_names[cmd];
}

int
request_parse(const char *line, size_t len, struct request *req, char *err,
    size_t errlen)
{
	json_error_t	 jerr;
	json_t		*root, *cmd, *svc, *v, *msg, *format;
	const char	*key;
	char		*text;
	size_t		 i;
	int		 rc = -1;

	memset(req, 0, sizeof *req);
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		snprintf(err, errlen, "bad request: %s", root == NULL ?
		    jerr.text : "not a JSON object");
		goto out;
	}
	json_object_foreach(root, key, v) {
		if (strcmp(key, "command") != 0 && strcmp(key, "service") != 0 &&
		    strcmp(key, "message") != 0 && strcmp(key, "format") != 0) {
			snprintf(err, errlen, "bad request: unknown key "
			    "\"%.32s\"", key);
			goto out;
		}
	}
	cmd = json_object_get(root, "command");
	if (!json_is_string(cmd)) {
		snprintf(err, errlen, "bad request: \"command\" must be a "
		    "string");
		goto out;
	}
	svc = json_object_get(root, "service");
	if (svc != NULL && (!json_is_string(svc) ||
	    json_string_length(svc) == 0 ||
	    json_string_length(svc) >= sizeof req->service ||
	    strlen(json_string_value(svc)) != json_string_length(svc))) {
		snprintf(err, errlen, "bad request: \"service\" must be a "
		    "name");
		goto out;
	}
	for (i = 0; i < sizeof request_names / sizeof request_names[0]; i++)
		if (strcmp(json_string_value(cmd), request_names[i]) == 0)
			break;
	if (i == sizeof request_names / sizeof request_names[0] ||
	    strlen(json_string_value(cmd)) != json_string_length(cmd)) {
		snprintf(err, errlen, "unknown command \"%.32s\" (expected "
		    "status, workers, connections, reload, upgrade, stop, "
		    "send, metrics, drain or undrain)",
		    json_string_value(cmd));
		goto out;
	}
	req->command = (enum request_command)i;
	msg = json_object_get(root, "message");
	if (req->command == REQ_SEND && (svc == NULL || msg == NULL)) {
		snprintf(err, errlen, "bad request: send needs \"service\" "
		    "and \"message\"");
		goto out;
	}
	if (req->command != REQ_SEND && msg != NULL) {
		snprintf(err, errlen, "bad request: only send takes "
		    "\"message\"");
		goto out;
	}
	format = json_object_get(root, "format");
	if (format != NULL && req->command != REQ_METRICS) {
		snprintf(err, errlen, "bad request: only metrics takes "
		    "\"format\"");
		goto out;
	}
	if (format != NULL && (!json_is_string(format) ||
	    (strcmp(json_string_value(format), "text") != 0 &&
	    strcmp(json_string_value(format), "json") != 0))) {
		snprintf(err, errlen, "bad request: \"format\" must be "
		    "\"text\" or \"json\"");
		goto out;
	}
	req->json = format != NULL && strcmp(json_string_value(format),
	    "json") == 0;
	if (msg != NULL) {
		if ((text = json_dumps(msg, JSON_COMPACT |
		    JSON_ENCODE_ANY)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		i = strlen(text);
		free(text);
		if (i > NC_CLUSTER_MESSAGE_MAX) {
			snprintf(err, errlen, "message of %zu bytes, over the "
			    "limit of %d", i, NC_CLUSTER_MESSAGE_MAX);
			goto out;
		}
		req->message = json_incref(msg);
	}
	if (svc != NULL) {
		req->has_service = true;
		memcpy(req->service, json_string_value(svc),
		    json_string_length(svc) + 1);
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}
