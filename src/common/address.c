/*
 * Socket addresses to and from what address() reports.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc-int.h"

int
nc__sockaddr_to_address(const struct sockaddr *sa, socklen_t len,
    struct nc_address *a)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_un	*sun;
	size_t				 n;

	memset(a, 0, sizeof *a);
	a->port = -1;
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, a->address,
		    sizeof a->address);
		strcpy(a->family, "IPv4");
		a->port = ntohs(sin->sin_port);
		return 0;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, a->address,
		    sizeof a->address);
		strcpy(a->family, "IPv6");
		a->port = ntohs(sin6->sin6_port);
		return 0;
	case AF_UNIX:
		sun = (const struct sockaddr_un *)sa;
		n = len > offsetof(struct sockaddr_un, sun_path) ?
		    len - offsetof(struct sockaddr_un, sun_path) : 0;
		if (n > sizeof sun->sun_path)
			n = sizeof sun->sun_path;
		n = strnlen(sun->sun_path, n);
		if (n >= sizeof a->address)
			n = sizeof a->address - 1;
		memcpy(a->address, sun->sun_path, n);
		return 0;
	default:
		return NC_EINVAL;
	}
}

/* An IP literal and port into a sockaddr; EINVAL if host is no literal. */
int
nc__sockaddr_from(const char *host, int port, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 buf[INET6_ADDRSTRLEN + 64], *zone;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof *sin;
		return 0;
	}
	snprintf(buf, sizeof buf, "%s", host);
	if ((zone = strchr(buf, '%')) != NULL)
		*zone++ = '\0';
	if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (zone != NULL)
			sin6->sin6_scope_id = (uint32_t)strtoul(zone, NULL, 10);
		*len = sizeof *sin6;
		return 0;
	}
	return NC_EINVAL;
}

/* A unix socket path into a sockaddr; ENAMETOOLONG if it does not fit. */
int
nc__sockaddr_unix(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
	size_t	n = strlen(path);

	memset(sun, 0, sizeof *sun);
	if (n == 0)
		return NC_EINVAL;
	if (n >= sizeof sun->sun_path)
		return -ENAMETOOLONG;
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}
