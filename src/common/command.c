/*
 * The operator's commands (nc-command.h): one row each, read by
 * netclusterctl for its arguments and --help and by the master's
 * request parser for the keys a request may and must have. A new
 * command is a row here, a case in the master and a man page entry.
 */

#include <stdio.h>
#include <string.h>

#include "nc-command.h"

const struct nc_command_entry nc__commands[] = {
	[NC_CMD_STATUS] = {
		"status", NC_CMD_STATUS, "",
		"the master, and each service's workers and\n"
		"connections\n",
		0, 0, 0, 0
	},
	[NC_CMD_WORKERS] = {
		"workers", NC_CMD_WORKERS, "",
		"each worker, by service: pid, state, uptime,\n"
		"restarts, connections\n",
		0, 0, 0, 0
	},
	[NC_CMD_CONNECTIONS] = {
		"connections", NC_CMD_CONNECTIONS, "[SERVICE]",
		"open connections, of every service or of one,\n"
		"summed over the workers\n",
		NC_KEY_SERVICE, 0, 0, 0
	},
	[NC_CMD_RELOAD] = {
		"reload", NC_CMD_RELOAD, "[SERVICE] [--batch K]",
		"read the configuration again; a new generation\n"
		"of workers takes over without dropping a\n"
		"connection (as SIGHUP). SERVICE: of that service\n"
		"only. --batch K: K new workers at a time, and K\n"
		"old ones stop once those are online\n",
		NC_KEY_SERVICE | NC_KEY_BATCH, 0, 0, NC_CTL_LONG
	},
	[NC_CMD_SCALE] = {
		"scale", NC_CMD_SCALE, "SERVICE N|+K|-K",
		"run N workers of SERVICE, or K more or fewer:\n"
		"only those start or stop; the next reload takes\n"
		"the configuration's count again\n",
		NC_KEY_SERVICE | NC_KEY_WORKERS | NC_KEY_DELTA, NC_KEY_SERVICE,
		NC_KEY_WORKERS | NC_KEY_DELTA, NC_CTL_LONG
	},
	[NC_CMD_UPGRADE] = {
		"upgrade", NC_CMD_UPGRADE, "",
		"check, then execute the binary netclusterd was\n"
		"started from (a new one once replaced) in place\n"
		"(same pid), keeping its sockets; new workers\n"
		"take over as in a reload\n",
		0, 0, 0, NC_CTL_LONG
	},
	[NC_CMD_STOP] = {
		"stop", NC_CMD_STOP, "",
		"stop gracefully (as SIGTERM)\n",
		0, 0, 0, 0
	},
	[NC_CMD_SEND] = {
		"send", NC_CMD_SEND, "SERVICE JSON",
		"send a message (any JSON value) to every\n"
		"worker of SERVICE: its MESSAGE event\n",
		NC_KEY_SERVICE | NC_KEY_MESSAGE,
		NC_KEY_SERVICE | NC_KEY_MESSAGE, 0, 0
	},
	[NC_CMD_METRICS] = {
		"metrics", NC_CMD_METRICS, "",
		"the Prometheus metrics, as GET /metrics\n"
		"serves them (--json: the same as JSON)\n",
		NC_KEY_FORMAT, 0, 0, 0
	},
	[NC_CMD_DRAIN] = {
		"drain", NC_CMD_DRAIN, "[--wait] [--stop]",
		"tell the balancer in front to send nothing\n"
		"new (/ready answers 503, the agent drain);\n"
		"listeners stay open. --wait: until no\n"
		"connection is open (at most\n"
		"shutdown_timeout_ms); --stop: then stop\n",
		0, 0, 0, NC_CTL_WAIT
	},
	[NC_CMD_UNDRAIN] = {
		"undrain", NC_CMD_UNDRAIN, "",
		"ready again\n",
		0, 0, 0, 0
	}
};
const size_t nc__ncommands = sizeof nc__commands / sizeof nc__commands[0];

static const char *const command_keys[] = {
	"service", "message", "format", "batch", "workers", "delta"
};

const struct nc_command_entry *
nc__command_find(const char *name)
{
	size_t	i;

	for (i = 0; i < nc__ncommands; i++)
		if (strcmp(name, nc__commands[i].name) == 0)
			return &nc__commands[i];
	return NULL;
}

const char *
nc__command_key(int key)
{
	size_t	i;

	for (i = 0; i < sizeof command_keys / sizeof command_keys[0]; i++)
		if (key == 1 << i)
			return command_keys[i];
	return NULL;
}

size_t
nc__command_names(int keys, const char *conj, char *buf, size_t len)
{
	size_t	 i, n = 0, total = 0, off = 0;
	int	 w;

	for (i = 0; i < nc__ncommands; i++)
		if (keys == 0 || (nc__commands[i].takes & keys) != 0)
			total++;
	if (len > 0)
		buf[0] = '\0';
	for (i = 0; i < nc__ncommands; i++) {
		if (keys != 0 && (nc__commands[i].takes & keys) == 0)
			continue;
		if (n == 0 || n + 1 < total)
			w = snprintf(buf + off, len - off, "%s%s",
			    n == 0 ? "" : ", ", nc__commands[i].name);
		else
			w = snprintf(buf + off, len - off, " %s %s", conj,
			    nc__commands[i].name);
		n++;
		if (w < 0 || (size_t)w >= len - off)
			off = len > 0 ? len - 1 : 0;
		else
			off += (size_t)w;
	}
	return n;
}
