/*
 * The PROXY protocol: the examples of HAProxy's proxy-protocol.txt for
 * versions 1 and 2, broken headers of every kind, headers that arrive in
 * pieces, and what the builder makes parsing back to itself.
 */

#include <string.h>

#include "helpers.h"
#include "nc-int.h"

static const unsigned char sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static int
parse(const char *s, struct nc__proxy_info *pi)
{
	return nc__proxy_parse((const unsigned char *)s, strlen(s), pi);
}

START_TEST(test_v1_examples)
{
	struct nc__proxy_info	pi;
	const char		*tcp4 = "PROXY TCP4 192.168.0.1 192.168.0.11 "
	    "56324 443\r\nGET / HTTP/1.1\r\n";
	const char		*tcp6 = "PROXY TCP6 ffff:f...f:ffff "
	    "ffff:f...f:ffff 65535 65535\r\n";

	/* The header's length; what follows is the client's. */
	ck_assert_int_eq(parse(tcp4, &pi), 47);
	ck_assert(!pi.local);
	ck_assert_int_eq(pi.family, 4);
	ck_assert_str_eq(pi.src, "192.168.0.1");
	ck_assert_str_eq(pi.dst, "192.168.0.11");
	ck_assert_int_eq(pi.src_port, 56324);
	ck_assert_int_eq(pi.dst_port, 443);
	/* The spec's abbreviated IPv6 is not an address. */
	ck_assert_int_eq(parse(tcp6, &pi), NC_EINVAL);
	ck_assert_int_eq(parse("PROXY TCP6 2001:db8::1 ::1 65535 1\r\n", &pi),
	    36);
	ck_assert_int_eq(pi.family, 6);
	ck_assert_str_eq(pi.src, "2001:db8::1");
	ck_assert_int_eq(pi.src_port, 65535);
	/* UNKNOWN: the rest of the line is ignored, the peer stands. */
	ck_assert_int_eq(parse("PROXY UNKNOWN\r\n", &pi), 15);
	ck_assert(pi.local);
	ck_assert_int_eq(parse("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff "
	    "65535 65535\r\n", &pi), 59);
	ck_assert(pi.local);
	/* Two full IPv6 addresses. */
	ck_assert_int_eq(parse("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:"
	    "ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	    &pi), 104);
}
END_TEST

START_TEST(test_v1_broken)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 7\r\n",
		"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 +1 443\r\n",
		"PROXY TCP4 ::1 192.168.0.11 1 443\r\n",
		"PROXY TCP6 192.168.0.1 ::1 1 443\r\n",
		"PROXY TCP4 192.168.000.1 192.168.0.11 1 443\r\n",
		"PROXY UDP4 192.168.0.1 192.168.0.11 1 443\r\n",
		"PROXY tcp4 192.168.0.1 192.168.0.11 1 443\r\n",
		"PROXY TCP4 fe80::1%eth0 ::1 1 443\r\n",
		"PROXY \r\n",
		"proxy TCP4 192.168.0.1 192.168.0.11 1 443\r\n",
		"GET / HTTP/1.1\r\n",
		"PROXYTCP4 1.2.3.4 1.2.3.4 1 1\r\n",
	};
	struct nc__proxy_info	pi;
	char			long_line[200];
	size_t			i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(parse(bad[i], &pi) == NC_EINVAL, "accepted %s",
		    bad[i]);
	/* No CRLF within 107 bytes: bad, not "more to come". */
	memset(long_line, 'x', sizeof long_line - 1);
	long_line[sizeof long_line - 1] = '\0';
	memcpy(long_line, "PROXY TCP4 ", 11);
	ck_assert_int_eq(parse(long_line, &pi), NC_EINVAL);
}
END_TEST

START_TEST(test_v1_in_pieces)
{
	const char		*h = "PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n";
	struct nc__proxy_info	 pi;
	size_t			 i;

	/* Every prefix asks for more; the whole line is whole. */
	for (i = 0; i < strlen(h); i++)
		ck_assert_int_eq(nc__proxy_parse((const unsigned char *)h, i,
		    &pi), 0);
	ck_assert_int_eq(parse(h, &pi), (int)strlen(h));
}
END_TEST

static size_t
v2(unsigned char *b, unsigned char cmd, unsigned char fam, size_t alen)
{
	memcpy(b, sig, 12);
	b[12] = cmd;
	b[13] = fam;
	b[14] = (unsigned char)(alen >> 8);
	b[15] = (unsigned char)alen;
	return 16 + alen;
}

START_TEST(test_v2_examples)
{
	unsigned char		 b[600];
	struct nc__proxy_info	 pi;
	size_t			 n;

	/* TCP over IPv4: 192.168.0.1:56324 -> 192.168.0.11:443. */
	memset(b, 0, sizeof b);
	n = v2(b, 0x21, 0x11, 12);
	memcpy(b + 16, "\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb", 12);
	ck_assert_int_eq(nc__proxy_parse(b, n + 5, &pi), (int)n);
	ck_assert_int_eq(pi.family, 4);
	ck_assert_str_eq(pi.src, "192.168.0.1");
	ck_assert_str_eq(pi.dst, "192.168.0.11");
	ck_assert_int_eq(pi.src_port, 56324);
	ck_assert_int_eq(pi.dst_port, 443);
	/* TLVs after the addresses are skipped with the rest. */
	n = v2(b, 0x21, 0x11, 12 + 7);
	memcpy(b + 28, "\x01\x00\x04h2\x00\x00", 7);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), (int)n);
	/* TCP over IPv6. */
	memset(b, 0, sizeof b);
	n = v2(b, 0x21, 0x21, 36);
	b[31] = 1;				/* ::1 */
	b[32] = 0x20; b[33] = 0x01; b[34] = 0x0d; b[35] = 0xb8;
	b[47] = 2;				/* 2001:db8::2 */
	b[48] = 0x30; b[49] = 0x39;		/* 12345 */
	b[50] = 0x00; b[51] = 0x50;		/* 80 */
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), (int)n);
	ck_assert_int_eq(pi.family, 6);
	ck_assert_str_eq(pi.src, "::1");
	ck_assert_str_eq(pi.dst, "2001:db8::2");
	ck_assert_int_eq(pi.src_port, 12345);
	/* A unix source. */
	memset(b, 0, sizeof b);
	n = v2(b, 0x21, 0x31, 216);
	memcpy(b + 16, "/run/client.sock", 16);
	memcpy(b + 124, "/run/server.sock", 16);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), (int)n);
	ck_assert(pi.unix_source);
	ck_assert_str_eq(pi.src, "/run/client.sock");
	ck_assert_int_eq(pi.src_port, -1);
	/* LOCAL (health checks) and UNSPEC: the real peer stands. */
	n = v2(b, 0x20, 0x00, 0);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), 16);
	ck_assert(pi.local);
	n = v2(b, 0x20, 0x11, 12);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), 28);
	ck_assert(pi.local);
	n = v2(b, 0x21, 0x00, 0);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), 16);
	ck_assert(pi.local);
}
END_TEST

START_TEST(test_v2_broken_and_pieces)
{
	unsigned char		b[2048];
	struct nc__proxy_info	pi;
	size_t			n, i;

	memset(b, 0, sizeof b);
	n = v2(b, 0x21, 0x11, 12);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(nc__proxy_parse(b, i, &pi), 0);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), (int)n);
	/* Version 1 in the v2 byte, version 3, command 2. */
	b[12] = 0x11;
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	b[12] = 0x31;
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	b[12] = 0x22;
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	/* Datagrams, unknown families, lengths short of the family's. */
	n = v2(b, 0x21, 0x12, 12);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	n = v2(b, 0x21, 0x41, 12);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	n = v2(b, 0x21, 0x11, 11);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	n = v2(b, 0x21, 0x21, 35);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	n = v2(b, 0x21, 0x31, 215);
	ck_assert_int_eq(nc__proxy_parse(b, n, &pi), NC_EINVAL);
	/* Oversized: refused at once, without waiting for it. */
	(void)v2(b, 0x21, 0x11, 2000);
	ck_assert_int_eq(nc__proxy_parse(b, 16, &pi), NC_EINVAL);
	/* A signature that goes wrong. */
	memcpy(b, sig, 12);
	b[11] = 'X';
	ck_assert_int_eq(nc__proxy_parse(b, 16, &pi), NC_EINVAL);
}
END_TEST

START_TEST(test_build_round_trip)
{
	unsigned char		b[256];
	struct nc__proxy_info	pi;
	int			n, v;

	for (v = 1; v <= 2; v++) {
		n = nc__proxy_build(v, "10.1.2.3", 4444, "10.9.9.9", 443, b,
		    sizeof b);
		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(nc__proxy_parse(b, (size_t)n, &pi), n);
		ck_assert_str_eq(pi.src, "10.1.2.3");
		ck_assert_int_eq(pi.src_port, 4444);
		ck_assert_str_eq(pi.dst, "10.9.9.9");
		ck_assert_int_eq(pi.dst_port, 443);
		n = nc__proxy_build(v, "2001:db8::7", 1, "::1", 2, b, sizeof b);
		ck_assert_int_eq(nc__proxy_parse(b, (size_t)n, &pi), n);
		ck_assert_str_eq(pi.src, "2001:db8::7");
		ck_assert_int_eq(pi.family, 6);
		/* A unix client becomes UNKNOWN / LOCAL. */
		n = nc__proxy_build(v, "/tmp/x.sock", -1, "/tmp/y", -1, b,
		    sizeof b);
		ck_assert_int_eq(nc__proxy_parse(b, (size_t)n, &pi), n);
		ck_assert(pi.local);
	}
	ck_assert_int_eq(nc__proxy_build(1, "10.1.2.3", 1, "10.1.2.3", 1, b,
	    10), -1);
	ck_assert_int_eq(nc__proxy_build(2, "10.1.2.3", 1, "10.1.2.3", 1, b,
	    20), -1);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("proxyproto");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_v1_examples);
	tcase_add_test(tc, test_v1_broken);
	tcase_add_test(tc, test_v1_in_pieces);
	tcase_add_test(tc, test_v2_examples);
	tcase_add_test(tc, test_v2_broken_and_pieces);
	tcase_add_test(tc, test_build_round_trip);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
