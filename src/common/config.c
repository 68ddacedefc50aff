/*
 * netcluster.json: parse with jansson, check every key against a table
 * per object level, and report each error as FILE:LINE:COL: KEY.PATH:
 * message. jansson keeps no positions in a decoded value, so a small
 * scanner walks the file text to the key path; it runs only on error.
 * The listen grammar is in listen.c.
 */

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nc-config.h"
#include "nc-int.h"

#define CONFIG_MAX_DEPTH	8
#define CONFIG_MAX_WORKERS	1024
#define CONFIG_DEFAULT_CONTROL	"/run/netcluster/control.sock"

struct config_seg {
	const char	*key;	/* NULL for an array index */
	size_t		 index;
};

struct config_ctx {
	const char		*name;
	const char		*text;
	size_t			 len;
	struct config_seg	 segs[CONFIG_MAX_DEPTH];
	size_t			 nsegs;
	char			*errors;
	size_t			 errlen;
	int			 nerrors;
};

/* The text scanner: just enough JSON to find where a path points. */
struct scan {
	const char	*p;
	const char	*end;
};

static void
scan_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
scan_string(struct scan *s, const char **start, size_t *len)
{
	if (s->p >= s->end || *s->p != '"')
		return -1;
	*start = ++s->p;
	while (s->p < s->end && *s->p != '"') {
		if (*s->p == '\\' && s->p + 1 < s->end)
			s->p++;
		s->p++;
	}
	if (s->p >= s->end)
		return -1;
	*len = (size_t)(s->p - *start);
	s->p++;
	return 0;
}

static int
scan_value(struct scan *s, int depth)
{
	const char	*k, *at;
	size_t		 kl;
	char		 close;

	scan_ws(s);
	if (s->p >= s->end || depth > 64)
		return -1;
	if (*s->p == '"')
		return scan_string(s, &k, &kl);
	if (*s->p == '{' || *s->p == '[') {
		close = *s->p == '{' ? '}' : ']';
		s->p++;
		for (;;) {
			scan_ws(s);
			if (s->p < s->end && *s->p == close) {
				s->p++;
				return 0;
			}
			if (close == '}') {
				if (scan_string(s, &k, &kl) == -1)
					return -1;
				scan_ws(s);
				if (s->p >= s->end || *s->p++ != ':')
					return -1;
			}
			at = s->p;
			if (scan_value(s, depth + 1) == -1 || s->p == at)
				return -1;	/* never loop without moving */
			scan_ws(s);
			if (s->p < s->end && *s->p == ',')
				s->p++;
		}
	}
	while (s->p < s->end && (*s->p == '\0' ||
	    strchr(",}] \t\r\n", *s->p) == NULL))
		s->p++;
	return 0;
}

/* Where the value (or, with at_key, the key) of the path starts. */
static const char *
config_locate(const struct config_ctx *c, bool at_key)
{
	struct scan	 s = { c->text, c->text + c->len };
	const char	*k, *key_at = c->text;
	size_t		 kl, i, idx;

	for (i = 0; i < c->nsegs; i++) {
		scan_ws(&s);
		if (s.p >= s.end)
			return key_at;
		if (c->segs[i].key != NULL) {
			if (*s.p != '{')
				return s.p;
			s.p++;
			for (;;) {
				scan_ws(&s);
				key_at = s.p;
				if (scan_string(&s, &k, &kl) == -1)
					return key_at;
				scan_ws(&s);
				if (s.p >= s.end || *s.p++ != ':')
					return key_at;
				if (kl == strlen(c->segs[i].key) &&
				    memcmp(k, c->segs[i].key, kl) == 0)
					break;
				if (scan_value(&s, 0) == -1)
					return key_at;
				scan_ws(&s);
				if (s.p < s.end && *s.p == ',')
					s.p++;
			}
		} else {
			if (*s.p != '[')
				return s.p;
			s.p++;
			for (idx = 0; idx < c->segs[i].index; idx++) {
				if (scan_value(&s, 0) == -1)
					return s.p;
				scan_ws(&s);
				if (s.p < s.end && *s.p == ',')
					s.p++;
			}
			key_at = s.p;
		}
	}
	scan_ws(&s);
	return at_key ? key_at : s.p;
}

static void
config_position(const struct config_ctx *c, const char *at, int *line,
    int *col)
{
	const char	*p;

	*line = 1;
	*col = 1;
	for (p = c->text; p < at && p < c->text + c->len; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else if ((*p & 0xc0) != 0x80)	/* characters, not bytes */
			(*col)++;
	}
}

static void
config_path(const struct config_ctx *c, char *buf, size_t len)
{
	size_t	i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < c->nsegs && o < len; i++) {
		if (c->segs[i].key != NULL)
			o += (size_t)snprintf(buf + o, len - o, "%s%s",
			    i == 0 ? "" : ".", c->segs[i].key);
		else
			o += (size_t)snprintf(buf + o, len - o, "[%zu]",
			    c->segs[i].index);
	}
}

static void
config_append(struct config_ctx *c, const char *line)
{
	size_t	 n = strlen(line);
	char	*p;

	if ((p = realloc(c->errors, c->errlen + n + 2)) == NULL)
		return;
	c->errors = p;
	memcpy(c->errors + c->errlen, line, n);
	c->errlen += n;
	c->errors[c->errlen++] = '\n';
	c->errors[c->errlen] = '\0';
}

static void __attribute__((format(printf, 3, 0)))
config_verror(struct config_ctx *c, bool at_key, const char *fmt, va_list ap)
{
	char	path[256], msg[512], line[1024];
	int	l, col;

	c->nerrors++;
	if (c->nerrors > NC_CONFIG_MAX_ERRORS)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	config_path(c, path, sizeof path);
	config_position(c, config_locate(c, at_key), &l, &col);
	snprintf(line, sizeof line, "%s:%d:%d: %s%s%s", c->name, l, col, path,
	    path[0] != '\0' ? ": " : "", msg);
	config_append(c, line);
}

static void __attribute__((format(printf, 3, 4)))
config_error(struct config_ctx *c, bool at_key, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	config_verror(c, at_key, fmt, ap);
	va_end(ap);
}

static void
config_push_key(struct config_ctx *c, const char *key)
{
	if (c->nsegs < CONFIG_MAX_DEPTH) {
		c->segs[c->nsegs].key = key;
		c->segs[c->nsegs].index = 0;
	}
	c->nsegs++;
}

static void
config_push_index(struct config_ctx *c, size_t index)
{
	if (c->nsegs < CONFIG_MAX_DEPTH) {
		c->segs[c->nsegs].key = NULL;
		c->segs[c->nsegs].index = index;
	}
	c->nsegs++;
}

static void
config_pop(struct config_ctx *c)
{
	c->nsegs--;
}

void
nc_config_error(const struct nc_config *cfg, char **errors, const char *path,
    const char *fmt, ...)
{
	struct config_ctx	 c;
	char			 keys[CONFIG_MAX_DEPTH][64], *end;
	const char		*p = path;
	size_t			 n, nkeys = 0;
	va_list			 ap;

	memset(&c, 0, sizeof c);
	c.name = cfg->file;
	c.text = cfg->text != NULL ? cfg->text : "";
	c.len = cfg->text != NULL ? cfg->textlen : 0;
	c.errors = *errors;
	c.errlen = *errors != NULL ? strlen(*errors) : 0;
	while (*p != '\0' && c.nsegs < CONFIG_MAX_DEPTH) {
		if (*p == '[') {
			config_push_index(&c, strtoul(p + 1, &end, 10));
			p = *end == ']' ? end + 1 : end;
		} else {
			n = strcspn(p, ".[");
			snprintf(keys[nkeys], sizeof keys[nkeys], "%.*s",
			    (int)n, p);
			config_push_key(&c, keys[nkeys++]);
			p += n;
		}
		if (*p == '.')
			p++;
	}
	va_start(ap, fmt);
	config_verror(&c, false, fmt, ap);
	va_end(ap);
	*errors = c.errors;
}

/* What was found, for "got ...": the value's JSON, shortened. */
static void
config_got(const json_t *v, char *buf, size_t len)
{
	char	*s;

	s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (s == NULL) {
		snprintf(buf, len, "?");
		return;
	}
	if (strlen(s) > 40)
		snprintf(buf, len, "%.37s...", s);
	else
		snprintf(buf, len, "%s", s);
	free(s);
}

static const char *
config_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

static int
config_int(struct config_ctx *c, json_t *v, long long min, long long max,
    int *out)
{
	char	got[64];

	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		config_got(v, got, sizeof got);
		config_error(c, false, "expected an integer from %lld to %lld, "
		    "got %s", min, max, got);
		return -1;
	}
	*out = (int)json_integer_value(v);
	return 0;
}

static int
config_bool(struct config_ctx *c, json_t *v, bool *out)
{
	char	got[64];

	if (!json_is_boolean(v)) {
		config_got(v, got, sizeof got);
		config_error(c, false, "expected true or false, got %s", got);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

static int
config_string(struct config_ctx *c, json_t *v, size_t maxlen, char **out)
{
	char	got[64];

	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > maxlen ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		config_got(v, got, sizeof got);
		config_error(c, false, "expected a non-empty string of at most "
		    "%zu bytes, got %s", maxlen, got);
		return -1;
	}
	free(*out);
	if ((*out = strdup(json_string_value(v))) == NULL) {
		config_error(c, false, "out of memory");
		return -1;
	}
	return 0;
}

static int
config_enum(struct config_ctx *c, json_t *v, const char *const *names,
    size_t n, int *out)
{
	char	got[64], expected[256];
	size_t	i, o = 0;

	if (json_is_string(v)) {
		for (i = 0; i < n; i++) {
			if (strcmp(json_string_value(v), names[i]) == 0) {
				*out = (int)i;
				return 0;
			}
		}
	}
	for (i = 0; i < n && o < sizeof expected; i++)
		o += (size_t)snprintf(expected + o, sizeof expected - o,
		    "%s%s", i == 0 ? "" : ", ", names[i]);
	config_got(v, got, sizeof got);
	config_error(c, false, "expected one of %s, got %s", expected, got);
	return -1;
}

static const char *const mode_names[] = {
	"shared", "round-robin", "exclusive", "reuseport"
};
static const char *const handler_names[] = {
	"echo", "proxy", "module", "program"
};
static const char *const sockets_names[] = { "inherit", "cluster" };
static const char *const balance_names[] = {
	"round-robin", "least-connections"
};
static const char *const level_names[] = {
	"err", "warning", "notice", "info", "debug", "error"
};

const char *
nc_config_mode_name(enum nc_mode m)
{
	return (size_t)m < sizeof mode_names / sizeof mode_names[0] ?
	    mode_names[m] : "unknown";
}

const char *
nc_config_handler_name(enum nc_handler_kind h)
{
	return (size_t)h < sizeof handler_names / sizeof handler_names[0] ?
	    handler_names[h] : "unknown";
}

/* Checks an upstream: HOST:PORT, [V6]:PORT or unix:PATH. */
static int
config_upstream(struct config_ctx *c, json_t *v, char **out)
{
	struct nc_listen_addr	a;
	char			err[256], got[64];

	if (config_string(c, v, 1024, out) != 0)
		return -1;
	if (nc_config_parse_listen(*out, &a, err, sizeof err) != 0 ||
	    (a.kind == NC_LISTEN_TCP && (a.host == NULL || a.port == 0)) ||
	    a.kind == NC_LISTEN_FD || a.kind == NC_LISTEN_SYSTEMD) {
		if (a.text != NULL)
			nc_config_listen_clear(&a);
		config_got(v, got, sizeof got);
		config_error(c, false, "expected HOST:PORT, [V6]:PORT or "
		    "unix:PATH with a port from 1 to 65535, got %s", got);
		return -1;
	}
	nc_config_listen_clear(&a);
	return 0;
}

static int
config_array(struct config_ctx *c, json_t *v, bool nonempty)
{
	char	got[64];

	if (!json_is_array(v) || (nonempty && json_array_size(v) == 0)) {
		config_got(v, got, sizeof got);
		config_error(c, false, "expected %s array, got %s",
		    nonempty ? "a non-empty" : "an", got);
		return -1;
	}
	return 0;
}

static const char *const proxy_keys[] = {
	"upstream", "balance", "connect_timeout_ms", "down_ms", "send_proxy"
};
static const char *const send_proxy_names[] = { "v1", "v2" };

#define CONFIG_MAX_ARGS		256	/* command words, env entries */
#define CONFIG_MAX_ARG		4096	/* bytes of one */

/* "command": ["/abs/path", "arg", ...], kept as a NULL-ended argv. */
static void
config_command(struct config_ctx *c, json_t *v, struct nc_service *svc)
{
	json_t	*e;
	size_t	 i;
	char	 got[64];

	if (config_array(c, v, true) != 0)
		return;
	if (json_array_size(v) > CONFIG_MAX_ARGS) {
		config_error(c, false, "at most %d words", CONFIG_MAX_ARGS);
		return;
	}
	if ((svc->command = calloc(json_array_size(v) + 1,
	    sizeof *svc->command)) == NULL) {
		config_error(c, false, "out of memory");
		return;
	}
	json_array_foreach(v, i, e) {
		config_push_index(c, i);
		if (json_is_string(e) && json_string_length(e) == 0 &&
		    i > 0) {
			/* An empty argument is a legal one. */
			if ((svc->command[svc->ncommand] = strdup("")) != NULL)
				svc->ncommand++;
		} else if (config_string(c, e, CONFIG_MAX_ARG,
		    &svc->command[svc->ncommand]) == 0) {
			if (i == 0 && svc->command[0][0] != '/') {
				config_got(e, got, sizeof got);
				config_error(c, false, "expected an absolute "
				    "path (no shell runs it), got %s", got);
			}
			svc->ncommand++;
		}
		config_pop(c);
	}
}

/* "env": {"NAME": "value", ...}, kept as "NAME=value" strings. */
static void
config_env(struct config_ctx *c, json_t *v, struct nc_service *svc)
{
	const char	*key;
	json_t		*e;
	size_t		 n;
	char		 got[64];

	if (!json_is_object(v)) {
		config_error(c, false, "expected an object, got %s",
		    config_type_name(v));
		return;
	}
	if (json_object_size(v) > CONFIG_MAX_ARGS) {
		config_error(c, false, "at most %d variables", CONFIG_MAX_ARGS);
		return;
	}
	if ((svc->env = calloc(json_object_size(v) + 1,
	    sizeof *svc->env)) == NULL) {
		config_error(c, false, "out of memory");
		return;
	}
	json_object_foreach(v, key, e) {
		config_push_key(c, key);
		n = strlen(key);
		if (n == 0 || n > 255 || strchr(key, '=') != NULL ||
		    strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
		    "vwxyz0123456789_") != n || (key[0] >= '0' && key[0] <= '9'))
			config_error(c, true, "not a variable name (letters, "
			    "digits and _, not starting with a digit)");
		else if (strncmp(key, "LISTEN_", 7) == 0 ||
		    strncmp(key, "NETCLUSTER_", 11) == 0)
			config_error(c, true, "netclusterd sets %s itself", key);
		else if (!json_is_string(e) || json_string_length(e) >
		    CONFIG_MAX_ARG || strlen(json_string_value(e)) !=
		    json_string_length(e)) {
			config_got(e, got, sizeof got);
			config_error(c, false, "expected a string of at most %d "
			    "bytes, got %s", CONFIG_MAX_ARG, got);
		} else if (asprintf(&svc->env[svc->nenv], "%s=%s", key,
		    json_string_value(e)) == -1) {
			svc->env[svc->nenv] = NULL;
			config_error(c, false, "out of memory");
		} else
			svc->nenv++;
		config_pop(c);
	}
}

/* Keys of the built-in handlers that a program sets for itself. */
static const char *const program_refused_keys[] = {
	"max_connections", "allow_half_open", "pause_on_connect",
	"idle_timeout_ms", "no_delay", "keep_alive",
	"keep_alive_initial_delay_ms", "proxy_protocol", "options"
};
static const char *const program_keys[] = {
	"command", "env", "cwd", "sockets", "messages"
};

static void
config_service(struct config_ctx *c, json_t *obj, struct nc_service *svc)
{
	const char	*key;
	json_t		*v, *e;
	size_t		 i;
	char		 err[256];
	int		 iv;

	svc->mode = NC_MODE_SHARED;
	svc->handler = NC_HANDLER_ECHO;
	svc->backlog = 511;
	svc->no_delay = true;
	svc->connect_timeout_ms = 5000;
	svc->down_ms = 10000;

	json_object_foreach(obj, key, v) {
		config_push_key(c, key);
		if (strcmp(key, "name") == 0)
			(void)config_string(c, v, 64, &svc->name);
		else if (strcmp(key, "handler") == 0) {
			if (config_enum(c, v, handler_names, 4, &iv) == 0)
				svc->handler = (enum nc_handler_kind)iv;
		} else if (strcmp(key, "mode") == 0) {
			if (config_enum(c, v, mode_names, 4, &iv) == 0)
				svc->mode = (enum nc_mode)iv;
		} else if (strcmp(key, "listen") == 0) {
			if (config_array(c, v, true) == 0) {
				svc->listen = calloc(json_array_size(v),
				    sizeof *svc->listen);
				json_array_foreach(v, i, e) {
					config_push_index(c, i);
					if (!json_is_string(e)) {
						char	got[64];

						config_got(e, got, sizeof got);
						config_error(c, false, "expected "
						    "a string, got %s", got);
					} else if (svc->listen != NULL &&
					    nc_config_parse_listen(
					    json_string_value(e),
					    &svc->listen[svc->nlisten], err,
					    sizeof err) != 0)
						config_error(c, false, "%s", err);
					else if (svc->listen != NULL)
						svc->nlisten++;
					config_pop(c);
				}
			}
		} else if (strcmp(key, "backlog") == 0)
			(void)config_int(c, v, 1, 65535, &svc->backlog);
		else if (strcmp(key, "max_connections") == 0)
			(void)config_int(c, v, 0, 1000000,
			    &svc->max_connections);
		else if (strcmp(key, "allow_half_open") == 0)
			(void)config_bool(c, v, &svc->allow_half_open);
		else if (strcmp(key, "pause_on_connect") == 0)
			(void)config_bool(c, v, &svc->pause_on_connect);
		else if (strcmp(key, "idle_timeout_ms") == 0)
			(void)config_int(c, v, 0, 86400000,
			    &svc->idle_timeout_ms);
		else if (strcmp(key, "no_delay") == 0)
			(void)config_bool(c, v, &svc->no_delay);
		else if (strcmp(key, "keep_alive") == 0)
			(void)config_bool(c, v, &svc->keep_alive);
		else if (strcmp(key, "keep_alive_initial_delay_ms") == 0)
			(void)config_int(c, v, 0, 86400000,
			    &svc->keep_alive_initial_delay_ms);
		else if (strcmp(key, "upstream") == 0) {
			if (config_array(c, v, true) == 0) {
				svc->upstream = calloc(json_array_size(v),
				    sizeof *svc->upstream);
				json_array_foreach(v, i, e) {
					config_push_index(c, i);
					if (svc->upstream != NULL &&
					    config_upstream(c, e,
					    &svc->upstream[svc->nupstream]) == 0)
						svc->nupstream++;
					else if (svc->upstream != NULL) {
						free(svc->upstream[
						    svc->nupstream]);
						svc->upstream[svc->nupstream] =
						    NULL;
					}
					config_pop(c);
				}
			}
		} else if (strcmp(key, "balance") == 0) {
			if (config_enum(c, v, balance_names, 2, &iv) == 0)
				svc->balance = (enum nc_balance)iv;
		} else if (strcmp(key, "connect_timeout_ms") == 0)
			(void)config_int(c, v, 1, 3600000,
			    &svc->connect_timeout_ms);
		else if (strcmp(key, "down_ms") == 0)
			(void)config_int(c, v, 0, 3600000, &svc->down_ms);
		else if (strcmp(key, "send_proxy") == 0) {
			if (config_enum(c, v, send_proxy_names, 2, &iv) == 0)
				svc->send_proxy = iv + 1;
		} else if (strcmp(key, "proxy_protocol") == 0)
			(void)config_bool(c, v, &svc->proxy_protocol);
		else if (strcmp(key, "module") == 0)
			(void)config_string(c, v, PATH_MAX, &svc->module);
		else if (strcmp(key, "command") == 0)
			config_command(c, v, svc);
		else if (strcmp(key, "env") == 0)
			config_env(c, v, svc);
		else if (strcmp(key, "cwd") == 0) {
			if (config_string(c, v, PATH_MAX, &svc->cwd) == 0 &&
			    svc->cwd[0] != '/')
				config_error(c, false, "expected an absolute "
				    "directory, got \"%s\"", svc->cwd);
		} else if (strcmp(key, "sockets") == 0) {
			if (config_enum(c, v, sockets_names, 2, &iv) == 0)
				svc->sockets = (enum nc_sockets)iv;
		} else if (strcmp(key, "messages") == 0)
			(void)config_bool(c, v, &svc->messages);
		else if (strcmp(key, "options") == 0) {
			if (!json_is_object(v))
				config_error(c, false, "expected an object, "
				    "got %s", config_type_name(v));
			else
				svc->options = json_incref(v);
		} else
			config_error(c, true, "unknown key");
		config_pop(c);
	}

	if (json_object_get(obj, "name") == NULL)
		config_error(c, false, "missing key \"name\"");
	if (json_object_get(obj, "listen") == NULL)
		config_error(c, false, "missing key \"listen\"");
	if (svc->handler == NC_HANDLER_PROXY &&
	    json_object_get(obj, "upstream") == NULL)
		config_error(c, false, "handler proxy needs \"upstream\"");
	if (svc->handler == NC_HANDLER_MODULE &&
	    json_object_get(obj, "module") == NULL)
		config_error(c, false, "handler module needs \"module\"");
	for (i = 0; svc->handler != NC_HANDLER_PROXY &&
	    i < sizeof proxy_keys / sizeof proxy_keys[0]; i++) {
		if (json_object_get(obj, proxy_keys[i]) == NULL)
			continue;
		config_push_key(c, proxy_keys[i]);
		config_error(c, true, "only the proxy handler takes \"%s\"",
		    proxy_keys[i]);
		config_pop(c);
	}
	if (svc->handler != NC_HANDLER_MODULE &&
	    json_object_get(obj, "module") != NULL) {
		config_push_key(c, "module");
		config_error(c, true, "only the module handler takes "
		    "\"module\"");
		config_pop(c);
	}
	if (svc->handler == NC_HANDLER_PROGRAM && svc->name != NULL &&
	    strchr(svc->name, ':') != NULL) {
		config_push_key(c, "name");
		config_error(c, false, "a program's service name is its "
		    "sockets' name in LISTEN_FDNAMES, which ':' separates");
		config_pop(c);
	}
	if (svc->handler == NC_HANDLER_PROGRAM &&
	    json_object_get(obj, "command") == NULL)
		config_error(c, false, "handler program needs \"command\"");
	for (i = 0; svc->handler != NC_HANDLER_PROGRAM &&
	    i < sizeof program_keys / sizeof program_keys[0]; i++) {
		if (json_object_get(obj, program_keys[i]) == NULL)
			continue;
		config_push_key(c, program_keys[i]);
		config_error(c, true, "only the program handler takes \"%s\"",
		    program_keys[i]);
		config_pop(c);
	}
	for (i = 0; svc->handler == NC_HANDLER_PROGRAM &&
	    i < sizeof program_refused_keys / sizeof program_refused_keys[0];
	    i++) {
		if (json_object_get(obj, program_refused_keys[i]) == NULL)
			continue;
		config_push_key(c, program_refused_keys[i]);
		config_error(c, true, "the program handler does not take "
		    "\"%s\": the program sets it itself",
		    program_refused_keys[i]);
		config_pop(c);
	}
	if (svc->handler == NC_HANDLER_PROGRAM &&
	    svc->sockets == NC_SOCKETS_CLUSTER &&
	    json_object_get(obj, "messages") != NULL) {
		config_push_key(c, "messages");
		config_error(c, true, "a program linked with libnetcluster "
		    "(\"sockets\": \"cluster\") has its messages on its "
		    "channel; \"messages\" is for \"sockets\": \"inherit\"");
		config_pop(c);
	}
	if (svc->handler == NC_HANDLER_PROGRAM &&
	    svc->sockets == NC_SOCKETS_INHERIT &&
	    (svc->mode == NC_MODE_ROUND_ROBIN ||
	    svc->mode == NC_MODE_EXCLUSIVE)) {
		config_push_key(c, "mode");
		config_error(c, false, "mode %s needs a program linked with "
		    "libnetcluster (\"sockets\": \"cluster\"); a program given "
		    "its sockets (\"sockets\": \"inherit\", the default) runs "
		    "in shared or reuseport mode",
		    nc_config_mode_name(svc->mode));
		config_pop(c);
	}
}

/* The metrics or agent listener binds nothing a service or the other does. */
static void
config_endpoint_whole(struct config_ctx *c, struct nc_config *cfg,
    struct nc_endpoint *ep, const char *key)
{
	struct nc_service	*t;
	size_t			 j, l;

	if (!ep->on)
		return;
	config_push_key(c, key);
	config_push_key(c, "listen");
	for (j = 0; j < cfg->nservices; j++) {
		t = &cfg->services[j];
		for (l = 0; l < t->nlisten; l++)
			if (nc_config_listen_same(&ep->listen,
			    &t->listen[l]))
				config_error(c, false, "\"%s\" overlaps \"%s\" "
				    "of services[%zu] (%s)", ep->listen.text,
				    t->listen[l].text, j, t->name != NULL ?
				    t->name : "?");
	}
	if (ep == &cfg->agent && cfg->metrics.on &&
	    nc_config_listen_same(&ep->listen, &cfg->metrics.listen))
		config_error(c, false, "\"%s\" overlaps the metrics listener "
		    "\"%s\"", ep->listen.text, cfg->metrics.listen.text);
	config_pop(c);
	config_pop(c);
}

static void
config_check_whole(struct config_ctx *c, struct nc_config *cfg)
{
	struct nc_service	*s, *t;
	struct nc_listen_addr	*a;
	struct stat		 st;
	char			 dir[PATH_MAX], *slash;
	size_t			 i, j, k, l;

	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		config_push_key(c, "services");
		config_push_index(c, i);
		if (s->handler == NC_HANDLER_PROGRAM && cfg->nservices > 1) {
			config_push_key(c, "handler");
			config_error(c, false, "a program runs in place of "
			    "netcluster-worker: its service must be the only "
			    "one of the configuration");
			config_pop(c);
		}
		for (j = 0; j < i && s->name != NULL; j++) {
			t = &cfg->services[j];
			if (t->name != NULL && strcmp(s->name, t->name) == 0) {
				config_push_key(c, "name");
				config_error(c, false, "duplicate service name "
				    "\"%s\" (also services[%zu])", s->name, j);
				config_pop(c);
			}
		}
		for (k = 0; k < s->nlisten; k++) {
			a = &s->listen[k];
			config_push_key(c, "listen");
			config_push_index(c, k);
			for (j = 0; j <= i; j++) {
				t = &cfg->services[j];
				for (l = 0; l < (j == i ? k : t->nlisten); l++) {
					if (!nc_config_listen_same(a,
					    &t->listen[l]))
						continue;
					config_error(c, false, "\"%s\" overlaps "
					    "\"%s\" of services[%zu] (%s)",
					    a->text, t->listen[l].text, j,
					    t->name != NULL ? t->name : "?");
				}
			}
			if (a->kind == NC_LISTEN_UNIX) {
				snprintf(dir, sizeof dir, "%s", a->path);
				if ((slash = strrchr(dir, '/')) == NULL)
					snprintf(dir, sizeof dir, ".");
				else if (slash == dir)
					dir[1] = '\0';
				else
					*slash = '\0';
				if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode))
					config_error(c, false, "directory %s of "
					    "the unix socket does not exist",
					    dir);
			}
			config_pop(c);
			config_pop(c);
		}
		config_pop(c);
		config_pop(c);
	}
	config_endpoint_whole(c, cfg, &cfg->metrics, "metrics");
	config_endpoint_whole(c, cfg, &cfg->agent, "agent");
}

/* "metrics": {"listen", "max_age_ms"}; "agent": {"listen", "weight"}. */
static void
config_endpoint(struct config_ctx *c, json_t *obj, struct nc_endpoint *ep,
    bool agent)
{
	const char	*key;
	json_t		*v;
	char		 err[256];

	ep->max_age_ms = 1000;
	ep->weight = -1;
	if (!json_is_object(obj)) {
		config_error(c, false, "expected an object, got %s",
		    config_type_name(obj));
		return;
	}
	json_object_foreach(obj, key, v) {
		config_push_key(c, key);
		if (strcmp(key, "listen") == 0) {
			if (!json_is_string(v) || strlen(json_string_value(v))
			    != json_string_length(v)) {
				config_error(c, false, "expected a string, got "
				    "%s", config_type_name(v));
			} else if (nc_config_parse_listen(json_string_value(v),
			    &ep->listen, err, sizeof err) != 0)
				config_error(c, false, "%s", err);
			else
				ep->on = true;
		} else if (!agent && strcmp(key, "max_age_ms") == 0)
			(void)config_int(c, v, 0, 60000, &ep->max_age_ms);
		else if (agent && strcmp(key, "weight") == 0)
			(void)config_int(c, v, 0, 256, &ep->weight);
		else
			config_error(c, true, "unknown key");
		config_pop(c);
	}
	if (json_object_get(obj, "listen") == NULL)
		config_error(c, false, "missing key \"listen\"");
}

static void
config_top(struct config_ctx *c, json_t *root, struct nc_config *cfg)
{
	const char	*key;
	json_t		*v, *e;
	size_t		 i;
	int		 iv;
	long		 ncpu;

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->workers = ncpu > 0 && ncpu <= CONFIG_MAX_WORKERS ? (int)ncpu : 1;
	cfg->log_level = NC_LOG_INFO;
	cfg->shutdown_timeout_ms = 30000;
	if ((cfg->control_socket = strdup(CONFIG_DEFAULT_CONTROL)) == NULL)
		config_error(c, false, "out of memory");

	json_object_foreach(root, key, v) {
		config_push_key(c, key);
		if (strcmp(key, "workers") == 0)
			(void)config_int(c, v, 1, CONFIG_MAX_WORKERS,
			    &cfg->workers);
		else if (strcmp(key, "user") == 0)
			(void)config_string(c, v, 64, &cfg->user);
		else if (strcmp(key, "group") == 0)
			(void)config_string(c, v, 64, &cfg->group);
		else if (strcmp(key, "control_socket") == 0)
			(void)config_string(c, v, 107, &cfg->control_socket);
		else if (strcmp(key, "log_level") == 0) {
			if (config_enum(c, v, level_names, 6, &iv) == 0)
				cfg->log_level = iv == 5 ? NC_LOG_ERR :
				    NC_LOG_ERR + iv;
		} else if (strcmp(key, "shutdown_timeout_ms") == 0)
			(void)config_int(c, v, 0, 3600000,
			    &cfg->shutdown_timeout_ms);
		else if (strcmp(key, "metrics") == 0)
			config_endpoint(c, v, &cfg->metrics, false);
		else if (strcmp(key, "agent") == 0)
			config_endpoint(c, v, &cfg->agent, true);
		else if (strcmp(key, "services") == 0) {
			if (config_array(c, v, true) == 0) {
				cfg->services = calloc(json_array_size(v),
				    sizeof *cfg->services);
				if (cfg->services == NULL) {
					config_error(c, false, "out of memory");
					config_pop(c);
					continue;
				}
				cfg->nservices = json_array_size(v);
				json_array_foreach(v, i, e) {
					config_push_index(c, i);
					if (!json_is_object(e))
						config_error(c, false, "expected "
						    "an object, got %s",
						    config_type_name(e));
					else
						config_service(c, e,
						    &cfg->services[i]);
					config_pop(c);
				}
			}
		} else
			config_error(c, true, "unknown key");
		config_pop(c);
	}
	if (json_object_get(root, "services") == NULL)
		config_error(c, false, "missing key \"services\"");
}

void
nc_config_free(struct nc_config *cfg)
{
	struct nc_service	*s;
	size_t			 i, j;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		free(s->name);
		for (j = 0; j < s->nlisten; j++)
			nc_config_listen_clear(&s->listen[j]);
		free(s->listen);
		for (j = 0; j < s->nupstream; j++)
			free(s->upstream[j]);
		free(s->upstream);
		free(s->module);
		for (j = 0; j < s->ncommand; j++)
			free(s->command[j]);
		free(s->command);
		for (j = 0; j < s->nenv; j++)
			free(s->env[j]);
		free(s->env);
		free(s->cwd);
		if (s->options != NULL)
			json_decref(s->options);
	}
	free(cfg->services);
	nc_config_listen_clear(&cfg->metrics.listen);
	nc_config_listen_clear(&cfg->agent.listen);
	free(cfg->file);
	free(cfg->user);
	free(cfg->group);
	free(cfg->control_socket);
	free(cfg->text);
	free(cfg);
}

int
nc_config_parse(const char *name, const char *text, size_t len,
    struct nc_config **cfgp, char **errors)
{
	struct config_ctx	 c;
	struct nc_config	*cfg;
	json_error_t		 jerr;
	json_t			*root;
	const char		*nul;
	char			 line[512];
	int			 l, col;

	*cfgp = NULL;
	*errors = NULL;
	memset(&c, 0, sizeof c);
	c.name = name;
	c.text = text;
	c.len = len;

	if (len > NC_CONFIG_MAX_SIZE) {
		snprintf(line, sizeof line, "%s: file is larger than %d bytes",
		    name, NC_CONFIG_MAX_SIZE);
		config_append(&c, line);
		*errors = c.errors;
		return -1;
	}
	if ((nul = memchr(text, '\0', len)) != NULL) {
		config_position(&c, nul, &l, &col);
		snprintf(line, sizeof line, "%s:%d:%d: a NUL byte", name, l,
		    col);
		config_append(&c, line);
		*errors = c.errors;
		return -1;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(line, sizeof line, "%s:%d:%d: %s", name, jerr.line,
		    jerr.column, jerr.text);
		config_append(&c, line);
		*errors = c.errors;
		return -1;
	}
	if ((cfg = calloc(1, sizeof *cfg)) == NULL ||
	    (cfg->file = strdup(name)) == NULL ||
	    (cfg->text = malloc(len + 1)) == NULL) {
		if (cfg != NULL)
			free(cfg->file);
		free(cfg);
		json_decref(root);
		config_append(&c, "out of memory");
		*errors = c.errors;
		return -1;
	}
	memcpy(cfg->text, text, len);
	cfg->text[len] = '\0';
	cfg->textlen = len;
	cfg->uid = (uid_t)-1;
	cfg->gid = (gid_t)-1;
	if (!json_is_object(root))
		config_error(&c, false, "expected an object at the top, got %s",
		    config_type_name(root));
	else
		config_top(&c, root, cfg);
	if (c.nerrors == 0)
		config_check_whole(&c, cfg);
	json_decref(root);
	if (c.nerrors > NC_CONFIG_MAX_ERRORS) {
		snprintf(line, sizeof line, "%s: %d more errors", name,
		    c.nerrors - NC_CONFIG_MAX_ERRORS);
		config_append(&c, line);
	}
	if (c.nerrors > 0) {
		nc_config_free(cfg);
		*errors = c.errors;
		return -1;
	}
	*cfgp = cfg;
	return 0;
}

int
nc_config_load(const char *path, struct nc_config **cfgp, char **errors)
{
	struct stat	 st;
	char		*text, line[PATH_MAX + 128];
	ssize_t		 n;
	size_t		 got = 0;
	int		 fd, rc;

	*cfgp = NULL;
	*errors = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		snprintf(line, sizeof line, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		*errors = strdup(line);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > NC_CONFIG_MAX_SIZE) {
		snprintf(line, sizeof line, "%s: %s", path,
		    !S_ISREG(st.st_mode) ? "not a regular file" :
		    "file is larger than 1048576 bytes");
		close(fd);
		*errors = strdup(line);
		return -1;
	}
	if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		*errors = strdup("out of memory");
		return -1;
	}
	while (got < (size_t)st.st_size &&
	    (n = read(fd, text + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	text[got] = '\0';
	rc = nc_config_parse(path, text, got, cfgp, errors);
	free(text);
	return rc;
}
