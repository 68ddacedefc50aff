/*
 * What the master counts: its own counters (restarts, reloads, upgrades,
 * accept pauses, evictions, clients), and the workers' counters summed.
 * A worker's counters are cumulative for its life; once it is gone, its
 * last answer is kept in a sum of the departed, by service, so a
 * service's totals never go down. An upgrade hands all of it over.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master.h"

static json_t		*counters;	/* family: {key: n, or {key: n}} */
static json_t		*departed;	/* by service: gone workers' */
static struct timespec	 reload_started;
static bool		 reload_timing;

static json_t *
counters_get(void)
{
	if (counters == NULL && (counters = json_object()) == NULL)
		fatalx("out of memory");
	return counters;
}

/* The object named key in o, made if need be; NULL without memory. */
static json_t *
object_in(json_t *o, const char *key)
{
	json_t	*v;

	if ((v = json_object_get(o, key)) != NULL && json_is_object(v))
		return v;
	if ((v = json_object()) == NULL || json_object_set_new(o, key, v) == -1)
		return NULL;
	return v;
}

static void
number_add(json_t *o, const char *key, json_int_t n)
{
	json_t	*v = json_object_get(o, key);

	if (o != NULL)
		(void)json_object_set_new(o, key, json_integer(n +
		    (json_is_integer(v) ? json_integer_value(v) : 0)));
}

/* counters[family][key] += n. */
void
stats_add(const char *family, const char *key, json_int_t n)
{
	number_add(object_in(counters_get(), family), key, n);
}

/* counters[family][key] = n: a gauge. */
void
stats_set(const char *family, const char *key, json_int_t n)
{
	json_t	*f = object_in(counters_get(), family);

	if (f != NULL)
		(void)json_object_set_new(f, key, json_integer(n));
}

json_int_t
stats_get(const char *family, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(
	    counters_get(), family), key));
}

json_t *
stats_counters(void)
{
	return counters_get();
}

/*
 * A slot of service ended and is restarted (after back-off or not):
 * worker_restarts[service]["exit/N" or "signal/SIGNAME"].
 */
void
stats_restart(const char *service, int status)
{
	char	key[32], sig[16];

	if (WIFSIGNALED(status)) {
		if (sigabbrev_np(WTERMSIG(status)) != NULL)
			snprintf(sig, sizeof sig, "SIG%s",
			    sigabbrev_np(WTERMSIG(status)));
		else
			snprintf(sig, sizeof sig, "%d", WTERMSIG(status));
		snprintf(key, sizeof key, "signal/%s", sig);
	} else
		snprintf(key, sizeof key, "exit/%d", WEXITSTATUS(status));
	number_add(object_in(object_in(counters_get(), "worker_restarts"),
	    service), key, 1);
}

/*
 * A slot's worker the master ended (cause "timeout", "ready"), or one it
 * replaced ("recycle"): worker_restarts[service]["CAUSE/CODE"], code the
 * limit that fired.
 */
void
stats_restart_cause(const char *service, const char *cause,
    const char *code)
{
	char	key[64];

	snprintf(key, sizeof key, "%s/%s", cause, code != NULL ? code : "");
	number_add(object_in(object_in(counters_get(), "worker_restarts"),
	    service), key, 1);
}

void
stats_reload_begin(void)
{
	clock_gettime(CLOCK_MONOTONIC, &reload_started);
	reload_timing = true;
}

void
stats_reload_end(bool ok)
{
	if (!reload_timing)
		return;
	reload_timing = false;
	stats_add("reloads", ok ? "success" : "failure", 1);
	(void)json_object_set_new(counters_get(), "reload_duration_seconds",
	    json_real(gen_elapsed_s(&reload_started)));
}

double
stats_reload_seconds(void)
{
	json_t	*v = json_object_get(counters_get(),
	    "reload_duration_seconds");

	return json_is_real(v) ? json_real_value(v) : 0;
}

/* The sum of b's numbers into a, at every depth. */
static void
tree_add(json_t *a, json_t *b)
{
	const char	*key;
	json_t		*v;

	json_object_foreach(b, key, v) {
		if (json_is_integer(v))
			number_add(a, key, json_integer_value(v));
		else if (json_is_object(v))
			tree_add(object_in(a, key), v);
	}
}

static void
copy_count(json_t *to, json_t *from, const char *key)
{
	json_t	*v = json_object_get(from, key);

	if (json_is_integer(v) && json_integer_value(v) >= 0)
		(void)json_object_set(to, key, v);
}

/*
 * What a worker said, kept as it means something here: the counters the
 * metrics know, of its own service and its upstreams, so a worker's odd
 * keys never grow the totals.
 */
static json_t *
stats_known(const struct nc_service *c, json_t *stats)
{
	json_t	*out, *svc, *mine, *ups, *up, *u;
	size_t	 k;

	if ((out = json_object()) == NULL)
		return NULL;
	if (c == NULL || !json_is_object(svc = json_object_get(stats,
	    c->name)) || (mine = object_in(out, c->name)) == NULL)
		return out;
	copy_count(mine, svc, "accepted");
	copy_count(mine, svc, "proxy_header_errors");
	ups = json_object_get(svc, "upstreams");
	for (k = 0; k < c->nupstream && json_is_object(ups); k++) {
		if (!json_is_object(up = json_object_get(ups,
		    c->upstream[k])) ||
		    (u = object_in(object_in(mine, "upstreams"),
		    c->upstream[k])) == NULL)
			continue;
		copy_count(u, up, "connect_failures");
		copy_count(u, up, "sent_bytes");
		copy_count(u, up, "received_bytes");
	}
	return out;
}

/* A worker answered `count`, or said its last words: its counters. */
void
stats_worker_answered(struct worker *w, json_t *msg)
{
	json_t	*stats = json_object_get(msg, "stats");
	json_t	*down = json_object_get(msg, "upstreams_down");

	if (!json_is_object(stats) || (stats = stats_known(w->def != NULL ?
	    w->def->svc : NULL, stats)) == NULL)
		return;
	json_decref(w->last_count);
	w->last_count = json_pack("{s:o, s:O*}", "stats", stats, "down",
	    json_is_object(down) ? down : NULL);
}

/* A worker is gone: what it last said it did stays in the totals. */
static void
stats_worker_gone(struct worker *w)
{
	if (w->last_count == NULL)
		return;
	if (departed == NULL && (departed = json_object()) == NULL)
		return;
	tree_add(departed, json_object_get(w->last_count, "stats"));
}

/* The workers' counters summed: the departed's plus each live one's. */
json_t *
stats_workers_sum(void)
{
	json_t		*sum;
	struct worker	*w;

	sum = departed != NULL ? json_deep_copy(departed) : json_object();
	if (sum == NULL)
		return NULL;
	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		if (w->last_count != NULL)
			tree_add(sum, json_object_get(w->last_count, "stats"));
	return sum;
}

/*
 * For an upgrade: the counters go on in the new master (each worker it
 * adopts takes its last answer along: pool_export()).
 */
json_t *
stats_export(void)
{
	return json_pack("{s:O, s:O*, s:b}", "counters", counters_get(),
	    "departed", departed, "draining", master.draining);
}

void
stats_adopt(json_t *state)
{
	json_t	*c = json_object_get(state, "counters");

	if (json_is_object(c)) {
		json_decref(counters);
		counters = json_deep_copy(c);
	}
	if (json_is_object(json_object_get(state, "departed"))) {
		json_decref(departed);
		departed = json_deep_copy(json_object_get(state, "departed"));
	}
	master.draining = json_is_true(json_object_get(state, "draining"));
}

void
stats_free(void)
{
	json_decref(counters);
	json_decref(departed);
	counters = departed = NULL;
}

void
stats_init(void)
{
	worker_hook(WEV_GONE, stats_worker_gone);
}
