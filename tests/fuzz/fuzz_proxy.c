/*
 * The PROXY protocol parsers, v1 and v2: a header is complete, incomplete
 * or invalid, never read past its end; every prefix of a complete header
 * is incomplete; what it says builds a header that parses the same.
 */

#include "fuzz.h"
#include "nc-int.h"
#include "netcluster.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nc__proxy_info	 pi, again;
	unsigned char		*copy, out[NC__PROXY_V2_MAX];
	size_t			 i;
	int			 n, m, version;

	/* A copy of just the size, so ASan sees any read past it. */
	if ((copy = malloc(size == 0 ? 1 : size)) == NULL)
		abort();
	memcpy(copy, data, size);
	memset(&pi, 0, sizeof pi);
	n = nc__proxy_parse(copy, size, &pi);
	FUZZ_ASSERT(n == NC_EINVAL || (n >= 0 && (size_t)n <= size));
	if (n > 0) {
		for (i = 0; i < (size_t)n; i++)
			FUZZ_ASSERT(nc__proxy_parse(copy, i, &again) == 0);
		version = copy[0] == 'P' ? 1 : 2;
		if (!pi.local && !pi.unix_source) {
			FUZZ_ASSERT(nc_is_ip(pi.src) == pi.family);
			FUZZ_ASSERT(nc_is_ip(pi.dst) == pi.family);
			FUZZ_ASSERT(pi.src_port >= 0 && pi.src_port <= 65535);
			FUZZ_ASSERT(pi.dst_port >= 0 && pi.dst_port <= 65535);
			m = nc__proxy_build(version, pi.src, pi.src_port,
			    pi.dst, pi.dst_port, out, sizeof out);
			FUZZ_ASSERT(m > 0);
			memset(&again, 0, sizeof again);
			FUZZ_ASSERT(nc__proxy_parse(out, (size_t)m, &again) ==
			    m);
			FUZZ_ASSERT(again.family == pi.family &&
			    again.src_port == pi.src_port &&
			    again.dst_port == pi.dst_port);
		}
	}
	free(copy);
	return 0;
}
