/*
 * netcluster.json: parse with jansson, check every key against a table
 * per object level (top, service, metrics, agent), and report each error
 * as FILE:LINE:COL: KEY.PATH: message. jansson keeps no positions in a
 * decoded value, so a small scanner walks the file text to the key path;
 * it runs only on error (config-error.c). The listen grammar is in
 * listen.c, what the machine says (names, files, sockets) in
 * config-check.c.
 */

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-int.h"
#include "nc-config.h"
#include "nc-int.h"

#define CONFIG_MAX_WORKERS	1024
#define CONFIG_DEFAULT_CONTROL	"/run/netcluster/control.sock"

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

/* One of names (NULL-ended): its index in *out. */
static int
config_enum(struct config_ctx *c, json_t *v, const char *const *names,
    int *out)
{
	char	got[64], expected[256];
	size_t	i, o = 0;

	if (json_is_string(v)) {
		for (i = 0; names[i] != NULL; i++) {
			if (strcmp(json_string_value(v), names[i]) == 0) {
				*out = (int)i;
				return 0;
			}
		}
	}
	for (i = 0; names[i] != NULL && o < sizeof expected; i++)
		o += (size_t)snprintf(expected + o, sizeof expected - o,
		    "%s%s", i == 0 ? "" : ", ", names[i]);
	config_got(v, got, sizeof got);
	config_error(c, false, "expected one of %s, got %s", expected, got);
	return -1;
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

static const char *const mode_names[] = {
	"shared", "round-robin", "exclusive", "reuseport", NULL
};
static const char *const handler_names[] = {
	"echo", "proxy", "module", "program", NULL
};
static const char *const sockets_names[] = { "inherit", "cluster", NULL };
static const char *const balance_names[] = {
	"round-robin", "least-connections", NULL
};
static const char *const level_names[] = {
	"err", "warning", "notice", "info", "debug", "error", NULL
};
static const int level_values[] = {
	NC_LOG_ERR, NC_LOG_WARNING, NC_LOG_NOTICE, NC_LOG_INFO, NC_LOG_DEBUG,
	NC_LOG_ERR
};
static const char *const send_proxy_names[] = { "v1", "v2", NULL };
static const int send_proxy_values[] = { 1, 2 };

const char *
nc_config_mode_name(enum nc_mode m)
{
	return (size_t)m < sizeof mode_names / sizeof mode_names[0] - 1 ?
	    mode_names[m] : "unknown";
}

const char *
nc_config_handler_name(enum nc_handler_kind h)
{
	return (size_t)h < sizeof handler_names / sizeof handler_names[0] - 1 ?
	    handler_names[h] : "unknown";
}

/*
 * The key tables, one per object level as redis's static_configs[]: a
 * row per key with its type, bounds, default and field (an offset into
 * the struct the level fills: struct nc_config, nc_service or
 * nc_endpoint). A key with no row is an unknown key. Enum fields are
 * stored as int; custom rows have a setter that does all of it.
 */
enum config_type {
	CONFIG_INT,		/* int, from min to max */
	CONFIG_BOOL,		/* bool */
	CONFIG_STRING,		/* char *: non-empty, at most max bytes */
	CONFIG_ENUM,		/* an enum: one of names */
	CONFIG_CUSTOM		/* set() checks and stores it */
};

#define CONFIG_REQUIRED	0x1	/* "missing key" when it is absent */

/*
 * Service rows: `only` is the handlers that take a key (H_ALL: every
 * one), `needs` those that cannot do without it.
 */
#define H_ECHO		(1U << NC_HANDLER_ECHO)
#define H_PROXY		(1U << NC_HANDLER_PROXY)
#define H_MODULE	(1U << NC_HANDLER_MODULE)
#define H_PROGRAM	(1U << NC_HANDLER_PROGRAM)
#define H_BUILTIN	(H_ECHO | H_PROXY | H_MODULE)
#define H_ALL		0U

typedef void (*config_set_cb)(struct config_ctx *, json_t *, void *);

struct config_key {
	const char		*name;
	enum config_type	 type;
	size_t			 off;		/* of the field in the object */
	long long		 min;		/* int */
	long long		 max;		/* int; string: its bytes */
	int			 def;		/* int, bool, enum */
	const char		*def_string;	/* string, or NULL */
	const char *const	*names;		/* enum: NULL-ended */
	const int		*values;	/* enum: each name's, or NULL */
	config_set_cb		 set;		/* custom */
	int			 flags;		/* CONFIG_REQUIRED */
	unsigned		 only;		/* service: who takes it */
	unsigned		 needs;		/* service: who needs it */
};

#define KEY_INT(n, o, lo, hi, d, h) { .name = (n), .type = CONFIG_INT,	\
	.off = (o), .min = (lo), .max = (hi), .def = (d), .only = (h) }
#define KEY_BOOL(n, o, d, h) { .name = (n), .type = CONFIG_BOOL,	\
	.off = (o), .def = (d), .only = (h) }
#define KEY_STRING(n, o, len, d, h) { .name = (n), .type = CONFIG_STRING, \
	.off = (o), .max = (len), .def_string = (d), .only = (h) }
#define KEY_ENUM(n, o, nm, vl, d, h) { .name = (n), .type = CONFIG_ENUM, \
	.off = (o), .names = (nm), .values = (vl), .def = (d), .only = (h) }
#define KEY_CUSTOM(n, fn, fl, h) { .name = (n), .type = CONFIG_CUSTOM,	\
	.set = (fn), .flags = (fl), .only = (h) }

/* Enum fields are written through an int. */
_Static_assert(sizeof(enum nc_mode) == sizeof(int) &&
    sizeof(enum nc_handler_kind) == sizeof(int) &&
    sizeof(enum nc_balance) == sizeof(int) &&
    sizeof(enum nc_sockets) == sizeof(int), "enum fields are ints");

static const struct config_key *
config_key_find(const struct config_key *keys, const char *name)
{
	for (; keys->name != NULL; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

static void
config_defaults(struct config_ctx *c, const struct config_key *keys,
    void *obj)
{
	char	*field;

	for (; keys->name != NULL; keys++) {
		field = (char *)obj + keys->off;
		switch (keys->type) {
		case CONFIG_INT:
		case CONFIG_ENUM:
			*(int *)(void *)field = keys->def;
			break;
		case CONFIG_BOOL:
			*(bool *)field = keys->def != 0;
			break;
		case CONFIG_STRING:
			if (keys->def_string != NULL &&
			    (*(char **)(void *)field =
			    strdup(keys->def_string)) == NULL)
				config_error(c, false, "out of memory");
			break;
		case CONFIG_CUSTOM:
			break;
		}
	}
}

static void
config_set(struct config_ctx *c, const struct config_key *k, json_t *v,
    void *obj)
{
	void	*field = (char *)obj + k->off;
	int	 iv;

	switch (k->type) {
	case CONFIG_INT:
		(void)config_int(c, v, k->min, k->max, field);
		break;
	case CONFIG_BOOL:
		(void)config_bool(c, v, field);
		break;
	case CONFIG_STRING:
		(void)config_string(c, v, (size_t)k->max, field);
		break;
	case CONFIG_ENUM:
		if (config_enum(c, v, k->names, &iv) == 0)
			*(int *)field = k->values != NULL ? k->values[iv] : iv;
		break;
	case CONFIG_CUSTOM:
		k->set(c, v, obj);
		break;
	}
}

/*
 * Sets every key of the JSON object obj into the struct at base, by the
 * table: an unknown key, a wrong value or a missing required key is an
 * error, and the walk goes on to report them all.
 */
static void
config_walk(struct config_ctx *c, json_t *obj, const struct config_key *keys,
    void *base)
{
	const struct config_key	*k;
	const char		*name;
	json_t			*v;

	json_object_foreach(obj, name, v) {
		config_push_key(c, name);
		if ((k = config_key_find(keys, name)) == NULL)
			config_error(c, true, "unknown key");
		else
			config_set(c, k, v, base);
		config_pop(c);
	}
	for (k = keys; k->name != NULL; k++)
		if ((k->flags & CONFIG_REQUIRED) &&
		    json_object_get(obj, k->name) == NULL)
			config_error(c, false, "missing key \"%s\"", k->name);
}

/* "listen": ["PORT", "HOST:PORT", ...] of a service. */
static void
config_listen(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;
	json_t			*e;
	size_t			 i;
	char			 err[256], got[64];

	if (config_array(c, v, true) != 0)
		return;
	if ((svc->listen = calloc(json_array_size(v),
	    sizeof *svc->listen)) == NULL) {
		config_error(c, false, "out of memory");
		return;
	}
	json_array_foreach(v, i, e) {
		config_push_index(c, i);
		if (!json_is_string(e)) {
			config_got(e, got, sizeof got);
			config_error(c, false, "expected a string, got %s",
			    got);
		} else if (nc_config_parse_listen(json_string_value(e),
		    &svc->listen[svc->nlisten], err, sizeof err) != 0)
			config_error(c, false, "%s", err);
		else
			svc->nlisten++;
		config_pop(c);
	}
}

/* Checks an upstream: HOST:PORT, [V6]:PORT or unix:PATH. */
static int
config_upstream_one(struct config_ctx *c, json_t *v, char **out)
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

/* "upstream": ["HOST:PORT", ...] of a proxy. */
static void
config_upstream(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;
	json_t			*e;
	size_t			 i;

	if (config_array(c, v, true) != 0)
		return;
	if ((svc->upstream = calloc(json_array_size(v),
	    sizeof *svc->upstream)) == NULL) {
		config_error(c, false, "out of memory");
		return;
	}
	json_array_foreach(v, i, e) {
		config_push_index(c, i);
		if (config_upstream_one(c, e,
		    &svc->upstream[svc->nupstream]) == 0)
			svc->nupstream++;
		else {
			free(svc->upstream[svc->nupstream]);
			svc->upstream[svc->nupstream] = NULL;
		}
		config_pop(c);
	}
}

#define CONFIG_MAX_ARGS		256	/* command words, env entries */
#define CONFIG_MAX_ARG		4096	/* bytes of one */

/* "command": ["/abs/path", "arg", ...], kept as a NULL-ended argv. */
static void
config_command(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;
	json_t			*e;
	size_t			 i;
	char			 got[64];

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

/* One "NAME": "value" of env, or -1 with the error said. */
static int
config_env_one(struct config_ctx *c, const char *key, json_t *e, char **out)
{
	size_t	n = strlen(key);
	char	got[64];

	if (n == 0 || n > 255 || strchr(key, '=') != NULL ||
	    strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
	    "vwxyz0123456789_") != n || (key[0] >= '0' && key[0] <= '9')) {
		config_error(c, true, "not a variable name (letters, "
		    "digits and _, not starting with a digit)");
		return -1;
	}
	if (strncmp(key, "LISTEN_", 7) == 0 ||
	    strncmp(key, "NETCLUSTER_", 11) == 0) {
		config_error(c, true, "netclusterd sets %s itself", key);
		return -1;
	}
	if (!json_is_string(e) || json_string_length(e) > CONFIG_MAX_ARG ||
	    strlen(json_string_value(e)) != json_string_length(e)) {
		config_got(e, got, sizeof got);
		config_error(c, false, "expected a string of at most %d "
		    "bytes, got %s", CONFIG_MAX_ARG, got);
		return -1;
	}
	if (asprintf(out, "%s=%s", key, json_string_value(e)) == -1) {
		*out = NULL;
		config_error(c, false, "out of memory");
		return -1;
	}
	return 0;
}

/* "env": {"NAME": "value", ...}, kept as "NAME=value" strings. */
static void
config_env(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;
	const char		*key;
	json_t			*e;

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
		if (config_env_one(c, key, e, &svc->env[svc->nenv]) == 0)
			svc->nenv++;
		config_pop(c);
	}
}

static void
config_cwd(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;

	if (config_string(c, v, PATH_MAX, &svc->cwd) == 0 &&
	    svc->cwd[0] != '/')
		config_error(c, false, "expected an absolute directory, got "
		    "\"%s\"", svc->cwd);
}

#define R(f)	offsetof(struct nc_recycle, f)
static const struct config_key recycle_keys[] = {
	KEY_INT("connections", R(connections), 1, 2000000000, 0, H_ALL),
	KEY_INT("age_ms", R(age_ms), 1, 2000000000, 0, H_ALL),
	KEY_INT("rss_mib", R(rss_mib), 1, 1048576, 0, H_ALL),
	KEY_INT("jitter_percent", R(jitter_percent), 0, 100, 10, H_ALL),
	{ .name = NULL }
};
#undef R

/* "recycle": {"connections", "age_ms", "rss_mib", "jitter_percent"}. */
static void
config_recycle(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;

	config_defaults(c, recycle_keys, &svc->recycle);
	if (!json_is_object(v)) {
		config_error(c, false, "expected an object, got %s",
		    config_type_name(v));
		return;
	}
	config_walk(c, v, recycle_keys, &svc->recycle);
}

static void
config_options(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_service	*svc = obj;

	if (!json_is_object(v)) {
		config_error(c, false, "expected an object, got %s",
		    config_type_name(v));
		return;
	}
	if (svc->options != NULL)
		json_decref(svc->options);
	svc->options = json_incref(v);
}

#define S(f)	offsetof(struct nc_service, f)
static const struct config_key service_keys[] = {
	{ .name = "name", .type = CONFIG_STRING, .off = S(name), .max = 64,
	  .flags = CONFIG_REQUIRED },
	KEY_ENUM("handler", S(handler), handler_names, NULL, NC_HANDLER_ECHO,
	    H_ALL),
	KEY_CUSTOM("listen", config_listen, CONFIG_REQUIRED, H_ALL),
	KEY_ENUM("mode", S(mode), mode_names, NULL, NC_MODE_SHARED, H_ALL),
	KEY_INT("backlog", S(backlog), 1, 65535, 511, H_ALL),
	KEY_INT("workers", S(workers), 1, CONFIG_MAX_WORKERS, 0, H_ALL),
	KEY_STRING("user", S(user), 64, NULL, H_ALL),
	KEY_STRING("group", S(group), 64, NULL, H_ALL),
	KEY_INT("reload_batch", S(reload_batch), 1, CONFIG_MAX_WORKERS, 0,
	    H_ALL),
	KEY_INT("worker_timeout_ms", S(worker_timeout_ms), 0, 86400000, 30000,
	    H_ALL),
	KEY_INT("ready_timeout_ms", S(ready_timeout_ms), 1, 3600000, 60000,
	    H_ALL),
	KEY_CUSTOM("recycle", config_recycle, 0, H_ALL),
	/* The built-in handlers': a program sets them itself. */
	KEY_INT("max_connections", S(max_connections), 0, 1000000, 0,
	    H_BUILTIN),
	KEY_BOOL("allow_half_open", S(allow_half_open), false, H_BUILTIN),
	KEY_BOOL("pause_on_connect", S(pause_on_connect), false, H_BUILTIN),
	KEY_INT("idle_timeout_ms", S(idle_timeout_ms), 0, 86400000, 0,
	    H_BUILTIN),
	KEY_BOOL("no_delay", S(no_delay), true, H_BUILTIN),
	KEY_BOOL("keep_alive", S(keep_alive), false, H_BUILTIN),
	KEY_INT("keep_alive_initial_delay_ms", S(keep_alive_initial_delay_ms),
	    0, 86400000, 0, H_BUILTIN),
	KEY_BOOL("proxy_protocol", S(proxy_protocol), false, H_BUILTIN),
	KEY_CUSTOM("options", config_options, 0, H_BUILTIN),
	/* The proxy's. */
	{ .name = "upstream", .type = CONFIG_CUSTOM, .set = config_upstream,
	  .only = H_PROXY, .needs = H_PROXY },
	KEY_ENUM("balance", S(balance), balance_names, NULL,
	    NC_BALANCE_ROUND_ROBIN, H_PROXY),
	KEY_INT("connect_timeout_ms", S(connect_timeout_ms), 1, 3600000, 5000,
	    H_PROXY),
	KEY_INT("down_ms", S(down_ms), 0, 3600000, 10000, H_PROXY),
	KEY_ENUM("send_proxy", S(send_proxy), send_proxy_names,
	    send_proxy_values, 0, H_PROXY),
	/* The module handler's. */
	{ .name = "module", .type = CONFIG_STRING, .off = S(module),
	  .max = PATH_MAX, .only = H_MODULE, .needs = H_MODULE },
	/* The program handler's. */
	{ .name = "command", .type = CONFIG_CUSTOM, .set = config_command,
	  .only = H_PROGRAM, .needs = H_PROGRAM },
	KEY_CUSTOM("env", config_env, 0, H_PROGRAM),
	KEY_CUSTOM("cwd", config_cwd, 0, H_PROGRAM),
	KEY_ENUM("sockets", S(sockets), sockets_names, NULL,
	    NC_SOCKETS_INHERIT, H_PROGRAM),
	KEY_BOOL("messages", S(messages), false, H_PROGRAM),
	KEY_BOOL("notify", S(notify), false, H_PROGRAM),
	KEY_INT("settle_ms", S(settle_ms), 0, 600000, 1000, H_PROGRAM),
	{ .name = NULL }
};
#undef S

/*
 * What the table cannot say of one service: the keys one handler needs,
 * the keys of other handlers, and the rules of a program.
 */
static void
config_service_check(struct config_ctx *c, json_t *obj, struct nc_service *svc)
{
	const struct config_key	*k;
	unsigned		 me = 1U << svc->handler;

	for (k = service_keys; k->name != NULL; k++)
		if ((k->needs & me) && json_object_get(obj, k->name) == NULL)
			config_error(c, false, "handler %s needs \"%s\"",
			    nc_config_handler_name(svc->handler), k->name);
	for (k = service_keys; k->name != NULL; k++) {
		if (k->only == H_ALL || (k->only & me) ||
		    json_object_get(obj, k->name) == NULL)
			continue;
		config_push_key(c, k->name);
		if ((k->only & (k->only - 1)) == 0)
			config_error(c, true, "only the %s handler takes "
			    "\"%s\"", nc_config_handler_name(
			    __builtin_ctz(k->only)), k->name);
		else
			config_error(c, true, "the %s handler does not take "
			    "\"%s\": the program sets it itself",
			    nc_config_handler_name(svc->handler), k->name);
		config_pop(c);
	}
	svc->has_worker_timeout = json_object_get(obj, "worker_timeout_ms") !=
	    NULL;
	if (svc->handler != NC_HANDLER_PROGRAM)
		return;
	if (svc->name != NULL && strchr(svc->name, ':') != NULL) {
		config_push_key(c, "name");
		config_error(c, false, "a program's service name is its "
		    "sockets' name in LISTEN_FDNAMES, which ':' separates");
		config_pop(c);
	}
	if (svc->sockets == NC_SOCKETS_INHERIT && svc->recycle.connections > 0) {
		config_push_key(c, "recycle");
		config_push_key(c, "connections");
		config_error(c, true, "the master cannot count what a program "
		    "on inherited sockets accepts; recycle it by age_ms or "
		    "rss_mib");
		config_pop(c);
		config_pop(c);
	}
	if (svc->sockets == NC_SOCKETS_INHERIT && !svc->notify &&
	    svc->settle_ms >= svc->ready_timeout_ms) {
		config_push_key(c, "settle_ms");
		config_error(c, true, "%d is not less than ready_timeout_ms "
		    "(%d): a program is online once it lived settle_ms, and "
		    "killed if not online within ready_timeout_ms",
		    svc->settle_ms, svc->ready_timeout_ms);
		config_pop(c);
	}
	if (svc->sockets == NC_SOCKETS_CLUSTER &&
	    json_object_get(obj, "notify") != NULL) {
		config_push_key(c, "notify");
		config_error(c, true, "a program linked with libnetcluster "
		    "(\"sockets\": \"cluster\") answers the master on its "
		    "channel; \"notify\" is for \"sockets\": \"inherit\"");
		config_pop(c);
	}
	if (svc->sockets == NC_SOCKETS_CLUSTER &&
	    json_object_get(obj, "messages") != NULL) {
		config_push_key(c, "messages");
		config_error(c, true, "a program linked with libnetcluster "
		    "(\"sockets\": \"cluster\") has its messages on its "
		    "channel; \"messages\" is for \"sockets\": \"inherit\"");
		config_pop(c);
	}
	if (svc->sockets == NC_SOCKETS_INHERIT &&
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

/* "services": [{...}, ...]. */
static void
config_services(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_config	*cfg = obj;
	struct nc_service	*svc;
	json_t			*e;
	size_t			 i;

	if (config_array(c, v, true) != 0)
		return;
	if ((cfg->services = calloc(json_array_size(v),
	    sizeof *cfg->services)) == NULL) {
		config_error(c, false, "out of memory");
		return;
	}
	cfg->nservices = json_array_size(v);
	json_array_foreach(v, i, e) {
		svc = &cfg->services[i];
		svc->uid = (uid_t)-1;
		svc->gid = (gid_t)-1;
		config_push_index(c, i);
		if (!json_is_object(e))
			config_error(c, false, "expected an object, got %s",
			    config_type_name(e));
		else {
			config_defaults(c, service_keys, svc);
			config_walk(c, e, service_keys, svc);
			svc->has_workers = json_object_get(e, "workers") !=
			    NULL;
			config_service_check(c, e, svc);
		}
		config_pop(c);
	}
}

/* "listen": "..." of the metrics or agent listener. */
static void
config_endpoint_listen(struct config_ctx *c, json_t *v, void *obj)
{
	struct nc_endpoint	*ep = obj;
	char			 err[256];

	if (!json_is_string(v) ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		config_error(c, false, "expected a string, got %s",
		    config_type_name(v));
		return;
	}
	nc_config_listen_clear(&ep->listen);
	ep->on = false;
	if (nc_config_parse_listen(json_string_value(v), &ep->listen, err,
	    sizeof err) != 0)
		config_error(c, false, "%s", err);
	else
		ep->on = true;
}

#define E(f)	offsetof(struct nc_endpoint, f)
static const struct config_key metrics_keys[] = {
	KEY_CUSTOM("listen", config_endpoint_listen, CONFIG_REQUIRED, H_ALL),
	KEY_INT("max_age_ms", E(max_age_ms), 0, 60000, 1000, H_ALL),
	{ .name = NULL }
};
static const struct config_key agent_keys[] = {
	KEY_CUSTOM("listen", config_endpoint_listen, CONFIG_REQUIRED, H_ALL),
	KEY_INT("weight", E(weight), 0, 256, -1, H_ALL),
	{ .name = NULL }
};
#undef E

static void
config_endpoint(struct config_ctx *c, json_t *v, struct nc_endpoint *ep,
    const struct config_key *keys)
{
	/* Each endpoint's fields all have a default, whichever it is. */
	config_defaults(c, metrics_keys, ep);
	config_defaults(c, agent_keys, ep);
	if (!json_is_object(v)) {
		config_error(c, false, "expected an object, got %s",
		    config_type_name(v));
		return;
	}
	config_walk(c, v, keys, ep);
}

static void
config_metrics(struct config_ctx *c, json_t *v, void *obj)
{
	config_endpoint(c, v, &((struct nc_config *)obj)->metrics,
	    metrics_keys);
}

static void
config_agent(struct config_ctx *c, json_t *v, void *obj)
{
	config_endpoint(c, v, &((struct nc_config *)obj)->agent, agent_keys);
}

#define T(f)	offsetof(struct nc_config, f)
static const struct config_key top_keys[] = {
	/* Its default, the number of CPUs, is set by config_top(). */
	KEY_INT("workers", T(workers), 1, CONFIG_MAX_WORKERS, 1, H_ALL),
	KEY_STRING("user", T(user), 64, NULL, H_ALL),
	KEY_STRING("group", T(group), 64, NULL, H_ALL),
	KEY_STRING("control_socket", T(control_socket), 107,
	    CONFIG_DEFAULT_CONTROL, H_ALL),
	KEY_ENUM("log_level", T(log_level), level_names, level_values,
	    NC_LOG_INFO, H_ALL),
	KEY_INT("shutdown_timeout_ms", T(shutdown_timeout_ms), 0, 3600000,
	    30000, H_ALL),
	KEY_CUSTOM("metrics", config_metrics, 0, H_ALL),
	KEY_CUSTOM("agent", config_agent, 0, H_ALL),
	KEY_CUSTOM("services", config_services, CONFIG_REQUIRED, H_ALL),
	{ .name = NULL }
};
#undef T

/*
 * The top-level workers, user and group are the services' defaults: a
 * service gets each it did not set itself.
 */
static void
config_inherit(struct config_ctx *c, struct nc_config *cfg)
{
	struct nc_service	*svc;
	size_t			 i;

	for (i = 0; i < cfg->nservices; i++) {
		svc = &cfg->services[i];
		if (!svc->has_workers)
			svc->workers = cfg->workers;
		if ((svc->user == NULL && cfg->user != NULL &&
		    (svc->user = strdup(cfg->user)) == NULL) ||
		    (svc->group == NULL && cfg->group != NULL &&
		    (svc->group = strdup(cfg->group)) == NULL))
			config_error(c, false, "out of memory");
	}
}

static void
config_top(struct config_ctx *c, json_t *root, struct nc_config *cfg)
{
	long	ncpu;

	config_defaults(c, top_keys, cfg);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->workers = ncpu > 0 && ncpu <= CONFIG_MAX_WORKERS ? (int)ncpu : 1;
	config_walk(c, root, top_keys, cfg);
	config_inherit(c, cfg);
}

/* The unix socket's directory is there (or out of our sight). */
static void
config_unix_dir(struct config_ctx *c, const struct nc_listen_addr *a)
{
	struct stat	 st;
	char		 dir[PATH_MAX], *slash;

	snprintf(dir, sizeof dir, "%s", a->path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	/*
	 * Only what is not there is an error: a worker parses the same text
	 * as another user, who may not see into a directory the master can
	 * (EACCES), and nc_config_check() binds nothing anyway.
	 */
	if (stat(dir, &st) == 0 ? !S_ISDIR(st.st_mode) :
	    errno == ENOENT || errno == ENOTDIR)
		config_error(c, false, "directory %s of the unix socket does "
		    "not exist", dir);
}

/* Listener k of service i against those before it, and its directory. */
static void
config_listen_whole(struct config_ctx *c, struct nc_config *cfg, size_t i,
    size_t k)
{
	struct nc_listen_addr	*a = &cfg->services[i].listen[k];
	struct nc_service	*t;
	size_t			 j, l;

	config_push_key(c, "listen");
	config_push_index(c, k);
	for (j = 0; j <= i; j++) {
		t = &cfg->services[j];
		for (l = 0; l < (j == i ? k : t->nlisten); l++) {
			if (!nc_config_listen_same(a, &t->listen[l]))
				continue;
			config_error(c, false, "\"%s\" overlaps \"%s\" of "
			    "services[%zu] (%s)", a->text, t->listen[l].text, j,
			    t->name != NULL ? t->name : "?");
		}
	}
	if (a->kind == NC_LISTEN_UNIX)
		config_unix_dir(c, a);
	config_pop(c);
	config_pop(c);
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
			if (nc_config_listen_same(&ep->listen, &t->listen[l]))
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

/* What no one key shows: duplicate names, overlapping listeners. */
static void
config_check_whole(struct config_ctx *c, struct nc_config *cfg)
{
	struct nc_service	*s, *t;
	size_t			 i, j, k;

	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		config_push_key(c, "services");
		config_push_index(c, i);
		for (j = 0; j < i && s->name != NULL; j++) {
			t = &cfg->services[j];
			if (t->name != NULL && strcmp(s->name, t->name) == 0) {
				config_push_key(c, "name");
				config_error(c, false, "duplicate service name "
				    "\"%s\" (also services[%zu])", s->name, j);
				config_pop(c);
			}
		}
		for (k = 0; k < s->nlisten; k++)
			config_listen_whole(c, cfg, i, k);
		config_pop(c);
		config_pop(c);
	}
	config_endpoint_whole(c, cfg, &cfg->metrics, "metrics");
	config_endpoint_whole(c, cfg, &cfg->agent, "agent");
}

static void
config_service_free(struct nc_service *s)
{
	size_t	j;

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
	free(s->user);
	free(s->group);
	if (s->options != NULL)
		json_decref(s->options);
}

void
nc_config_free(struct nc_config *cfg)
{
	size_t	i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nservices; i++)
		config_service_free(&cfg->services[i]);
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
