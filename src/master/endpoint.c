/*
 * The master's own sockets beside the control socket: the metrics
 * listener (http.c serves it) and the agent listener (health.c). Both
 * are bound from the configuration like a service's (any listen form),
 * kept across reloads while their text stays, bound aside by a reload
 * and swapped in with its generation, and handed over by an upgrade.
 */

#include <sys/types.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"

#define ENDPOINT_BACKLOG	4096	/* a storm waits there */

struct endpoint {
	const char	*what;		/* "metrics", "agent" */
	void		(*start)(int);
	void		(*stop)(void);
	char		*text;		/* as listened, or NULL: off */
	int		 fd;
	char		*unix_path;	/* a file we made */
	char		 bound[160];	/* what it bound */
	/* A reload's replacement, until it commits. */
	char		*next_text;
	int		 next_fd;
	char		*next_unix_path;
	bool		 next_off;	/* the reload ends it */
};

static struct endpoint	 endpoints[] = {
	{ .what = "metrics", .start = http_start, .stop = http_stop,
	    .fd = -1, .next_fd = -1 },
	{ .what = "agent", .start = health_agent_start,
	    .stop = health_agent_stop, .fd = -1, .next_fd = -1 },
};
#define NENDPOINTS	(sizeof endpoints / sizeof endpoints[0])

static json_t		*inherited;	/* {what: {text, fd}} */

static const struct nc_endpoint *
endpoint_conf(const struct nc_config *cfg, const struct endpoint *ep)
{
	return ep == &endpoints[0] ? &cfg->metrics : &cfg->agent;
}

static void
close_fd(int fd, char *unix_path)
{
	if (fd != -1)
		close(fd);
	if (unix_path != NULL) {
		(void)unlink(unix_path);
		free(unix_path);
	}
}

/* The socket goes: its server stops (closing the fd), the file too. */
static void
endpoint_stop(struct endpoint *ep)
{
	if (ep->text != NULL)
		ep->stop();
	close_fd(-1, ep->unix_path);
	ep->fd = -1;
	ep->unix_path = NULL;
	free(ep->text);
	ep->text = NULL;
}

/* The fd an upgrade handed over for this text, or -1. */
static int
inherited_take(const char *what, const char *text)
{
	json_t	*e = json_object_get(inherited, what);
	int	 fd;

	if (e == NULL || text == NULL || strcmp(json_string_value(
	    json_object_get(e, "text")), text) != 0)
		return -1;
	fd = (int)json_integer_value(json_object_get(e, "fd"));
	(void)json_object_del(inherited, what);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

/* Binds what conf asks for and the running one does not have, aside. */
static int
prepare_one(struct endpoint *ep, const struct nc_endpoint *conf, char *err,
    size_t errlen)
{
	char	why[256];
	int	fd;

	ep->next_off = !conf->on;
	if (!conf->on || (ep->text != NULL &&
	    strcmp(ep->text, conf->listen.text) == 0))
		return 0;
	if ((fd = inherited_take(ep->what, conf->listen.text)) == -1 &&
	    (fd = listener_open(&conf->listen, ENDPOINT_BACKLOG,
	    &ep->next_unix_path, why, sizeof why)) == -1) {
		snprintf(err, errlen, "%s listener %s: %s", ep->what,
		    conf->listen.text, why);
		return -1;
	}
	if ((ep->next_text = strdup(conf->listen.text)) == NULL) {
		close_fd(fd, ep->next_unix_path);
		ep->next_unix_path = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ep->next_fd = fd;
	return 0;
}

/* For a build of every service: 0, or -1 saying why, nothing bound. */
int
endpoint_prepare(const struct nc_config *cfg, char *err, size_t errlen)
{
	size_t	i;

	for (i = 0; i < NENDPOINTS; i++)
		if (prepare_one(&endpoints[i], endpoint_conf(cfg,
		    &endpoints[i]), err, errlen) == -1) {
			endpoint_abort();
			return -1;
		}
	return 0;
}

void
endpoint_abort(void)
{
	struct endpoint	*ep;
	size_t		 i;

	for (i = 0; i < NENDPOINTS; i++) {
		ep = &endpoints[i];
		close_fd(ep->next_fd, ep->next_unix_path);
		free(ep->next_text);
		ep->next_fd = -1;
		ep->next_unix_path = NULL;
		ep->next_text = NULL;
	}
}

static void
commit_one(struct endpoint *ep)
{
	if (ep->next_text == NULL) {
		if (ep->next_off && ep->text != NULL) {
			log_notice("%s listener %s closed", ep->what, ep->text);
			endpoint_stop(ep);
		}
		return;
	}
	endpoint_stop(ep);
	ep->text = ep->next_text;
	ep->fd = ep->next_fd;
	ep->unix_path = ep->next_unix_path;
	ep->next_text = NULL;
	ep->next_fd = -1;
	ep->next_unix_path = NULL;
	ep->start(ep->fd);
	(void)listener_describe_fd(ep->fd, ep->text, ep->bound,
	    sizeof ep->bound);
	log_notice("%s listener on %s", ep->what, ep->bound);
}

void
endpoint_commit(void)
{
	const char	*key;
	json_t		*e;
	size_t		 i;

	for (i = 0; i < NENDPOINTS; i++)
		commit_one(&endpoints[i]);
	/* What the upgrade handed over and the config no longer has. */
	json_object_foreach(inherited, key, e)
		close((int)json_integer_value(json_object_get(e, "fd")));
	json_decref(inherited);
	inherited = NULL;
}

/* An fd: or systemd: listener held by one of these (the check skips it). */
bool
endpoint_held(const struct nc_listen_addr *a)
{
	const char	*key;
	json_t		*e;
	size_t		 i;

	for (i = 0; i < NENDPOINTS; i++)
		if (endpoints[i].text != NULL &&
		    strcmp(endpoints[i].text, a->text) == 0)
			return true;
	json_object_foreach(inherited, key, e)
		if (strcmp(json_string_value(json_object_get(e, "text")),
		    a->text) == 0)
			return true;
	return false;
}

/* Where the metrics or agent listener is ("metrics", "agent"), or NULL. */
const char *
endpoint_bound(const char *what)
{
	size_t	i;

	for (i = 0; i < NENDPOINTS; i++)
		if (strcmp(endpoints[i].what, what) == 0)
			return endpoints[i].text != NULL ? endpoints[i].bound :
			    NULL;
	return NULL;
}

/* For an upgrade: the sockets stay open across exec. */
json_t *
endpoint_export(void)
{
	struct endpoint	*ep;
	json_t		*state;
	size_t		 i;

	if ((state = json_object()) == NULL)
		return NULL;
	for (i = 0; i < NENDPOINTS; i++) {
		ep = &endpoints[i];
		if (ep->fd == -1 || ep->text == NULL)
			continue;
		(void)fcntl(ep->fd, F_SETFD, 0);
		(void)json_object_set_new(state, ep->what, json_pack(
		    "{s:s, s:i}", "text", ep->text, "fd", ep->fd));
	}
	return state;
}

void
endpoint_inherit(json_t *state)
{
	const char	*key;
	json_t		*e;

	json_object_foreach(state, key, e) {
		if (!json_is_string(json_object_get(e, "text")) ||
		    !json_is_integer(json_object_get(e, "fd")))
			fatalx("upgrade: bad %s listener in the state", key);
	}
	inherited = json_deep_copy(state);
}

void
endpoint_close(void)
{
	size_t	i;

	for (i = 0; i < NENDPOINTS; i++)
		endpoint_stop(&endpoints[i]);
	endpoint_abort();
	json_decref(inherited);
	inherited = NULL;
}
