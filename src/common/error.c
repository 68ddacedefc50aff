/*
 * Error codes: names and messages for NC_* codes (-errno and Node's own),
 * and the error objects emitted with `error`.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nc-int.h"

const char *
nc_err_name(int code)
{
	static __thread char	 unknown[48];
	const char		*name;

	switch (code) {
#define NC__ERR_NAME(name, value, msg) case NC_##name: return #name;
	NC_ERRNO_MAP(NC__ERR_NAME)
#undef NC__ERR_NAME
	default:
		break;
	}
	if (code < 0 && code > NC__ERR_BASE &&
	    (name = strerrorname_np(-code)) != NULL)
		return name;
	snprintf(unknown, sizeof unknown, "Unknown system error %d", code);
	return unknown;
}

const char *
nc_strerror(int code)
{
	static __thread char	 unknown[48];

	switch (code) {
#define NC__ERR_MSG(name, value, msg) case NC_##name: return msg;
	NC_ERRNO_MAP(NC__ERR_MSG)
#undef NC__ERR_MSG
	default:
		break;
	}
	if (code < 0 && code > NC__ERR_BASE && strerrorname_np(-code) != NULL)
		return strerrordesc_np(-code);
	snprintf(unknown, sizeof unknown, "Unknown system error %d", code);
	return unknown;
}

/*
 * Fills an error as Node builds it: listen errors read "listen CODE:
 * description ADDRESS:PORT" (uvExceptionWithHostPort), the others
 * "SYSCALL CODE ADDRESS:PORT" (exceptionWithHostPort, errnoException,
 * dnsException); the port shows only when it is above 0. Node's own
 * codes without a syscall are just their message.
 */
void
nc__error_set(struct nc__error *e, int code, const char *syscall,
    const char *address, int port)
{
	char	desc[128], where[NC_ADDRSTRLEN + 16];

	memset(e, 0, sizeof *e);
	e->pub.code = code;
	e->pub.port = port;
	if (syscall != NULL) {
		snprintf(e->syscall, sizeof e->syscall, "%s", syscall);
		e->pub.syscall = e->syscall;
	}
	if (address != NULL) {
		snprintf(e->address, sizeof e->address, "%s", address);
		e->pub.address = e->address;
	}

	where[0] = '\0';
	if (address != NULL && port > 0)
		snprintf(where, sizeof where, " %s:%d", address, port);
	else if (address != NULL)
		snprintf(where, sizeof where, " %s", address);

	if (syscall == NULL) {
		snprintf(e->message, sizeof e->message, "%s%s",
		    code <= NC__ERR_BASE ? nc_strerror(code) : nc_err_name(code),
		    where);
	} else if (strcmp(syscall, "listen") == 0) {
		/* "Address already in use" -> "address already in use" */
		snprintf(desc, sizeof desc, "%s", nc_strerror(code));
		if (code > NC__ERR_BASE && desc[0] >= 'A' && desc[0] <= 'Z')
			desc[0] = (char)(desc[0] - 'A' + 'a');
		snprintf(e->message, sizeof e->message, "%s %s: %s%s",
		    syscall, nc_err_name(code), desc, where);
	} else
		snprintf(e->message, sizeof e->message, "%s %s%s", syscall,
		    nc_err_name(code), where);
	e->pub.message = e->message;
}
