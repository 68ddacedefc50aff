/*
 * What a program sets on a socket and reads of it: pause() and resume(),
 * setNoDelay(), setKeepAlive(), setEncoding(), the addresses (their text
 * made when first asked), the counters and state, and its listeners.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "nc-int.h"
#include "socket-int.h"

static struct socket_text *socket_text(const struct nc_socket *);

void
nc_socket_pause(struct nc_socket *s)
{
	s->paused = true;
	nc__socket_update_read(s);
}

void
nc_socket_resume(struct nc_socket *s)
{
	s->paused = false;
	nc__socket_update_read(s);
}

bool
nc_socket_is_paused(const struct nc_socket *s)
{
	return s->paused;
}

int
nc_socket_set_no_delay(struct nc_socket *s, bool no_delay)
{
	int	on = no_delay ? 1 : 0;

	s->no_delay = no_delay;
	s->has_no_delay = true;
	if (s->fd == -1 || !s->tcp)
		return 0;
	if (setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
		return -errno;
	return 0;
}

int
nc_socket_set_keep_alive(struct nc_socket *s, bool enable,
    unsigned int initial_delay_ms)
{
	int	on = enable ? 1 : 0, secs;

	/* Linux takes at most 32767 s (MAX_TCP_KEEPIDLE). */
	secs = initial_delay_ms > 32767000 ? 32767 :
	    (int)((initial_delay_ms + 999) / 1000);
	/* Kept for a connection to come, and for each after it (Node). */
	s->keep_alive_secs = (uint16_t)secs;
	s->keep_alive = enable;
	s->has_keep_alive = true;
	if (s->fd == -1 || !s->tcp)
		return 0;
	if (setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == -1)
		return -errno;
	if (enable && secs > 0 && setsockopt(s->fd, IPPROTO_TCP, TCP_KEEPIDLE,
	    &secs, sizeof secs) == -1)
		return -errno;
	return 0;
}

/* Options set before the connection existed apply once it does. */
void
nc__socket_apply_options(struct nc_socket *s)
{
	if (s->has_no_delay)
		(void)nc_socket_set_no_delay(s, s->no_delay);
	if (s->has_keep_alive)
		(void)nc_socket_set_keep_alive(s, s->keep_alive,
		    (unsigned int)s->keep_alive_secs * 1000);
}

int
nc_socket_set_encoding(struct nc_socket *s, const char *encoding)
{
	enum nc__encoding	enc;
	int			rc;

	if (encoding == NULL) {
		s->has_encoding = false;
		return 0;
	}
	if ((rc = nc__encoding_parse(encoding, &enc)) != 0)
		return rc;
	if (socket_text(s) == NULL)
		return NC_ENOMEM;
	if (s->text->decoded == NULL &&
	    (s->text->decoded = evbuffer_new()) == NULL)
		return NC_ENOMEM;
	nc__decoder_init(&s->text->decoder, enc);
	s->has_encoding = true;
	return 0;
}

int
nc_socket_address(struct nc_socket *s, struct nc_address *a)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof ss;

	if (s->fd == -1)
		return NC_ERR_SOCKET_CLOSED;
	if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == -1)
		return -errno;
	return nc__sockaddr_to_address((struct sockaddr *)&ss, len, a);
}

/*
 * The socket's text (addresses, decoder), made on first use: the address
 * getters take a const socket, and this is the one thing they change.
 */
static struct socket_text *
socket_text(const struct nc_socket *cs)
{
	struct nc_socket	*s = (struct nc_socket *)cs;

	if (s->text == NULL && (s->text = calloc(1, sizeof *s->text)) == NULL)
		log_err("socket fd %d: out of memory for its text", s->fd);
	return s->text;
}

static void
socket_addr_text(const struct socket_addr *a, char *buf, size_t len)
{
	if (inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->addr, buf,
	    (socklen_t)len) == NULL)
		buf[0] = '\0';
}

const char *
nc_socket_remote_address(const struct nc_socket *s)
{
	struct socket_text	*n;

	if (s->remote_named)
		return s->text->remote;
	if (s->remote.family == 0 || (n = socket_text(s)) == NULL)
		return NULL;
	if (!n->has_remote) {
		socket_addr_text(&s->remote, n->remote, sizeof n->remote);
		n->has_remote = true;
	}
	return n->remote;
}

const char *
nc_socket_remote_family(const struct nc_socket *s)
{
	if (s->remote_named)
		return "";
	if (s->remote.family == 0)
		return NULL;
	return s->remote.family == 6 ? "IPv6" : "IPv4";
}

int
nc_socket_remote_port(const struct nc_socket *s)
{
	if (s->remote_named || s->remote.family == 0)
		return -1;
	return s->remote.port;
}

const char *
nc_socket_local_address(const struct nc_socket *s)
{
	struct socket_text	*n;

	if (s->local.family == 0 || (n = socket_text(s)) == NULL)
		return NULL;
	if (!n->has_local) {
		socket_addr_text(&s->local, n->local, sizeof n->local);
		n->has_local = true;
	}
	return n->local;
}

int
nc_socket_local_port(const struct nc_socket *s)
{
	return s->local.family != 0 ? s->local.port : -1;
}

uint64_t
nc_socket_bytes_read(const struct nc_socket *s)
{
	return s->bytes_read;
}

bool
nc_socket_connecting(const struct nc_socket *s)
{
	return s->state == S_LOOKUP || s->state == S_CONNECTING;
}

bool
nc_socket_destroyed(const struct nc_socket *s)
{
	return s->state == S_DESTROYED;
}

int
nc_socket_fd(const struct nc_socket *s)
{
	return s->fd;
}

struct event_base *
nc_socket_base(const struct nc_socket *s)
{
	return s->base;
}

int
nc_socket_on(struct nc_socket *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__listeners_add(&s->em, ev, cb, arg, false);
}

int
nc_socket_once(struct nc_socket *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__listeners_add(&s->em, ev, cb, arg, true);
}

int
nc_socket_off(struct nc_socket *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__listeners_remove(&s->em, ev, cb, arg);
}

size_t
nc_socket_listener_count(const struct nc_socket *s, enum nc_event ev)
{
	if ((unsigned int)ev >= NC_EV__COUNT)
		return 0;
	return nc__listeners_count(&s->em, ev);
}

/* The client a PROXY header named takes the place of the real peer. */
void
nc__socket_set_remote(struct nc_socket *s, const struct nc__proxy_info *pi)
{
	struct socket_text	*n;

	if (s->text != NULL)
		s->text->has_remote = false;
	s->remote_named = false;
	if (!pi->unix_source) {
		s->remote.family = pi->family == 6 ? 6 : 4;
		s->remote.port = (uint16_t)pi->src_port;
		if (inet_pton(pi->family == 6 ? AF_INET6 : AF_INET, pi->src,
		    s->remote.addr) == 1)
			return;
	}
	/* A unix path (or text that is no address) is kept as it came. */
	s->remote.family = 0;
	if ((n = socket_text(s)) == NULL)
		return;
	snprintf(n->remote, sizeof n->remote, "%s", pi->src);
	s->remote_named = true;
}
