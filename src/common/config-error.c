/*
 * Where a configuration error is, and how it is told: FILE:LINE:COL:
 * KEY.PATH: message, one line each, at most NC_CONFIG_MAX_ERRORS. The
 * path is the walk's (config_push_key() and the rest) or, from
 * outside the parser, a string (nc_config_error()). jansson keeps no
 * positions in a decoded value, so a small scanner walks the file text
 * to the path; it runs only on error.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"
#include "nc-config.h"
#include "nc-int.h"

/* The text scanner: just enough JSON to find where a path points. */
struct scan {
	const char	*p;
	const char	*end;
};

static void
scan_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
scan_string(struct scan *s, const char **start, size_t *len)
{
	if (s->p >= s->end || *s->p != '"')
		return -1;
	*start = ++s->p;
	while (s->p < s->end && *s->p != '"') {
		if (*s->p == '\\' && s->p + 1 < s->end)
			s->p++;
		s->p++;
	}
	if (s->p >= s->end)
		return -1;
	*len = (size_t)(s->p - *start);
	s->p++;
	return 0;
}

static int
scan_value(struct scan *s, int depth)
{
	const char	*k, *at;
	size_t		 kl;
	char		 close;

	scan_ws(s);
	if (s->p >= s->end || depth > 64)
		return -1;
	if (*s->p == '"')
		return scan_string(s, &k, &kl);
	if (*s->p == '{' || *s->p == '[') {
		close = *s->p == '{' ? '}' : ']';
		s->p++;
		for (;;) {
			scan_ws(s);
			if (s->p < s->end && *s->p == close) {
				s->p++;
				return 0;
			}
			if (close == '}') {
				if (scan_string(s, &k, &kl) == -1)
					return -1;
				scan_ws(s);
				if (s->p >= s->end || *s->p++ != ':')
					return -1;
			}
			at = s->p;
			if (scan_value(s, depth + 1) == -1 || s->p == at)
				return -1;	/* never loop without moving */
			scan_ws(s);
			if (s->p < s->end && *s->p == ',')
				s->p++;
		}
	}
	while (s->p < s->end && (*s->p == '\0' ||
	    strchr(",}] \t\r\n", *s->p) == NULL))
		s->p++;
	return 0;
}

/* Where the value (or, with at_key, the key) of the path starts. */
static const char *
config_locate(const struct config_ctx *c, bool at_key)
{
	struct scan	 s = { c->text, c->text + c->len };
	const char	*k, *key_at = c->text;
	size_t		 kl, i, idx;

	for (i = 0; i < c->nsegs; i++) {
		scan_ws(&s);
		if (s.p >= s.end)
			return key_at;
		if (c->segs[i].key != NULL) {
			if (*s.p != '{')
				return s.p;
			s.p++;
			for (;;) {
				scan_ws(&s);
				key_at = s.p;
				if (scan_string(&s, &k, &kl) == -1)
					return key_at;
				scan_ws(&s);
				if (s.p >= s.end || *s.p++ != ':')
					return key_at;
				if (kl == strlen(c->segs[i].key) &&
				    memcmp(k, c->segs[i].key, kl) == 0)
					break;
				if (scan_value(&s, 0) == -1)
					return key_at;
				scan_ws(&s);
				if (s.p < s.end && *s.p == ',')
					s.p++;
			}
		} else {
			if (*s.p != '[')
				return s.p;
			s.p++;
			for (idx = 0; idx < c->segs[i].index; idx++) {
				if (scan_value(&s, 0) == -1)
					return s.p;
				scan_ws(&s);
				if (s.p < s.end && *s.p == ',')
					s.p++;
			}
			key_at = s.p;
		}
	}
	scan_ws(&s);
	return at_key ? key_at : s.p;
}

void
config_position(const struct config_ctx *c, const char *at, int *line,
    int *col)
{
	const char	*p;

	*line = 1;
	*col = 1;
	for (p = c->text; p < at && p < c->text + c->len; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else if ((*p & 0xc0) != 0x80)	/* characters, not bytes */
			(*col)++;
	}
}

static void
config_path(const struct config_ctx *c, char *buf, size_t len)
{
	size_t	i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < c->nsegs && o < len; i++) {
		if (c->segs[i].key != NULL)
			o += (size_t)snprintf(buf + o, len - o, "%s%s",
			    i == 0 ? "" : ".", c->segs[i].key);
		else
			o += (size_t)snprintf(buf + o, len - o, "[%zu]",
			    c->segs[i].index);
	}
}

void
config_append(struct config_ctx *c, const char *line)
{
	size_t	 n = strlen(line);
	char	*p;

	if ((p = realloc(c->errors, c->errlen + n + 2)) == NULL)
		return;
	c->errors = p;
	memcpy(c->errors + c->errlen, line, n);
	c->errlen += n;
	c->errors[c->errlen++] = '\n';
	c->errors[c->errlen] = '\0';
}

static void __attribute__((format(printf, 3, 0)))
config_verror(struct config_ctx *c, bool at_key, const char *fmt, va_list ap)
{
	char	path[256], msg[512], line[1024];
	int	l, col;

	c->nerrors++;
	if (c->nerrors > NC_CONFIG_MAX_ERRORS)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	config_path(c, path, sizeof path);
	config_position(c, config_locate(c, at_key), &l, &col);
	snprintf(line, sizeof line, "%s:%d:%d: %s%s%s", c->name, l, col, path,
	    path[0] != '\0' ? ": " : "", msg);
	config_append(c, line);
}

void __attribute__((format(printf, 3, 4)))
config_error(struct config_ctx *c, bool at_key, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	config_verror(c, at_key, fmt, ap);
	va_end(ap);
}

void
config_push_key(struct config_ctx *c, const char *key)
{
	if (c->nsegs < CONFIG_MAX_DEPTH) {
		c->segs[c->nsegs].key = key;
		c->segs[c->nsegs].index = 0;
	}
	c->nsegs++;
}

void
config_push_index(struct config_ctx *c, size_t index)
{
	if (c->nsegs < CONFIG_MAX_DEPTH) {
		c->segs[c->nsegs].key = NULL;
		c->segs[c->nsegs].index = index;
	}
	c->nsegs++;
}

void
config_pop(struct config_ctx *c)
{
	c->nsegs--;
}

void
nc_config_error(const struct nc_config *cfg, char **errors, const char *path,
    const char *fmt, ...)
{
	struct config_ctx	 c;
	char			 keys[CONFIG_MAX_DEPTH][64], *end;
	const char		*p = path;
	size_t			 n, nkeys = 0;
	va_list			 ap;

	memset(&c, 0, sizeof c);
	c.name = cfg->file;
	c.text = cfg->text != NULL ? cfg->text : "";
	c.len = cfg->text != NULL ? cfg->textlen : 0;
	c.errors = *errors;
	c.errlen = *errors != NULL ? strlen(*errors) : 0;
	while (*p != '\0' && c.nsegs < CONFIG_MAX_DEPTH) {
		if (*p == '[') {
			config_push_index(&c, strtoul(p + 1, &end, 10));
			p = *end == ']' ? end + 1 : end;
		} else {
			n = strcspn(p, ".[");
			snprintf(keys[nkeys], sizeof keys[nkeys], "%.*s",
			    (int)n, p);
			config_push_key(&c, keys[nkeys++]);
			p += n;
		}
		if (*p == '.')
			p++;
	}
	va_start(ap, fmt);
	config_verror(&c, false, fmt, ap);
	va_end(ap);
	*errors = c.errors;
}
