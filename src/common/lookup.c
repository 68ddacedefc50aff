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
#include <stdlib.h>
#include <string.h>
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

static void *
lookup_thread(void *arg)
{
	struct nc__lookup	*l = arg;
	struct addrinfo		 hints, *res, *ai;
	const void		*src;
	int			 rc, fd = l->pipe[1];
	char			 c = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = l->family == 6 ? AF_INET6 :
	    l->family == 4 ? AF_INET : AF_UNSPEC;
	if (l->family == 0)
		hints.ai_flags = AI_ADDRCONFIG;
	rc = getaddrinfo(l->host, NULL, &hints, &res);
	if (rc != 0)
		l->status = lookup_gai_error(rc);
	else {
		l->status = NC_ENOTFOUND;
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			if (ai->ai_family == AF_INET) {
				src = &((struct sockaddr_in *)ai->ai_addr)->
				    sin_addr;
				l->result_family = 4;
			} else if (ai->ai_family == AF_INET6) {
				src = &((struct sockaddr_in6 *)ai->ai_addr)->
				    sin6_addr;
				l->result_family = 6;
			} else
				continue;
			if (inet_ntop(ai->ai_family, src, l->address,
			    sizeof l->address) != NULL) {
				l->status = 0;
				break;
			}
		}
		freeaddrinfo(res);
	}
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
