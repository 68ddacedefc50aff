/*
 * Internals of libnetcluster shared across its files. Programs never
 * include this: they share only through netcluster.h.
 */

#ifndef NC_INT_H
#define NC_INT_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netcluster.h"

struct event;
struct evbuffer;

#define NC__INTERNAL __attribute__((visibility("hidden")))

#include "nc-log.h"

/* error.c: an error as emitted, with its buffers. */
struct nc__error {
	struct nc_error	 pub;
	char		 syscall[16];
	char		 address[NC_ADDRSTRLEN];
	char		 message[256];
};
void		nc__error_set(struct nc__error *, int code, const char *syscall,
		    const char *address, int port);

/*
 * emitter.c: Node's EventEmitter. One array holds the listeners of every
 * event in the order they were added. A socket keeps only the array (it
 * has a few listeners, counted by a scan); servers and the cluster keep
 * a count per event besides.
 */
struct nc__listener {
	nc_listener_cb	 cb;
	void		*arg;
	uint8_t		 event;
	bool		 once;
};
struct nc__listeners {
	struct nc__listener	*list;
	uint16_t		 n, cap;
};
struct nc__emitter {
	struct nc__listeners	 l;
	uint16_t		 count[NC_EV__COUNT];
};
int		nc__emitter_add(struct nc__emitter *, enum nc_event,
		    nc_listener_cb, void *, bool once);
int		nc__emitter_remove(struct nc__emitter *, enum nc_event,
		    nc_listener_cb, void *);
/* Calls the listeners of ev->event in order; returns how many ran. */
size_t		nc__emitter_emit(struct nc__emitter *, void *emitter,
		    const struct nc_event_args *);
void		nc__emitter_free(struct nc__emitter *);
/* The same on a bare array. */
int		nc__listeners_add(struct nc__listeners *, enum nc_event,
		    nc_listener_cb, void *, bool once);
int		nc__listeners_remove(struct nc__listeners *, enum nc_event,
		    nc_listener_cb, void *);
size_t		nc__listeners_emit(struct nc__listeners *, void *emitter,
		    const struct nc_event_args *);
size_t		nc__listeners_count(const struct nc__listeners *,
		    enum nc_event);
void		nc__listeners_free(struct nc__listeners *);

/* loop.c */
struct event_base *nc__base(struct event_base *);
/* Calls fn(arg) on a later turn of the loop. */
int		nc__defer(struct event_base *, void (*fn)(void *), void *arg);
/*
 * Handles that take part in nc_run()'s accounting: each reports how many
 * of its pending libevent events must not keep the loop alive (all of them
 * while it is unref'd; timers Node unrefs, always).
 */
struct nc__handle {
	struct event_base	*base;
	bool			 unref;
	int			(*unref_events)(struct nc__handle *);
	struct nc__handle	*prev, *next;
};
void		nc__handle_init(struct nc__handle *, struct event_base *,
		    int (*)(struct nc__handle *));
void		nc__handle_remove(struct nc__handle *);
/* 1 if ev is pending (added or active), else 0. */
int		nc__event_pending(const struct event *);

/*
 * lookup.c: resolves host off the loop (family 0, 4 or 6) and calls cb on
 * a later turn with status 0 and an address literal, or an error. *evp,
 * if not NULL, gets the event that waits for the answer (for nc_run()).
 */
typedef void	(*nc__lookup_cb)(int status, const char *address, int family,
		    void *arg);
int		nc__lookup_start(struct event_base *, const char *host,
		    int family, nc__lookup_cb, void *arg, struct event **evp);
/*
 * The same, waiting for the answer up to timeout_ms: 0 and the address
 * literal (and its family, 4 or 6), or an error (NC_ETIMEDOUT when the
 * resolver did not answer in time; it is left to finish on its own).
 */
int		nc__lookup_wait(const char *host, int family, int timeout_ms,
		    char *address, size_t len, int *result_family);

/* cluster.c and server.c, server-accept.c: a server under netclusterd. */
int		nc__cluster_listen(struct nc_server *, struct event_base *,
		    const char *address, int backlog, const char *service,
		    int index);
void		nc__cluster_forget(struct nc_server *);
/* exclusive: the address to bind here (the service's mode), or NULL. */
void		nc__server_cluster_listening(struct nc_server *, int code,
		    int fd, bool shared, const char *address, int port,
		    const char *exclusive, int backlog);
bool		nc__server_cluster_can_take(const struct nc_server *, int);
void		nc__server_cluster_connection(struct nc_server *, int fd);
int		nc__server_total_connections(void);
long long	nc__server_total_accepted(void);
/* Summed over every server the process made, closed ones too. */
unsigned long long nc__server_total_proxy_errors(void);
void		nc__server_accept_backlog(struct nc_server *);

/* proxyproto.c: the PROXY protocol, versions 1 and 2. */
#define NC__PROXY_V1_MAX	107	/* bytes of a v1 line, CRLF included */
#define NC__PROXY_V2_MAX	1024	/* bytes of a v2 header we accept */
struct nc__proxy_info {
	bool	 local;		/* LOCAL, UNKNOWN, UNSPEC: the real peer stands */
	bool	 unix_source;
	int	 family;	/* 4, 6, or 0 for unix */
	char	 src[110];
	char	 dst[110];
	int	 src_port;
	int	 dst_port;
};
int		nc__proxy_parse(const unsigned char *, size_t,
		    struct nc__proxy_info *);
int		nc__proxy_build(int version, const char *src, int sport,
		    const char *dst, int dport, unsigned char *out,
		    size_t outlen);

/* address.c */
struct sockaddr_un;
int		nc__sockaddr_to_address(const struct sockaddr *, socklen_t,
		    struct nc_address *);
int		nc__sockaddr_from(const char *host, int port,
		    struct sockaddr_storage *, socklen_t *);
int		nc__sockaddr_unix(const char *path, struct sockaddr_un *,
		    socklen_t *);

/* encoding.c: socket.setEncoding() and string writes. */
enum nc__encoding {
	NC__ENC_UTF8,
	NC__ENC_HEX,
	NC__ENC_BASE64,
	NC__ENC_LATIN1,
	NC__ENC_ASCII,
	NC__ENC_UTF16LE
};
/* Parses a Node encoding name (case-insensitive, with Node's aliases:
 * utf-8, binary, ucs2, ucs-2, utf-16le); ERR_UNKNOWN_ENCODING if unknown. */
int		nc__encoding_parse(const char *name, enum nc__encoding *);
/*
 * A StringDecoder: turns bytes into text (UTF-8 out), keeping an
 * incomplete character (utf8, utf16le) or group (base64) for the next
 * write, so nothing is ever cut.
 */
struct nc__decoder {
	enum nc__encoding	 enc;
	unsigned char		 pending[4];
	size_t			 npending;
	size_t			 need;	/* utf8: total bytes of the pending char */
};
void		nc__decoder_init(struct nc__decoder *, enum nc__encoding);
/* Appends the text for in[0..len) to out; 0 or NC_ENOMEM. */
int		nc__decoder_write(struct nc__decoder *, const unsigned char *in,
		    size_t len, struct evbuffer *out);
/* Flushes what is pending (an incomplete utf8 char becomes U+FFFD). */
int		nc__decoder_end(struct nc__decoder *, struct evbuffer *out);
/* Turns UTF-8 text into the bytes of enc, as Buffer.from(str, enc). */
int		nc__encode_string(enum nc__encoding, const char *str, size_t len,
		    struct evbuffer *out);
int		nc__hex_value(unsigned char);

#endif /* NC_INT_H */
