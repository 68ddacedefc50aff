/*
 * Checking a message's JSON text without building it: the value a worker
 * sent, which the master passes on as bytes and its receiver checks
 * (nc-ipc.h). A one-pass validator that says yes only where jansson
 * does, and jansson itself where it is not sure.
 */

#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "nc-int.h"
#include "nc-ipc.h"

/*
 * The fast path of nc_ipc_json_check(): one pass, no allocation, SWAR
 * over the plain runs of strings. It says yes only where jansson
 * (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES) says yes too, and "not
 * sure" (0) wherever jansson's rules are not simply the grammar's: a
 * number with an exponent or of more than 18 characters (jansson
 * refuses those that overflow), \u0000 and surrogate escapes, a key with
 * an escape (keys are compared decoded), more than JF_KEYS keys in the
 * open objects, or nesting past JF_DEPTH. Invalid text is 0 as well: the
 * caller asks jansson why.
 */
#define JF_DEPTH	64
#define JF_KEYS		256
#define JF_ONES		0x0101010101010101ULL
#define JF_HIGHS	0x8080808080808080ULL

static bool
jf_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A UTF-8 sequence as jansson takes it: its length, or 0. */
static size_t
jf_utf8(const unsigned char *p, const unsigned char *end)
{
	uint32_t	cp;
	size_t		n, i;

	if (p[0] < 0xC2 || p[0] > 0xF4)
		return 0;
	n = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
	if ((size_t)(end - p) < n)
		return 0;
	for (i = 1; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if (n == 3) {
		cp = (uint32_t)(p[0] & 0x0F) << 12 |
		    (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
		if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
	} else if (n == 4) {
		cp = (uint32_t)(p[0] & 0x07) << 18 |
		    (uint32_t)(p[1] & 0x3F) << 12 |
		    (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
		if (cp < 0x10000 || cp > 0x10FFFF)
			return 0;
	}
	return n;
}

/*
 * A string's contents from *pp (past its opening quote): 1 and *pp past
 * its closing quote, *escaped set if it holds an escape; 0 if not sure.
 */
static int
jf_string(const unsigned char **pp, const unsigned char *end, bool *escaped)
{
	const unsigned char	*p = *pp;
	uint64_t		 x, t;
	size_t			 n;
	int			 i, h, v;

	for (;;) {
		/* Eight plain bytes at a time: none < 0x20, '"', '\\', >= 0x80. */
		while (end - p >= 8) {
			memcpy(&x, p, sizeof x);
			t = ((x - JF_ONES * 0x20) & ~x) |
			    (((x ^ (JF_ONES * '"')) - JF_ONES) &
			    ~(x ^ (JF_ONES * '"'))) |
			    (((x ^ (JF_ONES * '\\')) - JF_ONES) &
			    ~(x ^ (JF_ONES * '\\'))) | x;
			if ((t & JF_HIGHS) != 0)
				break;
			p += 8;
		}
		while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' &&
		    *p != '\\')
			p++;
		if (p >= end || *p < 0x20)
			return 0;
		if (*p == '"') {
			*pp = p + 1;
			return 1;
		}
		if (*p == '\\') {
			*escaped = true;
			if (++p >= end)
				return 0;
			switch (*p) {
			case '"': case '\\': case '/': case 'b': case 'f':
			case 'n': case 'r': case 't':
				p++;
				continue;
			case 'u':
				if (end - p < 5)
					return 0;
				for (i = 1, v = 0; i <= 4; i++) {
					if ((h = nc__hex_value(p[i])) == -1)
						return 0;
					v = v << 4 | h;
				}
				if (v == 0 || (v >= 0xD800 && v <= 0xDFFF))
					return 0;
				p += 5;
				continue;
			default:
				return 0;
			}
		}
		if (*p < 0x80 || (n = jf_utf8(p, end)) == 0)
			return 0;
		p += n;
	}
}

/* A number from *pp: 1 and *pp past it, or 0 if not sure. */
static int
jf_number(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char	*p = *pp, *start = *pp;

	if (*p == '-')
		p++;
	if (p >= end)
		return 0;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	else
		return 0;
	if (p < end && *p == '.') {
		if (++p >= end || *p < '0' || *p > '9')
			return 0;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if ((p < end && (*p == 'e' || *p == 'E')) || p - start > 18)
		return 0;
	*pp = p;
	return 1;
}

int
nc_ipc_json_fast(const char *text, size_t len, bool *spaced)
{
	const unsigned char	*p = (const unsigned char *)text;
	const unsigned char	*end = p + len, *k;
	struct {
		const unsigned char	*p;
		size_t			 n;
	}			 keys[JF_KEYS];
	size_t			 kbase[JF_DEPTH], nkeys = 0, i;
	char			 kind[JF_DEPTH];
	int			 depth = 0;
	bool			 esc, sp = false;

#define JF_SKIP() do {							\
	if (p < end && jf_space(*p)) {					\
		sp = true;						\
		while (p < end && jf_space(*p))				\
			p++;						\
	}								\
} while (0)

value:
	JF_SKIP();
	if (p >= end)
		return 0;
	switch (*p) {
	case '{':
	case '[':
		if (depth == JF_DEPTH)
			return 0;
		kind[depth] = (char)*p++;
		kbase[depth++] = nkeys;
		JF_SKIP();
		if (p < end && *p == (kind[depth - 1] == '{' ? '}' : ']')) {
			p++;
			depth--;
			goto after;
		}
		if (kind[depth - 1] == '{')
			goto key;
		goto value;
	case '"':
		p++;
		esc = false;
		if (!jf_string(&p, end, &esc))
			return 0;
		goto after;
	case 't':
		if (end - p < 4 || memcmp(p, "true", 4) != 0)
			return 0;
		p += 4;
		goto after;
	case 'f':
		if (end - p < 5 || memcmp(p, "false", 5) != 0)
			return 0;
		p += 5;
		goto after;
	case 'n':
		if (end - p < 4 || memcmp(p, "null", 4) != 0)
			return 0;
		p += 4;
		goto after;
	default:
		if (!jf_number(&p, end))
			return 0;
		goto after;
	}
key:
	JF_SKIP();
	if (p >= end || *p != '"')
		return 0;
	k = ++p;
	esc = false;
	if (!jf_string(&p, end, &esc) || esc || nkeys == JF_KEYS)
		return 0;
	/* A duplicate of a key of the same object: jansson refuses it. */
	for (i = kbase[depth - 1]; i < nkeys; i++)
		if (keys[i].n == (size_t)(p - 1 - k) &&
		    memcmp(keys[i].p, k, keys[i].n) == 0)
			return 0;
	keys[nkeys].p = k;
	keys[nkeys++].n = (size_t)(p - 1 - k);
	JF_SKIP();
	if (p >= end || *p != ':')
		return 0;
	p++;
	goto value;
after:
	JF_SKIP();
	if (depth == 0) {
		if (p != end)
			return 0;
		if (spaced != NULL)
			*spaced = sp;
		return 1;
	}
	if (p >= end)
		return 0;
	if (*p == ',') {
		p++;
		if (kind[depth - 1] == '{')
			goto key;
		goto value;
	}
	if (*p != (kind[depth - 1] == '{' ? '}' : ']'))
		return 0;
	p++;
	nkeys = kbase[--depth];
	goto after;
#undef JF_SKIP
}

int
nc_ipc_json_check(const char *text, size_t len, const char **reason,
    bool *spaced)
{
	static char	 why[160];
	json_error_t	 jerr;
	json_t		*v;

	if (nc_ipc_json_fast(text, len, spaced))
		return 0;
	if (spaced != NULL)
		*spaced = true;
	v = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
	    &jerr);
	if (v == NULL) {
		if (reason != NULL) {
			snprintf(why, sizeof why, "%.120s", jerr.text);
			*reason = why;
		}
		return -1;
	}
	json_decref(v);
	return 0;
}
