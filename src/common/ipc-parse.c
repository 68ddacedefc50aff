/*
 * Checking what comes on the master-worker channel, before anyone sees
 * it: a JSON message (an object with a string "type", an integer "seq"
 * and an "fds" count equal to the fds that came), a binary frame (its
 * header, its entries, its fds), a message whose fds were lost to the
 * receiver's fd limit, and a trusted message whose last member is passed
 * on as text (nc_ipc_trust_tail()). Each answers with the message or a
 * reason; none has a channel's state.
 */

#include <sys/types.h>

#include <endian.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc-int.h"
#include "nc-ipc.h"

json_t *
nc_ipc_parse(const char *buf, size_t len, size_t nfds, const char **reason)
{
	static char	 why[160];
	json_error_t	 jerr;
	json_t		*msg, *v;

	msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (msg == NULL) {
		snprintf(why, sizeof why, "malformed message: %.120s", jerr.text);
		*reason = why;
		return NULL;
	}
	if (!json_is_object(msg)) {
		*reason = "malformed message: not an object";
		goto bad;
	}
	v = json_object_get(msg, "type");
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > 64) {
		*reason = "malformed message: \"type\" is not a short string";
		goto bad;
	}
	v = json_object_get(msg, "seq");
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		*reason = "malformed message: \"seq\" is not an integer >= 0";
		goto bad;
	}
	v = json_object_get(msg, "fds");
	if ((v == NULL && nfds != 0) || (v != NULL && (!json_is_integer(v) ||
	    json_integer_value(v) != (json_int_t)nfds))) {
		snprintf(why, sizeof why, "wrong fd count: message says %s, "
		    "%zu came", v == NULL ? "none" : json_is_integer(v) ?
		    "another number" : "nothing valid", nfds);
		*reason = why;
		goto bad;
	}
	return msg;
bad:
	json_decref(msg);
	return NULL;
}

static bool
ipc_is_msg_kind(char kind)
{
	return kind == NC_IPC_FRAME_BROADCAST || kind == NC_IPC_FRAME_MESSAGE ||
	    kind == NC_IPC_FRAME_MESSAGES;
}

bool
nc_ipc_is_frame(const char *buf, size_t len)
{
	return len > 0 && (buf[0] == NC_IPC_FRAME_CONN ||
	    buf[0] == NC_IPC_FRAME_CONN_ACK || ipc_is_msg_kind(buf[0]));
}

/*
 * The entries of a messages frame, after its header: count of them, each
 * a from, a length of 1 to NC_IPC_MSG_MAX and that many bytes, filling
 * len exactly. 0, or -1 and a reason.
 */
static int
ipc_entries_check(const char *p, size_t len, uint32_t count,
    const char **reason)
{
	uint32_t	from, elen, i;

	for (i = 0; i < count; i++) {
		if (len < NC_IPC_ENTRY_HEADER) {
			*reason = "malformed frame: fewer messages than it says";
			return -1;
		}
		memcpy(&from, p, sizeof from);
		memcpy(&elen, p + 4, sizeof elen);
		from = le32toh(from);
		elen = le32toh(elen);
		if (from > INT_MAX || elen == 0 || elen > NC_IPC_MSG_MAX ||
		    elen > len - NC_IPC_ENTRY_HEADER) {
			*reason = "malformed frame: bad message in a batch";
			return -1;
		}
		p += NC_IPC_ENTRY_HEADER + elen;
		len -= NC_IPC_ENTRY_HEADER + elen;
	}
	if (len != 0) {
		*reason = "malformed frame: bytes after its messages";
		return -1;
	}
	return 0;
}

/*
 * A broadcast or message frame: the header checked, the payload only
 * measured (its reader checks it).
 */
static int
ipc_msg_frame_parse(const char *buf, size_t len, size_t nfds,
    struct nc_ipc_frame *f, const char **reason)
{
	static char	 why[160];
	uint32_t	 plen, from, zero;
	uint16_t	 flags;

	memcpy(&flags, buf + 2, sizeof flags);
	memcpy(&plen, buf + 4, sizeof plen);
	memcpy(&from, buf + 8, sizeof from);
	memcpy(&zero, buf + 12, sizeof zero);
	flags = le16toh(flags);
	plen = le32toh(plen);
	from = le32toh(from);
	if (zero != 0 || (buf[0] == NC_IPC_FRAME_MESSAGE && from > INT_MAX) ||
	    (buf[0] == NC_IPC_FRAME_BROADCAST && from != 0) ||
	    (buf[0] == NC_IPC_FRAME_MESSAGES && (from == 0 ||
	    from > NC_IPC_MAX_SIZE / (NC_IPC_ENTRY_HEADER + 1)))) {
		*reason = "malformed frame: bad header";
		return -1;
	}
	if (flags & ~(buf[0] == NC_IPC_FRAME_BROADCAST ?
	    NC_IPC_MSG_DRAINING : 0)) {
		snprintf(why, sizeof why, "malformed frame: unknown flags "
		    "0x%04x", flags);
		*reason = why;
		return -1;
	}
	if (plen != len - NC_IPC_FRAME_HEADER) {
		snprintf(why, sizeof why, "malformed frame: wrong size "
		    "(payload of %u bytes in a packet of %zu)", plen, len);
		*reason = why;
		return -1;
	}
	if (buf[0] != NC_IPC_FRAME_MESSAGES && (plen == 0 ||
	    plen > NC_IPC_MSG_MAX)) {
		snprintf(why, sizeof why, "malformed frame: payload of %u "
		    "bytes (1 to %d)", plen, NC_IPC_MSG_MAX);
		*reason = why;
		return -1;
	}
	if (buf[0] == NC_IPC_FRAME_MESSAGES && ipc_entries_check(buf +
	    NC_IPC_FRAME_HEADER, plen, from, reason) == -1)
		return -1;
	if (nfds != 0) {
		snprintf(why, sizeof why, "wrong fd count: a message takes "
		    "none, %zu came", nfds);
		*reason = why;
		return -1;
	}
	f->kind = buf[0];
	f->flags = flags;
	if (buf[0] == NC_IPC_FRAME_MESSAGES)
		f->n = from;
	else
		f->from = (int)from;
	f->payload = buf + NC_IPC_FRAME_HEADER;
	f->len = plen;
	return 0;
}

int
nc_ipc_frame_next(const struct nc_ipc_frame *f, size_t *off, int *from,
    const char **text, size_t *len)
{
	uint32_t	v;

	if (f->kind == NC_IPC_FRAME_MESSAGE) {
		if (*off != 0)
			return 0;
		*off = f->len;
		*from = f->from;
		*text = f->payload;
		*len = f->len;
		return 1;
	}
	if (f->kind != NC_IPC_FRAME_MESSAGES || *off >= f->len)
		return 0;
	/* Checked when the frame was parsed. */
	memcpy(&v, f->payload + *off, sizeof v);
	*from = (int)le32toh(v);
	memcpy(&v, f->payload + *off + 4, sizeof v);
	*len = le32toh(v);
	*text = f->payload + *off + NC_IPC_ENTRY_HEADER;
	*off += NC_IPC_ENTRY_HEADER + *len;
	return 1;
}

int
nc_ipc_frame_parse(const char *buf, size_t len, size_t nfds, bool ctrunc,
    struct nc_ipc_frame *f, const char **reason)
{
	static char	 why[160];
	uint64_t	 seq, all;
	uint32_t	 zero;
	uint16_t	 n, i;

	memset(f, 0, sizeof *f);
	*reason = NULL;
	if (!nc_ipc_is_frame(buf, len)) {
		*reason = "malformed frame: unknown kind";
		return -1;
	}
	if (len < NC_IPC_FRAME_HEADER) {
		*reason = "malformed frame: truncated header";
		return -1;
	}
	if (buf[1] != (ipc_is_msg_kind(buf[0]) ? NC_IPC_MSG_VERSION :
	    NC_IPC_FRAME_VERSION)) {
		snprintf(why, sizeof why, "frame version %d not understood",
		    (unsigned char)buf[1]);
		*reason = why;
		return -1;
	}
	if (ipc_is_msg_kind(buf[0]))
		return ipc_msg_frame_parse(buf, len, nfds, f, reason);
	memcpy(&n, buf + 2, sizeof n);
	memcpy(&zero, buf + 4, sizeof zero);
	memcpy(&seq, buf + 8, sizeof seq);
	n = le16toh(n);
	seq = le64toh(seq);
	if (zero != 0 || seq > LLONG_MAX) {
		*reason = "malformed frame: bad header";
		return -1;
	}
	if (n == 0 || n > NC_IPC_MAX_FDS) {
		snprintf(why, sizeof why, "malformed frame: %u connections "
		    "(1 to %d)", n, NC_IPC_MAX_FDS);
		*reason = why;
		return -1;
	}
	f->kind = buf[0];
	f->n = n;
	f->seq = (long long)seq;
	if (f->kind == NC_IPC_FRAME_CONN) {
		if (len != NC_IPC_FRAME_HEADER + n * sizeof(uint32_t)) {
			*reason = "malformed frame: wrong size";
			return -1;
		}
		if (nfds > n || (nfds < n && !ctrunc)) {
			snprintf(why, sizeof why, "wrong fd count: frame says "
			    "%u, %zu came", n, nfds);
			*reason = why;
			return -1;
		}
		memcpy(f->listeners, buf + NC_IPC_FRAME_HEADER,
		    n * sizeof(uint32_t));
		for (i = 0; i < n; i++)
			f->listeners[i] = le32toh(f->listeners[i]);
		f->fds_lost = n - nfds;
		return 0;
	}
	if (len != NC_IPC_FRAME_HEADER + sizeof(uint64_t)) {
		*reason = "malformed frame: wrong size";
		return -1;
	}
	if (nfds != 0) {
		snprintf(why, sizeof why, "wrong fd count: an ack takes none, "
		    "%zu came", nfds);
		*reason = why;
		return -1;
	}
	memcpy(&f->accepted, buf + NC_IPC_FRAME_HEADER, sizeof f->accepted);
	f->accepted = le64toh(f->accepted);
	all = n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
	if (f->accepted & ~all) {
		*reason = "malformed frame: ack for connections not sent";
		return -1;
	}
	return 0;
}

/*
 * A packet whose fds the kernel could not all give us (MSG_CTRUNC) though
 * they fit our buffer: the process is out of fds. The message is taken
 * with the fds that came and "fds_lost" set, so the receiver can answer
 * it; any other truncation (more fds than a message may carry) is not.
 */
json_t *
nc_ipc_parse_short(const char *buf, size_t len, size_t nfds)
{
	const char	*reason;
	json_t		*msg, *v;
	json_int_t	 said;

	if ((msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return NULL;
	v = json_object_get(msg, "fds");
	said = json_is_integer(v) ? json_integer_value(v) : 0;
	json_decref(msg);
	if (said <= (json_int_t)nfds || said > NC_IPC_MAX_FDS)
		return NULL;
	if ((msg = nc_ipc_parse(buf, len, (size_t)said, &reason)) == NULL)
		return NULL;
	if (json_object_set_new(msg, "fds_lost",
	    json_integer(said - (json_int_t)nfds)) == -1) {
		json_decref(msg);
		return NULL;
	}
	return msg;
}

/*
 * Where the value of key starts in raw, a JSON object's text, when every
 * member before it is a scalar written plainly: {"k":1,"t":"s",...,
 * "key":VALUE...; *n gets how many members come before. -1 when not so.
 */
static ssize_t
ipc_member_offset(const char *raw, size_t len, const char *key, size_t *n)
{
	const char	*p, *end;
	size_t		 klen = strlen(key);

	*n = 0;
	if (len < 2 || raw[0] != '{')
		return -1;
	p = raw + 1;
	end = raw + len;
	for (;;) {
		if (p >= end || *p != '"')
			return -1;
		if ((size_t)(end - p) > klen + 3 && memcmp(p + 1, key, klen) ==
		    0 && p[klen + 1] == '"' && p[klen + 2] == ':')
			return p + klen + 3 - raw;
		/* "name": then a plain string, a number, true or false. */
		while (++p < end && *p != '"')
			if (*p == '\\')
				return -1;
		if (++p >= end || *p != ':' || ++p >= end)
			return -1;
		if (*p == '"') {
			while (++p < end && *p != '"')
				if (*p == '\\')
					return -1;
			p++;
		} else
			while (p < end && *p != ',' && *p != '}' && *p != '{' &&
			    *p != '[' && *p != '"')
				p++;
		if (p >= end || *p != ',')
			return -1;
		p++;
		(*n)++;
	}
}

/*
 * The text of the last member of the message being delivered, as it came,
 * when it is key and every member before it is a scalar written plainly
 * (ipc_member_offset). msg is that message, parsed (and so checked):
 * VALUE is then exactly the value's JSON text, which can be sent on
 * without writing it out again. NULL when it is not so.
 */
const char *
nc_ipc_member_value(const char *raw, size_t len, const json_t *msg,
    const char *key, size_t *vlen)
{
	ssize_t	off;
	size_t	n;

	if (raw == NULL || (off = ipc_member_offset(raw, len, key, &n)) == -1)
		return NULL;
	/* The key is the last member: what follows is the value and '}'. */
	if (json_object_size(msg) != n + 1 || len - (size_t)off < 2 ||
	    raw[len - 1] != '}')
		return NULL;
	*vlen = len - 1 - (size_t)off;
	return raw + off;
}

static bool
ipc_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Whether the JSON value that starts at p is all there is up to end,
 * whitespace aside, by its brackets and strings alone: its contents were
 * checked by the peer.
 */
static bool
ipc_value_fills(const char *p, const char *end)
{
	int	depth = 0;

	while (p < end && ipc_space(*p))
		p++;
	for (; p < end; p++) {
		if (*p == '"') {
			while (++p < end && *p != '"')
				if (*p == '\\')
					p++;
			if (p >= end)
				return false;	/* a string left open */
			if (depth == 0) {
				p++;
				break;
			}
		} else if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && depth > 0) {
			if (--depth == 0) {
				p++;
				break;
			}
		} else if (depth == 0 && (*p == ',' || *p == '}' || *p == ']'))
			break;		/* the end of a scalar */
	}
	if (depth > 0)
		return false;
	while (p < end && ipc_space(*p))
		p++;
	return p == end;
}

/*
 * A packet of the trusted type whose last member is the trusted key: the
 * members before it are parsed and checked, the key's value is passed on
 * as text (nc_ipc_last_value). NULL when the packet is not so.
 */
json_t *
nc_ipc_parse_tail(char *buf, size_t len, size_t nfds, const char *type,
    const char *key, const char **val, size_t *vlen)
{
	const char	*reason;
	json_t		*msg;
	ssize_t		 off;
	size_t		 n, ks;
	char		 save;

	if (nfds != 0 || len < 3 || buf[len - 1] != '}' ||
	    (off = ipc_member_offset(buf, len, key, &n)) == -1 || n == 0 ||
	    (size_t)off >= len - 1)
		return NULL;
	/* The value must be the last member: it ends at the final '}'. */
	if (!ipc_value_fills(buf + off, buf + len - 1))
		return NULL;
	/* The members before the key, as an object of their own. */
	ks = (size_t)off - strlen(key) - 3;
	save = buf[ks - 1];
	buf[ks - 1] = '}';
	msg = nc_ipc_parse(buf, ks, 0, &reason);
	buf[ks - 1] = save;
	if (msg == NULL)
		return NULL;
	if (strcmp(json_string_value(json_object_get(msg, "type")), type) != 0) {
		json_decref(msg);
		return NULL;
	}
	*val = buf + off;
	*vlen = len - 1 - (size_t)off;
	return msg;
}
