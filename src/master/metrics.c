/*
 * The figures an operator watches: what the master counts itself, plus
 * what the workers answer to one `count` round, as Prometheus metric
 * families. One JSON value is built ({"name", "type", "help", "samples":
 * [{"labels": {...}, "value": N}]}); `netclusterctl metrics --json`
 * gets it as it is, and the text exposition format (0.0.4) is written
 * from it for GET /metrics and `netclusterctl metrics`.
 *
 * The workers' figures may be up to metrics.max_age_ms old: a scrape
 * within that age of the last round is answered from it at once; later
 * ones start one round (bounded by the count timeout) and every scrape
 * that comes meanwhile waits for that same round. An answer made is
 * given again (its text written once) to scrapes within ANSWER_REUSE_MS,
 * so a storm of them costs the master one answer per period (a drain
 * has it made anew). A worker's counters are cumulative for its life;
 * once it is gone, its last answer is kept in a sum of the departed, so
 * a service's totals never go down.
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
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

static json_t		*counters;	/* what the master counted */
static json_t		*departed;	/* by service: gone workers' */
static json_t		*last_round;	/* the last count answer */
static struct timespec	 last_round_at;
static bool		 round_running;
static struct metrics_waiter *waiters;
static struct timespec	 reload_started;
static bool		 reload_timing;
static json_t		*reuse;		/* the last answer made */
static struct timespec	 reuse_at;
static char		*reuse_text;	/* and its text, once asked */
static size_t		 reuse_len;

static json_t *
counters_get(void)
{
	if (counters == NULL && (counters = json_object()) == NULL)
		fatalx("out of memory");
	return counters;
}

/* counters[family][key] += n; a family is an object of numbers. */
void
stats_add(const char *family, const char *key, json_int_t n)
{
	json_t	*f, *v;

	if ((f = json_object_get(counters_get(), family)) == NULL) {
		if ((f = json_object()) == NULL ||
		    json_object_set_new(counters, family, f) == -1)
			return;
	}
	v = json_object_get(f, key);
	(void)json_object_set_new(f, key, json_integer(n +
	    (v != NULL ? json_integer_value(v) : 0)));
}

static json_int_t
stats_get(const char *family, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(
	    counters_get(), family), key));
}

/* A worker slot's process ended and is restarted (after back-off or not). */
void
stats_restart(int status, bool backoff)
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
	stats_add("worker_restarts", key, 1);
	if (backoff)
		stats_add("worker_backoffs", "all", 1);
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
	    json_real(elapsed_s(&reload_started)));
}

/*
 * The sum of b's numbers into a, at every depth ("stats" trees are
 * objects of counters and of such objects).
 */
static void
tree_add(json_t *a, json_t *b)
{
	const char	*key;
	json_t		*v, *mine;

	json_object_foreach(b, key, v) {
		mine = json_object_get(a, key);
		if (json_is_integer(v))
			(void)json_object_set_new(a, key, json_integer(
			    json_integer_value(v) + json_integer_value(mine)));
		else if (json_is_object(v)) {
			if (!json_is_object(mine)) {
				if ((mine = json_object()) == NULL ||
				    json_object_set_new(a, key, mine) == -1)
					continue;
			}
			tree_add(mine, v);
		}
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
 * What a worker said, kept as it means something here: the counters
 * the metrics know, of the services and upstreams configured, so a
 * worker's odd keys never grow the totals.
 */
static json_t *
stats_known(json_t *stats)
{
	const struct nc_service	*c;
	json_t			*out, *svc, *mine, *ups, *up, *u;
	size_t			 i, k;

	if ((out = json_object()) == NULL)
		return NULL;
	for (i = 0; i < master_nservices; i++) {
		c = master_services[i].conf;
		if (!json_is_object(svc = json_object_get(stats, c->name)) ||
		    (mine = json_object()) == NULL)
			continue;
		(void)json_object_set_new(out, c->name, mine);
		copy_count(mine, svc, "accepted");
		copy_count(mine, svc, "proxy_header_errors");
		ups = json_object_get(svc, "upstreams");
		for (k = 0; k < c->nupstream && json_is_object(ups); k++) {
			if (!json_is_object(up = json_object_get(ups,
			    c->upstream[k])) || (u = json_object()) == NULL)
				continue;
			if (json_object_get(mine, "upstreams") == NULL)
				(void)json_object_set_new(mine, "upstreams",
				    json_object());
			(void)json_object_set_new(json_object_get(mine,
			    "upstreams"), c->upstream[k], u);
			copy_count(u, up, "connect_failures");
			copy_count(u, up, "sent_bytes");
			copy_count(u, up, "received_bytes");
		}
	}
	return out;
}

/* A worker answered `count`, or said its last words: its counters. */
void
stats_worker_answered(struct worker *w, json_t *msg)
{
	json_t	*stats = json_object_get(msg, "stats");
	json_t	*down = json_object_get(msg, "upstreams_down");

	if (!json_is_object(stats) || (stats = stats_known(stats)) == NULL)
		return;
	json_decref(w->last_count);
	w->last_count = json_pack("{s:o, s:O*}", "stats", stats, "down",
	    json_is_object(down) ? down : NULL);
}

/* A worker is gone: what it last said it did stays in the totals. */
void
stats_worker_gone(struct worker *w)
{
	if (w->last_count == NULL)
		return;
	if (departed == NULL && (departed = json_object()) == NULL)
		return;
	tree_add(departed, json_object_get(w->last_count, "stats"));
}

/*
 * For an upgrade: the counters go on in the new master (each worker it
 * adopts takes its last answer along: supervisor_export()).
 */
json_t *
stats_export(void)
{
	return json_pack("{s:O, s:O*, s:b}", "counters", counters_get(),
	    "departed", departed, "draining", master_draining);
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
	master_draining = json_is_true(json_object_get(state, "draining"));
}

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

/* worker and gen NULL: the master's. */
static void
proc_samples(struct proc_families *pf, pid_t pid, const char *process,
    const char *worker, const char *gen)
{
	struct proc_figures	fig;

	if (!proc_read(pid, &fig))
		return;
	sample(pf->start, json_real(fig.start_time), "process", process,
	    "worker", worker, "generation", gen, NULL);
	sample(pf->rss, INT(fig.rss), "process", process, "worker", worker,
	    "generation", gen, NULL);
	sample(pf->fds, INT(fig.fds), "process", process, "worker", worker,
	    "generation", gen, NULL);
}

/* The workers' counters summed: the departed's plus each live one's. */
static json_t *
workers_sum(void)
{
	json_t		*sum;
	struct worker	*w;

	sum = departed != NULL ? json_deep_copy(departed) : json_object();
	if (sum == NULL)
		return NULL;
	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
		if (w->last_count != NULL)
			tree_add(sum, json_object_get(w->last_count, "stats"));
	return sum;
}

static void
families_master(json_t *list, json_t *round)
{
	json_t		*f, *v;
	const char	*key;
	char		 cause[16], *slash;
	const char	*libevent = event_get_version();

	f = family(list, "netcluster_build_info", "gauge", "Always 1: the "
	    "version of netclusterd and of the libraries it runs with.");
	sample(f, INT(1), "version", PACKAGE_VERSION, "libevent", libevent,
	    "jansson", JANSSON_VERSION, NULL);
	f = family(list, "netcluster_ready", "gauge", "1 while every service "
	    "has a live worker and the daemon is not draining (GET /ready).");
	sample(f, INT(health_ready(NULL, 0)), NULL);
	f = family(list, "netcluster_draining", "gauge", "1 while draining "
	    "(netclusterctl drain): the balancer is told to send nothing new.");
	sample(f, INT(master_draining), NULL);
	f = family(list, "netcluster_generation", "gauge", "The generation "
	    "of workers now serving (each reload starts the next).");
	sample(f, INT(supervisor_generation()), NULL);
	f = family(list, "netcluster_worker_restarts_total", "counter",
	    "Worker processes that ended and were restarted, by cause: exit "
	    "(code: its status) or signal (code: its name).");
	json_object_foreach(json_object_get(counters_get(), "worker_restarts"),
	    key, v) {
		snprintf(cause, sizeof cause, "%s", key);
		if ((slash = strchr(cause, '/')) == NULL)
			continue;
		*slash = '\0';
		sample(f, json_incref(v), "cause", cause, "code", slash + 1,
		    NULL);
	}
	f = family(list, "netcluster_worker_backoffs_total", "counter",
	    "Restarts delayed by the crash-loop back-off (a worker slot that "
	    "keeps dying young).");
	sample(f, INT(stats_get("worker_backoffs", "all")), NULL);
	f = family(list, "netcluster_reloads_total", "counter", "Reloads "
	    "(SIGHUP, netclusterctl reload), by result.");
	sample(f, INT(stats_get("reloads", "success")), "result", "success",
	    NULL);
	sample(f, INT(stats_get("reloads", "failure")), "result", "failure",
	    NULL);
	f = family(list, "netcluster_reload_duration_seconds", "gauge",
	    "How long the last reload took, from the request until the new "
	    "generation was online (or it failed).");
	v = json_object_get(counters_get(), "reload_duration_seconds");
	sample(f, json_real(json_is_real(v) ? json_real_value(v) : 0), NULL);
	f = family(list, "netcluster_upgrades_total", "counter", "Binary "
	    "upgrades in place (netclusterctl upgrade), by result.");
	sample(f, INT(stats_get("upgrades", "success")), "result", "success",
	    NULL);
	sample(f, INT(stats_get("upgrades", "failure")), "result", "failure",
	    NULL);
	f = family(list, "netcluster_control_clients", "gauge", "Clients "
	    "connected to the control socket.");
	sample(f, INT(control_clients()), NULL);
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
	sample(f, INT(health_clients()), NULL);
	f = family(list, "netcluster_metrics_workers_age_seconds", "gauge",
	    "Age of the workers' figures in this answer (at most "
	    "metrics.max_age_ms, plus one count round).");
	sample(f, json_real(round != NULL ? elapsed_s(&last_round_at) : 0),
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
	for (i = 0; i < master_nlisteners; i++) {
		l = master_listeners[i];
		if (l == NULL || l->service->conf->mode != NC_MODE_ROUND_ROBIN)
			continue;
		svc = l->service->conf->name;
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
	    INT(supervisor_inflight()), NULL);
}

static struct worker *
worker_by_id(int id)
{
	struct worker	*w;

	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
		if (w->id == id)
			return w;
	return NULL;
}

static void
families_workers(json_t *list, json_t *round)
{
	static const char *const states[] = {
	    "starting", "online", "stopping", "restarting" };
	struct proc_families	 pf;
	struct worker		*w;
	json_t			*f, *conns, *e, *n;
	const char		*name;
	char			 slot[16], gen[16];
	long long		 nstate[4] = { 0, 0, 0, 0 };
	size_t			 i, k;

	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
		if (w->state <= W_STOPPING)
			nstate[w->state]++;
	for (k = 0; k < (size_t)master_nworkers; k++)
		if (master_workers[k] == NULL)
			nstate[3]++;
	f = family(list, "netcluster_workers", "gauge", "Worker processes by "
	    "state (restarting: a slot waiting for its next worker).");
	for (k = 0; k < 4; k++)
		sample(f, INT(nstate[k]), "state", states[k], NULL);

	conns = family(list, "netcluster_connections", "gauge", "Connections "
	    "open, by service and worker slot (a program without a channel: "
	    "as the kernel counts them, or absent).");
	json_array_foreach(json_object_get(round, "workers"), i, e) {
		if (!json_is_true(json_object_get(e, "answered")) ||
		    (w = worker_by_id((int)json_integer_value(
		    json_object_get(e, "id")))) == NULL)
			continue;
		snprintf(slot, sizeof slot, "%d", w->slot);
		snprintf(gen, sizeof gen, "%d", w->generation);
		json_object_foreach(json_object_get(e, "services"), name, n) {
			if (!json_is_integer(n) || service_by_name(name) ==
			    NULL)
				continue;
			sample(conns, json_incref(n), "service", name, "mode",
			    nc_config_mode_name(service_by_name(name)->conf->
			    mode), "worker", slot, "generation", gen, NULL);
		}
	}

	pf.start = family(list, "netcluster_process_start_time_seconds",
	    "gauge", "Start time of the master and of each worker, in seconds "
	    "since the epoch.");
	pf.fds = family(list, "netcluster_process_open_fds", "gauge",
	    "Open file descriptors of the master and of each worker.");
	pf.rss = family(list, "netcluster_process_resident_memory_bytes",
	    "gauge", "Resident memory of the master and of each worker.");
	proc_samples(&pf, getpid(), "master", NULL, NULL);
	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w)) {
		if (w->state == W_DEAD || w->pid <= 0)
			continue;
		snprintf(slot, sizeof slot, "%d", w->slot);
		snprintf(gen, sizeof gen, "%d", w->generation);
		proc_samples(&pf, w->pid, "worker", slot, gen);
	}
}

/* Whether some worker has service's upstream addr marked down now. */
static bool
upstream_marked_down(const char *service, const char *addr)
{
	struct worker	*w;
	json_t		*v;
	size_t		 i;

	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
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
	if ((sum = workers_sum()) == NULL)
		return;
	for (i = 0; i < master_nservices; i++) {
		c = master_services[i].conf;
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

/* The answer is made again next time (what it says changed). */
void
metrics_changed(void)
{
	json_decref(reuse);
	reuse = NULL;
	free(reuse_text);
	reuse_text = NULL;
}

static json_t *
answer_new(json_t *round)
{
	metrics_changed();
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
	double			 max_age = master_config->metrics.on ?
	    master_config->metrics.max_age_ms / 1000.0 : 1.0;

	if (last_round != NULL && elapsed_s(&last_round_at) <= max_age) {
		/* A storm of scrapes costs one answer per ANSWER_REUSE_MS. */
		if (reuse != NULL && elapsed_s(&reuse_at) * 1000 <
		    ANSWER_REUSE_MS)
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
	if (supervisor_count(NULL, round_done, NULL) == -1) {
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
	json_decref(counters);
	json_decref(departed);
	json_decref(last_round);
	counters = departed = last_round = NULL;
	metrics_changed();
}
