/*
 * The channel's message decoder: a packet's bytes with the number of fds
 * that came with it (the first input byte). A message it takes is an
 * object with a short "type", a "seq" >= 0 and an "fds" that matches.
 * Where a message's last member "message" is found as text (a master
 * sends it on so), that text is exactly its value; where a packet is
 * taken with that member unparsed (a worker from its master), the text
 * is its value whenever the packet is valid JSON. A binary frame (conn,
 * conn.ack) it takes has 1 to NC_IPC_MAX_FDS connections, as many fds as
 * it says (fewer only when the kernel truncated them, and then the rest
 * are counted lost), the exact size for its kind, and an ack bit only
 * for a connection sent. A message frame (broadcast, message) it takes
 * has no fd, known flags and a payload of 1 to NC_IPC_MSG_MAX bytes that
 * is the rest of the packet; a messages frame, as many messages as it
 * says, each of 1 to NC_IPC_MSG_MAX bytes, that fill it. And the check of a payload (the packet's
 * bytes, and a frame's payload) agrees with jansson: the fast path says
 * yes only to what jansson takes, the whole check exactly to it.
 */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "nc-ipc.h"

/* A payload's check against jansson's verdict. */
static void
check_json(const char *text, size_t len)
{
	const char	*reason = NULL;
	json_t		*v;
	bool		 spaced = true, fast, in_string;
	size_t		 i;

	v = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
	    NULL);
	fast = nc_ipc_json_fast(text, len, &spaced) == 1;
	FUZZ_ASSERT(!fast || v != NULL);
	/* Said unspaced: no whitespace outside strings, compact already. */
	if (fast && !spaced)
		for (i = 0, in_string = false; i < len; i++) {
			if (in_string && text[i] == '\\')
				i++;
			else if (text[i] == '"')
				in_string = !in_string;
			else if (!in_string)
				FUZZ_ASSERT(text[i] != ' ' && text[i] != '\t' &&
				    text[i] != '\n' && text[i] != '\r');
		}
	FUZZ_ASSERT((nc_ipc_json_check(text, len, &reason, NULL) == 0) ==
	    (v != NULL));
	FUZZ_ASSERT(v != NULL || (reason != NULL && reason[0] != '\0'));
	json_decref(v);
}

static void
check_frame(const uint8_t *data, size_t size, size_t nfds)
{
	struct nc_ipc_frame	 f;
	const char		*reason;
	bool			 ctrunc = data[0] & 0x80;

	if (nc_ipc_frame_parse((const char *)data + 1, size - 1, nfds, ctrunc,
	    &f, &reason) == -1) {
		FUZZ_ASSERT(reason != NULL && reason[0] != '\0');
		return;
	}
	if (f.kind == NC_IPC_FRAME_MESSAGES) {
		size_t		 off = 0, len, n = 0;
		const char	*text;
		int		 from;

		FUZZ_ASSERT(nfds == 0 && f.flags == 0 && f.n >= 1);
		FUZZ_ASSERT(size - 1 == NC_IPC_FRAME_HEADER + f.len);
		while (nc_ipc_frame_next(&f, &off, &from, &text, &len) == 1) {
			FUZZ_ASSERT(from >= 0 && len >= 1 &&
			    len <= NC_IPC_MSG_MAX);
			FUZZ_ASSERT(text >= f.payload && text + len <=
			    f.payload + f.len);
			check_json(text, len);
			n++;
		}
		FUZZ_ASSERT(n == f.n && off == f.len);
		return;
	}
	if (f.kind == NC_IPC_FRAME_BROADCAST || f.kind == NC_IPC_FRAME_MESSAGE) {
		FUZZ_ASSERT(nfds == 0 && f.len >= 1 && f.len <= NC_IPC_MSG_MAX);
		FUZZ_ASSERT(size - 1 == NC_IPC_FRAME_HEADER + f.len);
		FUZZ_ASSERT(f.payload == (const char *)data + 1 +
		    NC_IPC_FRAME_HEADER);
		FUZZ_ASSERT((f.flags & ~(f.kind == NC_IPC_FRAME_BROADCAST ?
		    NC_IPC_MSG_DRAINING : 0)) == 0);
		FUZZ_ASSERT(f.from >= 0 && (f.kind == NC_IPC_FRAME_MESSAGE ||
		    f.from == 0));
		check_json(f.payload, f.len);
		return;
	}
	FUZZ_ASSERT(f.n >= 1 && f.n <= NC_IPC_MAX_FDS && f.seq >= 0);
	if (f.kind == NC_IPC_FRAME_CONN) {
		FUZZ_ASSERT(size - 1 == NC_IPC_FRAME_HEADER + 4 * f.n);
		FUZZ_ASSERT(f.fds_lost + nfds == f.n);
		FUZZ_ASSERT(f.fds_lost == 0 || ctrunc);
	} else {
		FUZZ_ASSERT(f.kind == NC_IPC_FRAME_CONN_ACK);
		FUZZ_ASSERT(size - 1 == NC_IPC_FRAME_HEADER + 8 && nfds == 0);
		FUZZ_ASSERT(f.n == 64 || (f.accepted >> f.n) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*reason = NULL, *val;
	char		*buf;
	json_t		*msg, *v, *tail, *whole;
	size_t		 nfds, vlen;

	if (size == 0 || size > NC_IPC_MAX_SIZE + 1)
		return 0;
	nfds = data[0] % (NC_IPC_MAX_FDS + 1);
	check_frame(data, size, nfds);
	check_json((const char *)data + 1, size - 1);
	msg = nc_ipc_parse((const char *)data + 1, size - 1, nfds, &reason);
	/* The unparsed tail: its text is the value, if the packet is JSON. */
	if ((buf = malloc(size)) != NULL) {
		memcpy(buf, data + 1, size - 1);
		tail = nc_ipc_parse_tail(buf, size - 1, nfds, "message",
		    "message", &val, &vlen);
		FUZZ_ASSERT(memcmp(buf, data + 1, size - 1) == 0);
		if (tail != NULL && msg != NULL) {
			whole = json_loadb(val, vlen, JSON_DECODE_ANY, NULL);
			FUZZ_ASSERT(whole != NULL && json_equal(whole,
			    json_object_get(msg, "message")));
			json_decref(whole);
		}
		json_decref(tail);
		free(buf);
	}
	if (msg == NULL) {
		FUZZ_ASSERT(reason != NULL && reason[0] != '\0');
		return 0;
	}
	/* The last member as text: exactly its value. */
	if ((val = nc_ipc_member_value((const char *)data + 1, size - 1, msg,
	    "message", &vlen)) != NULL) {
		whole = json_loadb(val, vlen, JSON_DECODE_ANY, NULL);
		FUZZ_ASSERT(whole != NULL && json_equal(whole,
		    json_object_get(msg, "message")));
		json_decref(whole);
	}
	FUZZ_ASSERT(json_is_object(msg));
	v = json_object_get(msg, "type");
	FUZZ_ASSERT(json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) <= 64);
	v = json_object_get(msg, "seq");
	FUZZ_ASSERT(json_is_integer(v) && json_integer_value(v) >= 0);
	v = json_object_get(msg, "fds");
	FUZZ_ASSERT(v == NULL ? nfds == 0 :
	    json_integer_value(v) == (json_int_t)nfds);
	json_decref(msg);
	return 0;
}
