/*
 * A control request: one line of JSON, {"command": NAME} and the keys its
 * row of the command table (nc-command.h) takes: "service" (a name),
 * "message" (send: any JSON value of at most NC_CLUSTER_MESSAGE_MAX
 * bytes), "format" (metrics: "text" or "json"), "batch" (reload), and
 * "workers" or "delta" (scale). Parsing is apart from the socket so that
 * it can be checked (and fuzzed) on its own; it needs nothing of the
 * master.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "netcluster.h"
#include "nc-command.h"
#include "request.h"

#define REQUEST_NKEYS	6	/* the bits of NC_KEY_ALL */

const char *
request_name(enum nc_command cmd)
{
	return nc__commands[cmd].name;
}

/* The keys of a request (bits NC_KEY_*) present in root. */
static int
request_keys(json_t *root)
{
	int	i, keys = 0;

	for (i = 0; i < REQUEST_NKEYS; i++)
		if (json_object_get(root, nc__command_key(1 << i)) != NULL)
			keys |= 1 << i;
	return keys;
}

/* Joins n items into buf as "a, b CONJ c". */
static void
request_join(char *buf, size_t len, const char *const *items, int n,
    const char *conj)
{
	size_t	off = 0;
	int	i, w;

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i == 0 || i + 1 < n)
			w = snprintf(buf + off, len - off, "%s%s",
			    i == 0 ? "" : ", ", items[i]);
		else
			w = snprintf(buf + off, len - off, " %s %s", conj,
			    items[i]);
		if (w < 0 || (size_t)w >= len - off)
			return;
		off += (size_t)w;
	}
}

/*
 * The keys the command's row says a request must have: 0 when they are
 * there, else -1 and "bad request: scale needs "service" and one of
 * "workers" or "delta"" in err.
 */
static int
request_needs(const struct nc_command_entry *ce, int keys, char *err,
    size_t errlen)
{
	const char	*need[REQUEST_NKEYS + 1], *alt[REQUEST_NKEYS];
	char		 quoted[REQUEST_NKEYS][16], alts[128], oneof[136];
	char		 list[256];
	int		 one = keys & ce->one_of, nneed = 0, nalt = 0, i;

	if ((keys & ce->needs) == ce->needs && (ce->one_of == 0 ||
	    (one != 0 && (one & (one - 1)) == 0)))
		return 0;
	for (i = 0; i < REQUEST_NKEYS; i++) {
		snprintf(quoted[i], sizeof quoted[i], "\"%s\"",
		    nc__command_key(1 << i));
		if (ce->needs & (1 << i))
			need[nneed++] = quoted[i];
		if (ce->one_of & (1 << i))
			alt[nalt++] = quoted[i];
	}
	if (nalt > 0) {
		request_join(alts, sizeof alts, alt, nalt, "or");
		snprintf(oneof, sizeof oneof, "one of %s", alts);
		need[nneed++] = oneof;
	}
	request_join(list, sizeof list, need, nneed, "and");
	snprintf(err, errlen, "bad request: %s needs %s", ce->name, list);
	return -1;
}

/* An integer key from min to max, 0 excluded; 0 when absent. */
static int
request_count(json_t *root, int key, int min, int max, int *out, char *err,
    size_t errlen)
{
	json_t		*v;
	json_int_t	 n;

	if ((v = json_object_get(root, nc__command_key(key))) == NULL)
		return 0;
	n = json_is_integer(v) ? json_integer_value(v) : 0;
	if (n == 0 || n < min || n > max) {
		snprintf(err, errlen, "bad request: \"%s\" must be an integer "
		    "from %d to %d%s", nc__command_key(key), min, max,
		    min < 0 ? ", not 0" : "");
		return -1;
	}
	*out = (int)n;
	return 0;
}

/*
 * The values of the keys a request may have, checked, into req: 0, or -1
 * with a message in err.
 */
static int
request_values(json_t *root, struct request *req, char *err, size_t errlen)
{
	json_t	*svc = json_object_get(root, "service"), *msg, *format;
	char	*text;
	size_t	 n;

	format = json_object_get(root, "format");
	if (format != NULL && (!json_is_string(format) ||
	    (strcmp(json_string_value(format), "text") != 0 &&
	    strcmp(json_string_value(format), "json") != 0))) {
		snprintf(err, errlen, "bad request: \"format\" must be "
		    "\"text\" or \"json\"");
		return -1;
	}
	req->json = format != NULL && strcmp(json_string_value(format),
	    "json") == 0;
	if (request_count(root, NC_KEY_BATCH, 1, NC_COMMAND_MAX_COUNT,
	    &req->batch, err, errlen) != 0 ||
	    request_count(root, NC_KEY_WORKERS, 1, NC_COMMAND_MAX_COUNT,
	    &req->workers, err, errlen) != 0 ||
	    request_count(root, NC_KEY_DELTA, -NC_COMMAND_MAX_COUNT,
	    NC_COMMAND_MAX_COUNT, &req->delta, err, errlen) != 0)
		return -1;
	if ((msg = json_object_get(root, "message")) != NULL) {
		if ((text = json_dumps(msg, JSON_COMPACT |
		    JSON_ENCODE_ANY)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		n = strlen(text);
		free(text);
		if (n > NC_CLUSTER_MESSAGE_MAX) {
			snprintf(err, errlen, "message of %zu bytes, over the "
			    "limit of %d", n, NC_CLUSTER_MESSAGE_MAX);
			return -1;
		}
		req->message = json_incref(msg);
	}
	if (svc != NULL) {
		req->has_service = true;
		memcpy(req->service, json_string_value(svc),
		    json_string_length(svc) + 1);
	}
	return 0;
}

int
request_parse(const char *line, size_t len, struct request *req, char *err,
    size_t errlen)
{
	const struct nc_command_entry	*ce;
	json_error_t			 jerr;
	json_t				*root, *cmd, *svc, *v;
	const char			*key;
	char				 names[256];
	size_t				 n;
	int				 keys, k, rc = -1;

	memset(req, 0, sizeof *req);
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		snprintf(err, errlen, "bad request: %s", root == NULL ?
		    jerr.text : "not a JSON object");
		goto out;
	}
	json_object_foreach(root, key, v) {
		for (k = 0; k < REQUEST_NKEYS; k++)
			if (strcmp(key, nc__command_key(1 << k)) == 0)
				break;
		if (strcmp(key, "command") != 0 && k == REQUEST_NKEYS) {
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
	if ((ce = nc__command_find(json_string_value(cmd))) == NULL ||
	    strlen(json_string_value(cmd)) != json_string_length(cmd)) {
		(void)nc__command_names(0, "or", names, sizeof names);
		snprintf(err, errlen, "unknown command \"%.32s\" (expected "
		    "%s)", json_string_value(cmd), names);
		goto out;
	}
	req->command = ce->command;
	keys = request_keys(root);
	if (request_needs(ce, keys, err, errlen) != 0)
		goto out;
	for (k = 0; k < REQUEST_NKEYS; k++) {
		if ((keys & ~ce->takes & (1 << k)) == 0)
			continue;
		n = nc__command_names(1 << k, "and", names, sizeof names);
		snprintf(err, errlen, "bad request: only %s take%s \"%s\"",
		    names, n == 1 ? "s" : "", nc__command_key(1 << k));
		goto out;
	}
	if (request_values(root, req, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	json_decref(root);
	return rc;
}
