/*
 * netclusterctl: the operator's CLI. Sends one request to netclusterd's
 * control socket and prints the answer, as text or (--json) as the JSON
 * the master sent. Exit status 0 on success, 1 with a one-line reason.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define CTL_DEFAULT_SOCKET	"/run/netcluster/control.sock"
#define CTL_TIMEOUT_MS		60000	/* a reload waits for new workers */
#define CTL_MAX_REPLY		(4 * 1024 * 1024)
#define DRAIN_POLL_MS		100

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: netclusterctl [-s SOCKET] [--json] COMMAND\n"
	    "Talks to netclusterd's control socket (default %s).\n"
	    "Commands:\n"
	    "  status               the master, its services and their "
	    "connections\n"
	    "  workers              each worker: pid, state, uptime, restarts, "
	    "connections\n"
	    "  connections [NAME]   open connections, summed over the workers\n"
	    "  reload               read the configuration again; a new generation\n"
	    "                       of workers takes over without dropping a\n"
	    "                       connection (as SIGHUP)\n"
	    "  upgrade              check, then execute the binary netclusterd was\n"
	    "                       started from (a new one once replaced) in place\n"
	    "                       (same pid), keeping its sockets; new workers\n"
	    "                       take over as in a reload\n"
	    "  stop                 stop gracefully (as SIGTERM)\n"
	    "  send SERVICE JSON    send a message (any JSON value) to every\n"
	    "                       worker of SERVICE: its MESSAGE event\n"
	    "  metrics              the Prometheus metrics, as GET /metrics\n"
	    "                       serves them (--json: the same as JSON)\n"
	    "  drain [--wait] [--stop]\n"
	    "                       tell the balancer in front to send nothing\n"
	    "                       new (/ready answers 503, the agent drain);\n"
	    "                       listeners stay open. --wait: until no\n"
	    "                       connection is open (at most\n"
	    "                       shutdown_timeout_ms); --stop: then stop\n"
	    "  undrain              ready again\n"
	    "Options:\n"
	    "  -s, --socket SOCKET  the control socket\n"
	    "  -j, --json           print the master's JSON answer as is\n"
	    "      --wait, --stop   for drain\n"
	    "  -h, --help           print this help\n", CTL_DEFAULT_SOCKET);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list	ap;

	fputs("netclusterctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static char *
request(const char *path, const char *line)
{
	struct sockaddr_un	 sun;
	struct pollfd		 pfd;
	char			*buf;
	size_t			 len = 0;
	ssize_t			 n;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		fail("%s: path too long", path);
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		fail("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		fail("%s: %s (is netclusterd running?)", path,
		    strerror(errno));
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
		fail("%s: write: %s", path, strerror(errno));
	if ((buf = malloc(CTL_MAX_REPLY + 1)) == NULL)
		fail("out of memory");
	for (;;) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, CTL_TIMEOUT_MS) <= 0)
			fail("%s: no answer within %d ms", path,
			    CTL_TIMEOUT_MS);
		n = read(fd, buf + len, CTL_MAX_REPLY - len);
		if (n <= 0)
			fail("%s: the master closed the connection", path);
		len += (size_t)n;
		if (memchr(buf, '\n', len) != NULL)
			break;
		if (len == CTL_MAX_REPLY)
			fail("%s: answer too long", path);
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* A count, or "?" where the master cannot know it (a program's). */
static const char *
count_text(json_t *v, char *buf, size_t len)
{
	if (!json_is_integer(v))
		return "?";
	snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	return buf;
}

/* One request, its answer checked: the reply object, and its text. */
static json_t *
ask(const char *path, json_t *req, char **text)
{
	json_error_t	 jerr;
	json_t		*reply;
	char		*line, *answer, err[1024];

	if (req == NULL || (line = json_dumps(req, JSON_COMPACT)) == NULL)
		fail("out of memory");
	json_decref(req);
	if ((line = realloc(line, strlen(line) + 2)) == NULL)
		fail("out of memory");
	strcat(line, "\n");
	answer = request(path, line);
	free(line);
	reply = json_loads(answer, JSON_DISABLE_EOF_CHECK, &jerr);
	if (reply == NULL || !json_is_object(reply)) {
		free(answer);
		fail("bad answer from the master: %s", jerr.text);
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		free(answer);
		snprintf(err, sizeof err, "%s", json_string_value(
		    json_object_get(reply, "error")) != NULL ?
		    json_string_value(json_object_get(reply, "error")) :
		    "the master refused the request");
		json_decref(reply);
		fail("%s", err);
	}
	if (text != NULL)
		*text = answer;
	else
		free(answer);
	return reply;
}

static double
now_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * drain --wait: asks for the status every DRAIN_POLL_MS until every
 * worker answered 0 connections and, with an agent listener, the agent
 * has answered "drain" to the balancer at least once (so it sends
 * nothing new before a stop); or until bound_ms passed. 0 once
 * drained, else -1.
 */
static int
drain_wait(const char *path, int bound_ms)
{
	json_t		*reply, *told;
	double		 start = now_s();
	struct timespec	 ts = { 0, DRAIN_POLL_MS * 1000000L };
	const char	*nopen;
	char		 num[32];
	bool		 zero;

	for (;;) {
		reply = ask(path, json_pack("{s:s}", "command", "status"),
		    NULL);
		zero = json_is_integer(json_object_get(reply, "connections")) &&
		    json_integer_value(json_object_get(reply,
		    "connections")) == 0 && json_array_size(json_object_get(
		    reply, "missing")) == 0;
		told = json_object_get(reply, "agent_told_drain");
		if (zero && !json_is_false(told)) {
			printf("drained: no connection open after %.1f s\n",
			    now_s() - start);
			json_decref(reply);
			return 0;
		}
		if (now_s() - start >= bound_ms / 1000.0) {
			nopen = count_text(json_object_get(reply,
			    "connections"), num, sizeof num);
			if (!zero)
				fprintf(stderr, "netclusterctl: %s connection%s "
				    "still open after %d ms "
				    "(shutdown_timeout_ms)\n", nopen,
				    strcmp(nopen, "1") == 0 ? "" : "s", bound_ms);
			else
				fprintf(stderr, "netclusterctl: no balancer "
				    "asked the agent (%s) within %d ms "
				    "(shutdown_timeout_ms)\n", json_string_value(
				    json_object_get(reply, "agent")), bound_ms);
			json_decref(reply);
			return -1;
		}
		json_decref(reply);
		(void)nanosleep(&ts, NULL);
	}
}

static void
print_services(json_t *services)
{
	json_t		*s, *l;
	size_t		 i, j;
	char		 num[32];

	json_array_foreach(services, i, s) {
		printf("service %s: handler %s, mode %s, %s connections\n",
		    json_string_value(json_object_get(s, "name")),
		    json_string_value(json_object_get(s, "handler")),
		    json_string_value(json_object_get(s, "mode")),
		    count_text(json_object_get(s, "connections"), num,
		    sizeof num));
		json_array_foreach(json_object_get(s, "listeners"), j, l)
			printf("  listen %s -> %s\n",
			    json_string_value(json_object_get(l, "listen")),
			    json_string_value(json_object_get(l, "bound")));
	}
}

static void
print_missing(json_t *reply)
{
	json_t	*m = json_object_get(reply, "missing"), *v;
	size_t	 i;

	if (json_array_size(m) == 0)
		return;
	printf("not answering in time:");
	json_array_foreach(m, i, v)
		printf(" worker %lld", (long long)json_integer_value(v));
	printf("\n");
}

int
main(int argc, char **argv)
{
	const char	*path = getenv("NETCLUSTER_CONTROL_SOCKET");
	const char	*cmd;
	json_error_t	 jerr;
	json_t		*req, *reply, *w, *msg;
	char		 num[32];
	char		*answer;
	bool		 as_json = false, wait = false, stop = false;
	size_t		 i;
	int		 ch, rc = 0;

	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "wait", no_argument, NULL, 'W' },
		{ "stop", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};

	if (path == NULL || *path == '\0')
		path = CTL_DEFAULT_SOCKET;
	while ((ch = getopt_long(argc, argv, "s:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'W':
			wait = true;
			break;
		case 'S':
			stop = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "status") != 0 && strcmp(cmd, "workers") != 0 &&
	    strcmp(cmd, "connections") != 0 && strcmp(cmd, "stop") != 0 &&
	    strcmp(cmd, "reload") != 0 && strcmp(cmd, "upgrade") != 0 &&
	    strcmp(cmd, "send") != 0 && strcmp(cmd, "metrics") != 0 &&
	    strcmp(cmd, "drain") != 0 && strcmp(cmd, "undrain") != 0) {
		fprintf(stderr, "netclusterctl: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return 2;
	}
	if (optind < argc && strcmp(cmd, "connections") != 0 &&
	    strcmp(cmd, "send") != 0) {
		fprintf(stderr, "netclusterctl: %s takes no argument\n", cmd);
		return 2;
	}
	if ((wait || stop) && strcmp(cmd, "drain") != 0) {
		fprintf(stderr, "netclusterctl: --wait and --stop are for "
		    "drain\n");
		return 2;
	}
	if (strcmp(cmd, "send") == 0 && argc - optind != 2) {
		fprintf(stderr, "netclusterctl: send takes SERVICE and JSON\n");
		return 2;
	}
	req = json_pack("{s:s}", "command", cmd);
	if (optind < argc)
		(void)json_object_set_new(req, "service",
		    json_string(argv[optind++]));
	if (strcmp(cmd, "send") == 0) {
		if ((msg = json_loads(argv[optind], JSON_DECODE_ANY |
		    JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
			fprintf(stderr, "netclusterctl: the message is not "
			    "JSON: %s (line %d, column %d)\n", jerr.text,
			    jerr.line, jerr.column);
			json_decref(req);
			return 2;
		}
		(void)json_object_set_new(req, "message", msg);
		optind++;
	}
	if (optind < argc) {
		json_decref(req);
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "metrics") == 0)
		(void)json_object_set_new(req, "format", json_string(as_json ?
		    "json" : "text"));
	reply = ask(path, req, &answer);
	if (as_json) {
		fputs(answer, stdout);
	} else if (strcmp(cmd, "metrics") == 0) {
		fputs(json_string_value(json_object_get(reply, "text")) != NULL ?
		    json_string_value(json_object_get(reply, "text")) : "",
		    stdout);
	} else if (strcmp(cmd, "status") == 0) {
		printf("netclusterd pid %lld, up %.0f s, %lld of %lld workers "
		    "alive, %s connections\n",
		    (long long)json_integer_value(json_object_get(reply, "pid")),
		    json_real_value(json_object_get(reply, "uptime_s")),
		    (long long)json_integer_value(json_object_get(reply,
		    "alive")),
		    (long long)json_integer_value(json_object_get(reply,
		    "workers")),
		    count_text(json_object_get(reply, "connections"), num,
		    sizeof num));
		/* A master older than these keys has none. */
		if (json_is_string(json_object_get(reply, "version")) &&
		    json_is_string(json_object_get(reply, "binary")))
			printf("version %s, binary %s%s\n", json_string_value(
			    json_object_get(reply, "version")),
			    json_string_value(json_object_get(reply, "binary")),
			    json_is_true(json_object_get(reply,
			    "binary_changed")) ? " (replaced on disk since it "
			    "started: upgrade runs the new file)" : "");
		if (json_is_string(json_object_get(reply, "metrics")))
			printf("metrics on %s\n", json_string_value(
			    json_object_get(reply, "metrics")));
		if (json_is_string(json_object_get(reply, "agent")))
			printf("agent-check on %s\n", json_string_value(
			    json_object_get(reply, "agent")));
		if (json_is_true(json_object_get(reply, "draining")))
			printf("draining: the balancer is told to send nothing "
			    "new\n");
		print_services(json_object_get(reply, "services"));
		print_missing(reply);
	} else if (strcmp(cmd, "workers") == 0) {
		printf("%-5s %-6s %-8s %-9s %-9s %-8s %s\n", "SLOT", "ID",
		    "PID", "STATE", "UPTIME", "RESTARTS", "CONNECTIONS");
		json_array_foreach(json_object_get(reply, "workers"), i, w)
			printf("%-5lld %-6lld %-8lld %-9s %-9.0f %-8lld %s%s\n",
			    (long long)json_integer_value(json_object_get(w,
			    "slot")),
			    (long long)json_integer_value(json_object_get(w,
			    "id")),
			    (long long)json_integer_value(json_object_get(w,
			    "pid")),
			    json_string_value(json_object_get(w, "state")),
			    json_real_value(json_object_get(w, "uptime_s")),
			    (long long)json_integer_value(json_object_get(w,
			    "restarts")),
			    count_text(json_object_get(w, "count"), num,
			    sizeof num),
			    json_is_true(json_object_get(w, "answered")) ||
			    json_is_null(json_object_get(w, "count")) ? "" :
			    " (no answer)");
	} else if (strcmp(cmd, "connections") == 0) {
		printf("%s\n", count_text(json_object_get(reply,
		    "connections"), num, sizeof num));
		print_missing(reply);
	} else
		printf("%s\n", json_string_value(json_object_get(reply,
		    "message")));
	if (strcmp(cmd, "drain") == 0 && wait) {
		fflush(stdout);
		rc = drain_wait(path, (int)json_integer_value(json_object_get(
		    reply, "shutdown_timeout_ms")));
	}
	if (strcmp(cmd, "drain") == 0 && stop) {
		json_decref(ask(path, json_pack("{s:s}", "command", "stop"),
		    NULL));
		printf("stopping\n");
	}
	json_decref(reply);
	free(answer);
	return rc == 0 ? 0 : 1;
}
