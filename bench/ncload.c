/*
 * ncload: a load generator for TCP and unix stream echo servers that greet
 * first, as netclusterd's echo handler does ("hello\r\n", then every byte
 * back).
 *
 *	ncload [-b] [-c N] -d SECONDS [-g GREETING] [-m MODE] [-r RATE]
 *	    [-s BYTES] [-t MS] HOST:PORT ... | -u PATH
 *
 * One thread, nonblocking sockets on one edge-triggered epoll. It runs for
 * -d seconds, then starts nothing new, lets the work in flight finish for
 * at most -t ms, and prints one JSON object on one line of stdout. Every
 * connection attempt is counted exactly once: made, refused,
 * reset_before_greeting, reset_after_greeting, unanswered, wrong or other.
 * With several HOST:PORTs (one per worker of a server whose workers listen
 * on ports of their own), connections go to them in turn.
 *
 * The latency mode is open loop, as wrk2 is: -r messages per second go
 * out on a fixed schedule over -c connections, message k on connection
 * k mod c at k/RATE seconds, whether or not the earlier ones were answered,
 * and each latency runs from the time the message was due, not from when
 * it could be sent, so a stall counts for every message it delayed.
 */

#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BUFSZ		65536	/* one read */
#define START_BATCH	256	/* connections started per turn of the loop */
#define BUDGET		64	/* steps of one connection per event */
#define MAXEVENTS	1024
#define RETRY_US	1000	/* before a unix connect that got EAGAIN */
#define MAX_CONNS	1000000
#define MAX_SIZE	(64L << 20)
#define MAX_TIMEOUT	3600000
#define MAX_TARGETS	64
#define LATE_US		1000	/* a message sent this late is counted */

/*
 * Latencies in microseconds: exact below 128, then 64 buckets per power
 * of two (under 1.6% off).
 */
#define HIST_SUB	64
#define HIST_LEN	(60 * HIST_SUB)

enum mode {
	MODE_CONN,
	MODE_PINGPONG,
	MODE_STREAM,
	MODE_IDLE,
	MODE_LATENCY
};
#define NMODES	5

static const char *mode_names[] = { "conn", "pingpong", "stream", "idle",
    "latency" };

enum state {
	S_FREE,
	S_RETRY,	/* a unix connect got EAGAIN: try again shortly */
	S_CONNECT,
	S_GREET,
	S_SEND,		/* conn, pingpong: writing the payload */
	S_ECHO,		/* conn, pingpong: reading it back */
	S_STREAM,
	S_HOLD,		/* idle: greeted, silent */
	S_LATENCY	/* latency: sending what is due, reading echoes */
};

struct conn {
	int			 fd;
	enum state		 state;
	uint32_t		 gen;		/* changes on every close */
	int			 greeted;
	int			 timed;		/* on timeouts */
	int			 retrying;	/* on retries */
	int			 queued;	/* on again */
	size_t			 off;		/* greeting or payload done */
	size_t			 roff;		/* echo read */
	uint64_t		 sent;		/* stream, latency: bytes */
	uint64_t		 rcvd;
	uint64_t		 due;		/* latency: messages due */
	uint64_t		 t_begin;	/* of the connection, us */
	uint64_t		 t_msg;		/* of the pingpong message */
	uint64_t		 deadline;	/* of the operation */
	uint64_t		 retry_at;
	TAILQ_ENTRY(conn)	 tentry;
	TAILQ_ENTRY(conn)	 rentry;
	TAILQ_ENTRY(conn)	 aentry;
};
TAILQ_HEAD(connlist, conn);

/* Options. */
static enum mode		 mode = MODE_CONN;
static long			 nconns = 50;
static long			 size = -1;
static double			 rate;
static double			 duration = -1;
static long			 timeout_ms = 5000;
static char			*greet;
static size_t			 greet_len;
static int			 bindsrc;
static struct sockaddr_storage	 targets[MAX_TARGETS];
static socklen_t		 target_lens[MAX_TARGETS];
static int			 ntargets;
static int			 target_next;

/* State. */
static int			 ep = -1;
static struct conn		*conns;
static uint32_t			*freestack;
static size_t			 nfree;
static struct connlist		 timeouts = TAILQ_HEAD_INITIALIZER(timeouts);
static struct connlist		 retries = TAILQ_HEAD_INITIALIZER(retries);
static struct connlist		 again = TAILQ_HEAD_INITIALIZER(again);
static size_t			 nagain;
static uint64_t			 active;	/* connections open */
static uint64_t			 holding;	/* of them, greeted */
static uint64_t			 started;	/* attempts */
static int			 stopping;
static int			 announced;
static uint64_t			 t_stop;	/* end of the run */
static uint64_t			 t_grace;	/* end of the grace time */
static char			*pat;		/* 'a'..'z' repeated */
static unsigned char		 buf[BUFSZ];
static double			 tokens;
static double			 burst;
static uint64_t			 t_tokens;
static unsigned int		 bind_next = 2;
static char			*rep;		/* latency: the message repeated */
static size_t			 replen;
static uint64_t			 t_sched;	/* latency: message 0 is due */
static uint64_t			 issued;	/* latency: messages due */
static volatile sig_atomic_t	 interrupted;

static struct {
	uint64_t	made;
	uint64_t	refused;
	uint64_t	reset_before;
	uint64_t	reset_after;
	uint64_t	unanswered;
	uint64_t	wrong;
	uint64_t	other;
	uint64_t	messages;
	uint64_t	bytes;
	uint64_t	established;
	uint64_t	late;		/* latency: sent over LATE_US late */
	int		first_other;
} counts;

static uint64_t			 hist[HIST_LEN];
static uint64_t			 hist_n;
static uint64_t			 hist_max;

static void	advance(struct conn *);

static void
usage(FILE *f)
{
	fprintf(f,
"usage: ncload [-b] [-c N] -d SECONDS [-g GREETING] [-m MODE] [-r RATE]\n"
"              [-s BYTES] [-t MS] HOST:PORT ... | -u PATH\n"
"Loads an echo server that greets first. Runs for SECONDS, then starts\n"
"nothing new, lets the work in flight finish for at most -t MS, and\n"
"prints one JSON object on one line of stdout.\n"
"  -m MODE      conn (default): connect, read the greeting, send -s bytes,\n"
"               read them back, close; -c connections kept in flight\n"
"               pingpong: -c connections, each sending a -s byte message\n"
"               and waiting for its echo before the next\n"
"               stream: -c connections, each writing -s byte chunks as\n"
"               fast as they go and reading the echo\n"
"               idle: open -c connections, read their greetings, hold\n"
"               them; prints \"established N\" on stderr once every\n"
"               attempt is settled (N = -c when all were greeted)\n"
"               latency: open loop; -c connections, then -r messages of\n"
"               -s bytes per second on a fixed schedule, message k on\n"
"               connection k mod N, whatever the answers; each latency\n"
"               runs from the time its message was due\n"
"  -c N         connections (default 50)\n"
"  -d SECONDS   how long to run (required; fractions allowed)\n"
"  -s BYTES     payload, message or chunk size (default 4, 64, 16384)\n"
"  -g GREETING  the greeting to expect, with \\r \\n \\t \\\\ \\xHH\n"
"               (default \"hello\\r\\n\"; '' for none)\n"
"  -r RATE      at most RATE new connections per second (default 0: any);\n"
"               latency: messages per second (required)\n"
"  -t MS        timeout of each connect, greeting and echo (default 5000)\n"
"  -b           bind each connection to 127.0.0.2..254 (127.x targets)\n"
"  -u PATH      a unix stream socket instead of HOST:PORT\n"
"  -h           print this help and exit\n"
"HOST is an IPv4 address or [IPv6]; with several HOST:PORTs connections\n"
"go to them in turn. Failed connections are reopened, except in idle and\n"
"latency modes. Latency: per connection (conn), per message (pingpong,\n"
"latency), connect to greeting (stream, idle); 0 when none. rate is\n"
"made per second; pingpong adds message_rate, stream byte_rate, latency\n"
"offered_rate, due, answered, missed (due, never answered), late (sent\n"
"over 1 ms after due), message_rate (answered), p999_us and max_us.\n");
}

static void __attribute__((format(printf, 1, 2), noreturn))
bad(const char *fmt, ...)
{
	va_list	ap;

	fputs("ncload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void __attribute__((format(printf, 1, 2), noreturn))
fatal(const char *fmt, ...)
{
	va_list	ap;

	fputs("ncload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(errno));
	exit(1);
}

static uint64_t
now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

static long
parse_long(const char *s, char opt, long min, long max)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
		bad("-%c: %s: want an integer from %ld to %ld", opt, s, min,
		    max);
	return (v);
}

static double
parse_double(const char *s, char opt)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) ||
	    v < 0)
		bad("-%c: %s: want a number, 0 or more", opt, s);
	return (v);
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return (ch - '0');
	if (ch >= 'a' && ch <= 'f')
		return (ch - 'a' + 10);
	if (ch >= 'A' && ch <= 'F')
		return (ch - 'A' + 10);
	return (-1);
}

/* The greeting, with C escapes; it may hold NULs, so it has a length. */
static void
parse_greeting(const char *s)
{
	size_t	 n = 0;
	int	 hi, lo;

	if ((greet = malloc(strlen(s) + 1)) == NULL)
		fatal("malloc");
	while (*s != '\0') {
		if (*s != '\\') {
			greet[n++] = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'r':
			greet[n++] = '\r';
			break;
		case 'n':
			greet[n++] = '\n';
			break;
		case 't':
			greet[n++] = '\t';
			break;
		case '0':
			greet[n++] = '\0';
			break;
		case '\\':
			greet[n++] = '\\';
			break;
		case 'x':
			if ((hi = hexval(s[1])) == -1 ||
			    (lo = hexval(s[2])) == -1)
				bad("-g: \\x needs two hex digits");
			greet[n++] = (char)(hi << 4 | lo);
			s += 2;
			break;
		case '\0':
			bad("-g: ends with a lone \\");
		default:
			bad("-g: unknown escape \\%c", *s);
		}
		s++;
	}
	greet_len = n;
}

static void
parse_target(const char *s)
{
	struct sockaddr_storage	*target;
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	char			 host[INET6_ADDRSTRLEN + 2];
	const char		*colon, *rb;
	long			 port;
	size_t			 len;

	if (ntargets == MAX_TARGETS)
		bad("at most %d HOST:PORTs", MAX_TARGETS);
	target = &targets[ntargets];
	sin = (struct sockaddr_in *)target;
	sin6 = (struct sockaddr_in6 *)target;
	memset(target, 0, sizeof *target);
	if (*s == '[') {
		if ((rb = strchr(s, ']')) == NULL || rb[1] != ':')
			bad("%s: want HOST:PORT or [IPV6]:PORT", s);
		len = rb - (s + 1);
		colon = rb + 1;
		if (len == 0 || len >= sizeof host)
			bad("%s: bad IPv6 address", s);
		memcpy(host, s + 1, len);
		host[len] = '\0';
		port = parse_long(colon + 1, 'p', 1, 65535);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			bad("%s: bad IPv6 address", host);
		target_lens[ntargets++] = sizeof *sin6;
		return;
	}
	if ((colon = strrchr(s, ':')) == NULL)
		bad("%s: want HOST:PORT or [IPV6]:PORT", s);
	len = colon - s;
	if (len == 0 || len >= sizeof host)
		bad("%s: bad IPv4 address", s);
	memcpy(host, s, len);
	host[len] = '\0';
	port = parse_long(colon + 1, 'p', 1, 65535);
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		bad("%s: bad IPv4 address (a literal is needed)", host);
	target_lens[ntargets++] = sizeof *sin;
}

static void
parse_unix(const char *path)
{
	struct sockaddr_un	*su = (struct sockaddr_un *)&targets[0];
	size_t			 len = strlen(path);

	memset(su, 0, sizeof targets[0]);
	if (len == 0 || len >= sizeof su->sun_path)
		bad("-u: %s: path empty or too long", path);
	su->sun_family = AF_UNIX;
	memcpy(su->sun_path, path, len + 1);
	target_lens[0] = offsetof(struct sockaddr_un, sun_path) + len + 1;
	ntargets = 1;
}

/* As many descriptors as allowed: the hard limit, more when privileged. */
static void
raise_nofile(void)
{
	struct rlimit	rl;
	rlim_t		want = (rlim_t)nconns + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		struct rlimit	more = { want, want };

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return;
	}
	if (rl.rlim_max == RLIM_INFINITY)
		rl.rlim_cur = rl.rlim_cur < want ? want : rl.rlim_cur;
	else
		rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static size_t
hist_index(uint64_t v)
{
	int	e;

	if (v < 2 * HIST_SUB)
		return (v);
	e = 63 - __builtin_clzll(v);
	return ((size_t)(e - 5) * HIST_SUB + ((v >> (e - 6)) - HIST_SUB));
}

static uint64_t
hist_value(size_t i)
{
	uint64_t	width;
	int		e;

	if (i < 2 * HIST_SUB)
		return (i);
	e = (int)(i / HIST_SUB) + 5;
	width = (uint64_t)1 << (e - 6);
	return ((i % HIST_SUB + HIST_SUB) * width + width / 2);
}

static void
hist_add(uint64_t us)
{
	hist[hist_index(us)]++;
	hist_n++;
	if (us > hist_max)
		hist_max = us;
}

/*
 * The value at per_mille: the smallest with that many thousandths of them
 * at or under it (a bucket's middle; the exact maximum for the last one).
 */
static uint64_t
hist_pct(unsigned int per_mille)
{
	uint64_t	rank, seen = 0, v;
	size_t		i;

	if (hist_n == 0)
		return (0);
	rank = (hist_n * per_mille + 999) / 1000;
	if (rank == 0)
		rank = 1;
	for (i = 0; i < HIST_LEN; i++) {
		seen += hist[i];
		if (seen >= rank) {
			v = hist_value(i);
			return (v > hist_max ? hist_max : v);
		}
	}
	return (hist_max);
}

/* Start the clock of an operation; all have the same timeout. */
static void
timer_arm(struct conn *c, uint64_t now)
{
	if (c->timed)
		TAILQ_REMOVE(&timeouts, c, tentry);
	c->deadline = now + (uint64_t)timeout_ms * 1000;
	TAILQ_INSERT_TAIL(&timeouts, c, tentry);
	c->timed = 1;
}

static void
timer_clear(struct conn *c)
{
	if (c->timed) {
		TAILQ_REMOVE(&timeouts, c, tentry);
		c->timed = 0;
	}
}

static void
conn_close(struct conn *c)
{
	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
	timer_clear(c);
	if (c->retrying) {
		TAILQ_REMOVE(&retries, c, rentry);
		c->retrying = 0;
	}
	if (c->queued) {
		TAILQ_REMOVE(&again, c, aentry);
		c->queued = 0;
		nagain--;
	}
	if (c->greeted)
		holding--;
	c->greeted = 0;
	c->state = S_FREE;
	c->gen++;
	active--;
	freestack[nfree++] = (uint32_t)(c - conns);
}

static void
conn_done(struct conn *c)
{
	counts.made++;
	conn_close(c);
}

static void
conn_wrong(struct conn *c)
{
	counts.wrong++;
	conn_close(c);
}

static void
conn_unanswered(struct conn *c)
{
	counts.unanswered++;
	conn_close(c);
}

/* A failure: error is an errno, or 0 for EOF. */
static void
conn_fail(struct conn *c, int error)
{
	if (error == ECONNREFUSED)
		counts.refused++;
	else if (error == 0 || error == ECONNRESET || error == EPIPE) {
		if (c->greeted)
			counts.reset_after++;
		else
			counts.reset_before++;
	} else if (error == ETIMEDOUT)
		counts.unanswered++;
	else {
		counts.other++;
		if (counts.first_other == 0)
			counts.first_other = error;
	}
	conn_close(c);
}

/* The greeting is in: on to the work of the mode. 0 if closed. */
static int
conn_greeted(struct conn *c)
{
	uint64_t	now = now_us();

	c->greeted = 1;
	holding++;
	counts.established++;
	if (mode == MODE_STREAM || mode == MODE_IDLE)
		hist_add(now - c->t_begin);
	if (stopping && mode != MODE_CONN) {
		conn_done(c);
		return (0);
	}
	switch (mode) {
	case MODE_CONN:
		c->state = S_SEND;
		c->off = 0;
		timer_arm(c, now);
		break;
	case MODE_PINGPONG:
		c->state = S_SEND;
		c->off = c->roff = 0;
		c->t_msg = now;
		timer_arm(c, now);
		break;
	case MODE_STREAM:
		c->state = S_STREAM;
		timer_arm(c, now);
		break;
	case MODE_IDLE:
		c->state = S_HOLD;
		timer_clear(c);
		break;
	case MODE_LATENCY:
		/* Its clock runs only while something is unanswered. */
		c->state = S_LATENCY;
		c->sent = c->rcvd = c->due = 0;
		timer_clear(c);
		break;
	}
	return (1);
}

static int
conn_connected(struct conn *c)
{
	if (greet_len == 0)
		return (conn_greeted(c));
	c->state = S_GREET;
	c->off = 0;
	timer_arm(c, now_us());
	return (1);
}

/* A socket and a connect, for a new attempt or a retry. */
static void
conn_connect(struct conn *c, uint64_t now)
{
	struct epoll_event	 ev;
	struct sockaddr_in	 sin;
	struct sockaddr_storage	*target;
	socklen_t		 target_len;
	int			 fd, one = 1, done = 0;

	target = &targets[target_next];
	target_len = target_lens[target_next];
	target_next = (target_next + 1) % ntargets;
	fd = socket(target->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		conn_fail(c, errno);
		return;
	}
	c->fd = fd;
	c->state = S_CONNECT;
	if (bindsrc) {
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(0x7f000000U | bind_next);
		bind_next = bind_next >= 254 ? 2 : bind_next + 1;
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one) == -1 ||
		    bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1) {
			conn_fail(c, errno);
			return;
		}
	}
	if (target->ss_family != AF_UNIX && (mode == MODE_PINGPONG ||
	    mode == MODE_STREAM || mode == MODE_LATENCY))
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

	if (connect(fd, (struct sockaddr *)target, target_len) == 0)
		done = 1;
	else if (errno == EAGAIN && target->ss_family == AF_UNIX) {
		/* The backlog is full: a new socket in a moment. */
		close(fd);
		c->fd = -1;
		c->state = S_RETRY;
		c->retry_at = now + RETRY_US;
		TAILQ_INSERT_TAIL(&retries, c, rentry);
		c->retrying = 1;
		return;
	} else if (errno != EINPROGRESS && errno != EINTR) {
		conn_fail(c, errno);
		return;
	}

	/* Added after connect: an unconnected TCP socket polls as HUP. */
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.u64 = (uint64_t)c->gen << 32 | (uint64_t)(c - conns);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		conn_fail(c, errno);
		return;
	}
	if (done && conn_connected(c))
		advance(c);
}

static void
conn_open(struct conn *c)
{
	uint64_t	now = now_us();

	active++;
	started++;
	c->fd = -1;
	c->greeted = 0;
	c->off = c->roff = 0;
	c->sent = c->rcvd = 0;
	c->t_begin = now;
	c->state = S_CONNECT;
	timer_arm(c, now);
	conn_connect(c, now);
}

/*
 * The steps of the state machine: each tries its system call and returns
 * 1 to go on, 0 when it would block or the connection is closed. With an
 * edge-triggered epoll, a connection only waits after EAGAIN.
 */
static int
step_connect(struct conn *c)
{
	socklen_t	len = sizeof (int);
	int		error = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
		error = errno;
	if (error != 0) {
		conn_fail(c, error);
		return (0);
	}
	return (conn_connected(c));
}

/* recv(2) with its failures handled: -1 to wait, 0 closed, or a count. */
static ssize_t
conn_recv(struct conn *c, size_t want)
{
	ssize_t	n;

	if (want > sizeof buf)
		want = sizeof buf;
	n = recv(c->fd, buf, want, 0);
	if (n > 0)
		return (n);
	if (n == 0)
		conn_fail(c, 0);
	else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return (-1);
	else
		conn_fail(c, errno);
	return (0);
}

static int
step_greet(struct conn *c)
{
	ssize_t	n;

	/* Only the greeting: anything after it is for the next step. */
	if ((n = conn_recv(c, greet_len - c->off)) <= 0)
		return (0);
	if (memcmp(buf, greet + c->off, n) != 0) {
		conn_wrong(c);
		return (0);
	}
	c->off += n;
	if (c->off < greet_len)
		return (1);
	return (conn_greeted(c));
}

static int
step_send(struct conn *c)
{
	ssize_t	n;

	if (c->off < (size_t)size) {
		n = send(c->fd, pat + c->off, size - c->off, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				return (1);
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_fail(c, errno);
			return (0);
		}
		c->off += n;
		if (c->off < (size_t)size)
			return (1);
	}
	c->state = S_ECHO;
	c->roff = 0;
	return (1);
}

static int
step_echo(struct conn *c)
{
	uint64_t	now;
	ssize_t		n;

	if (c->roff < (size_t)size) {
		if ((n = conn_recv(c, size - c->roff)) <= 0)
			return (0);
		if (memcmp(buf, pat + c->roff, n) != 0) {
			conn_wrong(c);
			return (0);
		}
		c->roff += n;
		if (c->roff < (size_t)size)
			return (1);
	}
	now = now_us();
	if (mode == MODE_CONN) {
		hist_add(now - c->t_begin);
		conn_done(c);
		return (0);
	}
	counts.messages++;
	hist_add(now - c->t_msg);
	if (stopping) {
		conn_done(c);
		return (0);
	}
	c->state = S_SEND;
	c->off = c->roff = 0;
	c->t_msg = now;
	timer_arm(c, now);
	return (1);
}

/* One write and one read; it waits only when both would block. */
static int
step_stream(struct conn *c)
{
	ssize_t	n;
	int	progress = 0;

	if (!stopping) {
		n = send(c->fd, pat + c->sent % 26, size, MSG_NOSIGNAL);
		if (n > 0) {
			c->sent += n;
			progress = 1;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			conn_fail(c, errno);
			return (0);
		}
	}
	n = recv(c->fd, buf, sizeof buf, 0);
	if (n > 0) {
		if ((uint64_t)n > c->sent - c->rcvd ||
		    memcmp(buf, pat + c->rcvd % 26, n) != 0) {
			conn_wrong(c);
			return (0);
		}
		c->rcvd += n;
		counts.bytes += n;
		progress = 1;
	} else if (n == 0) {
		conn_fail(c, 0);
		return (0);
	} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		conn_fail(c, errno);
		return (0);
	}
	if (stopping && c->rcvd == c->sent) {
		conn_done(c);
		return (0);
	}
	if (progress)
		timer_arm(c, now_us());
	return (progress);
}

/* Idle: the server should say nothing more. */
static int
step_hold(struct conn *c)
{
	ssize_t	n;

	if ((n = conn_recv(c, sizeof buf)) > 0)
		conn_wrong(c);
	return (0);
}

/* Latency: when message j of connection i is due, in us. */
static uint64_t
latency_due(size_t i, uint64_t j)
{
	return (t_sched + (uint64_t)(((double)j * nconns + i) * 1e6 / rate));
}

/*
 * Latency: one write of what is due and one read of the echoes; it waits
 * only when both would block (or nothing is due). Each message answered
 * counts from when it was due.
 */
static int
step_latency(struct conn *c)
{
	size_t		i = c - conns, off, len;
	uint64_t	now, want, j;
	ssize_t		n;
	int		progress = 0;

	want = c->due * (uint64_t)size;
	if (c->sent < want) {
		off = c->sent % size;
		len = want - c->sent < replen - off ? want - c->sent :
		    replen - off;
		n = send(c->fd, rep + off, len, MSG_NOSIGNAL);
		if (n > 0) {
			now = now_us();
			/* The messages this write began. */
			for (j = (c->sent + size - 1) / size;
			    j * size < c->sent + (uint64_t)n; j++)
				if (now > latency_due(i, j) + LATE_US)
					counts.late++;
			c->sent += n;
			progress = 1;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			conn_fail(c, errno);
			return (0);
		}
	}
	n = recv(c->fd, buf, sizeof buf, 0);
	if (n > 0) {
		if ((uint64_t)n > c->sent - c->rcvd ||
		    memcmp(buf, rep + c->rcvd % size, n) != 0) {
			conn_wrong(c);
			return (0);
		}
		now = now_us();
		for (j = c->rcvd / size; (j + 1) * size <= c->rcvd +
		    (uint64_t)n; j++) {
			want = latency_due(i, j);
			hist_add(now > want ? now - want : 0);
			counts.messages++;
		}
		c->rcvd += n;
		progress = 1;
	} else if (n == 0) {
		conn_fail(c, 0);
		return (0);
	} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		conn_fail(c, errno);
		return (0);
	}
	if (c->rcvd == c->due * (uint64_t)size) {
		if (stopping) {
			conn_done(c);
			return (0);
		}
		timer_clear(c);
	} else if (progress)
		timer_arm(c, now_us());
	return (progress);
}

static void
advance(struct conn *c)
{
	int	budget, go = 0;

	for (budget = BUDGET; budget > 0; budget--) {
		switch (c->state) {
		case S_FREE:
		case S_RETRY:
			return;
		case S_CONNECT:
			go = step_connect(c);
			break;
		case S_GREET:
			go = step_greet(c);
			break;
		case S_SEND:
			go = step_send(c);
			break;
		case S_ECHO:
			go = step_echo(c);
			break;
		case S_STREAM:
			go = step_stream(c);
			break;
		case S_HOLD:
			go = step_hold(c);
			break;
		case S_LATENCY:
			go = step_latency(c);
			break;
		}
		if (!go)
			return;
	}
	/* Out of budget and no EAGAIN yet: its turn comes again. */
	if (!c->queued) {
		TAILQ_INSERT_TAIL(&again, c, aentry);
		c->queued = 1;
		nagain++;
	}
}

static void
run_again(void)
{
	struct conn	*c;
	size_t		 n;

	for (n = nagain; n > 0 && (c = TAILQ_FIRST(&again)) != NULL; n--) {
		TAILQ_REMOVE(&again, c, aentry);
		c->queued = 0;
		nagain--;
		advance(c);
	}
}

static void
expire(uint64_t now)
{
	struct conn	*c;

	while ((c = TAILQ_FIRST(&timeouts)) != NULL && c->deadline <= now)
		conn_unanswered(c);
}

static void
retry(uint64_t now)
{
	struct conn	*c;

	while ((c = TAILQ_FIRST(&retries)) != NULL && c->retry_at <= now) {
		TAILQ_REMOVE(&retries, c, rentry);
		c->retrying = 0;
		conn_connect(c, now);
	}
}

static int
can_start(void)
{
	if (stopping || nfree == 0)
		return (0);
	if ((mode == MODE_IDLE || mode == MODE_LATENCY) &&
	    started >= (uint64_t)nconns)
		return (0);
	return (1);
}

/* Latency: the number of messages of the run. */
static uint64_t
latency_total(void)
{
	return ((uint64_t)(duration * rate + 0.5));
}

/* Latency: when message k is due, in us. */
static uint64_t
latency_due_k(uint64_t k)
{
	return (t_sched + (uint64_t)((double)k * 1e6 / rate));
}

/*
 * Latency: what is due by now goes to its connections and out, answered
 * or not; one on a closed connection is never answered (missed).
 */
static void
latency_issue(uint64_t now)
{
	struct conn	*c;
	uint64_t	 due, first, k;

	if (t_sched == 0)
		return;
	due = (uint64_t)((double)(now - t_sched) * rate / 1e6) + 1;
	if (due > latency_total())
		due = latency_total();
	if (due <= issued)
		return;
	first = issued;
	for (k = first; k < due; k++) {
		c = &conns[k % nconns];
		if (c->state != S_LATENCY)
			continue;
		if (c->rcvd == c->due * (uint64_t)size)
			timer_arm(c, now);
		c->due++;
	}
	issued = due;
	for (k = first; k < due && k < first + (uint64_t)nconns; k++) {
		c = &conns[k % nconns];
		if (c->state == S_LATENCY && !c->queued)
			advance(c);
	}
}

/*
 * Latency: every connection settled; the schedule starts now, or the run
 * stops when none was greeted (nothing is due then).
 */
static void
latency_start(uint64_t now)
{
	if (t_sched != 0 || stopping || started < (uint64_t)nconns ||
	    active != holding)
		return;
	if (holding == 0) {
		t_stop = now;
		return;
	}
	t_sched = now;
	t_stop = now + (uint64_t)(duration * 1e6);
}

static void
tokens_refill(uint64_t now)
{
	tokens += (double)(now - t_tokens) * rate / 1e6;
	if (tokens > burst)
		tokens = burst;
	t_tokens = now;
}

static void
start_more(uint64_t now)
{
	int	n;

	for (n = 0; n < START_BATCH && can_start(); n++) {
		if (rate > 0 && mode != MODE_LATENCY) {
			tokens_refill(now);
			if (tokens < 1)
				return;
			tokens -= 1;
		}
		conn_open(&conns[freestack[--nfree]]);
	}
}

/* Stop starting work; what is done with its work closes now. */
static void
begin_stop(uint64_t now)
{
	struct conn	*c;
	long		 i;

	if (mode == MODE_LATENCY)
		latency_issue(now);
	stopping = 1;
	t_grace = now + (uint64_t)timeout_ms * 1000;
	for (i = 0; i < nconns; i++) {
		c = &conns[i];
		if (c->state == S_HOLD ||
		    (c->state == S_STREAM && c->sent == c->rcvd) ||
		    (c->state == S_LATENCY && c->rcvd == c->due *
		    (uint64_t)size))
			conn_done(c);
	}
}

static void
announce(void)
{
	if (mode != MODE_IDLE || announced || stopping)
		return;
	if (started < (uint64_t)nconns || active != holding)
		return;
	fprintf(stderr, "established %" PRIu64 "\n", holding);
	fflush(stderr);
	announced = 1;
}

/* How long epoll may wait, in us: up to the next thing to do. */
static uint64_t
wait_us(uint64_t now)
{
	struct conn	*c;
	uint64_t	 next, t;

	if (nagain > 0)
		return (0);
	if (!stopping && interrupted)
		return (0);
	next = stopping ? t_grace : t_stop;
	if ((c = TAILQ_FIRST(&timeouts)) != NULL && c->deadline < next)
		next = c->deadline;
	if ((c = TAILQ_FIRST(&retries)) != NULL && c->retry_at < next)
		next = c->retry_at;
	if (t_sched != 0 && issued < latency_total() &&
	    (t = latency_due_k(issued)) < next)
		next = t;
	if (can_start()) {
		if (rate <= 0 || mode == MODE_LATENCY)
			return (0);
		tokens_refill(now);
		if (tokens >= 1)
			return (0);
		t = now + (uint64_t)((1 - tokens) * 1e6 / rate) + 1;
		if (t < next)
			next = t;
	}
	if (next <= now)
		return (0);
	t = next - now;
	return (t > 1000000 ? 1000000 : t);
}

/* epoll_wait to the microsecond (epoll_pwait2), or to the ms before 5.11. */
static int
poll_events(struct epoll_event *evs, uint64_t us)
{
	static int	no_pwait2;
	struct timespec	ts;
	int		n;

	if (!no_pwait2) {
		ts.tv_sec = (time_t)(us / 1000000);
		ts.tv_nsec = (long)(us % 1000000) * 1000;
		n = epoll_pwait2(ep, evs, MAXEVENTS, &ts, NULL);
		if (n != -1 || errno != ENOSYS)
			return (n);
		no_pwait2 = 1;
	}
	return (epoll_wait(ep, evs, MAXEVENTS, (int)((us + 999) / 1000)));
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted++;
}

/* The last resort of the time bound; the loop ends well before. */
static void
on_alarm(int sig)
{
	static const char	msg[] = "ncload: hard time limit reached\n";
	ssize_t			n;

	(void)sig;
	n = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)n;
	_exit(1);
}

static void
json_string(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned int)(unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void
report(double secs, double sched_secs)
{
	printf("{\"mode\":\"%s\",\"seconds\":%.3f,\"made\":%" PRIu64
	    ",\"refused\":%" PRIu64 ",\"reset_before_greeting\":%" PRIu64
	    ",\"reset_after_greeting\":%" PRIu64 ",\"unanswered\":%" PRIu64
	    ",\"wrong\":%" PRIu64 ",\"other\":%" PRIu64,
	    mode_names[mode], secs, counts.made, counts.refused,
	    counts.reset_before, counts.reset_after, counts.unanswered,
	    counts.wrong, counts.other);
	if (counts.other > 0) {
		printf(",\"first_other\":");
		json_string(strerror(counts.first_other));
	}
	switch (mode) {
	case MODE_CONN:
		break;
	case MODE_PINGPONG:
		printf(",\"messages\":%" PRIu64 ",\"message_rate\":%.1f",
		    counts.messages, counts.messages / secs);
		break;
	case MODE_STREAM:
		printf(",\"bytes\":%" PRIu64 ",\"byte_rate\":%.1f",
		    counts.bytes, counts.bytes / secs);
		break;
	case MODE_IDLE:
		printf(",\"established\":%" PRIu64, counts.established);
		break;
	case MODE_LATENCY:
		printf(",\"offered_rate\":%.1f,\"due\":%" PRIu64
		    ",\"answered\":%" PRIu64 ",\"missed\":%" PRIu64
		    ",\"late\":%" PRIu64 ",\"message_rate\":%.1f"
		    ",\"p999_us\":%" PRIu64 ",\"max_us\":%" PRIu64, rate,
		    issued, counts.messages, issued - counts.messages,
		    counts.late, sched_secs > 0 ? counts.messages / sched_secs :
		    0.0, hist_pct(999), hist_max);
		break;
	}
	printf(",\"rate\":%.1f,\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
	    "}\n", counts.made / secs, hist_pct(500), hist_pct(990));
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct epoll_event	 evs[MAXEVENTS];
	struct sigaction	 sa;
	struct itimerval	 itv;
	struct conn		*c;
	const char		*path = NULL, *greeting = "hello\\r\\n";
	uint64_t		 now, t_start, t_end, gen;
	double			 limit;
	size_t			 patlen, i;
	uint32_t		 idx;
	int			 ch, n, j;

	opterr = 0;
	while ((ch = getopt(argc, argv, ":bc:d:g:hm:r:s:t:u:")) != -1) {
		switch (ch) {
		case 'b':
			bindsrc = 1;
			break;
		case 'c':
			nconns = parse_long(optarg, 'c', 1, MAX_CONNS);
			break;
		case 'd':
			duration = parse_double(optarg, 'd');
			if (duration <= 0 || duration > 1e7)
				bad("-d: %s: want more than 0 seconds", optarg);
			break;
		case 'g':
			greeting = optarg;
			break;
		case 'h':
			usage(stdout);
			return (0);
		case 'm':
			for (j = 0; j < NMODES; j++) {
				if (strcmp(optarg, mode_names[j]) == 0)
					break;
			}
			if (j == NMODES)
				bad("-m: %s: want conn, pingpong, stream, idle "
				    "or latency", optarg);
			mode = (enum mode)j;
			break;
		case 'r':
			rate = parse_double(optarg, 'r');
			break;
		case 's':
			size = parse_long(optarg, 's', 0, MAX_SIZE);
			break;
		case 't':
			timeout_ms = parse_long(optarg, 't', 1, MAX_TIMEOUT);
			break;
		case 'u':
			path = optarg;
			break;
		case ':':
			bad("-%c needs an argument", optopt);
		default:
			bad("unknown option -%c (-h for help)", optopt);
		}
	}
	argc -= optind;
	argv += optind;

	if (duration < 0)
		bad("-d SECONDS is required");
	if (path != NULL) {
		if (argc != 0)
			bad("either -u PATH or HOST:PORT, not both");
		if (bindsrc)
			bad("-b is for TCP to 127.x, not -u");
		parse_unix(path);
	} else {
		if (argc == 0)
			bad("no HOST:PORT or -u PATH");
		for (j = 0; j < argc; j++) {
			parse_target(argv[j]);
			if (bindsrc && (targets[j].ss_family != AF_INET ||
			    (ntohl(((struct sockaddr_in *)&targets[j])->
			    sin_addr.s_addr) >> 24) != 127))
				bad("-b needs 127.x.x.x targets");
		}
	}
	parse_greeting(greeting);
	if (size == -1) {
		switch (mode) {
		case MODE_CONN:
		case MODE_IDLE:
			size = 4;
			break;
		case MODE_PINGPONG:
		case MODE_LATENCY:
			size = 64;
			break;
		case MODE_STREAM:
			size = 16384;
			break;
		}
	}
	if (size == 0 && (mode == MODE_PINGPONG || mode == MODE_STREAM ||
	    mode == MODE_LATENCY))
		bad("-s: 0: %s needs at least 1 byte", mode_names[mode]);
	if (mode == MODE_LATENCY && rate <= 0)
		bad("-m latency needs -r RATE, messages per second");

	patlen = ((size_t)size > BUFSZ ? (size_t)size : BUFSZ) + 26;
	if ((pat = malloc(patlen)) == NULL)
		fatal("malloc");
	for (i = 0; i < patlen; i++)
		pat[i] = (char)('a' + i % 26);
	/* The message over and over: a read of BUFSZ from any offset. */
	replen = (size_t)size * (BUFSZ / (size_t)size + 2);
	if (mode == MODE_LATENCY) {
		if ((rep = malloc(replen)) == NULL)
			fatal("malloc");
		for (i = 0; i < replen; i++)
			rep[i] = pat[i % (size_t)size];
		/* Timers to the microsecond, not the default 50. */
		(void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	}
	if ((conns = calloc(nconns, sizeof *conns)) == NULL ||
	    (freestack = calloc(nconns, sizeof *freestack)) == NULL)
		fatal("calloc");
	for (i = 0; i < (size_t)nconns; i++) {
		conns[i].fd = -1;
		freestack[nfree++] = (uint32_t)(nconns - 1 - i);
	}
	raise_nofile();

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");

	/* Latency: connecting may take a timeout before the schedule. */
	limit = duration + timeout_ms / 1000.0 *
	    (mode == MODE_LATENCY ? 2 : 1) + 0.9;
	memset(&itv, 0, sizeof itv);
	itv.it_value.tv_sec = (time_t)limit;
	itv.it_value.tv_usec = (suseconds_t)((limit - (time_t)limit) * 1e6);
	if (setitimer(ITIMER_REAL, &itv, NULL) == -1)
		fatal("setitimer");

	t_start = now_us();
	t_stop = t_start + (uint64_t)(duration * 1e6);
	if (mode == MODE_LATENCY)
		t_stop = UINT64_MAX;	/* set when the schedule starts */
	burst = rate / 100 > 1 ? rate / 100 : 1;
	tokens = 1;
	t_tokens = t_start;

	for (;;) {
		now = now_us();
		if (!stopping && (now >= t_stop || interrupted))
			begin_stop(now);
		if (stopping && (active == 0 || now >= t_grace ||
		    interrupted > 1))
			break;
		expire(now);
		retry(now);
		run_again();
		start_more(now);
		announce();
		if (mode == MODE_LATENCY) {
			latency_start(now);
			latency_issue(now);
		}
		n = poll_events(evs, wait_us(now));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait");
		}
		for (j = 0; j < n; j++) {
			idx = (uint32_t)evs[j].data.u64;
			gen = evs[j].data.u64 >> 32;
			if (idx >= (uint32_t)nconns)
				continue;
			c = &conns[idx];
			if (c->state == S_FREE || c->gen != (uint32_t)gen)
				continue;
			advance(c);
		}
	}
	t_end = now_us();

	/* Still in flight after the grace time. */
	for (i = 0; i < (size_t)nconns; i++) {
		c = &conns[i];
		if (c->state == S_HOLD || (c->state == S_LATENCY &&
		    c->rcvd == c->due * (uint64_t)size))
			conn_done(c);
		else if (c->state != S_FREE)
			conn_unanswered(c);
	}
	report((double)(t_end - t_start) / 1e6,
	    t_sched != 0 ? (double)(t_stop - t_sched) / 1e6 : 0.0);
	return (0);
}
