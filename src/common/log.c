/*
 * Logging, written once for the library, netclusterd and
 * netcluster-worker (nc-log.h): one level check, one journald detection,
 * and every message escaped before it is written, so that nothing a
 * peer sent (a worker's message type, a program's output, a client's
 * bytes) can forge a line or a journald priority.
 */

#include <sys/stat.h>
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nc-int.h"

#define LOG_RAW_MAX	2048	/* bytes of a message before escaping */
#define LOG_LINE_MAX	4096	/* and after: "\xNN" is four bytes */

int		 nc__log_level = NC_LOG_NOTICE;
static nc_log_cb log_cb;
static void	*log_arg;
static char	 log_ident[128];	/* set: a program's log */
static bool	 log_ident_journal;
static bool	 log_journal;
static void	(*log_fatal_hook)(void);

static const char *const log_words[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
};

void
nc_set_log_cb(nc_log_cb cb, void *arg)
{
	log_cb = cb;
	log_arg = arg;
}

void
nc_set_log_level(int level)
{
	if (level < NC_LOG_ERR)
		level = NC_LOG_ERR;
	if (level > NC_LOG_DEBUG)
		level = NC_LOG_DEBUG;
	nc__log_level = level;
}

int
nc_log_level(void)
{
	return nc__log_level;
}

/* Is stderr the journal (JOURNAL_STREAM, systemd.exec(5))? */
static bool
log_stderr_is_journal(void)
{
	const char	*js = getenv("JOURNAL_STREAM");
	struct stat	 st;
	unsigned long	 dev, ino;

	if (js == NULL || sscanf(js, "%lu:%lu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) == -1)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

void
nc__log_open(const char *ident, bool ident_in_journal)
{
	snprintf(log_ident, sizeof log_ident, "%s", ident);
	log_ident_journal = ident_in_journal;
	log_journal = log_stderr_is_journal();
}

void
nc__log_set_ident(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(log_ident, sizeof log_ident, fmt, ap);
	va_end(ap);
}

void
nc__log_at_fatal(void (*fn)(void))
{
	log_fatal_hook = fn;
}

/* raw into line, control characters as \xNN, within the bound. */
static void
log_escape(const char *raw, char *line, size_t len)
{
	size_t		 i, o = 0;
	unsigned char	 c;

	for (i = 0; raw[i] != '\0' && o + 5 < len; i++) {
		c = (unsigned char)raw[i];
		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(line + o, len - o, "\\x%02x", c);
		else
			line[o++] = (char)c;
	}
	line[o] = '\0';
}

static void
log_write(int level, const char *func, const char *line)
{
	struct timespec	ts;
	struct tm	tm;
	char		when[32];

	if (log_cb != NULL) {
		log_cb(level, line, log_arg);
		return;
	}
	if (log_ident[0] == '\0') {
		/* The library in someone's program, with no hook set. */
		if (nc__log_level >= NC_LOG_DEBUG && func != NULL)
			fprintf(stderr, "netcluster: %s: %s: %s\n",
			    log_words[level & 7], func, line);
		else
			fprintf(stderr, "netcluster: %s: %s\n",
			    log_words[level & 7], line);
		return;
	}
	if (log_journal) {
		/* sd-daemon(3) prefixes; journald adds the time. */
		fprintf(stderr, "<%d>%s%s%s\n", level & 7, log_ident_journal ?
		    log_ident : "", log_ident_journal ? ": " : "", line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s %s: %s: %s\n", when, log_ident,
	    log_words[level & 7], line);
}

void
nc__vlog(int level, const char *func, const char *fmt, va_list ap)
{
	char	raw[LOG_RAW_MAX], line[LOG_LINE_MAX];

	if (level > nc__log_level)
		return;
	vsnprintf(raw, sizeof raw, fmt, ap);
	log_escape(raw, line, sizeof line);
	log_write(level, func, line);
}

void
nc__log(int level, const char *func, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	nc__vlog(level, func, fmt, ap);
	va_end(ap);
}

void
nc__fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	nc__vlog(NC_LOG_ERR, NULL, fmt, ap);
	va_end(ap);
	if (log_fatal_hook != NULL)
		log_fatal_hook();
	exit(1);
}
