/*
 * Messages between the workers of a service (nc_cluster_broadcast(),
 * process.send()) and from the operator (netclusterctl send), with their
 * flow control. A message goes to every other live worker of the
 * sender's pool; with `draining`, to its older workers too.
 *
 * A receiver is behind when more than MSG_SOFT_BYTES or MSG_SOFT_PKTS
 * wait for it. While a receiver of a pool is behind and still reads (it
 * took a packet in the last MSG_STALL_MS), the master stops reading the
 * channel of each worker of that pool that broadcasts (its
 * nc_cluster_broadcast() then meets NC_ENOBUFS): slow receivers slow the
 * senders down and lose nothing. A receiver that is behind and took
 * nothing for MSG_STALL_MS is stalled (stopped, stuck in a loop):
 * messages for it are dropped, counted and logged, and from then on it
 * holds nobody up; so it costs the master at most about MSG_SOFT_BYTES,
 * and nothing of its time.
 *
 * A program on inherited sockets with "messages": true has a line
 * channel instead (newline-delimited JSON on a stream socket, Node's own
 * IPC channel, NODE_CHANNEL_FD): each value it writes is broadcast, each
 * it reads is {"from": ID, "message": VALUE}. A line over the size limit,
 * or EOF, closes it.
 */

#include <sys/types.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "master.h"
#include "netcluster.h"

#define MSG_SOFT_BYTES		BROADCAST_QUEUE_MAX
#define MSG_SOFT_PKTS		1024
#define MSG_HARD_PKTS		(NC_IPC_MAX_QUEUE - 256)	/* room for conn */
#define MSG_STALL_MS		1000
#define MSG_TICK_MS		100
#define MSG_BURST		32	/* packets read a wake-up, per channel */
#define MSG_BATCH_ALWAYS	512	/* bytes: batched even when not behind */

static bool		 bp_active;	/* some sender is paused */
static struct event	*bp_timer;

static void	bp_timer_cb(evutil_socket_t, short, void *);
static void	messages_drained(void);

static size_t
queued_bytes(struct worker *w)
{
	if (w->ipc != NULL)
		return nc_ipc_queued_bytes(w->ipc);
	if (w->msg_bev != NULL)
		return evbuffer_get_length(bufferevent_get_output(w->msg_bev));
	return 0;
}

static bool
behind(struct worker *w)
{
	return queued_bytes(w) > MSG_SOFT_BYTES || (w->ipc != NULL &&
	    nc_ipc_queued(w->ipc) > MSG_SOFT_PKTS);
}

static bool
stalled(struct worker *w)
{
	if (w->ipc != NULL)
		return nc_ipc_idle_ms(w->ipc) >= MSG_STALL_MS;
	return w->msg_bev != NULL && gen_elapsed_s(&w->msg_progress) * 1000 >=
	    MSG_STALL_MS;
}

static bool
hears(struct worker *w)
{
	return (w->ipc != NULL || w->msg_bev != NULL) && !w->killed &&
	    w->state != W_DEAD;
}

/* Looks again in MSG_TICK_MS: a receiver may have stalled meanwhile. */
static void
bp_timer_arm(void)
{
	struct timeval	tv = { 0, MSG_TICK_MS * 1000 };

	if (bp_timer == NULL)
		bp_timer = evtimer_new(master.base, bp_timer_cb, NULL);
	if (bp_timer != NULL && !evtimer_pending(bp_timer, NULL))
		(void)evtimer_add(bp_timer, &tv);
}

/* Stops reading from w until no live receiver of its pool is behind. */
static void
sender_pause(struct worker *w)
{
	if (w->bp_paused)
		return;
	w->bp_paused = true;
	if (w->ipc != NULL)
		nc_ipc_pause(w->ipc, true);
	else if (w->msg_bev != NULL)
		(void)bufferevent_disable(w->msg_bev, EV_READ);
	bp_active = true;
	bp_timer_arm();
}

static void
sender_resume(struct worker *w)
{
	if (!w->bp_paused)
		return;
	w->bp_paused = false;
	if (w->ipc != NULL)
		nc_ipc_pause(w->ipc, false);
	else if (w->msg_bev != NULL) {
		(void)bufferevent_enable(w->msg_bev, EV_READ);
		/* The lines it sent meanwhile wait in our buffer. */
		bufferevent_trigger(w->msg_bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

/* Whether a live receiver of p is behind and still reads. */
static bool
pool_holding(const struct pool *p)
{
	struct worker	*w;

	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		if (w->pool == p && hears(w) && behind(w) && !stalled(w))
			return true;
	return false;
}

/*
 * A receiver's queue went down, or time passed: the senders of each
 * pool none of whose live receivers is behind are read again.
 */
static void
messages_drained(void)
{
	struct worker	*w;
	bool		 still = false;

	if (!bp_active)
		return;
	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w)) {
		if (!w->bp_paused)
			continue;
		if (pool_holding(w->pool))
			still = true;
		else
			sender_resume(w);
	}
	bp_active = still;
	if (still)
		bp_timer_arm();
	else if (bp_timer != NULL)
		(void)event_del(bp_timer);
}

static void
bp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	messages_drained();
}

static void
queue_low_cb(struct nc_ipc *ipc, void *arg)
{
	(void)ipc;
	(void)arg;
	messages_drained();
}

/*
 * Tells us when a channel's queue is down to half the marks of behind;
 * and reads a channel MSG_BURST packets a wake-up at most, since a
 * worker that broadcasts sends many at once (the master's callbacks
 * never free a channel: it closes when the worker is reaped). A pause
 * for backpressure stops a burst at once.
 */
static void
broadcast_watch(struct worker *w)
{
	if (w->ipc != NULL) {
		nc_ipc_set_low_cb(w->ipc, MSG_SOFT_BYTES / 2,
		    MSG_SOFT_PKTS / 2, queue_low_cb);
		nc_ipc_set_burst(w->ipc, MSG_BURST);
	}
}

/*
 * A message for many workers, written out once per kind of channel: from
 * the value's text as it came when there is one (nothing is written out
 * again), else from the value. The text of a broadcast frame is
 * unchecked: it goes as it is to a worker that reads message frames
 * (whose library checks it), and is checked once, on the first worker
 * that does not (a JSON `message`, whose value an older library takes
 * as checked; a line channel); not JSON, it goes to none of those.
 */
struct outmsg {
	json_t		*v;
	bool		 own_v;		/* parsed here: ours to free */
	const char	*raw;		/* the value's JSON text, or NULL */
	size_t		 rawlen;
	bool		 unchecked;	/* raw: a frame's payload, as it came */
	bool		 bad;		/* and it is not JSON */
	struct worker	*sender;	/* NULL: the operator */
	char		*vtext;		/* v written out, if raw was NULL */
	int		 from;
	const char	*service;	/* from the operator, or NULL */
	char		*text;		/* for a channel */
	size_t		 len;
	char		*line;		/* for a line channel, with its newline */
	size_t		 llen;
	struct nc_ipc_shared sh;	/* as a frame */
	bool		 sh_ready;
};

static void
outmsg_clear(struct outmsg *m)
{
	if (m->sh_ready)
		nc_ipc_shared_release(&m->sh);
	if (m->own_v)
		json_decref(m->v);
	free(m->vtext);
	free(m->text);
	free(m->line);
}

/*
 * A frame's payload, for a worker that takes the master's word for it:
 * checked once. False when it is not JSON (counted and logged on the
 * sender, the 1st, 2nd, 4th... time).
 */
static bool
outmsg_checked(struct outmsg *m)
{
	const char	*why = "?";
	struct worker	*w = m->sender;

	if (m->unchecked) {
		m->unchecked = false;
		if (nc_ipc_json_check(m->raw, m->rawlen, &why, NULL) == -1) {
			m->bad = true;
			w->bad_messages++;
			if ((w->bad_messages & (w->bad_messages - 1)) == 0)
				log_warnx("worker %d [pid %d]: a message that "
				    "is not JSON (%s) goes to no worker that "
				    "reads no frames (%lu such)", w->id,
				    (int)w->pid, why, w->bad_messages);
		}
	}
	return !m->bad;
}

static int
outmsg_value(struct outmsg *m)
{
	if (m->v == NULL) {
		/* A checked payload, parsed to be written out again. */
		if ((m->v = json_loadb(m->raw, m->rawlen, JSON_DECODE_ANY,
		    NULL)) == NULL)
			return -1;
		m->own_v = true;
	}
	if ((m->vtext = json_dumps(m->v, JSON_COMPACT |
	    JSON_ENCODE_ANY)) == NULL)
		return -1;
	m->raw = m->vtext;
	m->rawlen = strlen(m->vtext);
	return 0;
}

static int
outmsg_build(struct outmsg *m, bool line)
{
	json_t	*svc = NULL;
	char	*stext = NULL;
	int	 n;

	if (m->raw == NULL && outmsg_value(m) == -1)
		return -1;
	if (line) {
		/* One line: a value as it came may hold a newline (whitespace). */
		if (m->vtext == NULL && memchr(m->raw, '\n', m->rawlen) !=
		    NULL && outmsg_value(m) == -1)
			return -1;
		n = asprintf(&m->line, "{\"from\":%d,\"message\":%.*s}\n",
		    m->from, (int)m->rawlen, m->raw);
		if (n == -1) {
			m->line = NULL;
			return -1;
		}
		m->llen = (size_t)n;
		return 0;
	}
	if (m->service != NULL && ((svc = json_string(m->service)) == NULL ||
	    (stext = json_dumps(svc, JSON_ENCODE_ANY)) == NULL)) {
		json_decref(svc);
		return -1;
	}
	json_decref(svc);
	/* The value last: a receiver takes its text as it is (ipc.c). */
	n = asprintf(&m->text, "{\"type\":\"message\",\"from\":%d,%s%s%s"
	    "\"message\":%.*s}", m->from, stext != NULL ? "\"service\":" : "",
	    stext != NULL ? stext : "", stext != NULL ? "," : "",
	    (int)m->rawlen, m->raw);
	free(stext);
	if (n == -1) {
		m->text = NULL;
		return -1;
	}
	m->len = (size_t)n;
	return 0;
}

/* Queues one line for a program's line channel: false if it cannot. */
static bool
line_send(struct worker *w, const char *line, size_t len)
{
	return w->msg_bev != NULL && bufferevent_write(w->msg_bev, line,
	    len) == 0;
}

/*
 * Queues one message for w: 1 if it was, 0 if not (dropped: w is stalled,
 * or no channel). *slow is set when w is behind but reads.
 */
static int
deliver(struct worker *w, struct outmsg *m, bool *slow)
{
	const char	*why = NULL;

	if (!hears(w))
		return 0;
	if (behind(w)) {
		if (stalled(w))
			why = "does not read its channel";
		else if (w->ipc != NULL && nc_ipc_queued(w->ipc) >=
		    MSG_HARD_PKTS)
			why = "is too far behind";
		else
			*slow = true;
	}
	if (why != NULL) {
		w->dropped++;
		if ((w->dropped & (w->dropped - 1)) == 0)
			log_warnx("worker %d [pid %d] %s: a message for it is "
			    "dropped (%lu dropped)", w->id, (int)w->pid, why,
			    w->dropped);
		return 0;
	}
	if (w->ipc != NULL && w->msg_frames) {
		if (m->raw == NULL && outmsg_value(m) == -1)
			return 0;
		/*
		 * Behind a queue, a message of up to NC_IPC_BATCH_MAX joins
		 * the batch at its end: one packet, one wake-up, for many. A
		 * small one always does, sent once the loop has read what
		 * else came (MSG_BURST): copying it costs less than a
		 * sendmsg and a wake-up of its own.
		 */
		if (m->rawlen <= MSG_BATCH_ALWAYS || (m->rawlen <=
		    NC_IPC_BATCH_MAX && nc_ipc_queued(w->ipc) > 0))
			return nc_ipc_send_batched(w->ipc, m->from, m->raw,
			    m->rawlen, true) == 0 ? 1 : 0;
		if (!m->sh_ready) {
			nc_ipc_message_init(&m->sh, m->from, m->raw,
			    m->rawlen);
			m->sh_ready = true;
		}
		return nc_ipc_send_shared(w->ipc, &m->sh) == 0 ? 1 : 0;
	}
	if (!outmsg_checked(m))
		return 0;
	if (w->ipc != NULL) {
		if (m->text == NULL && outmsg_build(m, false) == -1)
			return 0;
		return nc_ipc_send_text(w->ipc, m->text, m->len) != -1 ? 1 : 0;
	}
	if (m->line == NULL && outmsg_build(m, true) == -1)
		return 0;
	return line_send(w, m->line, m->llen) ? 1 : 0;
}

/*
 * Every worker of p with a channel but skip, its slots' (and the ones
 * starting for them) and, with draining, its older ones too, gets m;
 * returns how many did. *slow: one of them is behind but reads.
 */
static int
deliver_pool(struct pool *p, struct outmsg *m, const struct worker *skip,
    bool with_draining, bool *slow)
{
	struct worker	*w;
	int		 i, n = 0;

	for (i = 0; i < p->nslots; i++) {
		if ((w = p->slots[i]->worker) != NULL && w != skip)
			n += deliver(w, m, slow);
		if ((w = p->slots[i]->next) != NULL && w != skip)
			n += deliver(w, m, slow);
	}
	TAILQ_FOREACH(w, &p->draining, entry)
		if (with_draining && w != skip)
			n += deliver(w, m, slow);
	return n;
}

/* m from w to the others of its pool, with the flow control. */
static void
broadcast_from(struct worker *w, struct outmsg *m, bool with_draining)
{
	bool	slow = false;

	m->sender = w;
	m->from = w->id;
	(void)deliver_pool(w->pool, m, w, with_draining, &slow);
	outmsg_clear(m);
	if (slow)
		sender_pause(w);
}

/*
 * v from w to every other live worker of its pool; raw, if not NULL, is
 * v's JSON text as it came.
 */
void
broadcast(struct worker *w, json_t *v, const char *raw, size_t rawlen,
    bool with_draining)
{
	struct outmsg	m;

	memset(&m, 0, sizeof m);
	m.v = v;
	m.raw = raw;
	m.rawlen = rawlen;
	broadcast_from(w, &m, with_draining);
}

/*
 * A broadcast frame from w: payload, its value's text, unchecked, goes
 * on as it is (see struct outmsg); the flow control is the same.
 */
void
broadcast_frame(struct worker *w, const char *payload, size_t len,
    bool with_draining)
{
	struct outmsg	m;

	memset(&m, 0, sizeof m);
	m.raw = payload;
	m.rawlen = len;
	m.unchecked = true;
	broadcast_from(w, &m, with_draining);
}

/*
 * netclusterctl send: v to every worker of service (draining ones too).
 * Returns how many got it, or -1 with err set.
 */
int
broadcast_send(const char *service, json_t *v, char *err, size_t len)
{
	struct pool	*p = gen_pool(service);
	struct outmsg	 m;
	int		 n;
	bool		 slow = false;

	if (p == NULL) {
		snprintf(err, len, "no service named \"%.64s\"", service);
		return -1;
	}
	if (p->def->svc->handler == NC_HANDLER_PROGRAM &&
	    p->def->svc->sockets == NC_SOCKETS_INHERIT &&
	    !p->def->svc->messages) {
		snprintf(err, len, "service %.64s runs a program without a "
		    "channel (\"sockets\": \"inherit\" without \"messages\": "
		    "true): it takes no messages", service);
		return -1;
	}
	memset(&m, 0, sizeof m);
	m.v = v;
	m.from = 0;
	m.service = service;
	n = deliver_pool(p, &m, NULL, true, &slow);
	outmsg_clear(&m);
	return n;
}

static void
line_read_cb(struct bufferevent *bev, void *arg)
{
	struct worker	*w = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	json_error_t	 jerr;
	json_t		*v;
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (len > NC_CLUSTER_MESSAGE_MAX) {
			free(line);
			log_warnx("worker %d [pid %d]: a message of %zu bytes, "
			    "over %d; its message channel is closed", w->id,
			    (int)w->pid, len, NC_CLUSTER_MESSAGE_MAX);
			broadcast_line_close(w);
			return;
		}
		v = json_loadb(line, len, JSON_DECODE_ANY |
		    JSON_REJECT_DUPLICATES, &jerr);
		if (v == NULL) {
			free(line);
			log_warnx("worker %d [pid %d]: a message that is not "
			    "JSON (%.80s) is dropped", w->id, (int)w->pid,
			    jerr.text);
			continue;
		}
		/* Written out again: compact, whatever the program wrote. */
		broadcast(w, v, NULL, 0, false);
		json_decref(v);
		free(line);
		if (w->bp_paused)
			return;	/* the rest once receivers caught up */
	}
	if (evbuffer_get_length(in) > NC_CLUSTER_MESSAGE_MAX) {
		log_warnx("worker %d [pid %d]: a message over %d bytes; its "
		    "message channel is closed", w->id, (int)w->pid,
		    NC_CLUSTER_MESSAGE_MAX);
		broadcast_line_close(w);
	}
}

static void
line_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct worker	*w = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		log_debug("worker %d [pid %d]: message channel closed", w->id,
		    (int)w->pid);
		broadcast_line_close(w);
	}
}

/* What the program reads of its messages: progress, and room again. */
static void
line_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct worker	*w = arg;

	if (info->n_deleted > 0 || info->orig_size == 0)
		clock_gettime(CLOCK_MONOTONIC, &w->msg_progress);
	if (info->n_deleted > 0 && info->orig_size > BROADCAST_QUEUE_MAX / 2 &&
	    evbuffer_get_length(buf) <= BROADCAST_QUEUE_MAX / 2)
		messages_drained();
}

/* The master's end of a program's line channel. */
void
broadcast_line_open(struct worker *w, int fd)
{
	int	flags;

	if ((flags = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	w->msg_bev = bufferevent_socket_new(master.base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (w->msg_bev == NULL)
		fatalx("out of memory");
	bufferevent_setcb(w->msg_bev, line_read_cb, NULL, line_event_cb, w);
	if (evbuffer_add_cb(bufferevent_get_output(w->msg_bev), line_out_cb,
	    w) == NULL)
		fatalx("out of memory");
	/* Read a little past the limit at most, to see a line too long. */
	bufferevent_setwatermark(w->msg_bev, EV_READ, 0,
	    NC_CLUSTER_MESSAGE_MAX + 4096);
	if (bufferevent_enable(w->msg_bev, EV_READ) == -1)
		fatalx("cannot watch a message channel");
}

void
broadcast_line_close(struct worker *w)
{
	if (w->msg_bev != NULL)
		bufferevent_free(w->msg_bev);
	w->msg_bev = NULL;
}

/*
 * For an upgrade: the line channel stays open across exec; its fd, or
 * -1. What the master had not yet sent on it is lost.
 */
int
broadcast_line_fd(struct worker *w)
{
	int	fd;

	if (w->msg_bev == NULL || (fd = bufferevent_getfd(w->msg_bev)) == -1)
		return -1;
	(void)fcntl(fd, F_SETFD, 0);
	return fd;
}

/* A worker that stops or goes holds no sender up any more. */
static void
broadcast_worker_changed(struct worker *w)
{
	(void)w;
	messages_drained();
}

static void
broadcast_worker_gone(struct worker *w)
{
	broadcast_line_close(w);
	messages_drained();
}

void
broadcast_init(void)
{
	worker_hook(WEV_CHANGED, broadcast_watch);
	worker_hook(WEV_CHANGED, broadcast_worker_changed);
	worker_hook(WEV_GONE, broadcast_worker_gone);
}
