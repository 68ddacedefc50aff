/*
 * net.isIP, isIPv4 and isIPv6 with Node v20's rules (lib/internal/net.js):
 * IPv4 is four decimal octets without leading zeros; IPv6 is groups of one
 * to four hex digits with at most one "::", an optional dotted IPv4 tail,
 * and an optional non-empty zone of [0-9A-Za-z.:-] after '%'. Nothing else
 * is accepted, whitespace included.
 */

#include <string.h>

#include "nc-int.h"

static int
ipv4_octet(const char **pp, const char *end)
{
	const char	*p = *pp;
	int		 v = 0, n = 0;

	while (p < end && *p >= '0' && *p <= '9' && n < 4) {
		v = v * 10 + (*p - '0');
		p++;
		n++;
	}
	/* One to three digits, no leading zero unless the octet is 0. */
	if (n == 0 || n > 3 || (n > 1 && **pp == '0') || v > 255)
		return -1;
	*pp = p;
	return 0;
}

static bool
ipv4_span(const char *p, const char *end)
{
	int	i;

	for (i = 0; i < 4; i++) {
		if (ipv4_octet(&p, end) == -1)
			return false;
		if (i < 3) {
			if (p >= end || *p != '.')
				return false;
			p++;
		}
	}
	return p == end;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static bool
is_zone_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == ':';
}

static bool
ipv6_span(const char *p, const char *end)
{
	const char	*tok;
	int		 groups = 0;
	bool		 compressed = false;

	if (end - p >= 2 && p[0] == ':' && p[1] == ':') {
		compressed = true;
		p += 2;
		if (p == end)
			return true;	/* "::" */
	} else if (p < end && *p == ':')
		return false;

	for (;;) {
		tok = p;
		while (p < end && *p != ':')
			p++;
		if (memchr(tok, '.', (size_t)(p - tok)) != NULL) {
			/* A dotted IPv4 tail: last, and worth two groups. */
			if (p != end || !ipv4_span(tok, p))
				return false;
			groups += 2;
			break;
		}
		if (p - tok < 1 || p - tok > 4)
			return false;
		for (; tok < p; tok++)
			if (!is_hex(*tok))
				return false;
		groups++;
		if (p == end)
			break;
		p++;		/* ':' */
		if (p < end && *p == ':') {
			if (compressed)
				return false;
			compressed = true;
			p++;
			if (p == end)
				break;
		} else if (p == end)
			return false;
	}
	/* "::" stands for at least one group. */
	return compressed ? groups <= 7 : groups == 8;
}

bool
nc_is_ipv4(const char *input)
{
	if (input == NULL)
		return false;
	return ipv4_span(input, input + strlen(input));
}

bool
nc_is_ipv6(const char *input)
{
	const char	*end, *zone;

	if (input == NULL || *input == '\0')
		return false;
	end = input + strlen(input);
	if ((zone = strchr(input, '%')) != NULL) {
		if (zone + 1 == end)
			return false;
		for (const char *z = zone + 1; z < end; z++)
			if (!is_zone_char(*z))
				return false;
		end = zone;
	}
	return ipv6_span(input, end);
}

int
nc_is_ip(const char *input)
{
	if (nc_is_ipv4(input))
		return 4;
	if (nc_is_ipv6(input))
		return 6;
	return 0;
}
