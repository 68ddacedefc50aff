/*
 * socket.setEncoding()'s decoders: the first byte picks the encoding, the
 * second where to cut the rest into two writes. Text decoded in two
 * pieces is the text decoded at once (nothing lost at a cut, as Node's
 * StringDecoder), and string writes (Buffer.from) take any text.
 */

#include <event2/buffer.h>

#include "fuzz.h"
#include "nc-int.h"

static void
decode(enum nc__encoding enc, const uint8_t *p, size_t len, size_t cut,
    struct evbuffer *out)
{
	struct nc__decoder	d;

	nc__decoder_init(&d, enc);
	FUZZ_ASSERT(nc__decoder_write(&d, p, cut, out) == 0);
	FUZZ_ASSERT(nc__decoder_write(&d, p + cut, len - cut, out) == 0);
	FUZZ_ASSERT(nc__decoder_end(&d, out) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer		*whole, *split, *bytes;
	enum nc__encoding	 enc;
	size_t			 len, cut;
	const uint8_t		*p;

	if (size < 2)
		return 0;
	enc = (enum nc__encoding)(data[0] % (NC__ENC_UTF16LE + 1));
	p = data + 2;
	len = size - 2;
	cut = len == 0 ? 0 : data[1] % (len + 1);
	whole = evbuffer_new();
	split = evbuffer_new();
	bytes = evbuffer_new();
	FUZZ_ASSERT(whole != NULL && split != NULL && bytes != NULL);
	decode(enc, p, len, len, whole);
	decode(enc, p, len, cut, split);
	FUZZ_ASSERT(evbuffer_get_length(whole) == evbuffer_get_length(split));
	FUZZ_ASSERT(evbuffer_get_length(whole) == 0 ||
	    memcmp(evbuffer_pullup(whole, -1), evbuffer_pullup(split, -1),
	    evbuffer_get_length(whole)) == 0);
	FUZZ_ASSERT(nc__encode_string(enc, (const char *)p, len, bytes) == 0);
	evbuffer_free(whole);
	evbuffer_free(split);
	evbuffer_free(bytes);
	return 0;
}
