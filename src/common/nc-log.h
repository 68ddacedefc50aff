/*
 * The one log of the library and of the programs (netclusterd,
 * netcluster-worker): syslog levels, one level check, every line escaped
 * (nothing a worker, a program or a client sent reaches the log raw) and
 * bounded. The library writes through the hook a program sets
 * (nc_set_log_cb), else to stderr; netclusterd and netcluster-worker open
 * the log with their name, and then write stderr lines as journald takes
 * them (the "<N>" prefix of sd-daemon(3)) when stderr is the journal, or
 * with a time stamp and the level on a terminal. Not installed.
 */

#ifndef NC_LOG_H
#define NC_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "netcluster.h"

extern int	nc__log_level;

/*
 * A program's log: ident names it on each line ("netclusterd[PID]",
 * "netcluster-worker 3 [pid 4121]"); in the journal only when
 * ident_in_journal (a worker shares its master's stream, so it says
 * who it is; journald knows the master itself).
 */
void		nc__log_open(const char *ident, bool ident_in_journal);
void		nc__log_set_ident(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));
/* Called before fatalx() exits: a worker flushes its channel there. */
void		nc__log_at_fatal(void (*)(void));

void		nc__log(int level, const char *func, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
void		nc__vlog(int level, const char *func, const char *fmt,
		    va_list ap) __attribute__((format(printf, 3, 0)));
void		nc__fatalx(const char *fmt, ...)
		    __attribute__((noreturn, format(printf, 1, 2)));

#define log_err(...)	nc__log(NC_LOG_ERR, __func__, __VA_ARGS__)
#define log_warnx(...)	nc__log(NC_LOG_WARNING, __func__, __VA_ARGS__)
#define log_notice(...)	nc__log(NC_LOG_NOTICE, __func__, __VA_ARGS__)
#define log_info(...) do {						\
	if (nc__log_level >= NC_LOG_INFO)				\
		nc__log(NC_LOG_INFO, __func__, __VA_ARGS__);		\
} while (0)
#define log_debug(...) do {						\
	if (nc__log_level >= NC_LOG_DEBUG)				\
		nc__log(NC_LOG_DEBUG, __func__, __VA_ARGS__);		\
} while (0)
#define fatalx(...)	nc__fatalx(__VA_ARGS__)

#endif /* NC_LOG_H */
