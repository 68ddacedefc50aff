/* The config loader: any bytes give a config or errors that say where. */

#include "fuzz.h"
#include "nc-config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nc_config	*cfg;
	char			*errors;
	int			 rc;

	rc = nc_config_parse("fuzz.json", (const char *)data, size, &cfg,
	    &errors);
	if (rc == 0) {
		FUZZ_ASSERT(cfg != NULL && errors == NULL);
		FUZZ_ASSERT(cfg->nservices > 0);
		nc_config_free(cfg);
	} else {
		FUZZ_ASSERT(cfg == NULL && errors != NULL);
		FUZZ_ASSERT(strncmp(errors, "fuzz.json", 9) == 0 ||
		    strcmp(errors, "out of memory") == 0);
		free(errors);
	}
	return 0;
}
