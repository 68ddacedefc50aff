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
 * Fills an error as Node builds it (uvExceptionWithHostPort): the message
 * is "SYSCALL CODE: description ADDRESS:PORT", with the description in
 * lower case for system errors as libuv words them.
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

	snprintf(desc, sizeof desc, "%s", nc_strerror(code));
	/* "Address already in use" -> "address already in use", as libuv. */
	if (code > NC__ERR_BASE && desc[0] >= 'A' && desc[0] <= 'Z')
		desc[0] = (char)(desc[0] - 'A' + 'a');

	where[0] = '\0';
	if (address != NULL && port >= 0)
		snprintf(where, sizeof where, " %s:%d", address, port);
	else if (address != NULL)
		snprintf(where, sizeof where, " %s", address);

	if (code <= NC__ERR_BASE && syscall == NULL)
		snprintf(e->message, sizeof e->message, "%s", desc);
	else
		snprintf(e->message, sizeof e->message, "%s%s%s: %s%s",
		    syscall != NULL ? syscall : "", syscall != NULL ? " " : "",
		    nc_err_name(code), desc, where);
	e->pub.message = e->message;
}
