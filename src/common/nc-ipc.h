/*
 * The channel between netclusterd and its workers: an AF_UNIX
 * SOCK_SEQPACKET socket carrying one JSON object per packet, with file
 * descriptors as SCM_RIGHTS. docs/protocol.md is the protocol.
 * Shared by the programs; not installed.
 */

#ifndef NC_IPC_H
#define NC_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;

#define NC_IPC_MAX_SIZE		65536	/* bytes of one message */
#define NC_IPC_MAX_FDS		16	/* fds riding with one message */
#define NC_IPC_MAX_QUEUE	4096	/* messages waiting to be sent */

struct nc_ipc;

/*
 * Binary frames, beside the JSON packets, for the one exchange that
 * happens per connection: `conn` (master to worker, up to NC_IPC_MAX_FDS
 * connections in one packet) and `conn.ack` (the worker's answer for all
 * of them). A frame's first byte is its kind, which no JSON text starts
 * with; then its version, the number of connections n, 4 bytes that are
 * 0, and a 64-bit sequence number (the conn's seq; in the ack, the seq it
 * answers). A conn frame then holds n 32-bit listener ids, one per fd; an
 * ack, a 64-bit mask of the connections taken (bit i: the i-th fd). All
 * little-endian. A worker gets frames only once its `listen` said it
 * reads them ("frames": 1). docs/protocol.md describes them.
 */
#define NC_IPC_FRAME_CONN	0x01
#define NC_IPC_FRAME_CONN_ACK	0x02
#define NC_IPC_FRAME_VERSION	1
#define NC_IPC_FRAME_HEADER	16	/* bytes before the payload */

/*
 * Messages between workers as frames: `broadcast` (worker to master) and
 * `message` (master to worker), a 16-byte header and the payload, the
 * value's JSON text. The header: kind, version, 16 bits of flags
 * (broadcast: NC_IPC_MSG_DRAINING), the payload's length (1 to
 * NC_IPC_MSG_MAX, the rest of the packet), the sender's worker id
 * (message; 0 in a broadcast, and from the operator) and 4 bytes that
 * are 0. The master checks the header and passes the payload on as
 * bytes; whoever parses the payload checks it (nc_ipc_json_check()). A
 * worker started with NC_IPC_FRAMES_ENV may send broadcast frames and
 * declares with `frames` that it reads message frames; only then does
 * the master send it any. A messages frame carries several for a
 * receiver whose queue is not empty: its header has the count where a
 * message has `from`, and its payload is the messages one after the
 * other, each a 32-bit from, a 32-bit length and its text.
 */
#define NC_IPC_FRAME_BROADCAST	0x03
#define NC_IPC_FRAME_MESSAGE	0x04
#define NC_IPC_FRAME_MESSAGES	0x05	/* several: to a receiver behind */
#define NC_IPC_ENTRY_HEADER	8	/* a batch's message: from, length */
#define NC_IPC_BATCH_MAX	4096	/* payloads batched: at most this */
#define NC_IPC_MSG_VERSION	1
#define NC_IPC_MSG_DRAINING	0x0001	/* to the pool's draining ones too */
#define NC_IPC_MSG_MAX		65000	/* NC_CLUSTER_MESSAGE_MAX */
#define NC_IPC_FRAMES_ENV	"NETCLUSTER_FRAMES"

struct nc_ipc_frame {
	int		 kind;		/* NC_IPC_FRAME_* */
	size_t		 n;		/* connections; messages in a batch */
	long long	 seq;		/* conn: its seq; ack: the conn's */
	uint32_t	 listeners[NC_IPC_MAX_FDS];	/* conn */
	uint64_t	 accepted;	/* ack: bit per connection */
	size_t		 fds_lost;	/* conn: fds the kernel could not
					   give us (out of fds): the last */
	unsigned	 flags;		/* broadcast: NC_IPC_MSG_* */
	int		 from;		/* message: the sender's id, or 0 */
	const char	*payload;	/* broadcast, message: unchecked, a
					   NUL after it when read from a
					   channel; valid in the callback */
	size_t		 len;
};

/*
 * One message frame for many channels, written once: each channel with
 * nothing queued sends it from the caller's payload straight away; the
 * payload is copied once, for every channel that must queue it.
 */
struct nc_ipc_blob;
struct nc_ipc_shared {
	char			 hdr[NC_IPC_FRAME_HEADER];
	const char		*payload;	/* the caller's */
	size_t			 len;
	struct nc_ipc_blob	*copy;		/* once one queued it */
};

/*
 * A message arrived: a JSON object whose "type" is a string, "seq" an
 * integer, and "fds" (absent = 0) the number of fds that came with it.
 * The callback owns msg (json_decref it) and the fds (close them).
 */
typedef void	(*nc_ipc_msg_cb)(struct nc_ipc *, json_t *msg, int *fds,
		    size_t nfds, void *arg);
/*
 * The channel failed: EOF (reason "closed"), a system error, or a
 * protocol error (oversized, truncated, malformed, wrong fd count). Any
 * fds that came with the bad message are already closed. The channel
 * reads no more; the callback may free it. A peer that closed its end is
 * reported by the end of what it sent ("closed"), not by a failed write:
 * every packet it sent before it went is delivered first.
 */
typedef void	(*nc_ipc_error_cb)(struct nc_ipc *, const char *reason,
		    void *arg);

/*
 * A frame arrived, checked (kind, version, size, fd count): the callback
 * owns the fds (f->n - f->fds_lost of them for a conn, none for an ack).
 */
typedef void	(*nc_ipc_frame_cb)(struct nc_ipc *,
		    const struct nc_ipc_frame *f, int *fds, size_t nfds,
		    void *arg);

/* Takes fd (a SOCK_SEQPACKET socket) over; NULL only without memory. */
struct nc_ipc	*nc_ipc_new(struct event_base *, int fd, nc_ipc_msg_cb,
		    nc_ipc_error_cb, void *arg);
/*
 * Queues msg (its "seq" is set here when absent and returned; "fds" is
 * set to nfds) with nfds fds; the channel owns the fds from now on and
 * closes them once the kernel took them (or when it is freed). Returns the
 * seq, or -1 when the message is too large, the queue is full, or the
 * channel failed (the fds are closed then too).
 */
long long	 nc_ipc_send(struct nc_ipc *, json_t *msg, const int *fds,
		    size_t nfds);
/*
 * Frames: without a frame callback, a frame that comes is a protocol
 * error. nc_ipc_send_conns() queues one conn frame for n connections
 * (1 to NC_IPC_MAX_FDS) and returns its seq, or -1; the fds stay the
 * caller's (it keeps them open until the frame is answered or the
 * channel freed). nc_ipc_send_ack() sends an ack at once when now is
 * true (-1 when it would have had to wait; 0 once the kernel took it),
 * else queues it.
 */
void		 nc_ipc_set_frame_cb(struct nc_ipc *, nc_ipc_frame_cb);
long long	 nc_ipc_send_conns(struct nc_ipc *, const uint32_t *listeners,
		    const int *fds, size_t n);
int		 nc_ipc_send_ack(struct nc_ipc *, long long ack, size_t n,
		    uint64_t accepted, bool now);
/*
 * A message frame from `from` (0: the operator) with payload, for
 * nc_ipc_send_shared() to any number of channels, then
 * nc_ipc_shared_release() (payload must live until then).
 * nc_ipc_send_shared() returns 0 once sent or queued, -1 when the
 * queue is full or the channel cannot send.
 */
void		 nc_ipc_message_init(struct nc_ipc_shared *, int from,
		    const char *payload, size_t len);
int		 nc_ipc_send_shared(struct nc_ipc *, struct nc_ipc_shared *);
void		 nc_ipc_shared_release(struct nc_ipc_shared *);
/*
 * A message from `from` with payload (copied) for one channel: sent at
 * once alone when nothing is queued and not defer, else added to the
 * messages frame at the end of the queue (a new one when there is none
 * or it is full), which goes when the loop finds the channel writable:
 * with defer, what else is sent meanwhile joins it. Each message counts
 * one in nc_ipc_queued(). 0, or -1 as nc_ipc_send_shared().
 */
int		 nc_ipc_send_batched(struct nc_ipc *, int from,
		    const char *payload, size_t len, bool defer);
/*
 * The messages of a message or messages frame, in order: 1 and the next
 * one's sender, text (not NUL-terminated in a batch) and length, from
 * *off (start at 0), or 0 at the end.
 */
int		 nc_ipc_frame_next(const struct nc_ipc_frame *, size_t *off,
		    int *from, const char **text, size_t *len);
/*
 * Sends (or queues) a broadcast frame of payload (1 to NC_IPC_MSG_MAX
 * bytes), flags NC_IPC_MSG_*: 0, or -1 as nc_ipc_send_shared().
 */
int		 nc_ipc_send_broadcast(struct nc_ipc *, const char *payload,
		    size_t len, unsigned flags);
/*
 * Whether text is one JSON value in UTF-8 that jansson takes
 * (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES): 0, or -1 and a reason
 * (valid until the next call). *spaced, if not NULL, is set unless the
 * text has no whitespace between its tokens. Checks without building
 * the value, on a fast path for the common cases; jansson decides the
 * rest. nc_ipc_json_fast() is that path alone: 1 when it is sure the
 * text is valid, 0 when it cannot tell (for the fuzz target).
 */
int		 nc_ipc_json_check(const char *text, size_t len,
		    const char **reason, bool *spaced);
int		 nc_ipc_json_fast(const char *text, size_t len, bool *spaced);
/*
 * Checks a packet that is a frame (its first byte not '{') and came with
 * nfds fds, ctrunc when the kernel could not give us all of them: 0 and
 * f filled, or -1 and a reason.
 */
int		 nc_ipc_frame_parse(const char *buf, size_t len, size_t nfds,
		    bool ctrunc, struct nc_ipc_frame *f, const char **reason);
/* Whether a packet is a frame: by its first byte, one of the frame kinds. */
bool		 nc_ipc_is_frame(const char *buf, size_t len);
/*
 * A message whose fds the kernel could not all give us (we are out of
 * them): the message, with "fds_lost", when it says more fds than came
 * and is otherwise good; else NULL.
 */
json_t		*nc_ipc_parse_short(const char *buf, size_t len, size_t nfds);
/*
 * Sends msg (no fds) now, or not at all: its seq once the kernel took it
 * (the peer will read it even if we die next), -1 when it would have had
 * to wait in the queue, or the channel cannot send.
 */
long long	 nc_ipc_send_now(struct nc_ipc *, json_t *msg);
/*
 * Queues a message already written as JSON text: body is an object
 * without "seq" (nor fds), which is added here. For one message sent to
 * many channels, written once. Returns the seq, or -1.
 */
long long	 nc_ipc_send_text(struct nc_ipc *, const char *body, size_t len);
/*
 * Reads and delivers, at once, up to max packets that are waiting, until
 * the end of the channel or a failure: for a peer that is gone, whose
 * last words must be heard before anything is decided about it.
 */
void		 nc_ipc_drain(struct nc_ipc *, size_t max);
/* Sends what is queued now, blocking up to timeout_ms; for exit paths. */
void		 nc_ipc_flush(struct nc_ipc *, int timeout_ms);
int		 nc_ipc_fd(const struct nc_ipc *);
/*
 * During the message callback: the text of the message's last member,
 * key, as it came (see ipc.c), or NULL.
 */
const char	*nc_ipc_last_value(const struct nc_ipc *, const json_t *msg,
		    const char *key, size_t *vlen);
/*
 * Packets of type whose last member is key (and whose earlier members are
 * plain scalars) are not parsed whole: the earlier members are, and the
 * key's value reaches nc_ipc_last_value() as text, unchecked. Only for a
 * peer that checked it (a worker trusts its master); the strings are
 * kept, not copied.
 */
void		 nc_ipc_trust_tail(struct nc_ipc *, const char *type,
		    const char *key);
/*
 * The two halves of the above, on a packet's text: the value of key when
 * it is msg's last member after plain scalars (msg: raw parsed), or NULL;
 * and a packet of type parsed but for its last member, key, whose text
 * goes to *val (buf is changed and restored), or NULL.
 */
const char	*nc_ipc_member_value(const char *raw, size_t len,
		    const json_t *msg, const char *key, size_t *vlen);
json_t		*nc_ipc_parse_tail(char *buf, size_t len, size_t nfds,
		    const char *type, const char *key, const char **val,
		    size_t *vlen);
/*
 * Packets (messages, counting each of a batch) and bytes queued, not yet
 * taken by the kernel.
 */
size_t		 nc_ipc_queued(const struct nc_ipc *);
size_t		 nc_ipc_queued_bytes(const struct nc_ipc *);
/* Is it still read (not failed, not at its end)? */
bool		 nc_ipc_reading(const struct nc_ipc *);
/* How long the peer has not taken a packet we queued (0: none queued). */
long		 nc_ipc_idle_ms(const struct nc_ipc *);
/*
 * cb(ipc, arg) once the queue is back to at most bytes and pkts after it
 * was above either.
 */
void		 nc_ipc_set_low_cb(struct nc_ipc *, size_t bytes, size_t pkts,
		    void (*cb)(struct nc_ipc *, void *));
/*
 * Reads up to n packets per wake-up of the loop (default 1), as long as
 * the channel is read (not paused, failed or ended): for a peer that
 * sends many at once. Only where no callback frees the channel.
 */
void		 nc_ipc_set_burst(struct nc_ipc *, size_t n);
/* Stops (or resumes) reading the channel: backpressure on the peer. */
void		 nc_ipc_pause(struct nc_ipc *, bool);
void		 nc_ipc_free(struct nc_ipc *);

/*
 * Checks one packet that came with nfds fds: the message, or NULL and a
 * reason (valid until the next call) when it is malformed.
 */
json_t		*nc_ipc_parse(const char *buf, size_t len, size_t nfds,
		    const char **reason);
/*
 * Creates a channel pair (SOCK_SEQPACKET, close-on-exec); 0 or -1 with
 * errno.
 */
int		 nc_ipc_socketpair(int fds[2]);

#endif /* NC_IPC_H */
