/*
 * The figures an operator watches, as Prometheus metric families: what
 * the master counts (stats.c), plus what the workers answer to one
 * `count` round. One JSON value is built ({"name", "type", "help",
 * "samples": [{"labels": {...}, "value": N}]}); `netclusterctl metrics
 * --json` gets it as it is, and the text exposition format (0.0.4) is
 * written from it for GET /metrics and `netclusterctl metrics`. Every
 * figure of a worker carries its service.
 *
 * The workers' figures may be up to metrics.max_age_ms old: a scrape
 * within that age of the last round is answered from it at once; later
 * ones start one round (bounded by the count timeout) and every scrape
 * that comes meanwhile waits for that same round. An answer made is
 * given again (its text written once) to scrapes within ANSWER_REUSE_MS,
 * so a storm of them costs the master one answer per period (a drain
 * has it made anew).
 */

#include <sys/types.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "master.h"

#define ANSWER_REUSE_MS	100

struct metrics_waiter {
	void			(*done)(json_t *, void *);
	void			*arg;
	struct metrics_waiter	*next;
};

static json_t		*last_round;	/* the last count answer */
static struct timespec	 last_round_at;
static bool		 round_running;
static struct metrics_waiter *waiters;
static json_t		*reuse;		/* the last answer made */
static struct timespec	 reuse_at;
static bool		 reuse_draining;	/* what it said of that */
static char		*reuse_text;	/* and its text, once asked */
static size_t		 reuse_len;

/* Families and samples. */

static json_t *
family(json_t *list, const char *name, const char *type, const char *help)
{
	json_t	*f;

	f = json_pack("{s:s, s:s, s:s, s:[]}", "name", name, "type", type,
	    "help", help, "samples");
	if (f == NULL || json_array_append_new(list, f) == -1)
		return NULL;
	return f;
}

/* A sample of f: value, then label name and value pairs, NULL-ended. */
static void
sample(json_t *f, json_t *value, ...)
{
	json_t		*labels, *s;
	const char	*k, *v;
	va_list		 ap;

	if (f == NULL || value == NULL || (labels = json_object()) == NULL) {
		json_decref(value);
		return;
	}
	va_start(ap, value);
	while ((k = va_arg(ap, const char *)) != NULL) {
		/* An empty value is the same as none (and is left out). */
		if ((v = va_arg(ap, const char *)) != NULL && *v != '\0')
			(void)json_object_set_new(labels, k, json_string(v));
	}
	va_end(ap);
	s = json_pack("{s:o, s:o}", "labels", labels, "value", value);
	if (s != NULL)
		(void)json_array_append_new(json_object_get(f, "samples"), s);
}

#define INT(n)	json_integer((json_int_t)(n))

/* /proc figures of one process; false if it cannot be read. */
struct proc_figures {
	double		start_time;	/* seconds since the epoch */
	long long	rss;		/* bytes */
	long long	fds;
};

static bool
proc_read(pid_t pid, struct proc_figures *pf)
{
	static double	 btime = -1;
	char		 path[64], buf[1024], *p;
	unsigned long long start;
	long		 pages, rss;
	FILE		*f;
	DIR		*d;
	struct dirent	*de;
	int		 i;

	if (btime < 0 && (f = fopen("/proc/stat", "r")) != NULL) {
		while (fgets(buf, sizeof buf, f) != NULL)
			if (sscanf(buf, "btime %lf", &btime) == 1)
				break;
		fclose(f);
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	p = fgets(buf, sizeof buf, f);
	fclose(f);
	/* After the command's closing parenthesis: field 3 onwards. */
	if (p == NULL || (p = strrchr(buf, ')')) == NULL)
		return false;
	for (i = 3; i < 22 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %llu", &start) != 1)
		return false;
	pf->start_time = btime + (double)start / (double)sysconf(_SC_CLK_TCK);
	snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	i = fscanf(f, "%ld %ld", &pages, &rss);
	fclose(f);
	if (i != 2)
		return false;
	pf->rss = (long long)rss * sysconf(_SC_PAGESIZE);
	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return false;
	pf->fds = 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			pf->fds++;
	closedir(d);
	if (pid == getpid())
		pf->fds--;	/* the one that read it */
	return true;
}

struct proc_families {
	json_t	*start, *rss, *fds;
};

/* service, worker and gen NULL: the master's. */
static void
proc_samples(struct proc_families *pf, pid_t pid, const char *process,
    const char *service, const char *worker, const char *gen)
{
	struct proc_figures	fig;

	if (!proc_read(pid, &fig))
		return;
	sample(pf->start, json_real(fig.start_time), "process", process,
	    "service", service, "worker", worker, "generation", gen, NULL);
	sample(pf->rss, INT(fig.rss), "process", process, "service", service,
	    "worker", worker, "generation", gen, NULL);
	sample(pf->fds, INT(fig.fds), "process", process, "service", service,
	    "worker", worker, "generation", gen, NULL);
}

/*
 * The restarts of one service (or, counted by a master before pools,
 * of all: service ""), by cause and code.
 */
static void
restart_samples(json_t *f, const char *service, json_t *causes)
{
	const char	*key;
	json_t		*v;
	char		 cause[64], *slash;	/* as stats.c's keys */

	json_object_foreach(causes, key, v) {
		snprintf(cause, sizeof cause, "%s", key);
		if (!json_is_integer(v) || (slash = strchr(cause, '/')) == NULL)
			continue;
		*slash = '\0';
		sample(f, json_incref(v), "service", service, "cause", cause,
		    "code", slash + 1, NULL);
	}
}

/* Restarts and back-offs, by service. */
static void
families_restarts(json_t *list)
{
	json_t		*f, *v, *restarts;
	const char	*key;

	f = family(list, "netcluster_worker_restarts_total", "counter",
	    "Worker processes that ended and were restarted, by service and "
	    "cause: exit (code: its status), signal (code: its name), "
	    "timeout (silent past worker_timeout_ms), ready (not ready "
	    "within ready_timeout_ms), or recycle (code: the limit).");
	restarts = json_object_get(stats_counters(), "worker_restarts");
	restart_samples(f, "", restarts);
	json_object_foreach(restarts, key, v)
		if (json_is_object(v))
			restart_samples(f, key, v);
	f = family(list, "netcluster_worker_backoffs_total", "counter",
	    "Restarts delayed by the crash-loop back-off (a worker slot that "
	    "keeps dying young), by service.");
	json_object_foreach(json_object_get(stats_counters(), "backoffs"),
	    key, v)
		sample(f, json_incref(v), "service", key, NULL);
	/* Counted by a master from before pools, for all services. */
	if ((v = json_object_get(json_object_get(stats_counters(),
	    "worker_backoffs"), "all")) != NULL)
		sample(f, json_incref(v), NULL);
}

static void
families_master(json_t *list, json_t *round)
{
	json_t		*f;
	const char	*libevent = event_get_version();
	size_t		 i;

	f = family(list, "netcluster_build_info", "gauge", "Always 1: the "
	    "version of netclusterd and of the libraries it runs with.");
	sample(f, INT(1), "version", PACKAGE_VERSION, "libevent", libevent,
	    "jansson", JANSSON_VERSION, NULL);
	f = family(list, "netcluster_ready", "gauge", "1 while every service "
	    "has a live worker and the daemon is not draining (GET /ready).");
	sample(f, INT(health_ready(NULL, 0)), NULL);
	f = family(list, "netcluster_draining", "gauge", "1 while draining "
	    "(netclusterctl drain): the balancer is told to send nothing new.");
	sample(f, INT(master.draining), NULL);
	f = family(list, "netcluster_generation", "gauge", "The generation "
	    "of each service's workers (each reload starts the next).");
	for (i = 0; i < master.gen->npools; i++)
		sample(f, INT(master.gen->pools[i]->def->generation),
		    "service", master.gen->pools[i]->name, NULL);
	families_restarts(list);
	f = family(list, "netcluster_reloads_total", "counter", "Reloads "
	    "(SIGHUP, netclusterctl reload), by result.");
	sample(f, INT(stats_get("reloads", "success")), "result", "success",
	    NULL);
	sample(f, INT(stats_get("reloads", "failure")), "result", "failure",
	    NULL);
	f = family(list, "netcluster_reload_duration_seconds", "gauge",
	    "How long the last reload took, from the request until the new "
	    "generation was online (or it failed).");
	sample(f, json_real(stats_reload_seconds()), NULL);
	f = family(list, "netcluster_upgrades_total", "counter", "Binary "
	    "upgrades in place (netclusterctl upgrade), by result.");
	sample(f, INT(stats_get("upgrades", "success")), "result", "success",
	    NULL);
	sample(f, INT(stats_get("upgrades", "failure")), "result", "failure",
	    NULL);
	f = family(list, "netcluster_control_clients", "gauge", "Clients "
	    "connected to the control socket.");
	sample(f, INT(stats_get("clients", "control")), NULL);
	f = family(list, "netcluster_control_evictions_total", "counter",
	    "Idle control clients dropped to make room for a new one.");
	sample(f, INT(stats_get("control", "evictions")), NULL);
	f = family(list, "netcluster_accept_pauses_total", "counter", "Times "
	    "accepting paused for want of file descriptors, by socket.");
	sample(f, INT(stats_get("accept_pauses", "service")), "socket",
	    "service", NULL);
	sample(f, INT(stats_get("accept_pauses", "control")), "socket",
	    "control", NULL);
	sample(f, INT(stats_get("accept_pauses", "metrics")), "socket",
	    "metrics", NULL);
	sample(f, INT(stats_get("accept_pauses", "agent")), "socket",
	    "agent", NULL);
	f = family(list, "netcluster_metrics_clients", "gauge", "HTTP clients "
	    "connected to the metrics listener.");
	sample(f, INT(stats_get("clients", "metrics")), NULL);
	f = family(list, "netcluster_metrics_workers_age_seconds", "gauge",
	    "Age of the workers' figures in this answer (at most "
	    "metrics.max_age_ms, plus one count round).");
	sample(f, json_real(round != NULL ? gen_elapsed_s(&last_round_at) : 0),
	    NULL);
}

/* Listener samples: round-robin hand-offs, which the master makes. */
static void
families_listeners(json_t *list)
{
	json_t		*handed, *refused, *requeued, *queue;
	struct listener	*l;
	size_t		 i;
	const char	*svc;

	handed = family(list, "netcluster_handoffs_total", "counter",
	    "Connections the master accepted for a round-robin listener and "
	    "a worker took.");
	refused = family(list, "netcluster_handoffs_refused_total", "counter",
	    "Hand-offs a worker refused (full, or stopping); each goes to "
	    "another worker.");
	requeued = family(list, "netcluster_handoffs_requeued_total",
	    "counter", "Hand-offs put back in the queue (refused, or their "
	    "worker died first).");
	queue = family(list, "netcluster_handoff_queue_length", "gauge",
	    "Connections accepted by the master and waiting for a worker.");
	for (i = 0; i < master.gen->nlisteners; i++) {
		l = master.gen->listeners[i];
		if (l->svc->mode != NC_MODE_ROUND_ROBIN)
			continue;
		svc = l->svc->name;
		sample(handed, INT(l->handed), "service", svc, "listener",
		    l->bound, NULL);
		sample(refused, INT(l->refused), "service", svc, "listener",
		    l->bound, NULL);
		sample(requeued, INT(l->requeued), "service", svc, "listener",
		    l->bound, NULL);
		sample(queue, INT(l->qlen), "service", svc, "listener",
		    l->bound, NULL);
	}
	sample(family(list, "netcluster_handoffs_in_flight", "gauge",
	    "Hand-offs sent to a worker and not answered yet."),
	    INT(handoff_inflight()), NULL);
}

/* Workers by state, for each service (restarting: a slot with none). */
static void
families_states(json_t *list)
{
	static const char *const states[] = {
	    "starting", "online", "stopping", "restarting" };
	struct worker	*w;
	struct pool	*p;
	json_t		*f;
	long long	 n[4];
	size_t		 i, k;
	int		 j;

	f = family(list, "netcluster_workers", "gauge", "Worker processes by "
	    "service and state (restarting: a slot waiting for its next "
	    "worker).");
	for (i = 0; i < master.gen->npools; i++) {
		p = master.gen->pools[i];
		memset(n, 0, sizeof n);
		for (w = gen_next_worker(NULL); w != NULL;
		    w = gen_next_worker(w))
			if (w->pool == p && w->state <= W_STOPPING)
				n[w->state]++;
		for (j = 0; j < p->nslots && j < p->size; j++)
			if (p->slots[j]->worker == NULL)
				n[3]++;
		for (k = 0; k < 4; k++)
			sample(f, INT(n[k]), "service", p->name, "state",
			    states[k], NULL);
	}
}

static void
families_workers(json_t *list, json_t *round)
{
	struct proc_families	 pf;
	struct worker		*w;
	struct pool		*p;
	json_t			*conns, *e, *n;
	const char		*name;
	char			 slot[16], gen[16];
	size_t			 i;

	families_states(list);
	conns = family(list, "netcluster_connections", "gauge", "Connections "
	    "open, by service and worker slot (a program without a channel: "
	    "as the kernel counts them, or absent).");
	json_array_foreach(json_object_get(round, "workers"), i, e) {
		if (!json_is_true(json_object_get(e, "answered")) ||
		    (w = gen_worker_by_id((int)json_integer_value(
		    json_object_get(e, "id")))) == NULL)
			continue;
		snprintf(slot, sizeof slot, "%d", w->slot);
		snprintf(gen, sizeof gen, "%d", w->generation);
		json_object_foreach(json_object_get(e, "services"), name, n) {
			if (!json_is_integer(n) || (p = gen_pool(name)) ==
			    NULL)
				continue;
			sample(conns, json_incref(n), "service", name, "mode",
			    nc_config_mode_name(p->def->svc->mode), "worker",
			    slot, "generation", gen, NULL);
		}
	}

	pf.start = family(list, "netcluster_process_start_time_seconds",
	    "gauge", "Start time of the master and of each worker, in seconds "
	    "since the epoch.");
	pf.fds = family(list, "netcluster_process_open_fds", "gauge",
	    "Open file descriptors of the master and of each worker.");
	pf.rss = family(list, "netcluster_process_resident_memory_bytes",
	    "gauge", "Resident memory of the master and of each worker.");
	proc_samples(&pf, getpid(), "master", NULL, NULL, NULL);
	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w)) {
		if (w->state == W_DEAD || w->pid <= 0)
			continue;
		snprintf(slot, sizeof slot, "%d", w->slot);
		snprintf(gen, sizeof gen, "%d", w->generation);
		proc_samples(&pf, w->pid, "worker", w->pool->name, slot, gen);
	}
}

/* Whether some worker has service's upstream addr marked down now. */
static bool
upstream_marked_down(const char *service, const char *addr)
{
	struct worker	*w;
	json_t		*v;
	size_t		 i;

	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		json_array_foreach(json_object_get(json_object_get(
		    w->last_count, "down"), service), i, v)
			if (json_is_string(v) &&
			    strcmp(json_string_value(v), addr) == 0)
				return true;
	return false;
}

/* Service totals from the workers' counters, with the departed's. */
static void
families_services(json_t *list)
{
	json_t		*acc, *perr, *up, *fails, *sent, *recv;
	json_t		*sum, *s, *u;
	const struct nc_service *c;
	const char	*addr;
	size_t		 i, k;

	acc = family(list, "netcluster_connections_accepted_total", "counter",
	    "Connections the workers took, by service (a worker killed "
	    "loses what it took since its last count answer).");
	perr = family(list, "netcluster_proxy_header_errors_total", "counter",
	    "Connections closed because their PROXY header was bad or late "
	    "(proxy_protocol).");
	up = family(list, "netcluster_upstream_up", "gauge", "1 unless a "
	    "worker has the proxy upstream marked down (it failed within "
	    "down_ms).");
	fails = family(list, "netcluster_upstream_connect_failures_total",
	    "counter", "Connects to a proxy upstream that failed (refused, "
	    "error, or connect_timeout_ms).");
	sent = family(list, "netcluster_upstream_sent_bytes_total", "counter",
	    "Bytes of clients sent to a proxy upstream.");
	recv = family(list, "netcluster_upstream_received_bytes_total",
	    "counter", "Bytes from a proxy upstream sent to its clients.");
	if ((sum = stats_workers_sum()) == NULL)
		return;
	for (i = 0; i < master.gen->npools; i++) {
		c = master.gen->pools[i]->def->svc;
		s = json_object_get(sum, c->name);
		if (c->handler != NC_HANDLER_PROGRAM ||
		    c->sockets == NC_SOCKETS_CLUSTER || s != NULL)
			sample(acc, INT(json_integer_value(json_object_get(s,
			    "accepted"))), "service", c->name, "mode",
			    nc_config_mode_name(c->mode), NULL);
		if (c->proxy_protocol)
			sample(perr, INT(json_integer_value(json_object_get(s,
			    "proxy_header_errors"))), "service", c->name,
			    NULL);
		if (c->handler != NC_HANDLER_PROXY)
			continue;
		for (k = 0; k < c->nupstream; k++) {
			addr = c->upstream[k];
			u = json_object_get(json_object_get(s, "upstreams"),
			    addr);
			sample(up, INT(!upstream_marked_down(c->name, addr)),
			    "service", c->name, "upstream", addr, NULL);
			sample(fails, INT(json_integer_value(json_object_get(u,
			    "connect_failures"))), "service", c->name,
			    "upstream", addr, NULL);
			sample(sent, INT(json_integer_value(json_object_get(u,
			    "sent_bytes"))), "service", c->name, "upstream",
			    addr, NULL);
			sample(recv, INT(json_integer_value(json_object_get(u,
			    "received_bytes"))), "service", c->name, "upstream",
			    addr, NULL);
		}
	}
	json_decref(sum);
}

static json_t *
families_build(json_t *round)
{
	json_t	*list;

	if ((list = json_array()) == NULL)
		return NULL;
	families_master(list, round);
	families_workers(list, round);
	families_services(list);
	families_listeners(list);
	return list;
}

/* The text exposition format, 0.0.4. */

static void
text_escape(struct evbuffer *out, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (quote && *s == '"')
			evbuffer_add(out, "\\\"", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

static void
text_render(json_t *families, struct evbuffer *out)
{
	json_t		*f, *s, *v, *labels;
	const char	*name, *key;
	size_t		 i, j;
	bool		 first;

	json_array_foreach(families, i, f) {
		name = json_string_value(json_object_get(f, "name"));
		evbuffer_add_printf(out, "# HELP %s ", name);
		text_escape(out, json_string_value(json_object_get(f, "help")),
		    false);
		evbuffer_add_printf(out, "\n# TYPE %s %s\n", name,
		    json_string_value(json_object_get(f, "type")));
		json_array_foreach(json_object_get(f, "samples"), j, s) {
			evbuffer_add_printf(out, "%s", name);
			labels = json_object_get(s, "labels");
			first = true;
			json_object_foreach(labels, key, v) {
				evbuffer_add_printf(out, "%s%s=\"",
				    first ? "{" : ",", key);
				text_escape(out, json_string_value(v), true);
				evbuffer_add(out, "\"", 1);
				first = false;
			}
			if (!first)
				evbuffer_add(out, "}", 1);
			v = json_object_get(s, "value");
			if (json_is_integer(v))
				evbuffer_add_printf(out,
				    " %" JSON_INTEGER_FORMAT "\n",
				    json_integer_value(v));
			else
				evbuffer_add_printf(out, " %.15g\n",
				    json_number_value(v));
		}
	}
}

/*
 * The text of families, into out. The answer being reused is written
 * once and copied from then on.
 */
void
metrics_text(json_t *families, struct evbuffer *out)
{
	struct evbuffer	*b;
	size_t		 len;

	if (families != reuse || reuse == NULL) {
		text_render(families, out);
		return;
	}
	if (reuse_text == NULL && (b = evbuffer_new()) != NULL) {
		text_render(families, b);
		len = evbuffer_get_length(b);
		if ((reuse_text = malloc(len)) != NULL) {
			evbuffer_remove(b, reuse_text, len);
			reuse_len = len;
		}
		evbuffer_free(b);
	}
	if (reuse_text != NULL)
		(void)evbuffer_add(out, reuse_text, reuse_len);
	else
		text_render(families, out);
}

/* The answer is made again next time. */
static void
answer_drop(void)
{
	json_decref(reuse);
	reuse = NULL;
	free(reuse_text);
	reuse_text = NULL;
}

static json_t *
answer_new(json_t *round)
{
	answer_drop();
	reuse_draining = master.draining;
	if ((reuse = families_build(round)) != NULL)
		clock_gettime(CLOCK_MONOTONIC, &reuse_at);
	return reuse;
}

/* Collecting: one count round at a time, its answer kept max_age_ms. */

static void
round_done(json_t *counts, void *arg)
{
	struct metrics_waiter	*wt, *list = waiters;
	json_t			*families;

	(void)arg;
	round_running = false;
	waiters = NULL;
	json_decref(last_round);
	last_round = json_incref(counts);
	clock_gettime(CLOCK_MONOTONIC, &last_round_at);
	families = json_incref(answer_new(counts));
	while ((wt = list) != NULL) {
		list = wt->next;
		wt->done(families, wt->arg);
		free(wt);
	}
	json_decref(families);
}

/*
 * done(families, arg), now or after one count round; families is NULL
 * without memory. The caller must not free it.
 */
void
metrics_collect(void (*done)(json_t *, void *), void *arg)
{
	struct metrics_waiter	*wt;
	json_t			*families;
	double			 max_age = gen_config()->metrics.on ?
	    gen_config()->metrics.max_age_ms / 1000.0 : 1.0;

	if (last_round != NULL && gen_elapsed_s(&last_round_at) <= max_age) {
		/* A storm of scrapes costs one answer per ANSWER_REUSE_MS. */
		if (reuse != NULL && gen_elapsed_s(&reuse_at) * 1000 <
		    ANSWER_REUSE_MS && reuse_draining == master.draining)
			families = json_incref(reuse);
		else
			families = json_incref(answer_new(last_round));
		done(families, arg);
		json_decref(families);
		return;
	}
	if ((wt = calloc(1, sizeof *wt)) == NULL) {
		done(NULL, arg);
		return;
	}
	wt->done = done;
	wt->arg = arg;
	wt->next = waiters;
	waiters = wt;
	if (round_running)
		return;
	round_running = true;
	if (count_round(round_done, NULL) == -1) {
		round_running = false;
		waiters = wt->next;
		free(wt);
		done(NULL, arg);
	}
}

void
metrics_free(void)
{
	struct metrics_waiter	*wt;

	/* A round cut short by the exit: nobody waits any more. */
	while ((wt = waiters) != NULL) {
		waiters = wt->next;
		free(wt);
	}
	json_decref(last_round);
	last_round = NULL;
	answer_drop();
}
