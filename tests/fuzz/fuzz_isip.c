/*
 * nc_is_ip(), nc_is_ipv4(), nc_is_ipv6(): they agree with each other, and
 * with inet_pton() wherever Node's rules and inet_pton's are the same
 * (IPv4; IPv6 without a zone).
 */

#include <arpa/inet.h>

#include "fuzz.h"
#include "netcluster.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char	 buf[16];
	char		*s;
	int		 v4, v6, ip;

	s = fuzz_string(data, size);
	v4 = nc_is_ipv4(s);
	v6 = nc_is_ipv6(s);
	ip = nc_is_ip(s);
	FUZZ_ASSERT(!(v4 && v6));
	FUZZ_ASSERT(ip == (v4 ? 4 : v6 ? 6 : 0));
	FUZZ_ASSERT(v4 == (inet_pton(AF_INET, s, buf) == 1));
	if (strchr(s, '%') == NULL)
		FUZZ_ASSERT(v6 == (inet_pton(AF_INET6, s, buf) == 1));
	free(s);
	return 0;
}
