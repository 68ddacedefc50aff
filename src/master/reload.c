/*
 * Reloads: SIGHUP, systemd's ExecReload and netclusterctl reload
 * [SERVICE] [--batch K]. One at a time, never blocking the loop: the
 * file is read, checked in a child (check.c), built aside and swapped in
 * (build.c); then each renewed pool rolls its slots over to its new
 * definition (rollout.c), and the caller is answered once every rollout
 * is online, or one failed. A reload of one service takes only that
 * service's definition from the file; the others keep their workers.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master.h"

#define MAX_DRAINING	2	/* older generations of a pool at once */

/* Who waits for the reload (or the upgrade's handover) to end. */
struct waiter {
	void		(*done)(const char *, void *);
	void		*arg;
	struct waiter	*next;
};

static struct {
	char		*service;	/* reload SERVICE, or NULL */
	int		 batch;		/* --batch, or 0 */
	int		 rollouts;	/* under way */
	char		*error;		/* the first rollout that failed */
	struct check_job *job;
	struct waiter	*waiters;
} r;

static void
waiters_add(void (*done)(const char *, void *), void *arg)
{
	struct waiter	*w;

	if ((w = calloc(1, sizeof *w)) == NULL) {
		done("out of memory", arg);
		return;
	}
	w->done = done;
	w->arg = arg;
	w->next = r.waiters;
	r.waiters = w;
}

/* The reload ended (error: how it failed): everyone waiting hears it. */
static void
reload_finish(const char *error)
{
	struct waiter	*w;
	char		*msg = error != NULL ? strdup(error) : NULL;

	master.operation = NULL;
	stats_reload_end(error == NULL);
	free(r.service);
	r.service = NULL;
	free(r.error);
	r.error = NULL;
	if (!master.stopping) {
		notify_ready();
		if (error != NULL)
			notify_status("%s", msg != NULL ? msg : error);
	}
	while ((w = r.waiters) != NULL) {
		r.waiters = w->next;
		w->done(msg != NULL ? msg : error, w->arg);
		free(w);
	}
	free(msg);
}

/* The new configuration is refused: the running one stays. */
static void
reload_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
reload_fail(const char *fmt, ...)
{
	char	err[1024], answer[1040], *nl;
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(err, sizeof err, fmt, ap);
	va_end(ap);
	if ((nl = strchr(err, '\n')) != NULL && nl[1] == '\0')
		*nl = '\0';
	log_err("reload failed, the running configuration stays: %s", err);
	snprintf(answer, sizeof answer, "reload failed: %s", err);
	reload_finish(answer);
}

/* Older generations still draining in p. */
static int
draining_generations(const struct pool *p)
{
	struct worker	*w;
	int		 gens[8], n = 0, i;

	TAILQ_FOREACH(w, &p->draining, entry) {
		for (i = 0; i < n && gens[i] != w->generation; i++)
			;
		if (i == n && n < 8)
			gens[n++] = w->generation;
	}
	return n;
}

/* A rollout ended (error: it failed); once all have, the reload has. */
static void
reload_rolled(struct pool *p, const char *error)
{
	(void)p;
	if (error != NULL && r.error == NULL)
		r.error = strdup(error);
	if (--r.rollouts == 0)
		reload_finish(r.error);
}

static void
reload_roll(struct pool *p, int batch)
{
	r.rollouts++;
	rollout_start(p, batch, reload_rolled);
}

/* Rolls every pool over (after an upgrade gave the old workers back). */
void
reload_start_all(void)
{
	size_t	i;

	master.operation = "reload";
	r.rollouts++;
	for (i = 0; i < master.gen->npools; i++)
		reload_roll(master.gen->pools[i], 0);
	reload_rolled(NULL, NULL);
}

/* The configuration was checked (errors: not): built, swapped, rolled. */
static void
reload_checked(struct nc_config *cfg, const char *errors, void *arg)
{
	struct build	 b;
	struct conf	*conf;
	char		 err[512];
	size_t		 i;

	(void)arg;
	r.job = NULL;
	if (errors != NULL) {
		reload_fail("%s", errors);
		return;
	}
	if ((conf = conf_new(cfg)) == NULL) {
		nc_config_free(cfg);
		reload_fail("out of memory");
		return;
	}
	memset(&b, 0, sizeof b);
	b.kind = r.service != NULL ? BUILD_SERVICE : BUILD_ALL;
	b.conf = conf;
	b.service = r.service;
	err[0] = '\0';
	if (build_prepare(&b, err, sizeof err) == -1) {
		conf_unref(conf);
		reload_fail("%s", err);
		return;
	}
	build_commit(&b);
	conf_unref(conf);
	if (b.kind == BUILD_ALL)
		nc_set_log_level(master.cli_level > 0 ? master.cli_level :
		    gen_config()->log_level);
	notify_status("reloading: generation %d starting",
	    master.next_generation - 1);
	r.rollouts++;
	for (i = 0; i < master.gen->npools; i++)
		if (b.renew[i])
			reload_roll(master.gen->pools[i], r.batch);
	free(b.renew);
	reload_rolled(NULL, NULL);
}

/*
 * Reload (service NULL: every service; else that one only, its others
 * keeping their workers), batch workers at a time (0: each service's
 * reload_batch, else its whole pool). The file is checked first; if it
 * is bad, the running configuration keeps serving and the error goes to
 * the log, STATUS= and done. done(NULL) once every rollout is online.
 */
void
reload(const char *service, int batch, void (*done)(const char *, void *),
    void *arg)
{
	char	 err[256];
	size_t	 i;

	if (gen_busy(err, sizeof err)) {
		done(err, arg);
		return;
	}
	for (i = 0; i < master.gen->npools; i++) {
		if (service != NULL && strcmp(service,
		    master.gen->pools[i]->name) != 0)
			continue;
		if (draining_generations(master.gen->pools[i]) >=
		    MAX_DRAINING) {
			snprintf(err, sizeof err, "%d older generations are "
			    "still draining (up to shutdown_timeout_ms); try "
			    "again later", draining_generations(
			    master.gen->pools[i]));
			done(err, arg);
			return;
		}
	}
	master.operation = "reload";
	r.batch = batch;
	r.service = service != NULL ? strdup(service) : NULL;
	waiters_add(done, arg);
	notify_reloading();
	stats_reload_begin();
	if (service != NULL)
		log_notice("reloading service %s from %s", service,
		    gen_config()->file);
	else
		log_notice("reloading %s", gen_config()->file);
	r.job = check_file(gen_config()->file, reload_checked, NULL);
}

/* done() once the rollouts under way are online (at once if none). */
void
reload_on_handover(void (*done)(const char *, void *), void *arg)
{
	if (master.operation == NULL || strcmp(master.operation,
	    "reload") != 0) {
		done(NULL, arg);
		return;
	}
	waiters_add(done, arg);
}

/* The master stops: no reload goes on; whoever waits hears why. */
void
reload_stop(void)
{
	check_cancel(r.job);
	r.job = NULL;
	rollout_stop_all();
	r.rollouts = 0;
	if (master.operation != NULL && strcmp(master.operation,
	    "reload") == 0)
		reload_finish("netclusterd is stopping");
}
