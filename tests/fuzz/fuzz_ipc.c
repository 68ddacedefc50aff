/*
 * The channel's message decoder: a packet's bytes with the number of fds
 * that came with it (the first input byte). A message it takes is an
 * object with a short "type", a "seq" >= 0 and an "fds" that matches.
 */

#include <jansson.h>

#include "fuzz.h"
#include "nc-ipc.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*reason = NULL;
	json_t		*msg, *v;
	size_t		 nfds;

	if (size == 0 || size > NC_IPC_MAX_SIZE + 1)
		return 0;
	nfds = data[0] % (NC_IPC_MAX_FDS + 1);
	msg = nc_ipc_parse((const char *)data + 1, size - 1, nfds, &reason);
	if (msg == NULL) {
		FUZZ_ASSERT(reason != NULL && reason[0] != '\0');
		return 0;
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
