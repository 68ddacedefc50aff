/*
 * The listen grammar of netcluster.json: "PORT", "HOST:PORT",
 * "[V6]:PORT", "unix:PATH", "fd:N" and "systemd:NAME", parsed into a
 * struct nc_listen_addr, and when two of them would bind the same thing.
 * Used by the config parser, the upstream check and the fuzz target;
 * resolving names is the check's (config-check.c), not this file's.
 */

#include <sys/types.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc-config.h"
#include "nc-int.h"

void
nc_config_listen_clear(struct nc_listen_addr *a)
{
	free(a->text);
	free(a->host);
	free(a->address);
	free(a->path);
	free(a->name);
	memset(a, 0, sizeof *a);
}

static int
listen_port(const char *s, int *port)
{
	char		*end;
	long		 v;

	if (*s == '\0' || strspn(s, "0123456789") != strlen(s) ||
	    strlen(s) > 5)
		return -1;
	v = strtol(s, &end, 10);
	if (v < 0 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

/*
 * A host name as RFC 1123 allows: letters, digits, hyphens and dots, and
 * a last label that is not all digits (2.1: a name never looks like a
 * dotted address, so 300.1.1.1 is a bad address and not a name).
 */
static bool
listen_hostname(const char *h)
{
	const char	*last;
	size_t		 n = strlen(h);

	if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
		return false;
	if (strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-.") != n)
		return false;
	if (h[n - 1] == '.')
		n--;
	for (last = h + n; last > h && last[-1] != '.'; last--)
		;
	return strspn(last, "0123456789") < (size_t)(h + n - last);
}

/* "unix:PATH", "fd:N", "systemd:NAME": 1 if text is none of them. */
static int
listen_special(const char *text, struct nc_listen_addr *a, char *err,
    size_t errlen)
{
	const char	*p;
	char		*end;
	long		 v;

	if (strncmp(text, "unix:", 5) == 0) {
		a->kind = NC_LISTEN_UNIX;
		p = text + 5;
		if (*p == '\0' || strlen(p) >= 108) {
			snprintf(err, errlen, "unix socket path must be 1 to "
			    "107 bytes, got \"%s\"", text);
			return -1;
		}
		if ((a->path = strdup(p)) == NULL)
			goto nomem;
		return 0;
	}
	if (strncmp(text, "fd:", 3) == 0) {
		a->kind = NC_LISTEN_FD;
		errno = 0;
		v = strtol(text + 3, &end, 10);
		if (text[3] == '\0' || *end != '\0' || errno != 0 || v < 3 ||
		    v > INT_MAX) {
			snprintf(err, errlen, "expected fd:N with N >= 3, "
			    "got \"%s\"", text);
			return -1;
		}
		a->fd = (int)v;
		return 0;
	}
	if (strncmp(text, "systemd:", 8) == 0) {
		a->kind = NC_LISTEN_SYSTEMD;
		p = text + 8;
		/* sd_pid_notify(3): names of at most 255 printable bytes. */
		if (*p == '\0' || strlen(p) > 255 || strchr(p, ':') != NULL) {
			snprintf(err, errlen, "expected systemd:NAME, got "
			    "\"%s\"", text);
			return -1;
		}
		if ((a->name = strdup(p)) == NULL)
			goto nomem;
		return 0;
	}
	return 1;

nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

int
nc_config_parse_listen(const char *text, struct nc_listen_addr *a, char *err,
    size_t errlen)
{
	const char	*colon, *p;
	char		*host = NULL;
	int		 rc;

	memset(a, 0, sizeof *a);
	if ((a->text = strdup(text)) == NULL)
		goto nomem;
	if ((rc = listen_special(text, a, err, errlen)) != 1) {
		if (rc == -1)
			nc_config_listen_clear(a);
		return rc;
	}

	a->kind = NC_LISTEN_TCP;
	if (listen_port(text, &a->port) == 0)
		return 0;
	if (text[0] == '[') {
		if ((p = strchr(text, ']')) == NULL || p[1] != ':')
			goto bad;
		if ((host = strndup(text + 1, (size_t)(p - text - 1))) == NULL)
			goto nomem;
		if (!nc_is_ipv6(host) || listen_port(p + 2, &a->port) != 0)
			goto bad;
	} else {
		if ((colon = strrchr(text, ':')) == NULL ||
		    memchr(text, ':', (size_t)(colon - text)) != NULL)
			goto bad;
		if ((host = strndup(text, (size_t)(colon - text))) == NULL)
			goto nomem;
		if (listen_port(colon + 1, &a->port) != 0 ||
		    (!nc_is_ipv4(host) && !listen_hostname(host)))
			goto bad;
	}
	a->host = host;
	return 0;

bad:
	snprintf(err, errlen, "expected PORT, HOST:PORT, [V6]:PORT, unix:PATH, "
	    "fd:N or systemd:NAME with a port from 0 to 65535, got \"%s\"",
	    text);
	goto fail;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	free(host);
	nc_config_listen_clear(a);
	return -1;
}

/*
 * a and b the same kind and address: as written (a TCP host, NULL for
 * every interface, compared as text), or, with overlap, as the kernel
 * binds them (every interface takes each address on its port; port 0
 * never collides).
 */
static bool
listen_compare(const struct nc_listen_addr *a, const struct nc_listen_addr *b,
    bool overlap)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case NC_LISTEN_TCP:
		if (a->port != b->port || (overlap && a->port == 0))
			return false;
		if (!overlap)
			return (a->host == NULL && b->host == NULL) ||
			    (a->host != NULL && b->host != NULL &&
			    strcmp(a->host, b->host) == 0);
		/* All interfaces overlap every address on the port. */
		if (a->host == NULL || b->host == NULL ||
		    strcmp(a->host, "::") == 0 || strcmp(b->host, "::") == 0)
			return true;
		if ((strcmp(a->host, "0.0.0.0") == 0 && nc_is_ipv4(b->host)) ||
		    (strcmp(b->host, "0.0.0.0") == 0 && nc_is_ipv4(a->host)))
			return true;
		return strcmp(a->host, b->host) == 0;
	case NC_LISTEN_UNIX:
		return strcmp(a->path, b->path) == 0;
	case NC_LISTEN_FD:
		return a->fd == b->fd;
	case NC_LISTEN_SYSTEMD:
		return strcmp(a->name, b->name) == 0;
	}
	return false;
}

bool
nc_config_listen_same(const struct nc_listen_addr *a,
    const struct nc_listen_addr *b)
{
	return listen_compare(a, b, true);
}

bool
nc_config_listen_equal(const struct nc_listen_addr *a,
    const struct nc_listen_addr *b)
{
	return listen_compare(a, b, false);
}
