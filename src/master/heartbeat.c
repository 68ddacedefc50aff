/*
 * Hung workers. A worker whose library beats by itself is sent `beat`
 * once with its interval (a quarter of its service's worker_timeout_ms,
 * at most HEARTBEAT_MAX_MS) and sends `pong` every interval from its
 * loop; one of an older library is asked `ping` every interval and
 * answers from its loop; a notify program that was given WATCHDOG_USEC
 * pings by itself (WATCHDOG=1, ready.c). Whatever a worker says counts.
 * Silent for two intervals, it no longer counts as serving
 * (gen_worker_serves(): /ready, the agent, status, hand-offs); silent
 * worker_timeout_ms, it is killed: SIGABRT to its process group, so it
 * leaves a core where the operator keeps them, then SIGKILL HUNG_KILL_MS
 * later. Its hand-offs never acked go to another worker once it is
 * reaped, and its slot starts a new one at once.
 */

#include <sys/types.h>

#include <signal.h>
#include <stdio.h>

#include <event2/event.h>

#include "master.h"

#define HEARTBEAT_TICK_MS	100
#define HEARTBEAT_MAX_MS	1000	/* between two pings, at most */
#define HUNG_KILL_MS		500	/* from SIGABRT to SIGKILL */
#define HEARTBEAT_LATE_MS	500	/* a tick this late: judged next */

static struct event	*tick;
static struct timespec	 walk_at;	/* the next walk; 0: the next tick */
static struct timespec	 last;		/* the last tick, or when armed */

/*
 * How w is watched: asked every *interval ms (0: never), hung once
 * silent *timeout ms (0: never), not serving once silent *quiet ms. A
 * worker that said it answers `ping` is asked every quarter of its
 * worker_timeout_ms, at most HEARTBEAT_MAX_MS, and every
 * HEARTBEAT_MAX_MS without a timeout where recycle.connections counts
 * what it answers. A notify program pings by itself (WATCHDOG=1 at half
 * of WATCHDOG_USEC, by systemd's custom): it is not serving after three
 * quarters of its timeout.
 */
static void
heartbeat_plan(const struct worker *w, int *interval, int *timeout,
    int *quiet)
{
	const struct nc_service	*svc;
	int			 ms;

	*interval = *timeout = *quiet = 0;
	if (w->def == NULL || w->state != W_ONLINE || w->killed)
		return;
	svc = w->def->svc;
	if (w->ipc == NULL) {
		if (svc->notify && svc->has_worker_timeout) {
			*timeout = svc->worker_timeout_ms;
			*quiet = *timeout / 4 * 3;
		}
		return;
	}
	if (!w->heartbeat)
		return;
	*timeout = svc->worker_timeout_ms;
	ms = *timeout / 4;
	*interval = *timeout == 0 ? (svc->recycle.connections > 0 ?
	    HEARTBEAT_MAX_MS : 0) : ms > HEARTBEAT_MAX_MS ? HEARTBEAT_MAX_MS :
	    ms > 0 ? ms : 1;
	if (*timeout > 0)
		*quiet = 2 * *interval + HEARTBEAT_TICK_MS;
}

static void
heartbeat_kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	worker_signal(w, SIGKILL);
}

/*
 * w is hung (why says how we know): SIGABRT, SIGKILL soon after, and no
 * more connections meanwhile.
 */
void
heartbeat_hung(struct worker *w, const char *why)
{
	struct timeval	tv = { 0, HUNG_KILL_MS * 1000 };

	if (w->killed || w->state == W_DEAD)
		return;
	log_err("service %s: worker %d [pid %d] (slot %d) %s; killing it "
	    "(SIGABRT, then SIGKILL)", w->pool->name, w->id, (int)w->pid,
	    w->slot, why);
	w->cause = "timeout";
	w->cause_code = "worker_timeout_ms";
	w->killed = true;
	w->state = W_STOPPING;
	worker_signal(w, SIGABRT);
	if (w->kill_ev != NULL)
		event_free(w->kill_ev);
	if ((w->kill_ev = evtimer_new(master.base, heartbeat_kill_cb, w)) ==
	    NULL || evtimer_add(w->kill_ev, &tv) == -1)
		worker_signal(w, SIGKILL);
	worker_event(w, WEV_CHANGED);
}

/*
 * What w needs now: `beat` or `ping`, and its silence judged (unless the
 * tick is late). Returns the ms until it needs looking at again.
 */
static long
heartbeat_one(struct worker *w, const struct timespec *now, bool late)
{
	char	why[128];
	int	interval, timeout, quiet;
	long	silent, due = HEARTBEAT_MAX_MS;

	heartbeat_plan(w, &interval, &timeout, &quiet);
	if (w->beats && interval > 0) {
		if (w->beat_ms != interval) {
			w->beat_ms = interval;
			worker_send(w, json_pack("{s:s, s:i}", "type", "beat",
			    "every", interval));
		}
	} else if (interval > 0) {
		if (gen_ms_between(&w->pinged, now) >= interval) {
			w->pinged = *now;
			worker_send(w, json_pack("{s:s}", "type", "ping"));
		}
		due = interval - gen_ms_between(&w->pinged, now);
	}
	if (timeout <= 0 || late)
		return due;
	silent = gen_ms_between(&w->heard, now);
	if (silent >= timeout) {
		snprintf(why, sizeof why, "silent for %ld ms "
		    "(worker_timeout_ms %d)", silent, timeout);
		heartbeat_hung(w, why);
		return due;
	}
	if (silent >= quiet && !w->silent) {
		w->silent = true;
		log_warnx("service %s: worker %d [pid %d] (slot %d) silent for "
		    "%ld ms; it takes nothing until it answers", w->pool->name,
		    w->id, (int)w->pid, w->slot, silent);
		worker_event(w, WEV_CHANGED);
	}
	if (!w->silent && quiet - silent < due)
		due = quiet - silent;
	if (timeout - silent < due)
		due = timeout - silent;
	return due;
}

/*
 * Every HEARTBEAT_TICK_MS, but the workers are walked only when one of
 * them is due (at least every HEARTBEAT_MAX_MS, and at once when one
 * comes online): at rest with a few hundred workers, the walk was most
 * of what the master did.
 */
static void
heartbeat_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	static bool		 skipped;
	struct worker		*w, *next;
	struct timespec		 now;
	bool			 late;
	long			 due, soonest = HEARTBEAT_MAX_MS;

	(void)fd;
	(void)what;
	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &now);
	/*
	 * The master itself was held up (a loaded machine, a long request):
	 * what the workers said meanwhile may still be unread, so nobody's
	 * silence is judged on this tick, only on the next (which is, even
	 * if late as well).
	 */
	late = !skipped && gen_ms_between(&last, &now) >= HEARTBEAT_LATE_MS;
	skipped = late;
	last = now;
	if (!late && walk_at.tv_sec != 0 && gen_ms_between(&now, &walk_at) > 0)
		return;
	for (w = gen_next_worker(NULL); w != NULL; w = next) {
		next = gen_next_worker(w);
		if ((due = heartbeat_one(w, &now, late)) < soonest)
			soonest = due;
	}
	if (late)
		soonest = 0;	/* judged on the next tick */
	walk_at = now;
	walk_at.tv_sec += soonest / 1000;
	walk_at.tv_nsec += (soonest % 1000) * 1000000;
	if (walk_at.tv_nsec >= 1000000000) {
		walk_at.tv_sec++;
		walk_at.tv_nsec -= 1000000000;
	}
}

/* A worker online: its silence counts from now. */
static void
heartbeat_online(struct worker *w)
{
	clock_gettime(CLOCK_MONOTONIC, &w->heard);
	w->pinged = w->heard;
	w->beat_ms = 0;
	walk_at.tv_sec = 0;	/* walked on the next tick */
}

/* A pong: the connections it took so far (recycle.c counts them). */
void
heartbeat_pong(struct worker *w, json_t *msg)
{
	json_t	*n = json_object_get(msg, "accepted");

	if (json_is_integer(n) && json_integer_value(n) >= 0)
		w->accepted = (unsigned long long)json_integer_value(n);
}

void
heartbeat_init(void)
{
	struct timeval	tv = { 0, HEARTBEAT_TICK_MS * 1000 };

	worker_hook(WEV_ONLINE, heartbeat_online);
	clock_gettime(CLOCK_MONOTONIC, &last);
	if ((tick = event_new(master.base, -1, EV_PERSIST, heartbeat_tick_cb,
	    NULL)) == NULL || event_add(tick, &tv) == -1)
		fatalx("cannot arm the heartbeat");
}

void
heartbeat_stop(void)
{
	if (tick != NULL)
		event_free(tick);
	tick = NULL;
}
