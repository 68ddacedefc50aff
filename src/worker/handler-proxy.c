/*
 * The proxy handler: an L4 proxy from each client to one of the service's
 * upstreams (TCP or unix), chosen round-robin or by fewest connections.
 * An upstream that refuses or does not answer within connect_timeout_ms
 * is skipped for this client and marked down for down_ms; when every one
 * is down the client is closed at once and it is logged.
 *
 * Bytes are moved with backpressure both ways: when one side's write
 * queue passes its high-water mark, reading from the other side pauses
 * until `drain`, so memory per connection stays bounded whatever the
 * speeds. With allow_half_open a FIN from one side becomes a FIN on the
 * other and the rest still flows; without it, either side's end ends both.
 * An error on one side closes the other.
 *
 * A direction that streams moves by splice(2) through a pipe instead of
 * through user space (splice.c): at most one pipe per direction, two
 * per connection; the rules above hold the same way.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker.h"

/*
 * The counters are this worker's since it started, never reset: the
 * master sums them across workers for its metrics.
 */
struct upstream {
	struct nc_listen_addr	 addr;
	struct timespec		 down_until;
	int			 active;	/* connections now */
	unsigned long long	 connect_failures;
	unsigned long long	 sent_bytes;	/* client payload to it */
	unsigned long long	 received_bytes; /* from it to clients */
};

struct pair {
	struct service		*svc;
	struct nc_socket	*client;
	struct nc_socket	*up;
	struct upstream		*target;
	struct splice		*c2u;		/* client to upstream */
	struct splice		*u2c;
	uint32_t		 tried;		/* upstreams tried */
	bool			 connected;
	bool			 client_closed;	/* its `close` came */
	bool			 up_closed;
};

static void	proxy_try(struct pair *);

static bool
upstream_down(const struct upstream *u)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec < u->down_until.tv_sec ||
	    (now.tv_sec == u->down_until.tv_sec &&
	    now.tv_nsec < u->down_until.tv_nsec);
}

static void
upstream_mark_down(struct service *svc, struct upstream *u, const char *why)
{
	u->connect_failures++;
	clock_gettime(CLOCK_MONOTONIC, &u->down_until);
	u->down_until.tv_sec += svc->conf->down_ms / 1000;
	u->down_until.tv_nsec += (long)(svc->conf->down_ms % 1000) * 1000000;
	if (u->down_until.tv_nsec >= 1000000000) {
		u->down_until.tv_sec++;
		u->down_until.tv_nsec -= 1000000000;
	}
	log_warnx("service %s: upstream %s is down for %d ms: %s",
	    svc->conf->name, u->addr.text, svc->conf->down_ms, why);
}

/* The next upstream to try, or NULL when every one is down or tried. */
static struct upstream *
upstream_pick(struct pair *p)
{
	struct service	*svc = p->svc;
	struct upstream	*u, *best = NULL;
	size_t		 i, k;

	for (i = 0; i < svc->nupstreams && p->tried < svc->nupstreams; i++) {
		k = (svc->next_upstream + i) % svc->nupstreams;
		u = &svc->upstreams[k];
		if (upstream_down(u))
			continue;
		if (svc->conf->balance == NC_BALANCE_ROUND_ROBIN) {
			svc->next_upstream = k + 1;
			return u;
		}
		if (best == NULL || u->active < best->active)
			best = u;
	}
	return best;
}

static void
pair_options(struct pair *p, struct nc_socket *s)
{
	const struct nc_service	*c = p->svc->conf;

	(void)nc_socket_set_no_delay(s, c->no_delay);
	if (c->keep_alive)
		(void)nc_socket_set_keep_alive(s, true,
		    (unsigned int)c->keep_alive_initial_delay_ms);
}

/* Stops splicing both ways, dropping what the pipes hold: closing. */
static void
pair_unsplice(struct pair *p)
{
	splice_stop(p->c2u, false);
	splice_stop(p->u2c, false);
}

/*
 * Data from one side goes to the other; a full queue pauses the reader.
 * A direction that reads like a stream goes to splice once the other
 * side's queue is empty (now, or at its `drain`). What `to` took is
 * added to *bytes, the upstream's counter for this direction.
 */
static void
pipe_data(struct pair *p, struct nc_socket *from, struct nc_socket *to,
    const struct nc_event_args *ev, struct splice **spp,
    unsigned long long *bytes)
{
	bool	stream;

	stream = splice_note_read(spp, from, to, p->svc->conf->idle_timeout_ms,
	    ev->len, bytes);
	if (splice_write(to, ev->data, ev->len, bytes) == 0)
		nc_socket_pause(from);
	else if (stream && nc_socket_buffer_size(to) == 0)
		(void)splice_start(*spp);
}

static void
client_data(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	pipe_data(p, s, p->up, ev, &p->c2u, &p->target->sent_bytes);
}

static void
up_data(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	pipe_data(p, s, p->client, ev, &p->u2c, &p->target->received_bytes);
}

static void
client_drain(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	(void)ev;
	if (p->up != NULL && !nc_socket_destroyed(p->up) &&
	    !splice_drained(p->u2c))
		nc_socket_resume(p->up);
}

static void
up_drain(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	(void)ev;
	if (!nc_socket_destroyed(p->client) && !splice_drained(p->c2u))
		nc_socket_resume(p->client);
}

/*
 * A FIN: passed on; without half-open the sockets end themselves too,
 * and what a pipe holds for the ending socket goes out before its FIN.
 */
static void
client_end(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	(void)ev;
	if (!p->svc->conf->allow_half_open)
		splice_stop(p->u2c, true);
	if (p->up != NULL && !nc_socket_destroyed(p->up))
		(void)nc_socket_end(p->up, NULL, 0);
}

static void
up_end(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	(void)ev;
	if (!p->svc->conf->allow_half_open)
		splice_stop(p->c2u, true);
	if (!nc_socket_destroyed(p->client))
		(void)nc_socket_end(p->client, NULL, 0);
}

static void
pair_timeout(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	(void)ev;
	/* Idle on this leg: both go. */
	pair_unsplice(p);
	nc_socket_destroy(p->client);
	if (p->up != NULL)
		nc_socket_destroy(p->up);
}

/* Freed once both `close` events came: destroyed is not closed yet. */
static void
pair_free_if_done(struct pair *p)
{
	if (p->client_closed && (p->up == NULL || p->up_closed)) {
		splice_free(p->c2u);
		splice_free(p->u2c);
		nc_socket_release(p->client);
		if (p->up != NULL)
			nc_socket_release(p->up);
		free(p);
	}
}

/*
 * The other side closed cleanly: s flushes what it has for it, then ends;
 * what s still reads has nowhere to go and is dropped.
 */
static void
pair_wind_down(struct nc_socket *s, nc_listener_cb data_cb, struct pair *p)
{
	(void)nc_socket_off(s, NC_EV_DATA, data_cb, p);
	nc_socket_resume(s);
	(void)nc_socket_end(s, NULL, 0);
}

static void
client_close(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	p->client_closed = true;
	pair_unsplice(p);
	/* An error closes the other side; a clean close lets it flush. */
	if (p->up != NULL && !nc_socket_destroyed(p->up)) {
		if (ev->had_error || !p->connected)
			nc_socket_destroy(p->up);
		else
			pair_wind_down(p->up, up_data, p);
	}
	pair_free_if_done(p);
}

static void
up_close(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	p->up_closed = true;
	pair_unsplice(p);
	if (p->target != NULL)
		p->target->active--;
	if (!p->connected) {
		/* It never connected: the next upstream, if any. */
		nc_socket_release(p->up);
		p->up = NULL;
		p->up_closed = false;
		p->target = NULL;
		if (!nc_socket_destroyed(p->client))
			proxy_try(p);
		else
			pair_free_if_done(p);
		return;
	}
	if (!nc_socket_destroyed(p->client)) {
		if (ev->had_error)
			nc_socket_destroy(p->client);
		else
			pair_wind_down(p->client, client_data, p);
	}
	pair_free_if_done(p);
}

static void
up_error(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)s;
	if (!p->connected && p->target != NULL)
		upstream_mark_down(p->svc, p->target, ev->error->message);
}

static void
up_connect_timeout(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair	*p = arg;

	(void)ev;
	if (p->connected)
		return;
	upstream_mark_down(p->svc, p->target, "connect timed out");
	nc_socket_destroy(s);
}

static void
client_error(void *s, const struct nc_event_args *ev, void *arg)
{
	(void)s;
	(void)ev;
	(void)arg;
	/* A client's reset is routine: `close` follows with had_error. */
}

static void
up_connect(void *s, const struct nc_event_args *ev, void *arg)
{
	struct pair		*p = arg;
	const struct nc_service	*c = p->svc->conf;

	(void)ev;
	p->connected = true;
	(void)nc_socket_off(s, NC_EV_TIMEOUT, up_connect_timeout, p);
	(void)nc_socket_set_timeout(s, c->idle_timeout_ms, NULL, NULL);
	if (c->idle_timeout_ms > 0)
		(void)nc_socket_on(s, NC_EV_TIMEOUT, pair_timeout, p);
	pair_options(p, s);
	nc_socket_resume(p->client);
}

/* The client's address goes first to the upstream, as HAProxy sends it. */
static void
proxy_send_header(struct pair *p)
{
	unsigned char	hdr[64];
	int		n;
	const char	*src = nc_socket_remote_address(p->client);
	const char	*dst = nc_socket_local_address(p->client);

	n = nc_proxy_header(p->svc->conf->send_proxy, src != NULL ? src : "",
	    nc_socket_remote_port(p->client), dst != NULL ? dst : "",
	    nc_socket_local_port(p->client), hdr, sizeof hdr);
	if (n > 0)
		(void)nc_socket_write(p->up, hdr, (size_t)n, NULL, NULL);
}

static void
proxy_try(struct pair *p)
{
	struct nc_connect_options	 o;
	const struct nc_service		*c = p->svc->conf;
	struct upstream			*u;
	int				 rc;

	while ((u = upstream_pick(p)) != NULL) {
		p->tried++;
		memset(&o, 0, sizeof o);
		o.base = worker_base;
		o.allow_half_open = c->allow_half_open;
		if (u->addr.kind == NC_LISTEN_UNIX)
			o.path = u->addr.path;
		else {
			o.host = u->addr.host;
			o.port = u->addr.port;
			o.family = nc_is_ipv6(u->addr.host) ? 6 : 4;
		}
		if ((rc = nc_connect(&o, up_connect, p, &p->up)) != 0) {
			upstream_mark_down(p->svc, u, nc_strerror(rc));
			continue;
		}
		p->target = u;
		u->active++;
		nc_socket_hold(p->up);
		if (c->send_proxy != 0)
			proxy_send_header(p);
		(void)nc_socket_on(p->up, NC_EV_DATA, up_data, p);
		(void)nc_socket_on(p->up, NC_EV_DRAIN, up_drain, p);
		(void)nc_socket_on(p->up, NC_EV_END, up_end, p);
		(void)nc_socket_on(p->up, NC_EV_ERROR, up_error, p);
		(void)nc_socket_on(p->up, NC_EV_CLOSE, up_close, p);
		(void)nc_socket_set_timeout(p->up, c->connect_timeout_ms,
		    up_connect_timeout, p);
		return;
	}
	log_warnx("service %s: every upstream is down; closing a "
	    "client", c->name);
	nc_socket_destroy(p->client);
}

void
proxy_connection(struct service *svc, struct nc_socket *client)
{
	const struct nc_service	*c = svc->conf;
	struct pair		*p;

	if ((p = calloc(1, sizeof *p)) == NULL) {
		nc_socket_destroy(client);
		return;
	}
	p->svc = svc;
	p->client = client;
	nc_socket_hold(client);
	/* Nothing is read from the client before its upstream answers. */
	nc_socket_pause(client);
	(void)nc_socket_on(client, NC_EV_DATA, client_data, p);
	(void)nc_socket_on(client, NC_EV_DRAIN, client_drain, p);
	(void)nc_socket_on(client, NC_EV_END, client_end, p);
	(void)nc_socket_on(client, NC_EV_ERROR, client_error, p);
	(void)nc_socket_on(client, NC_EV_CLOSE, client_close, p);
	if (c->idle_timeout_ms > 0)
		(void)nc_socket_set_timeout(client, c->idle_timeout_ms,
		    pair_timeout, p);
	pair_options(p, client);
	proxy_try(p);
}

/* The service's upstreams, from its configuration. */
int
proxy_init(struct service *svc)
{
	char	err[256];
	size_t	i;

	svc->nupstreams = svc->conf->nupstream;
	svc->upstreams = calloc(svc->nupstreams, sizeof *svc->upstreams);
	if (svc->upstreams == NULL)
		return -1;
	for (i = 0; i < svc->nupstreams; i++)
		if (nc_config_parse_listen(svc->conf->upstream[i],
		    &svc->upstreams[i].addr, err, sizeof err) != 0)
			return -1;
	return 0;
}

/* Adds n to the integer at key in o. */
static int
proxy_stats_add(json_t *o, const char *key, unsigned long long n)
{
	json_t	*v = json_object_get(o, key);

	return json_integer_set(v, json_integer_value(v) + (json_int_t)n);
}

/*
 * Adds one counter object per upstream to obj, keyed by its text in the
 * config; an upstream listed twice gets the sum, as the master could not
 * tell the two apart anyway. -1 without memory.
 */
int
proxy_stats(const struct service *svc, json_t *obj)
{
	const struct upstream	*u;
	json_t			*o;
	size_t			 i;

	for (i = 0; i < svc->nupstreams; i++) {
		u = &svc->upstreams[i];
		if ((o = json_object_get(obj, u->addr.text)) == NULL) {
			o = json_pack("{s:I, s:I, s:I}", "connect_failures",
			    (json_int_t)0, "sent_bytes", (json_int_t)0,
			    "received_bytes", (json_int_t)0);
			if (o == NULL || json_object_set_new(obj, u->addr.text,
			    o) != 0)
				return -1;
		}
		if (proxy_stats_add(o, "connect_failures",
		    u->connect_failures) != 0 ||
		    proxy_stats_add(o, "sent_bytes", u->sent_bytes) != 0 ||
		    proxy_stats_add(o, "received_bytes",
		    u->received_bytes) != 0)
			return -1;
	}
	return 0;
}

/*
 * The upstreams marked down now (the master asks only whether a text is
 * there); NULL without memory.
 */
json_t *
proxy_down(const struct service *svc)
{
	json_t	*list;
	size_t	 i;

	if ((list = json_array()) == NULL)
		return NULL;
	for (i = 0; i < svc->nupstreams; i++)
		if (upstream_down(&svc->upstreams[i]) &&
		    json_array_append_new(list, json_string(
		    svc->upstreams[i].addr.text)) != 0) {
			json_decref(list);
			return NULL;
		}
	return list;
}
