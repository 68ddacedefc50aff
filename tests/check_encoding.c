/*
 * Encodings: decoding as Node's StringDecoder does (characters and base64
 * groups never cut across reads, invalid bytes replaced as Node replaces
 * them) and encoding strings as Buffer.from(string, encoding). Every
 * expected value is what Node v20 answers for the same input and splits.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "helpers.h"
#include "nc-int.h"

struct decode_vector {
	const char	*encoding;
	const char	*in;
	size_t		 len;
	size_t		 splits[4];	/* write boundaries */
	size_t		 nsplits;
	const char	*out;		/* UTF-8 */
	size_t		 outlen;
};

struct encode_vector {
	const char	*encoding;
	const char	*in;		/* UTF-8 */
	const char	*out;
	size_t		 outlen;
};

static const struct decode_vector decode_vectors[] = {
	{ "utf8", "\xe2\x82\xac", 3, { 1, 2 }, 2, "\xe2\x82\xac", 3 },
	{ "utf8", "\xe2\x82\xac", 3, { 0 }, 0, "\xe2\x82\xac", 3 },
	{ "utf8", "\xf0\x9f\x98\x80", 4, { 1, 2, 3 }, 3, "\xf0\x9f\x98\x80", 4 },
	{ "utf8", "\xf0\x9f\x98", 3, { 0 }, 0, "\xef\xbf\xbd", 3 },
	{ "utf8", "\xe2\x82", 2, { 0 }, 0, "\xef\xbf\xbd", 3 },
	{ "utf8", "\xc3\xa9", 2, { 1 }, 1, "\xc3\xa9", 2 },
	{ "utf8", "\xff", 1, { 0 }, 0, "\xef\xbf\xbd", 3 },
	{ "utf8", "\xc0\xaf", 2, { 0 }, 0, "\xef\xbf\xbd\xef\xbf\xbd", 6 },
	{ "utf8", "\xed\xa0\x80", 3, { 0 }, 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9 },
	{ "utf8", "\xe2\xe2\x82\xac", 4, { 1 }, 1, "\xef\xbf\xbd\xe2\x82\xac", 6 },
	{ "utf8", "\xf0\x90\x80\x80", 4, { 2 }, 1, "\xf0\x90\x80\x80", 4 },
	{ "utf8", "\xf4\x90\x80\x80", 4, { 0 }, 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12 },
	{ "utf8", "\x61\xe2\x82", 3, { 0 }, 0, "\x61\xef\xbf\xbd", 4 },
	{ "utf8", "\xe2\x82\x61", 3, { 0 }, 0, "\xef\xbf\xbd\x61", 4 },
	{ "utf8", "\x48\x65\x6c\x6c\x6f", 5, { 2 }, 1, "\x48\x65\x6c\x6c\x6f", 5 },
	{ "utf8", "\xc2", 1, { 0 }, 0, "\xef\xbf\xbd", 3 },
	{ "utf8", "\xf8\xa1\xa1\xa1\xa1", 5, { 0 }, 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 15 },
	{ "utf16le", "\x41\x00", 2, { 1 }, 1, "\x41", 1 },
	{ "utf16le", "\x3d\xd8\x00\xde", 4, { 1, 2, 3 }, 3, "\xf0\x9f\x98\x80", 4 },
	{ "utf16le", "\x3d\xd8", 2, { 0 }, 0, "\xef\xbf\xbd", 3 },
	{ "utf16le", "\x3d\xd8\x41\x00", 4, { 0 }, 0, "\xef\xbf\xbd\x41", 4 },
	{ "utf16le", "\x00\xde", 2, { 0 }, 0, "\xef\xbf\xbd", 3 },
	{ "utf16le", "\x41\x00\x42", 3, { 0 }, 0, "\x41", 1 },
	{ "base64", "\x68\x65\x6c\x6c\x6f", 5, { 1, 4 }, 2, "\x61\x47\x56\x73\x62\x47\x38\x3d", 8 },
	{ "base64", "\x01", 1, { 0 }, 0, "\x41\x51\x3d\x3d", 4 },
	{ "base64", "\x01\x02", 2, { 0 }, 0, "\x41\x51\x49\x3d", 4 },
	{ "base64", "\x01\x02\x03", 3, { 1, 2 }, 2, "\x41\x51\x49\x44", 4 },
	{ "base64", "", 0, { 0 }, 0, "", 0 },
	{ "hex", "\x00\xff\x10\xab", 4, { 2 }, 1, "\x30\x30\x66\x66\x31\x30\x61\x62", 8 },
	{ "latin1", "\x41\xe9\xff\x80", 4, { 0 }, 0, "\x41\xc3\xa9\xc3\xbf\xc2\x80", 7 },
	{ "ascii", "\x41\xe9\xff\x80", 4, { 0 }, 0, "\x41\x69\x7f\x00", 4 },
	{ "binary", "\xe9", 1, { 0 }, 0, "\xc3\xa9", 2 },
	{ "ucs2", "\xe9\x00", 2, { 1 }, 1, "\xc3\xa9", 2 },
	{ "UTF-8", "\xe2\x82\xac", 3, { 1 }, 1, "\xe2\x82\xac", 3 },
};

static const struct encode_vector encode_vectors[] = {
	{ "utf8", "\x68\xe2\x82\xac\x6c\x6c\x6f", "\x68\xe2\x82\xac\x6c\x6c\x6f", 7 },
	{ "hex", "\x30\x30\x66\x66\x31\x30\x41\x42", "\x00\xff\x10\xab", 4 },
	{ "hex", "\x30\x67", "", 0 },
	{ "hex", "\x61\x62\x63", "\xab", 1 },
	{ "hex", "\x7a\x7a\x30\x30", "", 0 },
	{ "base64", "\x61\x47\x56\x73\x62\x47\x38\x3d", "\x68\x65\x6c\x6c\x6f", 5 },
	{ "base64", "\x61\x47\x56\x73\x62\x47\x38", "\x68\x65\x6c\x6c\x6f", 5 },
	{ "base64", "\x61\x47\x56\x20\x73\x62\x47\x38\x3d", "\x68\x65\x6c\x6c\x6f", 5 },
	{ "base64", "\x5f\x2d\x38", "\xff\xef", 2 },
	{ "base64", "\x51\x55\x3d\x4a\x44", "\x41", 1 },
	{ "base64", "\x51", "", 0 },
	{ "latin1", "\xc3\xa9\xe2\x82\xac\xc3\xbf", "\xe9\xac\xff", 3 },
	{ "ascii", "\x41\xc3\xa9", "\x41\xe9", 2 },
	{ "binary", "\xc3\xbf", "\xff", 1 },
	{ "utf16le", "\x41\xe2\x82\xac", "\x41\x00\xac\x20", 4 },
	{ "utf16le", "\xf0\x9f\x98\x80", "\x3d\xd8\x00\xde", 4 },
	{ "ucs2", "\x68\x69", "\x68\x00\x69\x00", 4 },
	{ "latin1", "\xf0\x9f\x98\x80", "\x3d\x00", 2 },
};
static void
assert_buffer(struct evbuffer *b, const char *want, size_t len,
    const char *what)
{
	unsigned char	*got;

	ck_assert_msg(evbuffer_get_length(b) == len, "%s: %zu bytes, want %zu",
	    what, evbuffer_get_length(b), len);
	got = evbuffer_pullup(b, -1);
	ck_assert_msg(len == 0 || memcmp(got, want, len) == 0,
	    "%s: wrong bytes", what);
}

START_TEST(test_decode_as_string_decoder)
{
	const struct decode_vector	*v = &decode_vectors[_i];
	struct nc__decoder		 d;
	enum nc__encoding		 enc;
	struct evbuffer			*out = evbuffer_new();
	size_t				 pos = 0, k;
	char				 what[64];

	snprintf(what, sizeof what, "decode_vectors[%d] (%s)", _i,
	    v->encoding);
	ck_assert_int_eq(nc__encoding_parse(v->encoding, &enc), 0);
	nc__decoder_init(&d, enc);
	for (k = 0; k < v->nsplits; k++) {
		ck_assert_int_eq(nc__decoder_write(&d,
		    (const unsigned char *)v->in + pos, v->splits[k] - pos,
		    out), 0);
		pos = v->splits[k];
	}
	ck_assert_int_eq(nc__decoder_write(&d, (const unsigned char *)v->in +
	    pos, v->len - pos, out), 0);
	ck_assert_int_eq(nc__decoder_end(&d, out), 0);
	assert_buffer(out, v->out, v->outlen, what);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_split_never_cuts)
{
	/* The euro sign one byte at a time: nothing, nothing, then all. */
	static const unsigned char	euro[] = { 0xe2, 0x82, 0xac };
	struct nc__decoder		d;
	struct evbuffer			*out = evbuffer_new();

	nc__decoder_init(&d, NC__ENC_UTF8);
	ck_assert_int_eq(nc__decoder_write(&d, euro, 1, out), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	ck_assert_int_eq(nc__decoder_write(&d, euro + 1, 1, out), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	ck_assert_int_eq(nc__decoder_write(&d, euro + 2, 1, out), 0);
	assert_buffer(out, "\xe2\x82\xac", 3, "euro");
	ck_assert_int_eq(nc__decoder_end(&d, out), 0);
	assert_buffer(out, "\xe2\x82\xac", 3, "euro after end");
	evbuffer_free(out);
}
END_TEST

START_TEST(test_encode_as_buffer_from)
{
	const struct encode_vector	*v = &encode_vectors[_i];
	enum nc__encoding		 enc;
	struct evbuffer			*out = evbuffer_new();
	char				 what[64];

	snprintf(what, sizeof what, "encode_vectors[%d] (%s)", _i,
	    v->encoding);
	ck_assert_int_eq(nc__encoding_parse(v->encoding, &enc), 0);
	ck_assert_int_eq(nc__encode_string(enc, v->in, strlen(v->in), out), 0);
	assert_buffer(out, v->out, v->outlen, what);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_names)
{
	static const struct {
		const char		*name;
		enum nc__encoding	 enc;
	} ok[] = {
		{ "utf8", NC__ENC_UTF8 }, { "UTF-8", NC__ENC_UTF8 },
		{ "hex", NC__ENC_HEX }, { "Base64", NC__ENC_BASE64 },
		{ "latin1", NC__ENC_LATIN1 }, { "binary", NC__ENC_LATIN1 },
		{ "ascii", NC__ENC_ASCII }, { "utf16le", NC__ENC_UTF16LE },
		{ "utf-16le", NC__ENC_UTF16LE }, { "ucs2", NC__ENC_UTF16LE },
		{ "UCS-2", NC__ENC_UTF16LE },
	};
	static const char *const bad[] = { "utf-16", "utf32", "", "latin-1",
	    "base 64", "hex " };
	enum nc__encoding	enc;
	size_t			i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		ck_assert_int_eq(nc__encoding_parse(ok[i].name, &enc), 0);
		ck_assert_int_eq(enc, ok[i].enc);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_int_eq(nc__encoding_parse(bad[i], &enc),
		    NC_ERR_UNKNOWN_ENCODING);
	ck_assert_int_eq(nc__encoding_parse(NULL, &enc),
	    NC_ERR_UNKNOWN_ENCODING);
}
END_TEST

START_TEST(test_round_trips)
{
	static const enum nc__encoding	 encs[] = { NC__ENC_UTF8, NC__ENC_HEX,
	    NC__ENC_BASE64, NC__ENC_UTF16LE };
	static const char		 text[] = "h\xc3\xa9llo \xe2\x82\xac "
	    "\xf0\x9f\x98\x80 world";
	struct nc__decoder		 d;
	struct evbuffer			*bytes, *back, *decoded;
	unsigned char			*p;
	size_t				 i, k, n;

	/* text -> bytes in enc -> (decode enc) -> text, split everywhere. */
	for (i = 0; i < sizeof encs / sizeof encs[0]; i++) {
		bytes = evbuffer_new();
		ck_assert_int_eq(nc__encode_string(NC__ENC_UTF8, text,
		    strlen(text), bytes), 0);
		back = evbuffer_new();
		decoded = evbuffer_new();
		n = evbuffer_get_length(bytes);
		p = evbuffer_pullup(bytes, -1);
		/* Bytes -> text in encs[i] -> bytes again. */
		nc__decoder_init(&d, encs[i]);
		for (k = 0; k < n; k++)
			ck_assert_int_eq(nc__decoder_write(&d, p + k, 1,
			    decoded), 0);
		ck_assert_int_eq(nc__decoder_end(&d, decoded), 0);
		ck_assert_int_eq(evbuffer_add(decoded, "", 1), 0);
		ck_assert_int_eq(nc__encode_string(encs[i],
		    (char *)evbuffer_pullup(decoded, -1),
		    evbuffer_get_length(decoded) - 1, back), 0);
		ck_assert_msg(encs[i] == NC__ENC_UTF16LE ||
		    (evbuffer_get_length(back) == n &&
		    memcmp(evbuffer_pullup(back, -1), p, n) == 0),
		    "round trip %zu", i);
		evbuffer_free(bytes);
		evbuffer_free(back);
		evbuffer_free(decoded);
	}
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("encoding");
	TCase	*tc = tcase_create("core");

	tcase_add_loop_test(tc, test_decode_as_string_decoder, 0,
	    (int)(sizeof decode_vectors / sizeof decode_vectors[0]));
	tcase_add_loop_test(tc, test_encode_as_buffer_from, 0,
	    (int)(sizeof encode_vectors / sizeof encode_vectors[0]));
	tcase_add_test(tc, test_split_never_cuts);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_round_trips);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
