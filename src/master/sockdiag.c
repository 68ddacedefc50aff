/*
 * The connections of programs that cannot be asked ("sockets":
 * "inherit"), counted from the kernel. A socket counts for a worker when
 * its process holds it (an fd in /proc/PID/fd), it is a connection (not
 * a listener, not one that is closing for good), and its local address
 * is a listener of the worker's service: a TCP port, or the path of a
 * unix socket. NETLINK_SOCK_DIAG lists the sockets (sock_diag(7)), one
 * dump per family for every worker at once.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"

#define SOCKDIAG_MAX_PORTS	64
#define SOCKDIAG_MAX_PATHS	64

struct owner {
	unsigned long long	 inode;
	int			 index;		/* into the counts */
};

struct sockdiag {
	struct owner	*owners;
	size_t		 nowners, cap;
	int		 ports[SOCKDIAG_MAX_PORTS];
	size_t		 nports;
	const char	*paths[SOCKDIAG_MAX_PATHS];
	size_t		 npaths;
	int		*counts;
};

static int
owner_cmp(const void *a, const void *b)
{
	const struct owner	*x = a, *y = b;

	return x->inode < y->inode ? -1 : x->inode > y->inode;
}

/* The socket inodes pid holds; -1 if its fds cannot be read. */
static int
sockdiag_scan(struct sockdiag *sd, pid_t pid, int index)
{
	struct owner	*o;
	struct dirent	*de;
	DIR		*dir;
	char		 path[64], link[64];
	unsigned long long inode;
	size_t		 start = sd->nowners;
	ssize_t		 n;

	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n = readlinkat(dirfd(dir), de->d_name, link, sizeof link - 1);
		if (n == -1 && (errno == EACCES || errno == EPERM)) {
			/* Listed but not readable (ptrace rules): unknown. */
			closedir(dir);
			sd->nowners = start;
			return -1;
		}
		if (n <= 0)
			continue;	/* closed meanwhile */
		link[n] = '\0';
		if (sscanf(link, "socket:[%llu]", &inode) != 1)
			continue;
		if (sd->nowners == sd->cap) {
			sd->cap = sd->cap ? sd->cap * 2 : 64;
			if ((o = reallocarray(sd->owners, sd->cap,
			    sizeof *o)) == NULL) {
				closedir(dir);
				sd->nowners = start;
				return -1;
			}
			sd->owners = o;
		}
		sd->owners[sd->nowners].inode = inode;
		sd->owners[sd->nowners++].index = index;
	}
	closedir(dir);
	return 0;
}

static void
sockdiag_found(struct sockdiag *sd, unsigned long long inode)
{
	struct owner	 key = { .inode = inode }, *o;

	if (inode == 0 || sd->nowners == 0 || (o = bsearch(&key, sd->owners,
	    sd->nowners, sizeof *o, owner_cmp)) == NULL)
		return;
	/* Every slot's process may hold it (inherited): each counts it. */
	while (o > sd->owners && o[-1].inode == inode)
		o--;
	for (; o < sd->owners + sd->nowners && o->inode == inode; o++)
		sd->counts[o->index]++;
}

static bool
sockdiag_port(const struct sockdiag *sd, int port)
{
	size_t	i;

	for (i = 0; i < sd->nports; i++)
		if (sd->ports[i] == port)
			return true;
	return false;
}

static void
sockdiag_inet(struct sockdiag *sd, const struct nlmsghdr *h)
{
	const struct inet_diag_msg	*m = NLMSG_DATA(h);

	if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m))
		return;
	if (sockdiag_port(sd, ntohs(m->id.idiag_sport)))
		sockdiag_found(sd, m->idiag_inode);
}

static void
sockdiag_unix(struct sockdiag *sd, const struct nlmsghdr *h)
{
	const struct unix_diag_msg	*m = NLMSG_DATA(h);
	const struct rtattr		*a;
	size_t				 i, len, plen;
	int				 rest;

	if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m))
		return;
	rest = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
	for (a = (const struct rtattr *)(m + 1); RTA_OK(a, rest);
	    a = RTA_NEXT(a, rest)) {
		if (a->rta_type != UNIX_DIAG_NAME)
			continue;
		len = RTA_PAYLOAD(a);
		for (i = 0; i < sd->npaths; i++) {
			plen = strlen(sd->paths[i]);
			if ((len == plen || (len == plen + 1 &&
			    ((const char *)RTA_DATA(a))[plen] == '\0')) &&
			    memcmp(RTA_DATA(a), sd->paths[i], plen) == 0) {
				sockdiag_found(sd, m->udiag_ino);
				return;
			}
		}
	}
}

/* One dump of family's sockets; 0, or -1 if netlink failed. */
static int
sockdiag_dump(struct sockdiag *sd, int family)
{
	struct {
		struct nlmsghdr		nlh;
		union {
			struct inet_diag_req_v2	inet;
			struct unix_diag_req	unx;
		} r;
	} req;
	struct sockaddr_nl	 nl = { .nl_family = AF_NETLINK };
	const struct nlmsghdr	*h;
	char			 buf[32768];
	ssize_t			 n;
	int			 fd, rc = -1;

	if ((fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
	    NETLINK_SOCK_DIAG)) == -1)
		return -1;
	memset(&req, 0, sizeof req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	if (family == AF_UNIX) {
		req.nlh.nlmsg_len = NLMSG_LENGTH(sizeof req.r.unx);
		req.r.unx.sdiag_family = AF_UNIX;
		req.r.unx.udiag_states = 1 << TCP_ESTABLISHED;
		req.r.unx.udiag_show = UDIAG_SHOW_NAME;
	} else {
		req.nlh.nlmsg_len = NLMSG_LENGTH(sizeof req.r.inet);
		req.r.inet.sdiag_family = (__u8)family;
		req.r.inet.sdiag_protocol = IPPROTO_TCP;
		/* Connections, open or half-closed: not listeners, not gone. */
		req.r.inet.idiag_states = 1 << TCP_ESTABLISHED |
		    1 << TCP_SYN_RECV | 1 << TCP_FIN_WAIT1 |
		    1 << TCP_FIN_WAIT2 | 1 << TCP_CLOSE_WAIT |
		    1 << TCP_LAST_ACK | 1 << TCP_CLOSING;
	}
	if (sendto(fd, &req, req.nlh.nlmsg_len, 0, (struct sockaddr *)&nl,
	    sizeof nl) == -1)
		goto out;
	for (;;) {
		n = recv(fd, buf, sizeof buf, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		for (h = (const struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		    h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				rc = 0;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR)
				goto out;
			if (family == AF_UNIX)
				sockdiag_unix(sd, h);
			else
				sockdiag_inet(sd, h);
		}
	}
out:
	close(fd);
	return rc;
}

/*
 * counts[i] gets the connections of ws[i] (NULL: none asked) on def's
 * listeners, or -1 where they cannot be known (its fds cannot be read,
 * netlink fails).
 */
void
sockdiag_count(const struct pooldef *svc, struct worker **ws, int n,
    int *counts)
{
	struct sockdiag	 sd;
	struct listener	*l;
	size_t		 i;
	int		 k;
	bool		 failed = false;

	memset(&sd, 0, sizeof sd);
	sd.counts = counts;
	for (i = 0; i < svc->nlisteners; i++) {
		l = svc->listeners[i];
		if (strncmp(l->bound, "unix:", 5) == 0) {
			if (sd.npaths < SOCKDIAG_MAX_PATHS)
				sd.paths[sd.npaths++] = l->bound + 5;
		} else if (l->port > 0 && sd.nports < SOCKDIAG_MAX_PORTS)
			sd.ports[sd.nports++] = l->port;
	}
	for (k = 0; k < n; k++) {
		counts[k] = -1;
		if (ws[k] != NULL && ws[k]->pid > 0 &&
		    sockdiag_scan(&sd, ws[k]->pid, k) == 0)
			counts[k] = 0;
	}
	if (sd.nowners > 0)
		qsort(sd.owners, sd.nowners, sizeof *sd.owners, owner_cmp);
	if (sd.nports > 0 && (sockdiag_dump(&sd, AF_INET) == -1 ||
	    sockdiag_dump(&sd, AF_INET6) == -1))
		failed = true;
	if (sd.npaths > 0 && sockdiag_dump(&sd, AF_UNIX) == -1)
		failed = true;
	for (k = 0; failed && k < n; k++)
		counts[k] = -1;
	free(sd.owners);
}
