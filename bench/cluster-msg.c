/*
 * The worker of bench/messages: messages between the workers of one
 * service, through netclusterd's master (nc_cluster_broadcast).
 *
 *	cluster-msg [-h HOST] [-p PORT] [-r RETRY_US]
 *
 * It listens on the service's listener (a cluster program is online once
 * it listens; nothing connects) and takes its orders from the operator
 * (netclusterctl send SERVICE JSON):
 *
 *   {"cmd": "run", "round": R, "sender": ID, "n": N, "size": S}
 *	the worker whose id is ID broadcasts N messages of S bytes of JSON,
 *	{"r":R,"s":SEQ,"p":"xxx..."} with SEQ 0 to N-1, as fast as its
 *	queue to the master takes them: on NC_ENOBUFS it tries again after
 *	RETRY_US microseconds (default 1000), from a timer, so its loop
 *	keeps running; after a batch that went through, on the next turn.
 *	Every other worker counts what it gets of round R and checks the
 *	order; once it has N it prints
 *	    round R: received N of N in T s, missing M, reordered O
 *	T: from the "run" order, which reaches every worker at once, to the
 *	last message it got.
 *   {"cmd": "report", "round": R}
 *	every worker but the sender prints the same line with what it has.
 *
 * The sender prints "round R: sent N in T s, K retries"; a message from
 * a worker that is not a round's is printed as "message from worker ID:
 * TEXT". Every line goes to stdout, which netclusterd writes into its
 * log with the worker's id.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "netcluster.h"

#define BATCH	512		/* broadcasts per loop turn at most */

static struct {
	struct event	*pump;
	long		 retry_us;
	/* What this worker sends. */
	long		 round, n, size, sent, retries;
	bool		 sending;
	/* What it receives. */
	long		 rround, rn, got, next, missing, reordered;
	bool		 done;
	double		 t0, tlast;
	char		*buf;
} b;

static double
now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A message of exactly b.size bytes of JSON (or as near as it gets). */
static const char *
make_message(long seq)
{
	int	len, pad;

	len = snprintf(b.buf, (size_t)b.size + 64, "{\"r\":%ld,\"s\":%ld,"
	    "\"p\":\"", b.round, seq);
	pad = (int)b.size - len - 2;
	if (pad < 0)
		pad = 0;
	memset(b.buf + len, 'x', (size_t)pad);
	memcpy(b.buf + len + pad, "\"}", 3);
	return b.buf;
}

static void
pump(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv = { 0, 0 };
	int		i, rc = 0;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < BATCH && b.sent < b.n; i++) {
		rc = nc_cluster_broadcast(make_message(b.sent), 0);
		if (rc == NC_ENOBUFS)
			break;
		if (rc != 0) {
			printf("round %ld: broadcast: %s\n", b.round,
			    nc_strerror(rc));
			fflush(stdout);
			b.sending = false;
			return;
		}
		b.sent++;
	}
	if (b.sent == b.n) {
		printf("round %ld: sent %ld in %.6f s, %ld retries\n", b.round,
		    b.n, now() - b.t0, b.retries);
		fflush(stdout);
		b.sending = false;
		return;
	}
	if (rc == NC_ENOBUFS) {
		b.retries++;
		tv.tv_sec = b.retry_us / 1000000;
		tv.tv_usec = b.retry_us % 1000000;
	}
	evtimer_add(b.pump, &tv);
}

static void
report(void)
{
	printf("round %ld: received %ld of %ld in %.6f s, missing %ld, "
	    "reordered %ld\n", b.rround, b.got, b.rn, b.tlast - b.t0,
	    b.missing, b.reordered);
	fflush(stdout);
}

static long
field(const char *json, const char *key)
{
	const char	*p = strstr(json, key);

	return p == NULL ? -1 : strtol(p + strlen(key), NULL, 10);
}

static void
order(const char *json)
{
	long	round, n, sender, size;

	if (strstr(json, "\"cmd\":\"report\"") != NULL) {
		if (b.rround >= 0 && field(json, "\"round\":") == b.rround)
			report();
		return;
	}
	if (strstr(json, "\"cmd\":\"run\"") == NULL)
		return;
	round = field(json, "\"round\":");
	sender = field(json, "\"sender\":");
	n = field(json, "\"n\":");
	size = field(json, "\"size\":");
	if (round < 0 || n < 0 || size < 16 || size > NC_CLUSTER_MESSAGE_MAX)
		return;
	b.t0 = now();
	if (sender == nc_cluster_worker_id()) {
		free(b.buf);
		if ((b.buf = malloc((size_t)size + 64)) == NULL)
			abort();
		b.round = round;
		b.n = n;
		b.size = size;
		b.sent = b.retries = 0;
		b.sending = true;
		pump(-1, 0, NULL);
		return;
	}
	b.rround = round;
	b.rn = n;
	b.got = b.next = b.missing = b.reordered = 0;
	b.done = false;
	b.tlast = b.t0;
}

static void
on_message(void *emitter, const struct nc_event_args *ev, void *arg)
{
	long	r, s;

	(void)emitter;
	(void)arg;
	if (ev->from == 0) {
		order(ev->data);
		return;
	}
	/* {"r":R,"s":SEQ,...}: written by make_message(), relayed as is. */
	if (strncmp(ev->data, "{\"r\":", 5) != 0) {
		/* Not a round's: said, for tests/e2e/messages.py. */
		printf("message from worker %d: %.200s\n", ev->from, ev->data);
		fflush(stdout);
		return;
	}
	r = strtol(ev->data + 5, NULL, 10);
	if (r != b.rround || (s = field(ev->data, ",\"s\":")) < 0)
		return;
	b.got++;
	b.tlast = now();
	if (s > b.next)
		b.missing += s - b.next;
	else if (s < b.next)
		b.reordered++;
	if (s >= b.next)
		b.next = s + 1;
	if (!b.done && (b.got == b.rn || b.next == b.rn)) {
		b.done = true;
		report();
	}
}

static void
on_error(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	fprintf(stderr, "cluster-msg: %s\n", ev->error->message);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct nc_server	*server;
	const char		*host = "127.0.0.1";
	int			 ch, port = 0, rc;

	signal(SIGPIPE, SIG_IGN);
	b.retry_us = 1000;
	b.round = b.rround = -1;
	while ((ch = getopt(argc, argv, "h:p:r:")) != -1) {
		switch (ch) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'r':
			b.retry_us = atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: cluster-msg [-h host] [-p port] "
			    "[-r retry_us]\n");
			return 2;
		}
	}
	if (!nc_cluster_is_worker()) {
		fprintf(stderr, "cluster-msg: run it under netclusterd "
		    "(bench/messages does)\n");
		return 2;
	}
	b.pump = evtimer_new(nc_default_base(), pump, NULL);
	nc_cluster_on(NULL, NC_EV_MESSAGE, on_message, NULL);
	if ((server = nc_create_server(NULL, NULL, NULL)) == NULL)
		return 1;
	nc_server_on(server, NC_EV_ERROR, on_error, NULL);
	if ((rc = nc_server_listen(server, port, host, 0, NULL, NULL)) != 0) {
		fprintf(stderr, "cluster-msg: %s\n", nc_strerror(rc));
		return 1;
	}
	return nc_run(NULL) == 0 ? 0 : 1;
}
