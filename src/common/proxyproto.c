/*
 * The PROXY protocol, versions 1 and 2, as HAProxy specifies it
 * (doc/proxy-protocol.txt): parsing the header an L4 balancer puts before
 * a connection's bytes, and building one to send upstream.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc-int.h"

static const unsigned char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A decimal port of 1 to 5 digits, 0 to 65535, no sign, no leading 0. */
static int
v1_port(const char *s, size_t n, int *port)
{
	size_t	i;
	long	v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

static int
v1_parse(const unsigned char *buf, size_t len, struct nc__proxy_info *pi)
{
	char		 line[NC__PROXY_V1_MAX + 1], *f[6], *save, *t;
	const char	*end;
	size_t		 n, i;
	int		 want;

	/* The line ends with CRLF within 107 bytes, or it is bad. */
	end = memchr(buf, '\n', len < NC__PROXY_V1_MAX ? len :
	    NC__PROXY_V1_MAX);
	if (end == NULL)
		return len >= NC__PROXY_V1_MAX ? NC_EINVAL : 0;
	n = (size_t)(end - (const char *)buf) + 1;
	if (n < 8 || buf[n - 2] != '\r')
		return NC_EINVAL;
	memcpy(line, buf, n - 2);
	line[n - 2] = '\0';
	if (strncmp(line, "PROXY ", 6) != 0)
		return NC_EINVAL;
	for (i = 0, t = strtok_r(line + 6, " ", &save); t != NULL && i < 6;
	    t = strtok_r(NULL, " ", &save))
		f[i++] = t;
	if (i == 0)
		return NC_EINVAL;
	memset(pi, 0, sizeof *pi);
	if (strcmp(f[0], "UNKNOWN") == 0) {
		pi->local = true;	/* the rest of the line is ignored */
		return (int)n;
	}
	if (t != NULL || i != 5)
		return NC_EINVAL;
	if (strcmp(f[0], "TCP4") == 0)
		want = 4;
	else if (strcmp(f[0], "TCP6") == 0)
		want = 6;
	else
		return NC_EINVAL;
	/* Single spaces only: the fields rebuilt must be the line. */
	if (strlen(f[1]) + strlen(f[2]) + strlen(f[3]) + strlen(f[4]) +
	    strlen(f[0]) + 4 != n - 2 - 6)
		return NC_EINVAL;
	if (nc_is_ip(f[1]) != want || nc_is_ip(f[2]) != want ||
	    strchr(f[1], '%') != NULL || strchr(f[2], '%') != NULL ||
	    v1_port(f[3], strlen(f[3]), &pi->src_port) != 0 ||
	    v1_port(f[4], strlen(f[4]), &pi->dst_port) != 0)
		return NC_EINVAL;
	pi->family = want;
	snprintf(pi->src, sizeof pi->src, "%s", f[1]);
	snprintf(pi->dst, sizeof pi->dst, "%s", f[2]);
	return (int)n;
}

/* Two addresses of addrlen bytes each, then two ports. */
static int
v2_inet(struct nc__proxy_info *pi, int af, const unsigned char *a,
    size_t alen, size_t addrlen)
{
	const unsigned char	*ports = a + 2 * addrlen;

	if (alen < 2 * addrlen + 4)
		return -1;
	inet_ntop(af, a, pi->src, sizeof pi->src);
	inet_ntop(af, a + addrlen, pi->dst, sizeof pi->dst);
	pi->src_port = ports[0] << 8 | ports[1];
	pi->dst_port = ports[2] << 8 | ports[3];
	pi->family = af == AF_INET ? 4 : 6;
	return 0;
}

/* A 108-byte unix path field, NUL-terminated or not. */
static void
v2_path(char out[110], const unsigned char *field)
{
	size_t	n = strnlen((const char *)field, 108);

	memcpy(out, field, n);
	out[n] = '\0';
}

static int
v2_parse(const unsigned char *buf, size_t len, struct nc__proxy_info *pi)
{
	size_t		 alen, total;
	unsigned char	 cmd, fam;

	if (len < 16)
		return 0;
	if ((buf[12] & 0xf0) != 0x20)
		return NC_EINVAL;		/* version 2 only */
	cmd = buf[12] & 0x0f;
	fam = buf[13];
	alen = (size_t)buf[14] << 8 | buf[15];
	total = 16 + alen;
	if (total > NC__PROXY_V2_MAX || cmd > 1)
		return NC_EINVAL;
	if (len < total)
		return 0;
	memset(pi, 0, sizeof *pi);
	if (cmd == 0) {
		pi->local = true;	/* health checks: the real peer stands */
		return (int)total;
	}
	switch (fam) {
	case 0x11:	/* TCP over IPv4 */
		if (v2_inet(pi, AF_INET, buf + 16, alen, 4) != 0)
			return NC_EINVAL;
		break;
	case 0x21:	/* TCP over IPv6 */
		if (v2_inet(pi, AF_INET6, buf + 16, alen, 16) != 0)
			return NC_EINVAL;
		break;
	case 0x31:	/* unix stream */
		if (alen < 216)
			return NC_EINVAL;
		v2_path(pi->src, buf + 16);
		v2_path(pi->dst, buf + 124);
		pi->src_port = pi->dst_port = -1;
		pi->family = 0;
		pi->unix_source = true;
		break;
	case 0x00:	/* UNSPEC: keep the real peer */
		pi->local = true;
		break;
	default:
		return NC_EINVAL;	/* datagrams and unknown families */
	}
	return (int)total;	/* TLVs after the addresses are skipped */
}

/*
 * Parses a PROXY header at the start of buf: the header's length when it
 * is complete, 0 when more bytes are needed, or NC_EINVAL when it is not
 * a valid header.
 */
int
nc__proxy_parse(const unsigned char *buf, size_t len,
    struct nc__proxy_info *pi)
{
	size_t	n = len < sizeof v2_sig ? len : sizeof v2_sig;

	if (len == 0)
		return 0;
	if (memcmp(buf, v2_sig, n) == 0)
		return n < sizeof v2_sig ? 0 : v2_parse(buf, len, pi);
	n = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", n) != 0)
		return NC_EINVAL;
	return n < 6 ? 0 : v1_parse(buf, len, pi);
}

int
nc_proxy_header(int version, const char *src, int src_port, const char *dst,
    int dst_port, unsigned char *out, size_t outlen)
{
	return nc__proxy_build(version, src, src_port, dst, dst_port, out,
	    outlen);
}

/*
 * Builds a header for a connection from src to dst (IP literals, same
 * family) in out; version 1 or 2. Returns its length, or -1.
 */
int
nc__proxy_build(int version, const char *src, int sport, const char *dst,
    int dport, unsigned char *out, size_t outlen)
{
	int	fam = nc_is_ip(src);
	size_t	alen;

	if (fam == 0 || nc_is_ip(dst) != fam || sport < 0 || dport < 0)
		fam = 0;	/* UNKNOWN / LOCAL */
	if (version == 1) {
		int	n;

		if (fam == 0)
			n = snprintf((char *)out, outlen, "PROXY UNKNOWN\r\n");
		else
			n = snprintf((char *)out, outlen, "PROXY TCP%d %s %s "
			    "%d %d\r\n", fam, src, dst, sport, dport);
		return n > 0 && (size_t)n < outlen ? n : -1;
	}
	alen = fam == 4 ? 12 : fam == 6 ? 36 : 0;
	if (outlen < 16 + alen)
		return -1;
	memcpy(out, v2_sig, sizeof v2_sig);
	out[12] = fam == 0 ? 0x20 : 0x21;	/* LOCAL or PROXY */
	out[13] = fam == 4 ? 0x11 : fam == 6 ? 0x21 : 0x00;
	out[14] = (unsigned char)(alen >> 8);
	out[15] = (unsigned char)(alen & 0xff);
	if (fam == 4) {
		(void)inet_pton(AF_INET, src, out + 16);
		(void)inet_pton(AF_INET, dst, out + 20);
		out[24] = (unsigned char)(sport >> 8);
		out[25] = (unsigned char)sport;
		out[26] = (unsigned char)(dport >> 8);
		out[27] = (unsigned char)dport;
	} else if (fam == 6) {
		(void)inet_pton(AF_INET6, src, out + 16);
		(void)inet_pton(AF_INET6, dst, out + 32);
		out[48] = (unsigned char)(sport >> 8);
		out[49] = (unsigned char)sport;
		out[50] = (unsigned char)(dport >> 8);
		out[51] = (unsigned char)dport;
	}
	return (int)(16 + alen);
}
