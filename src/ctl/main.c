/*
 * netclusterctl: the operator's CLI. Sends one request to netclusterd's
 * control socket and prints the answer, as text or (--json) as the JSON
 * the master sent. The commands, their arguments and --help come from the
 * command table (nc-command.h) the master checks requests against. Exit
 * status 0 on success, 1 with a one-line reason, 2 for bad usage.
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

#include "nc-command.h"

#define CTL_DEFAULT_SOCKET	"/run/netcluster/control.sock"
#define CTL_TIMEOUT_MS		60000	/* for an answer */
#define CTL_LONG_TIMEOUT_MS	3600000	/* a batched reload's, a scale's */

static int	timeout_ms = CTL_TIMEOUT_MS;
#define CTL_MAX_REPLY		(4 * 1024 * 1024)
#define DRAIN_POLL_MS		100

#define CTL_HELP_COLUMN		23	/* where --help's text starts */
#define CTL_MAX_WORDS		8	/* the command and its arguments */

/* The usage and, from the command table, a line or more per command. */
static void
usage(FILE *f)
{
	const struct nc_command_entry	*ce;
	const char			*line, *nl;
	char				 words[128];
	size_t				 i;

	fprintf(f,
	    "usage: netclusterctl [-s SOCKET] [--json] COMMAND [ARGUMENT ...]\n"
	    "Talks to netclusterd's control socket (default %s).\n"
	    "Commands:\n", CTL_DEFAULT_SOCKET);
	for (i = 0; i < nc__ncommands; i++) {
		ce = &nc__commands[i];
		snprintf(words, sizeof words, "%s%s%s", ce->name,
		    ce->usage[0] != '\0' ? " " : "", ce->usage);
		/* A long one gets its own line, its text below. */
		if (strlen(words) + 3 > CTL_HELP_COLUMN)
			fprintf(f, "  %s\n%*s", words, CTL_HELP_COLUMN, "");
		else
			fprintf(f, "  %-*s", CTL_HELP_COLUMN - 2, words);
		for (line = ce->help; (nl = strchr(line, '\n')) != NULL;
		    line = nl + 1)
			fprintf(f, "%*s%.*s\n", line == ce->help ? 0 :
			    CTL_HELP_COLUMN, "", (int)(nl - line), line);
	}
	fprintf(f,
	    "Options:\n"
	    "  -s, --socket SOCKET  the control socket\n"
	    "  -j, --json           print the master's JSON answer as is\n"
	    "      --batch K        for reload: K workers at a time\n"
	    "      --wait, --stop   for drain\n"
	    "  -h, --help           print this help\n");
}

/* One line on stderr, then exit with status. */
static void __attribute__((noreturn, format(printf, 2, 0)))
vdie(int status, const char *fmt, va_list ap)
{
	fputs("netclusterctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	exit(status);
}

/* Exit status 2 with a line: bad usage, found before anything is sent. */
static void __attribute__((noreturn, format(printf, 1, 2)))
usage_fail(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vdie(2, fmt, ap);
}

/*
 * A count of the command line: 1 to NC_COMMAND_MAX_COUNT, with a sign
 * when sign is true ("+2", "-1"). 0 when s is not one.
 */
static int
count_parse(const char *s, bool sign)
{
	const char	*p = s;
	int		 n = 0;

	if (sign && (*p == '+' || *p == '-'))
		p++;
	if (*p == '\0')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++)
		if ((n = n * 10 + (*p - '0')) > NC_COMMAND_MAX_COUNT)
			return 0;
	if (*p != '\0')
		return 0;
	return *s == '-' ? -n : n;
}

/* Exit status 1 with a line: the request failed. */
static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vdie(1, fmt, ap);
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
		if (poll(&pfd, 1, timeout_ms) <= 0)
			fail("%s: no answer within %d ms", path, timeout_ms);
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

/*
 * A line per service, then its reload under way and its listeners. The
 * keys of the pool (workers, online, file_workers, reloading) may be
 * absent, from an older master: what is there is printed.
 */
static void
print_services(json_t *services)
{
	json_t		*s, *l, *r, *v;
	size_t		 i, j;
	char		 num[32];

	json_array_foreach(services, i, s) {
		printf("service %s: handler %s, mode %s",
		    json_string_value(json_object_get(s, "name")),
		    json_string_value(json_object_get(s, "handler")),
		    json_string_value(json_object_get(s, "mode")));
		if (json_is_integer(json_object_get(s, "online")) &&
		    json_is_integer(json_object_get(s, "workers")))
			printf(", %lld of %lld workers online",
			    (long long)json_integer_value(json_object_get(s,
			    "online")), (long long)json_integer_value(
			    json_object_get(s, "workers")));
		printf(", %s connections", count_text(json_object_get(s,
		    "connections"), num, sizeof num));
		v = json_object_get(s, "file_workers");
		if (json_is_integer(v) && json_is_integer(json_object_get(s,
		    "workers")) && json_integer_value(v) != json_integer_value(
		    json_object_get(s, "workers")))
			printf(" (scaled: the file says %lld)",
			    (long long)json_integer_value(v));
		printf("\n");
		r = json_object_get(s, "reloading");
		if (json_is_object(r))
			printf("  reloading: batch %lld of %lld (%lld at a "
			    "time)\n", (long long)json_integer_value(
			    json_object_get(r, "batch")), (long long)
			    json_integer_value(json_object_get(r, "batches")),
			    (long long)json_integer_value(json_object_get(r,
			    "batch_size")));
		json_array_foreach(json_object_get(s, "listeners"), j, l)
			printf("  listen %s -> %s\n",
			    json_string_value(json_object_get(l, "listen")),
			    json_string_value(json_object_get(l, "bound")));
	}
}

/*
 * The workers' table; the master sorts them by service, then slot, and
 * each service's rows come under a line "service NAME:" and the
 * columns. Rows without a service (an older master) are one table.
 */
static void
print_workers(json_t *workers)
{
	json_t		*w;
	const char	*svc, *last = NULL;
	size_t		 i;
	char		 num[32];
	bool		 header = false;

	json_array_foreach(workers, i, w) {
		svc = json_string_value(json_object_get(w, "service"));
		if (svc != NULL && (last == NULL || strcmp(svc, last) != 0)) {
			printf("service %s:\n", svc);
			header = false;
		}
		last = svc;
		if (!header)
			printf("%-5s %-6s %-8s %-9s %-9s %-8s %s\n", "SLOT",
			    "ID", "PID", "STATE", "UPTIME", "RESTARTS",
			    "CONNECTIONS");
		header = true;
		printf("%-5lld %-6lld %-8lld %-9s %-9.0f %-8lld %s%s\n",
		    (long long)json_integer_value(json_object_get(w, "slot")),
		    (long long)json_integer_value(json_object_get(w, "id")),
		    (long long)json_integer_value(json_object_get(w, "pid")),
		    json_string_value(json_object_get(w, "state")),
		    json_real_value(json_object_get(w, "uptime_s")),
		    (long long)json_integer_value(json_object_get(w,
		    "restarts")),
		    count_text(json_object_get(w, "count"), num, sizeof num),
		    json_is_true(json_object_get(w, "answered")) ||
		    json_is_null(json_object_get(w, "count")) ? "" :
		    " (no answer)");
		/* What a notify program said of itself (STATUS=). */
		if (json_is_string(json_object_get(w, "status")))
			printf("      status: %s\n", json_string_value(
			    json_object_get(w, "status")));
	}
	if (!header)
		printf("%-5s %-6s %-8s %-9s %-9s %-8s %s\n", "SLOT", "ID",
		    "PID", "STATE", "UPTIME", "RESTARTS", "CONNECTIONS");
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

static void
print_status(json_t *reply)
{
	char	 num[32];

	printf("netclusterd pid %lld, up %.0f s, %lld of %lld workers alive, "
	    "%s connections\n",
	    (long long)json_integer_value(json_object_get(reply, "pid")),
	    json_real_value(json_object_get(reply, "uptime_s")),
	    (long long)json_integer_value(json_object_get(reply, "alive")),
	    (long long)json_integer_value(json_object_get(reply, "workers")),
	    count_text(json_object_get(reply, "connections"), num,
	    sizeof num));
	/* A master older than these keys has none. */
	if (json_is_string(json_object_get(reply, "version")) &&
	    json_is_string(json_object_get(reply, "binary")))
		printf("version %s, binary %s%s\n", json_string_value(
		    json_object_get(reply, "version")),
		    json_string_value(json_object_get(reply, "binary")),
		    json_is_true(json_object_get(reply, "binary_changed")) ?
		    " (replaced on disk since it started: upgrade runs the "
		    "new file)" : "");
	if (json_is_string(json_object_get(reply, "metrics")))
		printf("metrics on %s\n", json_string_value(
		    json_object_get(reply, "metrics")));
	if (json_is_string(json_object_get(reply, "agent")))
		printf("agent-check on %s\n", json_string_value(
		    json_object_get(reply, "agent")));
	if (json_is_true(json_object_get(reply, "draining")))
		printf("draining: the balancer is told to send nothing new\n");
	print_services(json_object_get(reply, "services"));
	print_missing(reply);
}

/* The names of the commands with netclusterctl's option ctl. */
static void
ctl_names(int ctl, char *buf, size_t len)
{
	size_t	i, off = 0;
	int	w;

	buf[0] = '\0';
	for (i = 0; i < nc__ncommands; i++) {
		if ((nc__commands[i].ctl & ctl) == 0)
			continue;
		w = snprintf(buf + off, len - off, "%s%s", off == 0 ? "" :
		    ", ", nc__commands[i].name);
		if (w < 0 || (size_t)w >= len - off)
			return;
		off += (size_t)w;
	}
}

/*
 * A word of the command line that is not an option; those past
 * CTL_MAX_WORDS are only counted (any is one too many).
 */
static void
ctl_word(char **args, int *nargs, char *word)
{
	if (*nargs < CTL_MAX_WORDS)
		args[*nargs] = word;
	(*nargs)++;
}

/*
 * The request of the command line's words after the options: the
 * command, then as its row takes them [SERVICE], JSON (the message) and
 * N|+K|-K (workers or delta); batch from --batch, 0 when not given.
 * Exits 2 on bad usage.
 */
static json_t *
ctl_request(char **args, int nargs, int batch, bool as_json, bool waits,
    const struct nc_command_entry **cep)
{
	const struct nc_command_entry	*ce;
	json_error_t			 jerr;
	json_t				*req, *msg;
	char				 names[128];
	int				 min = 0, max = 0, n, i = 1;

	if (nargs == 0) {
		usage(stderr);
		exit(2);
	}
	if ((ce = nc__command_find(args[0])) == NULL) {
		fprintf(stderr, "netclusterctl: unknown command \"%s\"\n",
		    args[0]);
		usage(stderr);
		exit(2);
	}
	if (ce->ctl & NC_CTL_LONG)
		timeout_ms = CTL_LONG_TIMEOUT_MS;
	if (waits && (ce->ctl & NC_CTL_WAIT) == 0) {
		ctl_names(NC_CTL_WAIT, names, sizeof names);
		usage_fail("--wait and --stop are for %s", names);
	}
	if (batch != 0 && (ce->takes & NC_KEY_BATCH) == 0) {
		(void)nc__command_names(NC_KEY_BATCH, "and", names,
		    sizeof names);
		usage_fail("--batch is for %s", names);
	}
	if (ce->takes & NC_KEY_SERVICE) {
		max++;
		min += (ce->needs & NC_KEY_SERVICE) != 0;
	}
	if (ce->takes & NC_KEY_MESSAGE) {
		max++;
		min += (ce->needs & NC_KEY_MESSAGE) != 0;
	}
	if (ce->one_of & (NC_KEY_WORKERS | NC_KEY_DELTA)) {
		max++;
		min++;
	}
	if (nargs - 1 > max && max == 0)
		usage_fail("%s takes no argument", ce->name);
	if (nargs - 1 > max || nargs - 1 < min)
		usage_fail("%s takes %s", ce->name, ce->usage);
	if ((req = json_pack("{s:s}", "command", ce->name)) == NULL)
		fail("out of memory");
	if ((ce->takes & NC_KEY_SERVICE) && i < nargs)
		(void)json_object_set_new(req, "service",
		    json_string(args[i++]));
	if ((ce->takes & NC_KEY_MESSAGE) && i < nargs) {
		if ((msg = json_loads(args[i], JSON_DECODE_ANY |
		    JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
			json_decref(req);
			usage_fail("the message is not JSON: %s (line %d, "
			    "column %d)", jerr.text, jerr.line, jerr.column);
		}
		(void)json_object_set_new(req, "message", msg);
		i++;
	}
	if ((ce->one_of & (NC_KEY_WORKERS | NC_KEY_DELTA)) && i < nargs) {
		if ((n = count_parse(args[i], true)) == 0) {
			json_decref(req);
			usage_fail("%s: \"%s\" is not a count (N, +K or -K, "
			    "from 1 to %d)", ce->name, args[i],
			    NC_COMMAND_MAX_COUNT);
		}
		(void)json_object_set_new(req, args[i][0] == '+' ||
		    args[i][0] == '-' ? "delta" : "workers", json_integer(n));
		i++;
	}
	if (batch != 0)
		(void)json_object_set_new(req, "batch", json_integer(batch));
	if (ce->takes & NC_KEY_FORMAT)
		(void)json_object_set_new(req, "format", json_string(as_json ?
		    "json" : "text"));
	*cep = ce;
	return req;
}

int
main(int argc, char **argv)
{
	const struct nc_command_entry	*ce;
	const char			*path;
	json_t				*req, *reply, *v;
	char				*args[CTL_MAX_WORDS];
	char				 num[32];
	char				*answer;
	bool				 as_json = false, wait = false;
	bool				 stop = false;
	int				 ch, nargs = 0, batch = 0, rc = 0;

	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "batch", required_argument, NULL, 'B' },
		{ "wait", no_argument, NULL, 'W' },
		{ "stop", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};

	path = getenv("NETCLUSTER_CONTROL_SOCKET");
	if (path == NULL || *path == '\0')
		path = CTL_DEFAULT_SOCKET;
	/*
	 * Options go anywhere; the words between them are taken in order
	 * ("-" first in the option string), and so is a negative count,
	 * which getopt would take for options ("scale web -2").
	 */
	for (;;) {
		if (optind < argc && argv[optind][0] == '-' &&
		    argv[optind][1] >= '0' && argv[optind][1] <= '9') {
			ctl_word(args, &nargs, argv[optind++]);
			continue;
		}
		if ((ch = getopt_long(argc, argv, "-s:jh", longopts,
		    NULL)) == -1)
			break;
		switch (ch) {
		case 1:
			ctl_word(args, &nargs, optarg);
			break;
		case 's':
			path = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'B':
			if ((batch = count_parse(optarg, false)) == 0)
				usage_fail("--batch: \"%s\" is not a count "
				    "from 1 to %d", optarg,
				    NC_COMMAND_MAX_COUNT);
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
	while (optind < argc)	/* after "--" */
		ctl_word(args, &nargs, argv[optind++]);
	req = ctl_request(args, nargs, batch, as_json, wait || stop, &ce);
	reply = ask(path, req, &answer);
	if (as_json) {
		fputs(answer, stdout);
	} else {
		switch (ce->command) {
		case NC_CMD_METRICS:
			v = json_object_get(reply, "text");
			fputs(json_is_string(v) ? json_string_value(v) : "",
			    stdout);
			break;
		case NC_CMD_STATUS:
			print_status(reply);
			break;
		case NC_CMD_WORKERS:
			print_workers(json_object_get(reply, "workers"));
			print_missing(reply);
			break;
		case NC_CMD_CONNECTIONS:
			printf("%s\n", count_text(json_object_get(reply,
			    "connections"), num, sizeof num));
			print_missing(reply);
			break;
		case NC_CMD_RELOAD:
		case NC_CMD_SCALE:
		case NC_CMD_UPGRADE:
		case NC_CMD_STOP:
		case NC_CMD_SEND:
		case NC_CMD_DRAIN:
		case NC_CMD_UNDRAIN:
			v = json_object_get(reply, "message");
			if (json_is_string(v))
				printf("%s\n", json_string_value(v));
			break;
		}
	}
	if ((ce->ctl & NC_CTL_WAIT) && wait) {
		fflush(stdout);
		rc = drain_wait(path, (int)json_integer_value(json_object_get(
		    reply, "shutdown_timeout_ms")));
	}
	if ((ce->ctl & NC_CTL_WAIT) && stop) {
		json_decref(ask(path, json_pack("{s:s}", "command", "stop"),
		    NULL));
		printf("stopping\n");
	}
	json_decref(reply);
	free(answer);
	return rc == 0 ? 0 : 1;
}
