/*
 * A control request line: it is one of the commands of the table
 * (nc-command.h) with only the keys its row takes and every key it
 * needs, each in range (a short service name, a message only for send, a
 * format only for metrics, a batch only for reload, exactly one of
 * workers or delta for scale), or an error message for the client.
 */

#include "fuzz.h"
#include "request.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct nc_command_entry	*ce;
	struct request			 req;
	char				 err[256];

	err[0] = '\0';
	if (request_parse((const char *)data, size, &req, err,
	    sizeof err) == 0) {
		FUZZ_ASSERT((size_t)req.command < nc__ncommands);
		ce = &nc__commands[req.command];
		FUZZ_ASSERT(ce->command == req.command);
		FUZZ_ASSERT(request_name(req.command) == ce->name);
		FUZZ_ASSERT(nc__command_find(ce->name) == ce);
		FUZZ_ASSERT(!req.json || req.command == NC_CMD_METRICS);
		FUZZ_ASSERT((req.command == NC_CMD_SEND) ==
		    (req.message != NULL));
		json_decref(req.message);
		FUZZ_ASSERT(!req.has_service || (req.service[0] != '\0' &&
		    strlen(req.service) <= REQUEST_MAX_SERVICE));
		FUZZ_ASSERT(!req.has_service || (ce->takes & NC_KEY_SERVICE));
		FUZZ_ASSERT(req.has_service || !(ce->needs & NC_KEY_SERVICE));
		FUZZ_ASSERT(req.batch == 0 || (req.command == NC_CMD_RELOAD &&
		    req.batch >= 1 && req.batch <= NC_COMMAND_MAX_COUNT));
		FUZZ_ASSERT(req.workers == 0 || (req.command == NC_CMD_SCALE &&
		    req.workers >= 1 &&
		    req.workers <= NC_COMMAND_MAX_COUNT));
		FUZZ_ASSERT(req.delta == 0 || (req.command == NC_CMD_SCALE &&
		    req.delta >= -NC_COMMAND_MAX_COUNT &&
		    req.delta <= NC_COMMAND_MAX_COUNT));
		FUZZ_ASSERT(req.command != NC_CMD_SCALE || (req.has_service &&
		    (req.workers == 0) != (req.delta == 0)));
	} else
		FUZZ_ASSERT(err[0] != '\0' && strlen(err) < sizeof err);
	return 0;
}
