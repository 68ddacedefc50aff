/*
 * What the operator asks (a control request, request.c), run from one
 * table with a handler per command of nc-command.h's. A handler answers
 * once, now or later, through the reply function it was given; the
 * control socket (control.c) owns the client, so nothing here knows it.
 */

#include <sys/types.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "master.h"
#include "request.h"

struct cmd {
	struct request	 req;
	int		 client_fd;
	char		 from_version[64];	/* upgraded from */
	void		(*reply)(json_t *, void *);
	void		*arg;
};

static void
cmd_reply(struct cmd *c, json_t *reply)
{
	c->reply(reply, c->arg);
	json_decref(c->req.message);
	free(c);
}

static void
cmd_error(struct cmd *c, const char *error)
{
	cmd_reply(c, json_pack("{s:b, s:s}", "ok", 0, "error", error));
}

static void
cmd_message(struct cmd *c, const char *message)
{
	cmd_reply(c, json_pack("{s:b, s:s}", "ok", 1, "message", message));
}

/* The connections a round says p's workers hold: a number, or null. */
static json_t *
pool_connections(const struct pool *p, json_t *round)
{
	json_t		*w, *n;
	json_int_t	 total = 0;
	size_t		 k;

	json_array_foreach(json_object_get(round, "workers"), k, w) {
		n = json_object_get(json_object_get(w, "services"), p->name);
		if (json_is_integer(n))
			total += json_integer_value(n);
		else if (json_is_null(n))
			return json_null();	/* a program's: not known */
	}
	return json_integer(total);
}

static json_t *
services_json(json_t *round, const char *only)
{
	struct listener	*l;
	struct pool	*p;
	json_t		*list, *addrs;
	size_t		 i, j;

	if ((list = json_array()) == NULL)
		return NULL;
	for (i = 0; i < master.gen->npools; i++) {
		p = master.gen->pools[i];
		if (only != NULL && strcmp(only, p->name) != 0)
			continue;
		addrs = json_array();
		for (j = 0; j < p->def->nlisteners; j++) {
			l = p->def->listeners[j];
			(void)json_array_append_new(addrs, json_pack(
			    "{s:s, s:s, s:i, s:I}", "listen", l->text,
			    "bound", l->bound, "port", l->port, "accepted",
			    (json_int_t)l->accepted));
		}
		(void)json_array_append_new(list, json_pack("{s:s, s:s, s:s, "
		    "s:o, s:o, s:i, s:i, s:i, s:i, s:i, s:s?, s:o}", "name",
		    p->name, "handler", nc_config_handler_name(
		    p->def->svc->handler), "mode", nc_config_mode_name(
		    p->def->svc->mode), "listeners", addrs, "connections",
		    pool_connections(p, round), "workers", p->size,
		    "file_workers", p->file_size, "online", gen_pool_online(p),
		    "alive", gen_pool_alive(p), "generation", p->def->generation,
		    "user", p->def->svc->user, "reloading",
		    rollout_progress(p)));
	}
	return list;
}

/* What status, workers and connections say, from one count round. */
static void
counted_cb(json_t *round, void *arg)
{
	struct cmd	*c = arg;
	json_t		*reply, *w, *missing, *svcs;
	json_int_t	 total = 0;
	size_t		 i;
	bool		 unknown = false;

	missing = json_array();
	json_array_foreach(json_object_get(round, "workers"), i, w) {
		if (json_is_true(json_object_get(w, "answered")))
			total += json_integer_value(json_object_get(w,
			    "count"));
		else if (json_is_null(json_object_get(w, "count")))
			unknown = true;	/* a program: nobody to ask */
		else if (strcmp(json_string_value(json_object_get(w,
		    "state")), "dead") != 0)
			(void)json_array_append_new(missing, json_integer(
			    json_integer_value(json_object_get(w, "id"))));
	}
	if (c->req.command == NC_CMD_WORKERS) {
		cmd_reply(c, json_pack("{s:b, s:O, s:o}", "ok", 1, "workers",
		    json_object_get(round, "workers"), "missing", missing));
		return;
	}
	if (c->req.command == NC_CMD_CONNECTIONS) {
		svcs = services_json(round, c->req.has_service ?
		    c->req.service : NULL);
		if (c->req.has_service) {
			total = json_integer_value(json_object_get(
			    json_array_get(svcs, 0), "connections"));
			unknown = json_is_null(json_object_get(
			    json_array_get(svcs, 0), "connections"));
		}
		cmd_reply(c, json_pack("{s:b, s:o, s:o, s:o}", "ok", 1,
		    "connections", unknown ? json_null() : json_integer(total),
		    "services", svcs, "missing", missing));
		return;
	}
	reply = json_pack("{s:b, s:i, s:s, s:s, s:b, s:i, s:f, s:i, s:o, s:o, "
	    "s:o, s:b, s:b}", "ok", 1, "pid", (int)getpid(), "version",
	    PACKAGE_VERSION, "binary", binary_path(), "binary_changed",
	    binary_changed(), "workers", gen_slots(), "uptime_s",
	    gen_elapsed_s(&master.started), "alive", gen_alive(), "connections",
	    unknown ? json_null() : json_integer(total), "services",
	    services_json(round, NULL), "missing", missing, "ready",
	    health_ready(NULL, 0), "draining", master.draining);
	if (reply != NULL) {
		(void)json_object_set_new(reply, "metrics", endpoint_bound(
		    "metrics") != NULL ? json_string(endpoint_bound(
		    "metrics")) : json_null());
		(void)json_object_set_new(reply, "agent", endpoint_bound(
		    "agent") != NULL ? json_string(endpoint_bound("agent")) :
		    json_null());
		/* Draining: whether the agent said so to the balancer yet. */
		(void)json_object_set_new(reply, "agent_told_drain",
		    health_agent_told() == -1 || !master.draining ?
		    json_null() : json_boolean(health_agent_told()));
	}
	cmd_reply(c, reply);
}

static void
cmd_count(struct cmd *c)
{
	if (count_round(counted_cb, c) != 0)
		cmd_error(c, "out of memory");
}

static void
reloaded_cb(const char *error, void *arg)
{
	struct cmd	*c = arg;
	char		 msg[128];

	if (error != NULL) {
		cmd_error(c, error);
		return;
	}
	if (!c->req.has_service) {
		cmd_message(c, "reloaded");
		return;
	}
	snprintf(msg, sizeof msg, "service %s reloaded", c->req.service);
	cmd_message(c, msg);
}

static void
cmd_reload(struct cmd *c)
{
	reload(c->req.has_service ? c->req.service : NULL, c->req.batch,
	    reloaded_cb, c);
}

static void
scaled_cb(const char *error, json_t *reply, void *arg)
{
	struct cmd	*c = arg;
	char		 msg[160];

	if (error != NULL) {
		json_decref(reply);
		cmd_error(c, error);
		return;
	}
	snprintf(msg, sizeof msg, "service %s: %d workers (the file says %d)",
	    json_string_value(json_object_get(reply, "service")),
	    (int)json_integer_value(json_object_get(reply, "workers")),
	    (int)json_integer_value(json_object_get(reply, "file_workers")));
	(void)json_object_set_new(reply, "ok", json_true());
	(void)json_object_set_new(reply, "message", json_string(msg));
	cmd_reply(c, reply);
}

static void
cmd_scale(struct cmd *c)
{
	scale(c->req.service, c->req.workers, c->req.delta, scaled_cb,
	    c);
}

/* The upgrade did not happen: this master answers, and serves on. */
static void
upgrade_failed_cb(const char *error, void *arg)
{
	stats_add("upgrades", "failure", 1);
	cmd_error(arg, error);
}

static void
cmd_upgrade(struct cmd *c)
{
	/* The new master answers on this connection once it is up. */
	upgrade(c->client_fd, upgrade_failed_cb, c);
}

static void
cmd_stop(struct cmd *c)
{
	cmd_message(c, "stopping");
	(void)kill(getpid(), SIGTERM);
}

static void
cmd_send(struct cmd *c)
{
	char	err[256];
	int	n;

	if ((n = broadcast_send(c->req.service, c->req.message, err,
	    sizeof err)) == -1) {
		cmd_error(c, err);
		return;
	}
	snprintf(err, sizeof err, "sent to %d worker%s", n, n == 1 ? "" : "s");
	cmd_reply(c, json_pack("{s:b, s:i, s:s}", "ok", 1, "sent", n,
	    "message", err));
}

static void
metrics_cb(json_t *families, void *arg)
{
	struct cmd	*c = arg;
	struct evbuffer	*text;
	json_t		*reply;
	char		*s;
	size_t		 len;

	if (families == NULL) {
		cmd_error(c, "out of memory");
		return;
	}
	if (c->req.json) {
		cmd_reply(c, json_pack("{s:b, s:O}", "ok", 1, "metrics",
		    families));
		return;
	}
	if ((text = evbuffer_new()) == NULL) {
		cmd_error(c, "out of memory");
		return;
	}
	metrics_text(families, text);
	len = evbuffer_get_length(text);
	s = (char *)evbuffer_pullup(text, -1);
	reply = json_pack("{s:b, s:s%}", "ok", 1, "text", s != NULL ? s : "",
	    s != NULL ? len : 0);
	evbuffer_free(text);
	cmd_reply(c, reply);
}

static void
cmd_metrics(struct cmd *c)
{
	metrics_collect(metrics_cb, c);
}

static void
cmd_drain(struct cmd *c)
{
	bool	on = c->req.command == NC_CMD_DRAIN;

	health_drain(on);
	cmd_reply(c, json_pack("{s:b, s:b, s:s, s:i}", "ok", 1, "draining",
	    on, "message", on ? "draining: /ready answers 503 and the agent "
	    "drain; listeners stay open" : "not draining",
	    "shutdown_timeout_ms", gen_shutdown_ms()));
}

/* A handler per command, indexed by enum nc_command. */
static void (*const handlers[])(struct cmd *) = {
	[NC_CMD_STATUS] = cmd_count,
	[NC_CMD_WORKERS] = cmd_count,
	[NC_CMD_CONNECTIONS] = cmd_count,
	[NC_CMD_RELOAD] = cmd_reload,
	[NC_CMD_SCALE] = cmd_scale,
	[NC_CMD_UPGRADE] = cmd_upgrade,
	[NC_CMD_STOP] = cmd_stop,
	[NC_CMD_SEND] = cmd_send,
	[NC_CMD_METRICS] = cmd_metrics,
	[NC_CMD_DRAIN] = cmd_drain,
	[NC_CMD_UNDRAIN] = cmd_drain,
};

static struct cmd *
cmd_new(int client_fd, void (*reply)(json_t *, void *), void *arg)
{
	struct cmd	*c;

	if ((c = calloc(1, sizeof *c)) == NULL) {
		reply(json_pack("{s:b, s:s}", "ok", 0, "error",
		    "out of memory"), arg);
		return NULL;
	}
	c->client_fd = client_fd;
	c->reply = reply;
	c->arg = arg;
	return c;
}

/*
 * Runs req (checked by request_parse(); its message is ours now).
 * reply(answer, arg) comes once, now or later; client_fd is the
 * client's, which an upgrade hands to the new master.
 */
void
command_run(const struct request *req, int client_fd,
    void (*reply)(json_t *, void *), void *arg)
{
	struct cmd	*c;
	char		 err[128];

	if ((c = cmd_new(client_fd, reply, arg)) == NULL) {
		json_decref(req->message);
		return;
	}
	c->req = *req;
	if (req->has_service && gen_pool(req->service) == NULL) {
		snprintf(err, sizeof err, "no service named \"%s\"",
		    req->service);
		cmd_error(c, err);
		return;
	}
	if ((size_t)req->command >= sizeof handlers / sizeof handlers[0] ||
	    handlers[req->command] == NULL) {
		cmd_error(c, "no such command");
		return;
	}
	handlers[req->command](c);
}

static void
upgraded_cb(const char *error, void *arg)
{
	struct cmd	*c = arg;
	char		 msg[160];

	/* The exec was the upgrade: a failed handover is a failed reload. */
	if (error != NULL) {
		cmd_error(c, error);
		return;
	}
	/* We are the new master, answering for the one before. */
	snprintf(msg, sizeof msg, "upgraded: netclusterd %s -> %s (pid %d)",
	    c->from_version, PACKAGE_VERSION, (int)getpid());
	cmd_reply(c, json_pack("{s:b, s:s, s:s, s:s, s:i, s:s}", "ok", 1,
	    "message", msg, "previous_version", c->from_version, "version",
	    PACKAGE_VERSION, "pid", (int)getpid(), "binary", binary_path()));
}

/*
 * After an upgrade, the client that asked for it (of the master before,
 * which ran from_version, or an unknown one if NULL) is answered once
 * the new workers took over.
 */
void
command_upgraded(int client_fd, const char *from_version,
    void (*reply)(json_t *, void *), void *arg)
{
	struct cmd	*c;

	if ((c = cmd_new(client_fd, reply, arg)) == NULL)
		return;
	c->req.command = NC_CMD_UPGRADE;
	snprintf(c->from_version, sizeof c->from_version, "%s",
	    from_version != NULL ? from_version : "(unknown)");
	reload_on_handover(upgraded_cb, c);
}
