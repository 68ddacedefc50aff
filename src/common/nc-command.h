/*
 * The operator's commands, in one table shared by netclusterctl and the
 * master's control request parser: a row per command with its name, its
 * arguments and help for the CLI, and the keys its request takes, so
 * that the two never disagree (tmux's cmd_table). Not installed.
 */

#ifndef NC_COMMAND_H
#define NC_COMMAND_H

#include <stddef.h>

#define NC_COMMAND_MAX_COUNT	1024	/* "workers", |"delta"|, "batch" */

/* In table order: the order of --help and of every list of names. */
enum nc_command {
	NC_CMD_STATUS,
	NC_CMD_WORKERS,
	NC_CMD_CONNECTIONS,
	NC_CMD_RELOAD,
	NC_CMD_SCALE,
	NC_CMD_UPGRADE,
	NC_CMD_STOP,
	NC_CMD_SEND,
	NC_CMD_METRICS,
	NC_CMD_DRAIN,
	NC_CMD_UNDRAIN
};

/*
 * The keys of a request besides "command", as bits; nc__command_key()
 * names them. On the command line they are, in this order, [SERVICE],
 * JSON (message), N|+K|-K (workers or delta), --batch K, and --json
 * (format).
 */
#define NC_KEY_SERVICE	0x01	/* a service's name */
#define NC_KEY_MESSAGE	0x02	/* any JSON value */
#define NC_KEY_FORMAT	0x04	/* "text" or "json" */
#define NC_KEY_BATCH	0x08	/* 1..NC_COMMAND_MAX_COUNT */
#define NC_KEY_WORKERS	0x10	/* 1..NC_COMMAND_MAX_COUNT */
#define NC_KEY_DELTA	0x20	/* +-(1..NC_COMMAND_MAX_COUNT) */
#define NC_KEY_ALL	0x3f

/* Options of netclusterctl alone, never sent. */
#define NC_CTL_WAIT	0x01	/* --wait, --stop: after the request */
#define NC_CTL_LONG	0x02	/* its answer waits for workers to start */

/*
 * A command. Its request may have the keys of takes; it must have those
 * of needs and exactly one of one_of. help is lines for --help, each
 * ending in \n.
 */
struct nc_command_entry {
	const char	*name;
	enum nc_command	 command;
	const char	*usage;		/* its arguments, "" for none */
	const char	*help;
	int		 takes;		/* NC_KEY_* */
	int		 needs;		/* NC_KEY_*, of takes */
	int		 one_of;	/* NC_KEY_*, of takes */
	int		 ctl;		/* NC_CTL_*: netclusterctl's options */
};

/* The table, indexed by enum nc_command. */
extern const struct nc_command_entry	nc__commands[];
extern const size_t			nc__ncommands;

/* The row of a command's name, or NULL. */
const struct nc_command_entry	*nc__command_find(const char *);
/* A key's name in a request ("service"), or NULL for other bits. */
const char			*nc__command_key(int);
/*
 * The names of the commands that take any of keys (0: every command),
 * in table order, joined as "a, b and c" with conj the last word; as
 * snprintf, truncated to len. Returns how many it named.
 */
size_t				 nc__command_names(int keys, const char *conj,
				    char *buf, size_t len);

#endif /* NC_COMMAND_H */
