/*
 * The listen-address parser ("PORT", "HOST:PORT", "[V6]:PORT",
 * "unix:PATH", "fd:N", "systemd:NAME"): an address parsed once parses the
 * same from its own text.
 */

#include "fuzz.h"
#include "nc-config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nc_listen_addr	 a, b;
	char			 err[256], *s;

	s = fuzz_string(data, size);
	memset(&a, 0, sizeof a);
	err[0] = '\0';
	if (nc_config_parse_listen(s, &a, err, sizeof err) == 0) {
		FUZZ_ASSERT(a.text != NULL && strcmp(a.text, s) == 0);
		switch (a.kind) {
		case NC_LISTEN_TCP:
			FUZZ_ASSERT(a.port >= 0 && a.port <= 65535);
			break;
		case NC_LISTEN_UNIX:
			FUZZ_ASSERT(a.path != NULL && a.path[0] != '\0');
			break;
		case NC_LISTEN_FD:
			FUZZ_ASSERT(a.fd >= 0);
			break;
		case NC_LISTEN_SYSTEMD:
			FUZZ_ASSERT(a.name != NULL);
			break;
		}
		memset(&b, 0, sizeof b);
		FUZZ_ASSERT(nc_config_parse_listen(a.text, &b, err,
		    sizeof err) == 0);
		FUZZ_ASSERT(a.kind == b.kind && a.port == b.port &&
		    a.fd == b.fd);
		nc_config_listen_clear(&b);
		nc_config_listen_clear(&a);
	} else
		FUZZ_ASSERT(err[0] != '\0');
	free(s);
	return 0;
}
