/*
 * Whether the daemon is ready (for /ready, the agent, READY= and the
 * metrics), the drain an operator asks for, and the answer to HAProxy's
 * agent-check: one line, then close, nothing kept. The agent's socket is
 * bound and handed over by endpoint.c.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "master.h"

static struct evconnlistener	*agent;
static bool		 may_resume(void *);
static struct lev_rest	 agent_rest = { .what = "agent",
    .may_resume = may_resume };
static unsigned long	 agent_told;	/* "drain"s said */
static bool		 quiescing;	/* for an upgrade */

/*
 * Ready while not draining or stopping and every service has a worker
 * that serves (one of its slots', or an older one still), online and
 * answering its heartbeat. why gets the reason when not.
 */
bool
health_ready(char *why, size_t len)
{
	struct worker	*w;
	const char	*reason = NULL;
	const char	*down = NULL;
	size_t		 i;

	if (master.stopping)
		reason = "stopping";
	else if (master.draining)
		reason = "draining";
	for (i = 0; reason == NULL && i < master.gen->npools; i++) {
		for (w = gen_next_worker(NULL); w != NULL;
		    w = gen_next_worker(w))
			if (w->pool == master.gen->pools[i] &&
			    gen_worker_serves(w))
				break;
		if (w == NULL) {
			down = master.gen->pools[i]->name;
			reason = "no worker is online";
		}
	}
	if (why != NULL && len > 0 && down != NULL &&
	    master.gen->npools > 1)
		snprintf(why, len, "service %s: no worker is online", down);
	else if (why != NULL && len > 0)
		snprintf(why, len, "%s", reason != NULL ? reason : "ready");
	return reason == NULL;
}

void
health_drain(bool on)
{
	if (master.draining == on)
		return;
	master.draining = on;
	agent_told = 0;
	if (on) {
		log_notice("draining: /ready answers 503 and the agent drain; "
		    "listeners stay open");
		notify_status("draining");
	} else {
		log_notice("no longer draining");
		notify_status("running");
	}
}

/* Out of fds, the agent rests; it may accept again unless quiescing. */
static bool
may_resume(void *arg)
{
	(void)arg;
	return !quiescing;
}

static void
agent_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	char	line[128], why[96], scratch[1024];
	int	weight = gen_config()->agent.weight;

	(void)lev;
	(void)sa;
	(void)salen;
	(void)arg;
	lev_rest_accepted(&agent_rest);
	if (health_ready(why, sizeof why)) {
		if (weight >= 0)
			snprintf(line, sizeof line, "up ready %d%%\n", weight);
		else
			snprintf(line, sizeof line, "up ready\n");
	} else if (master.draining && !master.stopping) {
		snprintf(line, sizeof line, "drain #%s\n", why);
		agent_told++;
	} else
		snprintf(line, sizeof line, "maint #%s\n", why);
	(void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
	/* What the balancer sent (agent-send), so the close is no reset. */
	(void)recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
	close(fd);
}

/* The agent answers on fd (a listening socket, now ours). */
void
health_agent_start(int fd)
{
	/* It listens already: its backlog stays (libevent's -1 is 128). */
	agent = evconnlistener_new(master.base, agent_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (agent == NULL)
		fatalx("agent: out of memory");
	lev_rest_watch(&agent_rest, agent);
	if (quiescing)
		(void)evconnlistener_disable(agent);
}

/* The agent's socket closes (it goes with its listener). */
void
health_agent_stop(void)
{
	if (agent == NULL)
		return;
	lev_rest_stop(&agent_rest);
	evconnlistener_free(agent);
	agent = NULL;
}

/*
 * Whether the balancer heard the drain: the agent answered "drain" since
 * it began. -1 without an agent listener (nobody to ask).
 */
int
health_agent_told(void)
{
	if (agent == NULL)
		return -1;
	return agent_told > 0;
}

/* An upgrade is about to exec: the agent accepts no more. */
void
health_quiesce(void)
{
	quiescing = true;
	if (agent != NULL)
		(void)evconnlistener_disable(agent);
}
