/*
 * The ceiling: the spec's echo server (greet with "hello\r\n", echo every
 * byte) in the least code Linux allows, for the benchmarks to compare
 * against. One listening socket, WORKERS forked processes, each with its
 * own epoll set that holds the listener with EPOLLEXCLUSIVE; one read and
 * one write per readable event, a buffer only while the kernel is full.
 *
 *	epoll-echo [-w WORKERS] PORT	(127.0.0.1; PORT 0 prints the port)
 */

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GREETING	"hello\r\n"
#define BUFSIZE		65536

struct conn {
	int	 fd;
	char	*pending;	/* what the kernel did not take yet */
	size_t	 npending;
};

static void __attribute__((noreturn))
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
conn_close(int ep, struct conn *c)
{
	(void)epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pending);
	free(c);
}

/* Writes buf; keeps what did not fit and waits for EPOLLOUT. 0 or -1. */
static int
conn_write(int ep, struct conn *c, const char *buf, size_t len)
{
	struct epoll_event	ev;
	ssize_t			n;

	n = send(c->fd, buf, len, MSG_NOSIGNAL);
	if (n == -1 && errno != EAGAIN)
		return -1;
	if (n == -1)
		n = 0;
	if ((size_t)n == len)
		return 0;
	if ((c->pending = malloc(len - (size_t)n)) == NULL)
		return -1;
	memcpy(c->pending, buf + n, len - (size_t)n);
	c->npending = len - (size_t)n;
	ev.events = EPOLLOUT;
	ev.data.ptr = c;
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
conn_event(int ep, struct conn *c, uint32_t events)
{
	static char		buf[BUFSIZE];
	struct epoll_event	ev;
	ssize_t			n;
	char			*p;

	if (c->pending != NULL) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		p = c->pending;
		c->pending = NULL;
		if (conn_write(ep, c, p, c->npending) == -1) {
			free(p);
			conn_close(ep, c);
			return;
		}
		free(p);
		if (c->pending == NULL) {
			ev.events = EPOLLIN;
			ev.data.ptr = c;
			(void)epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
		return;
	}
	n = recv(c->fd, buf, sizeof buf, 0);
	if (n == -1 && errno == EAGAIN)
		return;
	if (n <= 0 || conn_write(ep, c, buf, (size_t)n) == -1)
		conn_close(ep, c);
}

static void __attribute__((noreturn))
worker(int lfd)
{
	struct epoll_event	 ev, evs[256];
	struct conn		*c;
	int			 ep, fd, i, n, one = 1;

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1");
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) == -1)
		die("epoll_ctl");
	for (;;) {
		if ((n = epoll_wait(ep, evs, 256, -1)) == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr != NULL) {
				conn_event(ep, evs[i].data.ptr, evs[i].events);
				continue;
			}
			while ((fd = accept4(lfd, NULL, NULL,
			    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
				(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY,
				    &one, sizeof one);
				if ((c = calloc(1, sizeof *c)) == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1 ||
				    conn_write(ep, c, GREETING,
				    sizeof GREETING - 1) == -1)
					conn_close(ep, c);
			}
		}
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;
	int			lfd, ch, workers = 1, i, one = 1;

	while ((ch = getopt(argc, argv, "w:")) != -1) {
		if (ch != 'w' || (workers = atoi(optarg)) < 1) {
			fprintf(stderr, "usage: epoll-echo [-w WORKERS] PORT\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: epoll-echo [-w WORKERS] PORT\n");
		return 2;
	}
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)atoi(argv[optind]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(lfd, 4096) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) == -1)
		die("listen");
	printf("%d\n", ntohs(sin.sin_port));
	fflush(stdout);
	for (i = 0; i < workers; i++)
		if (fork() == 0)
			worker(lfd);
	/* The children go with us: SIGTERM to the group ends them all. */
	signal(SIGTERM, SIG_IGN);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return 0;
}
