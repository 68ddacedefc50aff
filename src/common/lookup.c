/*
 * Name resolution that never blocks the loop: getaddrinfo() on a
 * short-lived thread, as Node's dns.lookup() runs it on libuv's pool, so
 * /etc/hosts, nsswitch and the system's resolver behave as they do for
 * every other program. The thread reports back through a pipe the loop
 * watches.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-int.h"

struct nc__lookup {
	struct event		*ev;
	int			 pipe[2];
	char			*host;
	int			 family;	/* 0, 4 or 6 */
	int			 status;
	int			 result_family;
	char			 address[INET6_ADDRSTRLEN];
	nc__lookup_cb		 cb;
	void			*arg;
};

static int
lookup_gai_error(int rc)
{
	switch (rc) {
	case EAI_AGAIN:
		return NC_EAI_AGAIN;
	case EAI_FAIL:
		return NC_EAI_FAIL;
	case EAI_FAMILY:
		return NC_EAI_FAMILY;
	case EAI_MEMORY:
		return NC_ENOMEM;
	case EAI_SYSTEM:
		return errno != 0 ? -errno : NC_EAI_FAIL;
	default:
		return NC_ENOTFOUND;
	}
}

/*
 * RFC 6761, 6.4: names under .invalid never resolve, and resolvers
 * answer so at once, without asking a name server.
 */
static bool
lookup_invalid(const char *host)
{
	size_t	n = strlen(host);

	if (n > 0 && host[n - 1] == '.')
		n--;
	return (n == 7 && strncasecmp(host, "invalid", 7) == 0) ||
	    (n > 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0);
}

/* getaddrinfo() of host: 0 and the first address literal, or an error. */
static int
lookup_resolve(const char *host, int family, char *address, size_t len,
    int *result_family)
{
	struct addrinfo		 hints, *res, *ai;
	const void		*src;
	int			 rc, status;

	if (lookup_invalid(host))
		return NC_ENOTFOUND;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = family == 6 ? AF_INET6 :
	    family == 4 ? AF_INET : AF_UNSPEC;
	if (family == 0)
		hints.ai_flags = AI_ADDRCONFIG;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0)
		return lookup_gai_error(rc);
	status = NC_ENOTFOUND;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			src = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
			*result_family = 4;
		} else if (ai->ai_family == AF_INET6) {
			src = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			*result_family = 6;
		} else
			continue;
		if (inet_ntop(ai->ai_family, src, address, (socklen_t)len) !=
		    NULL) {
			status = 0;
			break;
		}
	}
	freeaddrinfo(res);
	return status;
}

static void *
lookup_thread(void *arg)
{
	struct nc__lookup	*l = arg;
	int			 fd = l->pipe[1];
	char			 c = 0;

	l->status = lookup_resolve(l->host, l->family, l->address,
	    sizeof l->address, &l->result_family);
	/* The last touch of l on this thread: the loop owns it afterwards. */
	while (write(fd, &c, 1) == -1 && errno == EINTR)
		;
	return NULL;
}

static void
lookup_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc__lookup	*l = arg;
	char			 c;

	(void)fd;
	(void)what;
	if (read(l->pipe[0], &c, 1) != 1 && errno == EAGAIN)
		return;
	l->cb(l->status, l->status == 0 ? l->address : NULL,
	    l->result_family, l->arg);
	event_free(l->ev);
	close(l->pipe[0]);
	close(l->pipe[1]);
	free(l->host);
	free(l);
}

int
nc__lookup_start(struct event_base *base, const char *host, int family,
    nc__lookup_cb cb, void *arg, struct event **evp)
{
	struct nc__lookup	*l;
	pthread_attr_t		 attr;
	pthread_t		 tid;
	sigset_t		 all, old;
	int			 rc;

	if ((l = calloc(1, sizeof *l)) == NULL)
		return NC_ENOMEM;
	l->pipe[0] = l->pipe[1] = -1;
	l->family = family;
	l->cb = cb;
	l->arg = arg;
	if ((l->host = strdup(host)) == NULL)
		goto nomem;
	if (pipe2(l->pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
		rc = -errno;
		goto fail;
	}
	l->ev = event_new(base, l->pipe[0], EV_READ, lookup_done_cb, l);
	if (l->ev == NULL || event_add(l->ev, NULL) == -1)
		goto nomem;
	if ((rc = pthread_attr_init(&attr)) != 0) {
		rc = -rc;
		goto fail;
	}
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* The thread blocks every signal: they stay for the loop's thread. */
	(void)sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tid, &attr, lookup_thread, l);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	if (evp != NULL)
		*evp = l->ev;
	return 0;

nomem:
	rc = NC_ENOMEM;
fail:
	if (l->ev != NULL)
		event_free(l->ev);
	if (l->pipe[0] != -1) {
		close(l->pipe[0]);
		close(l->pipe[1]);
	}
	free(l->host);
	free(l);
	return rc;
}

/*
 * A lookup someone waits for, up to a bound. The thread and the waiter
 * each hold a reference; the last to let go frees it, so a waiter that
 * gave up leaves the thread nothing dangling.
 */
struct lookup_wait {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cond;
	int		 refs;
	bool		 done;
	char		*host;
	int		 family;
	int		 status;
	int		 result_family;
	char		 address[INET6_ADDRSTRLEN];
};

static void
lookup_wait_unref(struct lookup_wait *w)
{
	bool	last;

	pthread_mutex_lock(&w->mu);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (!last)
		return;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w->host);
	free(w);
}

static void *
lookup_wait_thread(void *arg)
{
	struct lookup_wait	*w = arg;
	char			 address[INET6_ADDRSTRLEN];
	int			 status, family = 0;

	status = lookup_resolve(w->host, w->family, address, sizeof address,
	    &family);
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->result_family = family;
	memcpy(w->address, address, sizeof address);
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	lookup_wait_unref(w);
	return NULL;
}

int
nc__lookup_wait(const char *host, int family, int timeout_ms, char *address,
    size_t len, int *result_family)
{
	struct lookup_wait	*w;
	pthread_condattr_t	 ca;
	pthread_attr_t		 attr;
	pthread_t		 tid;
	struct timespec		 deadline;
	sigset_t		 all, old;
	int			 rc, status;

	if (lookup_invalid(host))
		return NC_ENOTFOUND;
	if ((w = calloc(1, sizeof *w)) == NULL ||
	    (w->host = strdup(host)) == NULL) {
		free(w);
		return NC_ENOMEM;
	}
	w->family = family;
	w->refs = 2;
	(void)pthread_mutex_init(&w->mu, NULL);
	(void)pthread_condattr_init(&ca);
	(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	(void)pthread_cond_init(&w->cond, &ca);
	(void)pthread_condattr_destroy(&ca);
	if ((rc = pthread_attr_init(&attr)) != 0) {
		w->refs = 1;
		lookup_wait_unref(w);
		return -rc;
	}
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	(void)sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tid, &attr, lookup_wait_thread, w);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		w->refs = 1;
		lookup_wait_unref(w);
		return -rc;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	rc = 0;
	while (!w->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &w->mu, &deadline);
	if (w->done) {
		status = w->status;
		if (status == 0) {
			snprintf(address, len, "%s", w->address);
			*result_family = w->result_family;
		}
	} else
		status = NC_ETIMEDOUT;
	pthread_mutex_unlock(&w->mu);
	lookup_wait_unref(w);
	return status;
}
