/*
 * Logging: the library logs through a hook the program sets, stderr by
 * default, and routes libevent's own messages there too. Each message is
 * one line, bounded, with control characters escaped.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "nc-int.h"

int		 nc__log_level = NC_LOG_NOTICE;
static nc_log_cb log_cb;
static void	*log_arg;

static const char *
log_level_name(int level)
{
	switch (level) {
	case NC_LOG_ERR:
		return "err";
	case NC_LOG_WARNING:
		return "warning";
	case NC_LOG_NOTICE:
		return "notice";
	case NC_LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

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

void
nc__log(int level, const char *func, const char *fmt, ...)
{
	char		 raw[1024], line[1024];
	va_list		 ap;
	size_t		 i, o;
	unsigned char	 c;

	if (level > nc__log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);

	/* Escape control characters so nothing from a peer reaches the log raw. */
	for (i = 0, o = 0; raw[i] != '\0' && o + 5 < sizeof line; i++) {
		c = (unsigned char)raw[i];
		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(line + o, sizeof line - o,
			    "\\x%02x", c);
		else
			line[o++] = (char)c;
	}
	line[o] = '\0';

	if (log_cb != NULL) {
		log_cb(level, line, log_arg);
		return;
	}
	if (nc__log_level >= NC_LOG_DEBUG && func != NULL)
		fprintf(stderr, "netcluster: %s: %s: %s\n",
		    log_level_name(level), func, line);
	else
		fprintf(stderr, "netcluster: %s: %s\n", log_level_name(level),
		    line);
}
