/*
 * The worker side of the cluster, for netcluster-worker and any program
 * that runs under netclusterd: the channel to the master, named by
 * NETCLUSTER_CHANNEL_FD. The library's nc_server_listen*() use it to ask
 * the master for handles (Node's queryServer); programs use it for the
 * rest of the protocol (docs/protocol.md). Not installed.
 */

#ifndef NC_CLUSTER_H
#define NC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "netcluster.h"

struct event_base;

/* Messages the library does not handle itself; the hook owns msg/fds. */
typedef void	(*nc_cluster_msg_cb)(json_t *msg, int *fds, size_t nfds,
		    void *arg);
/* The channel to the master is gone (reason "closed" when it died). */
typedef void	(*nc_cluster_lost_cb)(const char *reason, void *arg);

/* nc_cluster_is_worker() is public: netcluster.h. */
/*
 * Attaches to the channel on base (at most once per process) and sets the
 * hooks. Returns 0, or -1 when this process is not a worker.
 */
int		 nc_cluster_attach(struct event_base *, nc_cluster_msg_cb,
		    nc_cluster_lost_cb, void *arg);
/* Sends msg to the master (see nc_ipc_send); the fds go with it. */
long long	 nc_cluster_send(json_t *msg, const int *fds, size_t nfds);
/* Sends what is queued, waiting up to timeout_ms: before exiting. */
void		 nc_cluster_flush(int timeout_ms);
/* Connections open on every server of this process (for `count`). */
int		 nc_cluster_connections(void);
/*
 * Listens on address (netcluster.json's listen syntax, systemd:NAME and
 * fd:N included) through the master, whatever the form: the listener
 * number index of service (or, with service NULL, the first listener
 * with that address).
 */
struct nc_server;
int		 nc_cluster_server_listen(struct nc_server *,
		    const char *address, int backlog, const char *service,
		    int index, nc_listener_cb listening, void *arg);
/* Stops: closes the channel (the master sees EOF). */
void		 nc_cluster_detach(void);

#endif /* NC_CLUSTER_H */
