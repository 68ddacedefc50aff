/*
 * A control request line: it is one of the ten commands with at most a
 * short service name (a message only for send, a format only for
 * metrics), or an error message for the client.
 */

#include "fuzz.h"
#include "request.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request	 req;
	char		 err[256];

	err[0] = '\0';
	if (request_parse((const char *)data, size, &req, err,
	    sizeof err) == 0) {
		FUZZ_ASSERT(req.command <= REQ_UNDRAIN);
		FUZZ_ASSERT(!req.json || req.command == REQ_METRICS);
		FUZZ_ASSERT((req.command == REQ_SEND) ==
		    (req.message != NULL));
		json_decref(req.message);
		FUZZ_ASSERT(request_name(req.command) != NULL);
		FUZZ_ASSERT(!req.has_service || (req.service[0] != '\0' &&
		    strlen(req.service) <= REQUEST_MAX_SERVICE));
	} else
		FUZZ_ASSERT(err[0] != '\0' && strlen(err) < sizeof err);
	return 0;
}
