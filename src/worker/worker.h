/*
 * netcluster-worker: runs the services of the configuration the master
 * sent, each as servers of libnetcluster whose listens go to the master.
 */

#ifndef WORKER_H
#define WORKER_H

#include "nc-config.h"
#include "nc-log.h"
#include "netcluster-handler.h"

struct upstream;
#include "netcluster.h"

struct event_base;

/* One service as this worker runs it: a server per listen address. */
struct service {
	const struct nc_service	*conf;
	struct nc_server	**servers;
	size_t			  nservers;
	size_t			  listening;
	size_t			  closed;
	const struct nc_handler	 *module;	/* module */
	void			 *module_state;
	unsigned long long	  accepted;	/* connections, in all */
	struct upstream		 *upstreams;	/* proxy */
	size_t			  nupstreams;
	size_t			  next_upstream;
};

/* splice.c: one direction of a proxied connection, copied or spliced. */
struct splice;
bool	splice_note_read(struct splice **, struct nc_socket *from,
	    struct nc_socket *to, int64_t idle_ms, size_t len,
	    unsigned long long *bytes);
int	splice_write(struct nc_socket *, const void *, size_t,
	    unsigned long long *bytes);
int	splice_start(struct splice *);
bool	splice_drained(struct splice *);
void	splice_stop(struct splice *, bool keep);
void	splice_free(struct splice *);

/* handler-proxy.c */
int	proxy_init(struct service *);
void	proxy_connection(struct service *, struct nc_socket *);
int	proxy_stats(const struct service *, json_t *);
json_t	*proxy_down(const struct service *);

/* handler-echo.c */
void	echo_connection(struct service *, struct nc_socket *);

/* main.c */
extern struct event_base	*worker_base;
extern int			 worker_id;

#endif /* WORKER_H */
