/*
 * Encodings for socket.setEncoding() and string writes, as Node's
 * StringDecoder and Buffer.from(string, encoding) treat them. C strings
 * are UTF-8, so decoded text is always UTF-8, and strings to write are
 * read as UTF-8.
 */

#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "nc-int.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const unsigned char replacement[] = { 0xef, 0xbf, 0xbd };	/* U+FFFD */

int
nc__encoding_parse(const char *name, enum nc__encoding *enc)
{
	static const struct {
		const char		*name;
		enum nc__encoding	 enc;
	} names[] = {
		{ "utf8", NC__ENC_UTF8 },
		{ "utf-8", NC__ENC_UTF8 },
		{ "hex", NC__ENC_HEX },
		{ "base64", NC__ENC_BASE64 },
		{ "latin1", NC__ENC_LATIN1 },
		{ "binary", NC__ENC_LATIN1 },
		{ "ascii", NC__ENC_ASCII },
		{ "utf16le", NC__ENC_UTF16LE },
		{ "utf-16le", NC__ENC_UTF16LE },
		{ "ucs2", NC__ENC_UTF16LE },
		{ "ucs-2", NC__ENC_UTF16LE },
	};
	size_t	i;

	if (name == NULL)
		return NC_ERR_UNKNOWN_ENCODING;
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			*enc = names[i].enc;
			return 0;
		}
	}
	return NC_ERR_UNKNOWN_ENCODING;
}

void
nc__decoder_init(struct nc__decoder *d, enum nc__encoding enc)
{
	memset(d, 0, sizeof *d);
	d->enc = enc;
}

static int
put(struct evbuffer *out, const void *p, size_t len)
{
	return evbuffer_add(out, p, len) == 0 ? 0 : NC_ENOMEM;
}

/* Appends code point cp as UTF-8; surrogates become U+FFFD. */
static int
put_cp(struct evbuffer *out, unsigned int cp)
{
	unsigned char	b[4];
	size_t		n;

	if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		cp = 0xfffd;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return put(out, b, n);
}

/*
 * The length of the UTF-8 sequence that lead byte b starts (0 if b can
 * never start one), and the range its second byte must fall in (WHATWG).
 */
static size_t
utf8_lead(unsigned char b, unsigned char *lo, unsigned char *hi)
{
	*lo = 0x80;
	*hi = 0xbf;
	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf)
		return 2;
	if (b >= 0xe0 && b <= 0xef) {
		if (b == 0xe0)
			*lo = 0xa0;
		if (b == 0xed)
			*hi = 0x9f;
		return 3;
	}
	if (b >= 0xf0 && b <= 0xf4) {
		if (b == 0xf0)
			*lo = 0x90;
		if (b == 0xf4)
			*hi = 0x8f;
		return 4;
	}
	return 0;
}

/*
 * How many bytes of s[0..len) form a valid prefix of the sequence that
 * s[0] starts: the whole sequence if complete, fewer if it is cut short
 * by the end of input or by a byte that does not fit.
 */
static size_t
utf8_valid_prefix(const unsigned char *s, size_t len, size_t need)
{
	unsigned char	lo, hi;
	size_t		i;

	(void)utf8_lead(s[0], &lo, &hi);
	for (i = 1; i < need && i < len; i++) {
		if (s[i] < lo || s[i] > hi)
			return i;
		lo = 0x80;
		hi = 0xbf;
	}
	return i;
}

static int
decode_utf8(struct nc__decoder *d, const unsigned char *in, size_t len,
    struct evbuffer *out)
{
	unsigned char	lo, hi;
	size_t		i = 0, run = 0, need, valid, take;
	int		rc;

	/* Finish a character cut by the previous read. */
	while (d->npending > 0 && i < len) {
		d->pending[d->npending] = in[i];
		valid = utf8_valid_prefix(d->pending, d->npending + 1, d->need);
		if (valid < d->npending + 1) {
			/* The new byte does not fit: the cut char is bad. */
			d->npending = 0;
			if ((rc = put(out, replacement, 3)) != 0)
				return rc;
			break;
		}
		d->npending++;
		i++;
		if (d->npending == d->need) {
			if ((rc = put(out, d->pending, d->need)) != 0)
				return rc;
			d->npending = 0;
		}
	}
	if (d->npending > 0)
		return 0;	/* still incomplete: all input taken */

	run = i;
	while (i < len) {
		if (in[i] < 0x80) {
			i++;
			continue;
		}
		need = utf8_lead(in[i], &lo, &hi);
		if (need == 0) {
			valid = 0;
			take = 1;
		} else {
			valid = utf8_valid_prefix(in + i, len - i, need);
			if (valid == need) {
				i += need;
				continue;
			}
			if (i + valid == len) {
				/* Cut by the end of this read: keep it. */
				if ((rc = put(out, in + run, i - run)) != 0)
					return rc;
				memcpy(d->pending, in + i, valid);
				d->npending = valid;
				d->need = need;
				return 0;
			}
			take = valid;	/* the maximal subpart */
		}
		if ((rc = put(out, in + run, i - run)) != 0 ||
		    (rc = put(out, replacement, 3)) != 0)
			return rc;
		i += take;
		run = i;
	}
	return put(out, in + run, i - run);
}

static int
decode_utf16le(struct nc__decoder *d, const unsigned char *in, size_t len,
    struct evbuffer *out)
{
	unsigned int	unit, low;
	size_t		i = 0;
	int		rc;

	while (i < len) {
		d->pending[d->npending++] = in[i++];
		if (d->npending == 2) {
			unit = d->pending[0] | (unsigned int)d->pending[1] << 8;
			if (unit >= 0xd800 && unit <= 0xdbff)
				continue;	/* wait for the low half */
			d->npending = 0;
			if ((rc = put_cp(out, unit)) != 0)
				return rc;
		} else if (d->npending == 4) {
			unit = d->pending[0] | (unsigned int)d->pending[1] << 8;
			low = d->pending[2] | (unsigned int)d->pending[3] << 8;
			d->npending = 0;
			if (low >= 0xdc00 && low <= 0xdfff) {
				if ((rc = put_cp(out, 0x10000 +
				    ((unit - 0xd800) << 10) + (low - 0xdc00))) != 0)
					return rc;
				continue;
			}
			/* A lone high surrogate, then whatever low is. */
			if ((rc = put_cp(out, unit)) != 0)
				return rc;
			d->pending[0] = d->pending[2];
			d->pending[1] = d->pending[3];
			d->npending = 2;
			if (low >= 0xd800 && low <= 0xdbff)
				continue;
			d->npending = 0;
			if ((rc = put_cp(out, low)) != 0)
				return rc;
		}
	}
	return 0;
}

static int
encode_base64(const unsigned char *in, size_t len, struct evbuffer *out)
{
	char	q[4];
	size_t	i;
	int	rc;

	for (i = 0; i + 3 <= len; i += 3) {
		q[0] = b64[in[i] >> 2];
		q[1] = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		q[2] = b64[((in[i + 1] & 0xf) << 2) | (in[i + 2] >> 6)];
		q[3] = b64[in[i + 2] & 0x3f];
		if ((rc = put(out, q, 4)) != 0)
			return rc;
	}
	if (len - i == 1) {
		q[0] = b64[in[i] >> 2];
		q[1] = b64[(in[i] & 3) << 4];
		q[2] = q[3] = '=';
		return put(out, q, 4);
	}
	if (len - i == 2) {
		q[0] = b64[in[i] >> 2];
		q[1] = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		q[2] = b64[(in[i + 1] & 0xf) << 2];
		q[3] = '=';
		return put(out, q, 4);
	}
	return 0;
}

static int
decode_base64(struct nc__decoder *d, const unsigned char *in, size_t len,
    struct evbuffer *out)
{
	unsigned char	group[3];
	size_t		i = 0;
	int		rc;

	/* Only whole 3-byte groups go out; the rest waits (StringDecoder). */
	while (d->npending > 0 && d->npending < 3 && i < len)
		d->pending[d->npending++] = in[i++];
	if (d->npending == 3) {
		memcpy(group, d->pending, 3);
		d->npending = 0;
		if ((rc = encode_base64(group, 3, out)) != 0)
			return rc;
	}
	if (d->npending > 0)
		return 0;
	len -= i;
	in += i;
	if ((rc = encode_base64(in, len - len % 3, out)) != 0)
		return rc;
	memcpy(d->pending, in + len - len % 3, len % 3);
	d->npending = len % 3;
	return 0;
}

int
nc__decoder_write(struct nc__decoder *d, const unsigned char *in, size_t len,
    struct evbuffer *out)
{
	static const char	hex[] = "0123456789abcdef";
	char			h[2];
	size_t			i;
	int			rc;

	switch (d->enc) {
	case NC__ENC_UTF8:
		return decode_utf8(d, in, len, out);
	case NC__ENC_UTF16LE:
		return decode_utf16le(d, in, len, out);
	case NC__ENC_BASE64:
		return decode_base64(d, in, len, out);
	case NC__ENC_HEX:
		for (i = 0; i < len; i++) {
			h[0] = hex[in[i] >> 4];
			h[1] = hex[in[i] & 0xf];
			if ((rc = put(out, h, 2)) != 0)
				return rc;
		}
		return 0;
	case NC__ENC_LATIN1:
	case NC__ENC_ASCII:
		for (i = 0; i < len; i++) {
			if ((rc = put_cp(out, d->enc == NC__ENC_ASCII ?
			    (in[i] & 0x7fu) : in[i])) != 0)
				return rc;
		}
		return 0;
	}
	return NC_ERR_UNKNOWN_ENCODING;
}

int
nc__decoder_end(struct nc__decoder *d, struct evbuffer *out)
{
	unsigned int	unit;
	int		rc = 0;

	if (d->npending == 0)
		return 0;
	switch (d->enc) {
	case NC__ENC_UTF8:
		rc = put(out, replacement, 3);
		break;
	case NC__ENC_UTF16LE:
		/* A lone high surrogate shows; an odd byte does not. */
		if (d->npending >= 2) {
			unit = d->pending[0] | (unsigned int)d->pending[1] << 8;
			rc = put_cp(out, unit);
		}
		break;
	case NC__ENC_BASE64:
		rc = encode_base64(d->pending, d->npending, out);
		break;
	default:
		break;
	}
	d->npending = 0;
	return rc;
}

/* The next code point of UTF-8 text; a bad byte is U+FFFD. */
static unsigned int
next_cp(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char	lo, hi;
	size_t		need, valid, k;
	unsigned int	cp;

	need = utf8_lead(s[*i], &lo, &hi);
	if (need == 1)
		return s[(*i)++];
	if (need == 0) {
		(*i)++;
		return 0xfffd;
	}
	valid = utf8_valid_prefix(s + *i, len - *i, need);
	if (valid < need) {
		*i += valid;
		return 0xfffd;
	}
	cp = s[*i] & (0x7f >> need);
	for (k = 1; k < need; k++)
		cp = (cp << 6) | (s[*i + k] & 0x3f);
	*i += need;
	return cp;
}

/* The value of hex digit c, or -1. */
int
nc__hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int
nc__encode_string(enum nc__encoding enc, const char *str, size_t len,
    struct evbuffer *out)
{
	const unsigned char	*s = (const unsigned char *)str;
	unsigned char		 b[4];
	unsigned int		 cp, acc = 0;
	size_t			 i = 0;
	int			 hi, lo, v, bits = 0, rc;

	switch (enc) {
	case NC__ENC_UTF8:
		return put(out, s, len);
	case NC__ENC_HEX:
		/* Pairs of hex digits, up to the first pair that is not. */
		for (i = 0; i + 1 < len; i += 2) {
			if ((hi = nc__hex_value(s[i])) < 0 ||
			    (lo = nc__hex_value(s[i + 1])) < 0)
				break;
			b[0] = (unsigned char)(hi << 4 | lo);
			if ((rc = put(out, b, 1)) != 0)
				return rc;
		}
		return 0;
	case NC__ENC_BASE64:
		/* Lenient, as Node: url-safe letters too, others skipped. */
		for (i = 0; i < len && s[i] != '='; i++) {
			if ((v = b64_value(s[i])) < 0)
				continue;
			acc = (acc << 6) | (unsigned int)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				b[0] = (unsigned char)(acc >> bits);
				if ((rc = put(out, b, 1)) != 0)
					return rc;
			}
		}
		return 0;
	case NC__ENC_LATIN1:
	case NC__ENC_ASCII:
		/* The low byte of each UTF-16 unit, as JavaScript strings. */
		while (i < len) {
			cp = next_cp(s, len, &i);
			if (cp >= 0x10000) {
				cp -= 0x10000;
				b[0] = (unsigned char)((0xd800 + (cp >> 10)) & 0xff);
				b[1] = (unsigned char)(cp & 0xff);
				rc = put(out, b, 2);
			} else {
				b[0] = (unsigned char)(cp & 0xff);
				rc = put(out, b, 1);
			}
			if (rc != 0)
				return rc;
		}
		return 0;
	case NC__ENC_UTF16LE:
		while (i < len) {
			cp = next_cp(s, len, &i);
			if (cp >= 0x10000) {
				cp -= 0x10000;
				b[0] = (unsigned char)((0xd800 + (cp >> 10)) & 0xff);
				b[1] = (unsigned char)((0xd800 + (cp >> 10)) >> 8);
				b[2] = (unsigned char)((0xdc00 + (cp & 0x3ff)) &
				    0xff);
				b[3] = (unsigned char)((0xdc00 + (cp & 0x3ff)) >>
				    8);
				rc = put(out, b, 4);
			} else {
				b[0] = (unsigned char)(cp & 0xff);
				b[1] = (unsigned char)(cp >> 8);
				rc = put(out, b, 2);
			}
			if (rc != 0)
				return rc;
		}
		return 0;
	}
	return NC_ERR_UNKNOWN_ENCODING;
}
