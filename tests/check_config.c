/*
 * netcluster.json: defaults, every listen form, and a table of bad
 * configs with the exact error each must give.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "nc-config.h"

static struct nc_config *
parse_ok(const char *text)
{
	struct nc_config	*cfg = NULL;
	char			*errors = NULL;

	if (nc_config_parse("t.json", text, strlen(text), &cfg, &errors) != 0)
		ck_abort_msg("unexpected errors:\n%s", errors);
	ck_assert_ptr_null(errors);
	return cfg;
}

START_TEST(test_defaults)
{
	struct nc_config	*cfg;
	struct nc_service	*s;
	long			 ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	cfg = parse_ok("{\"services\": [{\"name\": \"echo\", "
	    "\"listen\": [\"8124\"]}]}");
	ck_assert_int_eq(cfg->workers, ncpu > 0 ? ncpu : 1);
	ck_assert_ptr_null(cfg->user);
	ck_assert_ptr_null(cfg->group);
	ck_assert_str_eq(cfg->control_socket, "/run/netcluster/control.sock");
	ck_assert_int_eq(cfg->log_level, NC_LOG_INFO);
	ck_assert_int_eq(cfg->shutdown_timeout_ms, 30000);
	ck_assert_uint_eq(cfg->nservices, 1);
	s = &cfg->services[0];
	ck_assert_str_eq(s->name, "echo");
	ck_assert_int_eq(s->handler, NC_HANDLER_ECHO);
	ck_assert_int_eq(s->mode, NC_MODE_SHARED);
	ck_assert_int_eq(s->backlog, 511);
	ck_assert_int_eq(s->max_connections, 0);
	ck_assert(!s->allow_half_open);
	ck_assert(!s->pause_on_connect);
	ck_assert_int_eq(s->idle_timeout_ms, 0);
	ck_assert(s->no_delay);
	ck_assert(!s->keep_alive);
	ck_assert_int_eq(s->keep_alive_initial_delay_ms, 0);
	ck_assert_uint_eq(s->nlisten, 1);
	ck_assert_int_eq(s->listen[0].kind, NC_LISTEN_TCP);
	ck_assert_ptr_null(s->listen[0].host);
	ck_assert_int_eq(s->listen[0].port, 8124);
	nc_config_free(cfg);
}
END_TEST

START_TEST(test_every_key)
{
	struct nc_config	*cfg;
	struct nc_service	*s;

	cfg = parse_ok("{\"workers\": 3, \"user\": \"nobody\", "
	    "\"group\": \"nogroup\", \"control_socket\": \"/tmp/c.sock\", "
	    "\"log_level\": \"debug\", \"shutdown_timeout_ms\": 500, "
	    "\"services\": [{\"name\": \"p\", \"handler\": \"proxy\", "
	    "\"upstream\": [\"127.0.0.1:9000\", \"[::1]:9001\", "
	    "\"unix:/tmp/u.sock\"], \"listen\": [\"0\"], "
	    "\"mode\": \"round-robin\", \"backlog\": 16, "
	    "\"max_connections\": 7, \"allow_half_open\": true, "
	    "\"pause_on_connect\": true, \"idle_timeout_ms\": 1000, "
	    "\"no_delay\": false, \"keep_alive\": true, "
	    "\"keep_alive_initial_delay_ms\": 2000, \"options\": {\"x\": 1}}, "
	    "{\"name\": \"m\", \"handler\": \"module\", \"module\": "
	    "\"/usr/lib/x.so\", \"listen\": [\"fd:3\"], \"mode\": \"reuseport\"},"
	    "{\"name\": \"x\", \"listen\": [\"systemd:web\"], "
	    "\"mode\": \"exclusive\"}]}");
	ck_assert_int_eq(cfg->workers, 3);
	ck_assert_str_eq(cfg->user, "nobody");
	ck_assert_str_eq(cfg->group, "nogroup");
	ck_assert_str_eq(cfg->control_socket, "/tmp/c.sock");
	ck_assert_int_eq(cfg->log_level, NC_LOG_DEBUG);
	ck_assert_int_eq(cfg->shutdown_timeout_ms, 500);
	ck_assert_uint_eq(cfg->nservices, 3);
	s = &cfg->services[0];
	ck_assert_int_eq(s->handler, NC_HANDLER_PROXY);
	ck_assert_uint_eq(s->nupstream, 3);
	ck_assert_str_eq(s->upstream[1], "[::1]:9001");
	ck_assert_int_eq(s->mode, NC_MODE_ROUND_ROBIN);
	ck_assert_int_eq(s->backlog, 16);
	ck_assert_int_eq(s->max_connections, 7);
	ck_assert(s->allow_half_open && s->pause_on_connect && s->keep_alive);
	ck_assert(!s->no_delay);
	ck_assert_int_eq(s->idle_timeout_ms, 1000);
	ck_assert_int_eq(s->keep_alive_initial_delay_ms, 2000);
	ck_assert_ptr_nonnull(s->options);
	ck_assert_int_eq(json_integer_value(json_object_get(s->options, "x")),
	    1);
	s = &cfg->services[1];
	ck_assert_int_eq(s->handler, NC_HANDLER_MODULE);
	ck_assert_str_eq(s->module, "/usr/lib/x.so");
	ck_assert_int_eq(s->listen[0].kind, NC_LISTEN_FD);
	ck_assert_int_eq(s->listen[0].fd, 3);
	ck_assert_int_eq(s->mode, NC_MODE_REUSEPORT);
	s = &cfg->services[2];
	ck_assert_int_eq(s->listen[0].kind, NC_LISTEN_SYSTEMD);
	ck_assert_str_eq(s->listen[0].name, "web");
	ck_assert_int_eq(s->mode, NC_MODE_EXCLUSIVE);
	nc_config_free(cfg);
}
END_TEST

/*
 * Two listen strings: the same address as written (what a worker asks
 * the master for), and one the kernel would bind twice (what two
 * services may not both listen on).
 */
START_TEST(test_listen_equal_same)
{
	static const struct {
		const char	*a, *b;
		bool		 equal, same;
	} cases[] = {
		{ "127.0.0.1:0", "127.0.0.1:0", true, false },
		{ "8124", "8124", true, true },
		{ "8124", "0.0.0.0:8124", false, true },
		{ "0.0.0.0:8124", "127.0.0.1:8124", false, true },
		{ "[::]:8124", "127.0.0.1:8124", false, true },
		{ "127.0.0.1:8124", "127.0.0.2:8124", false, false },
		{ "127.0.0.1:8124", "127.0.0.1:8125", false, false },
		{ "unix:/tmp/a", "unix:/tmp/a", true, true },
		{ "unix:/tmp/a", "unix:/tmp/b", false, false },
		{ "fd:3", "fd:3", true, true },
		{ "systemd:web", "systemd:web", true, true },
		{ "systemd:web", "fd:3", false, false },
	};
	struct nc_listen_addr	a, b;
	char			err[256];
	size_t			i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ck_assert_int_eq(nc_config_parse_listen(cases[i].a, &a, err,
		    sizeof err), 0);
		ck_assert_int_eq(nc_config_parse_listen(cases[i].b, &b, err,
		    sizeof err), 0);
		ck_assert_msg(nc_config_listen_equal(&a, &b) == cases[i].equal,
		    "equal(%s, %s)", cases[i].a, cases[i].b);
		ck_assert_msg(nc_config_listen_same(&a, &b) == cases[i].same,
		    "same(%s, %s)", cases[i].a, cases[i].b);
		nc_config_listen_clear(&a);
		nc_config_listen_clear(&b);
	}
}
END_TEST

START_TEST(test_listen_forms)
{
	static const struct {
		const char		*text;
		enum nc_listen_kind	 kind;
		const char		*host;
		int			 port;
		const char		*path;
	} ok[] = {
		{ "0", NC_LISTEN_TCP, NULL, 0, NULL },
		{ "65535", NC_LISTEN_TCP, NULL, 65535, NULL },
		{ "127.0.0.1:80", NC_LISTEN_TCP, "127.0.0.1", 80, NULL },
		{ "localhost:0", NC_LISTEN_TCP, "localhost", 0, NULL },
		{ "[::1]:8124", NC_LISTEN_TCP, "::1", 8124, NULL },
		{ "[::]:1", NC_LISTEN_TCP, "::", 1, NULL },
		{ "unix:/tmp/x.sock", NC_LISTEN_UNIX, NULL, 0, "/tmp/x.sock" },
		{ "unix:rel.sock", NC_LISTEN_UNIX, NULL, 0, "rel.sock" },
		{ "a1.b2:80", NC_LISTEN_TCP, "a1.b2", 80, NULL },
		{ "123.example:80", NC_LISTEN_TCP, "123.example", 80, NULL },
	};
	static const char *const bad[] = {
		"", "65536", "-1", "1.2.3.4", "1.2.3.4:", ":80", "::1:80",
		"[::1]80", "[::1]:", "[1.2.3.4]:80", "[::1:80", "host name:80",
		"unix:", "fd:", "fd:2", "fd:x", "fd:3x", "systemd:", "80 ",
		" 80", "1.2.3.4:99999", "0x50", "+80", "a:b:80",
		/* Dotted numbers are an address or nothing, never a name. */
		"300.1.1.1:80", "1.2.3:80", "10.0.0.256:1", "a.b.123:80",
	};
	struct nc_listen_addr	a;
	char			err[256];
	size_t			i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		ck_assert_msg(nc_config_parse_listen(ok[i].text, &a, err,
		    sizeof err) == 0, "%s: %s", ok[i].text, err);
		ck_assert_int_eq(a.kind, ok[i].kind);
		ck_assert_int_eq(a.port, ok[i].port);
		if (ok[i].host == NULL)
			ck_assert_ptr_null(a.host);
		else
			ck_assert_str_eq(a.host, ok[i].host);
		if (ok[i].path != NULL)
			ck_assert_str_eq(a.path, ok[i].path);
		ck_assert_str_eq(a.text, ok[i].text);
		nc_config_listen_clear(&a);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(nc_config_parse_listen(bad[i], &a, err,
		    sizeof err) == -1, "\"%s\" accepted", bad[i]);
		ck_assert_msg(strstr(err, bad[i]) != NULL, "%s: %s", bad[i],
		    err);
	}
}
END_TEST

/* Each bad config and the exact first line of its errors. */
static const struct {
	const char	*text;
	const char	*error;
} bad_configs[] = {
	{ "",
	  "t.json:1:0: '[' or '{' expected near end of file" },
	{ "{\"services\": [}",
	  "t.json:1:15: unexpected token near '}'" },
	{ "[]",
	  "t.json:1:1: expected an object at the top, got an array" },
	{ "{}",
	  "t.json:1:1: missing key \"services\"" },
	{ "{\"services\": []}",
	  "t.json:1:14: services: expected a non-empty array, got []" },
	{ "{\"services\": {}}",
	  "t.json:1:14: services: expected a non-empty array, got {}" },
	{ "{\"services\": [1]}",
	  "t.json:1:15: services[0]: expected an object, got an integer" },
	{ "{\"workers\": 0, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:13: workers: expected an integer from 1 to 1024, got 0" },
	{ "{\"workers\": \"2\", \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:13: workers: expected an integer from 1 to 1024, got \"2\"" },
	{ "{\"workers\": 2.5, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:13: workers: expected an integer from 1 to 1024, got 2.5" },
	{ "{\"log_level\": \"loud\", \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:15: log_level: expected one of err, warning, notice, info, debug, error, got \"loud\"" },
	{ "{\"shutdown_timeout_ms\": -1, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:25: shutdown_timeout_ms: expected an integer from 0 to 3600000, got -1" },
	{ "{\"user\": \"\", \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:10: user: expected a non-empty string of at most 64 bytes, got \"\"" },
	{ "{\"colour\": 1, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:2: colour: unknown key" },
	{ "{\"services\": [{\"name\": \"e\",\n  \"listen\": [\"1\"],\n  \"mode\": \"rr\"}]}",
	  "t.json:3:11: services[0].mode: expected one of shared, round-robin, exclusive, reuseport, got \"rr\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"handler\": \"http\"}]}",
	  "t.json:1:57: services[0].handler: expected one of echo, proxy, module, program, got \"http\"" },
	{ "{\"services\": [{\"listen\": [\"1\"]}]}",
	  "t.json:1:15: services[0]: missing key \"name\"" },
	{ "{\"services\": [{\"name\": \"e\"}]}",
	  "t.json:1:15: services[0]: missing key \"listen\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": []}]}",
	  "t.json:1:39: services[0].listen: expected a non-empty array, got []" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [80]}]}",
	  "t.json:1:40: services[0].listen[0]: expected a string, got 80" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\", \"70000\"]}]}",
	  "t.json:1:45: services[0].listen[1]: expected PORT, HOST:PORT, [V6]:PORT, unix:PATH, fd:N or systemd:NAME with a port from 0 to 65535, got \"70000\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"backlog\": 0}]}",
	  "t.json:1:57: services[0].backlog: expected an integer from 1 to 65535, got 0" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"no_delay\": \"yes\"}]}",
	  "t.json:1:58: services[0].no_delay: expected true or false, got \"yes\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"mdoe\": \"shared\"}]}",
	  "t.json:1:46: services[0].mdoe: unknown key" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"handler\": \"proxy\"}]}",
	  "t.json:1:15: services[0]: handler proxy needs \"upstream\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"handler\": \"proxy\", \"upstream\": [\"9000\"]}]}",
	  "t.json:1:79: services[0].upstream[0]: expected HOST:PORT, [V6]:PORT or unix:PATH with a port from 1 to 65535, got \"9000\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"handler\": \"module\"}]}",
	  "t.json:1:15: services[0]: handler module needs \"module\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"upstream\": [\"a:1\"]}]}",
	  "t.json:1:46: services[0].upstream: only the proxy handler takes \"upstream\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"balance\": \"random\"}]}",
	  "t.json:1:57: services[0].balance: expected one of round-robin, least-connections, got \"random\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"handler\": \"proxy\", \"upstream\": [\"a:1\"], \"connect_timeout_ms\": 0}]}",
	  "t.json:1:109: services[0].connect_timeout_ms: expected an integer from 1 to 3600000, got 0" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"proxy_protocol\": 1}]}",
	  "t.json:1:64: services[0].proxy_protocol: expected true or false, got 1" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"handler\": \"proxy\", \"upstream\": [\"a:1\"], \"send_proxy\": \"v3\"}]}",
	  "t.json:1:101: services[0].send_proxy: expected one of v1, v2, got \"v3\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"down_ms\": 5}]}",
	  "t.json:1:46: services[0].down_ms: only the proxy handler takes \"down_ms\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"options\": []}]}",
	  "t.json:1:57: services[0].options: expected an object, got an array" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"8124\"]},\n {\"name\": \"e\", \"listen\": [\"8125\"]}]}",
	  "t.json:2:11: services[1].name: duplicate service name \"e\" (also services[0])" },
	{ "{\"services\": [{\"name\": \"a\", \"listen\": [\"8124\"]},\n {\"name\": \"b\", \"listen\": [\"127.0.0.1:8124\"]}]}",
	  "t.json:2:27: services[1].listen[0]: \"127.0.0.1:8124\" overlaps \"8124\" of services[0] (a)" },
	{ "{\"services\": [{\"name\": \"a\", \"listen\": [\"unix:/tmp/a.sock\", \"unix:/tmp/a.sock\"]}]}",
	  "t.json:1:60: services[0].listen[1]: \"unix:/tmp/a.sock\" overlaps \"unix:/tmp/a.sock\" of services[0] (a)" },
	{ "{\"services\": [{\"name\": \"a\", \"listen\": [\"unix:/nonexistent-dir/a.sock\"]}]}",
	  "t.json:1:40: services[0].listen[0]: directory /nonexistent-dir of the unix socket does not exist" },
	{ "{\"services\": [{\"name\": \"a\", \"listen\": [\"1\"]}], \"services\": []}",
	  "t.json:1:57: duplicate object key near '\"services\"'" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\"}]}",
	  "t.json:1:15: services[0]: handler program needs \"command\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"bin/x\"]}]}",
	  "t.json:1:80: services[0].command[0]: expected an absolute path (no shell runs it), got \"bin/x\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"mode\": \"round-robin\"}]}",
	  "t.json:1:99: services[0].mode: mode round-robin needs a program linked with libnetcluster (\"sockets\": \"cluster\"); a program given its sockets (\"sockets\": \"inherit\", the default) runs in shared or reuseport mode" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"mode\": \"exclusive\"}]}",
	  "t.json:1:99: services[0].mode: mode exclusive needs a program linked with libnetcluster (\"sockets\": \"cluster\"); a program given its sockets (\"sockets\": \"inherit\", the default) runs in shared or reuseport mode" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"env\": {\"LISTEN_FDS\": \"1\"}}]}",
	  "t.json:1:99: services[0].env.LISTEN_FDS: netclusterd sets LISTEN_FDS itself" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"cwd\": \"tmp\"}]}",
	  "t.json:1:98: services[0].cwd: expected an absolute directory, got \"tmp\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"sockets\": \"library\"}]}",
	  "t.json:1:102: services[0].sockets: expected one of inherit, cluster, got \"library\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"idle_timeout_ms\": 5}]}",
	  "t.json:1:91: services[0].idle_timeout_ms: the program handler does not take \"idle_timeout_ms\": the program sets it itself" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"command\": [\"/bin/x\"]}]}",
	  "t.json:1:46: services[0].command: only the program handler takes \"command\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"workers\": 0}]}",
	  "t.json:1:57: services[0].workers: expected an integer from 1 to 1024, got 0" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"workers\": 1025}]}",
	  "t.json:1:57: services[0].workers: expected an integer from 1 to 1024, got 1025" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"workers\": \"2\"}]}",
	  "t.json:1:57: services[0].workers: expected an integer from 1 to 1024, got \"2\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"reload_batch\": 0}]}",
	  "t.json:1:62: services[0].reload_batch: expected an integer from 1 to 1024, got 0" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"reload_batch\": true}]}",
	  "t.json:1:62: services[0].reload_batch: expected an integer from 1 to 1024, got true" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"user\": \"\"}]}",
	  "t.json:1:54: services[0].user: expected a non-empty string of at most 64 bytes, got \"\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"group\": 5}]}",
	  "t.json:1:55: services[0].group: expected a non-empty string of at most 64 bytes, got 5" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"user\": \"u2345678901234567890123456789012345678901234567890123456789012345\"}]}",
	  "t.json:1:54: services[0].user: expected a non-empty string of at most 64 bytes, got \"u23456789012345678901234567890123456..." },
	{ "{\"metrics\": {}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:13: metrics: missing key \"listen\"" },
	{ "{\"metrics\": \"9273\", \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:13: metrics: expected an object, got a string" },
	{ "{\"metrics\": {\"listen\": \"70000\"}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:24: metrics.listen: expected PORT, HOST:PORT, [V6]:PORT, unix:PATH, fd:N or systemd:NAME with a port from 0 to 65535, got \"70000\"" },
	{ "{\"metrics\": {\"listen\": 9273}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:24: metrics.listen: expected a string, got an integer" },
	{ "{\"metrics\": {\"listen\": \"9273\", \"max_age_ms\": 60001}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:46: metrics.max_age_ms: expected an integer from 0 to 60000, got 60001" },
	{ "{\"metrics\": {\"listen\": \"9273\", \"weight\": 5}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:32: metrics.weight: unknown key" },
	{ "{\"agent\": {\"listen\": \"9274\", \"weight\": 257}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:40: agent.weight: expected an integer from 0 to 256, got 257" },
	{ "{\"agent\": {\"listen\": \"9274\", \"max_age_ms\": 5}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:30: agent.max_age_ms: unknown key" },
	{ "{\"metrics\": {\"listen\": \"127.0.0.1:8124\"}, \"services\": [{\"name\": \"e\", \"listen\": [\"8124\"]}]}",
	  "t.json:1:24: metrics.listen: \"127.0.0.1:8124\" overlaps \"8124\" of services[0] (e)" },
	{ "{\"metrics\": {\"listen\": \"9273\"}, \"agent\": {\"listen\": \"9273\"}, \"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}",
	  "t.json:1:53: agent.listen: \"9273\" overlaps the metrics listener \"9273\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"worker_timeout_ms\": -1}]}",
	  "t.json:1:67: services[0].worker_timeout_ms: expected an integer from 0 to 86400000, got -1" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"worker_timeout_ms\": 86400001}]}",
	  "t.json:1:67: services[0].worker_timeout_ms: expected an integer from 0 to 86400000, got 86400001" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"worker_timeout_ms\": \"2s\"}]}",
	  "t.json:1:67: services[0].worker_timeout_ms: expected an integer from 0 to 86400000, got \"2s\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"ready_timeout_ms\": 0}]}",
	  "t.json:1:66: services[0].ready_timeout_ms: expected an integer from 1 to 3600000, got 0" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"ready_timeout_ms\": 3600001}]}",
	  "t.json:1:66: services[0].ready_timeout_ms: expected an integer from 1 to 3600000, got 3600001" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"settle_ms\": -1}]}",
	  "t.json:1:104: services[0].settle_ms: expected an integer from 0 to 600000, got -1" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"settle_ms\": 600001}]}",
	  "t.json:1:104: services[0].settle_ms: expected an integer from 0 to 600000, got 600001" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"notify\": \"yes\"}]}",
	  "t.json:1:101: services[0].notify: expected true or false, got \"yes\"" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"notify\": true}]}",
	  "t.json:1:46: services[0].notify: only the program handler takes \"notify\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"ready_timeout_ms\": 5000, \"settle_ms\": 5000}]}",
	  "t.json:1:117: services[0].settle_ms: 5000 is not less than ready_timeout_ms (5000): a program is online once it lived settle_ms, and killed if not online within ready_timeout_ms" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"settle_ms\": 5}]}",
	  "t.json:1:46: services[0].settle_ms: only the program handler takes \"settle_ms\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"sockets\": \"cluster\", \"notify\": true}]}",
	  "t.json:1:113: services[0].notify: a program linked with libnetcluster (\"sockets\": \"cluster\") answers the master on its channel; \"notify\" is for \"sockets\": \"inherit\"" },
	{ "{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], \"handler\": \"program\", \"command\": [\"/bin/x\"], \"recycle\": {\"age_ms\": 1000, \"connections\": 100}}]}",
	  "t.json:1:119: services[0].recycle.connections: the master cannot count what a program on inherited sockets accepts; recycle it by age_ms or rss_mib" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"recycle\": {\"age_ms\": 1000, \"requests\": 100}}]}",
	  "t.json:1:74: services[0].recycle.requests: unknown key" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"recycle\": []}]}",
	  "t.json:1:57: services[0].recycle: expected an object, got an array" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"recycle\": {\"connections\": 0}}]}",
	  "t.json:1:73: services[0].recycle.connections: expected an integer from 1 to 2000000000, got 0" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"recycle\": {\"age_ms\": 2000000001}}]}",
	  "t.json:1:68: services[0].recycle.age_ms: expected an integer from 1 to 2000000000, got 2000000001" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"recycle\": {\"rss_mib\": 1048577}}]}",
	  "t.json:1:69: services[0].recycle.rss_mib: expected an integer from 1 to 1048576, got 1048577" },
	{ "{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], \"recycle\": {\"jitter_percent\": 101}}]}",
	  "t.json:1:76: services[0].recycle.jitter_percent: expected an integer from 0 to 100, got 101" },
};

START_TEST(test_endpoints)
{
	struct nc_config	*cfg;

	cfg = parse_ok("{\"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"1\"]}]}");
	ck_assert(!cfg->metrics.on);
	ck_assert(!cfg->agent.on);
	nc_config_free(cfg);
	cfg = parse_ok("{\"metrics\": {\"listen\": \"127.0.0.1:0\"}, "
	    "\"agent\": {\"listen\": \"unix:/tmp/agent.sock\", \"weight\": 50}, "
	    "\"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}");
	ck_assert(cfg->metrics.on);
	ck_assert_int_eq(cfg->metrics.listen.kind, NC_LISTEN_TCP);
	ck_assert_str_eq(cfg->metrics.listen.host, "127.0.0.1");
	ck_assert_int_eq(cfg->metrics.max_age_ms, 1000);
	ck_assert_int_eq(cfg->metrics.weight, -1);
	ck_assert(cfg->agent.on);
	ck_assert_int_eq(cfg->agent.listen.kind, NC_LISTEN_UNIX);
	ck_assert_str_eq(cfg->agent.listen.path, "/tmp/agent.sock");
	ck_assert_int_eq(cfg->agent.weight, 50);
	nc_config_free(cfg);
	/* Port 0 twice overlaps nothing: each binds a port of its own. */
	cfg = parse_ok("{\"metrics\": {\"listen\": \"0\", \"max_age_ms\": 0}, "
	    "\"agent\": {\"listen\": \"0\"}, \"services\": [{\"name\": \"e\", "
	    "\"listen\": [\"0\"]}]}");
	ck_assert_int_eq(cfg->metrics.max_age_ms, 0);
	nc_config_free(cfg);
}
END_TEST

/* Top-level workers, user and group are the services' defaults. */
START_TEST(test_service_pool)
{
	struct nc_config	*cfg;
	struct nc_service	*s;
	long			 ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	cfg = parse_ok("{\"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"1\"]}]}");
	s = &cfg->services[0];
	ck_assert_int_eq(s->workers, ncpu > 0 ? ncpu : 1);
	ck_assert(!s->has_workers);
	ck_assert_ptr_null(s->user);
	ck_assert_ptr_null(s->group);
	ck_assert_int_eq(s->reload_batch, 0);
	ck_assert_int_eq(s->uid, (uid_t)-1);
	ck_assert_int_eq(s->gid, (gid_t)-1);
	nc_config_free(cfg);

	cfg = parse_ok("{\"services\": [{\"name\": \"a\", \"listen\": [\"1\"]}, "
	    "{\"name\": \"b\", \"listen\": [\"2\"], \"workers\": 2, "
	    "\"user\": \"daemon\", \"reload_batch\": 5}, "
	    "{\"name\": \"c\", \"listen\": [\"3\"], \"workers\": 3, "
	    "\"group\": \"daemon\", \"reload_batch\": 1}], "
	    "\"workers\": 3, \"user\": \"nobody\", \"group\": \"nogroup\"}");
	ck_assert_int_eq(cfg->workers, 3);
	ck_assert_str_eq(cfg->user, "nobody");
	ck_assert_str_eq(cfg->group, "nogroup");
	s = &cfg->services[0];
	ck_assert_int_eq(s->workers, 3);
	ck_assert(!s->has_workers);
	ck_assert_str_eq(s->user, "nobody");
	ck_assert_str_eq(s->group, "nogroup");
	ck_assert_int_eq(s->reload_batch, 0);
	/* A batch larger than the pool is the whole pool. */
	s = &cfg->services[1];
	ck_assert_int_eq(s->workers, 2);
	ck_assert(s->has_workers);
	ck_assert_str_eq(s->user, "daemon");
	ck_assert_str_eq(s->group, "nogroup");
	ck_assert_int_eq(s->reload_batch, 5);
	/* Its own value, even the top-level one, is its own. */
	s = &cfg->services[2];
	ck_assert_int_eq(s->workers, 3);
	ck_assert(s->has_workers);
	ck_assert_str_eq(s->user, "nobody");
	ck_assert_str_eq(s->group, "daemon");
	ck_assert_int_eq(s->reload_batch, 1);
	ck_assert_int_eq(s->uid, (uid_t)-1);
	nc_config_free(cfg);
}
END_TEST

/* Program services stand beside built-in ones, any number of them. */
START_TEST(test_programs_beside)
{
	struct nc_config	*cfg;

	cfg = parse_ok("{\"services\": [{\"name\": \"p\", \"listen\": [\"1\"], "
	    "\"handler\": \"program\", \"command\": [\"/bin/x\"]},\n"
	    " {\"name\": \"e\", \"listen\": [\"2\"]},\n"
	    " {\"name\": \"q\", \"listen\": [\"3\"], \"handler\": \"program\", "
	    "\"command\": [\"/bin/y\", \"-v\"], \"sockets\": \"cluster\", "
	    "\"mode\": \"round-robin\", \"workers\": 2}]}");
	ck_assert_uint_eq(cfg->nservices, 3);
	ck_assert_int_eq(cfg->services[0].handler, NC_HANDLER_PROGRAM);
	ck_assert_int_eq(cfg->services[1].handler, NC_HANDLER_ECHO);
	ck_assert_int_eq(cfg->services[2].handler, NC_HANDLER_PROGRAM);
	ck_assert_str_eq(cfg->services[2].command[1], "-v");
	ck_assert_int_eq(cfg->services[2].workers, 2);
	nc_config_free(cfg);
}
END_TEST

/*
 * Supervision: worker_timeout_ms and ready_timeout_ms for every service,
 * notify and settle_ms for a program, recycle's limits off unless given
 * and its jitter 10% once "recycle" is. has_worker_timeout tells a
 * worker_timeout_ms of the service's own, even 0, from the default.
 */
START_TEST(test_supervision_keys)
{
	struct nc_config	*cfg;
	struct nc_service	*s;

	cfg = parse_ok("{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"]},"
	    "\n {\"name\": \"p\", \"listen\": [\"2\"], "
	    "\"handler\": \"program\", \"command\": [\"/bin/x\"]}]}");
	s = &cfg->services[0];
	ck_assert_int_eq(s->worker_timeout_ms, 30000);
	ck_assert(!s->has_worker_timeout);
	ck_assert_int_eq(s->ready_timeout_ms, 60000);
	ck_assert_int_eq(s->recycle.connections, 0);
	ck_assert_int_eq(s->recycle.age_ms, 0);
	ck_assert_int_eq(s->recycle.rss_mib, 0);
	ck_assert_int_eq(s->recycle.jitter_percent, 0);
	s = &cfg->services[1];
	ck_assert_int_eq(s->worker_timeout_ms, 30000);
	ck_assert(!s->has_worker_timeout);
	ck_assert_int_eq(s->ready_timeout_ms, 60000);
	ck_assert(!s->notify);
	ck_assert_int_eq(s->settle_ms, 1000);
	ck_assert_int_eq(s->recycle.jitter_percent, 0);
	nc_config_free(cfg);

	cfg = parse_ok("{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"], "
	    "\"worker_timeout_ms\": 2000, \"ready_timeout_ms\": 1, "
	    "\"recycle\": {\"connections\": 1000}},\n"
	    " {\"name\": \"f\", \"listen\": [\"2\"], \"worker_timeout_ms\": 0, "
	    "\"recycle\": {}},\n"
	    " {\"name\": \"g\", \"listen\": [\"3\"], "
	    "\"worker_timeout_ms\": 30000, \"ready_timeout_ms\": 3600000, "
	    "\"recycle\": {\"connections\": 2000000000, "
	    "\"age_ms\": 2000000000, \"rss_mib\": 1048576, "
	    "\"jitter_percent\": 100}},\n"
	    " {\"name\": \"p\", \"listen\": [\"4\"], \"handler\": \"program\", "
	    "\"command\": [\"/bin/x\"], \"notify\": true, \"settle_ms\": 0, "
	    "\"worker_timeout_ms\": 86400000, \"recycle\": {\"age_ms\": 60000, "
	    "\"rss_mib\": 512, \"jitter_percent\": 0}},\n"
	    " {\"name\": \"q\", \"listen\": [\"5\"], \"handler\": \"program\", "
	    "\"command\": [\"/bin/y\"], \"notify\": false, "
	    "\"settle_ms\": 600000, \"ready_timeout_ms\": 3600000},\n"
	    " {\"name\": \"c\", \"listen\": [\"6\"], \"handler\": \"program\", "
	    "\"command\": [\"/bin/z\"], \"sockets\": \"cluster\", "
	    "\"recycle\": {\"connections\": 5}}]}");
	s = &cfg->services[0];
	ck_assert_int_eq(s->worker_timeout_ms, 2000);
	ck_assert(s->has_worker_timeout);
	ck_assert_int_eq(s->ready_timeout_ms, 1);
	ck_assert_int_eq(s->recycle.connections, 1000);
	ck_assert_int_eq(s->recycle.age_ms, 0);
	ck_assert_int_eq(s->recycle.rss_mib, 0);
	ck_assert_int_eq(s->recycle.jitter_percent, 10);
	/* 0, given: off, and the service's own. */
	s = &cfg->services[1];
	ck_assert_int_eq(s->worker_timeout_ms, 0);
	ck_assert(s->has_worker_timeout);
	ck_assert_int_eq(s->ready_timeout_ms, 60000);
	ck_assert_int_eq(s->recycle.connections, 0);
	ck_assert_int_eq(s->recycle.age_ms, 0);
	ck_assert_int_eq(s->recycle.rss_mib, 0);
	ck_assert_int_eq(s->recycle.jitter_percent, 10);
	/* The default's value, given, is given all the same. */
	s = &cfg->services[2];
	ck_assert_int_eq(s->worker_timeout_ms, 30000);
	ck_assert(s->has_worker_timeout);
	ck_assert_int_eq(s->ready_timeout_ms, 3600000);
	ck_assert_int_eq(s->recycle.connections, 2000000000);
	ck_assert_int_eq(s->recycle.age_ms, 2000000000);
	ck_assert_int_eq(s->recycle.rss_mib, 1048576);
	ck_assert_int_eq(s->recycle.jitter_percent, 100);
	s = &cfg->services[3];
	ck_assert(s->notify);
	ck_assert_int_eq(s->settle_ms, 0);
	ck_assert_int_eq(s->worker_timeout_ms, 86400000);
	ck_assert(s->has_worker_timeout);
	ck_assert_int_eq(s->recycle.connections, 0);
	ck_assert_int_eq(s->recycle.age_ms, 60000);
	ck_assert_int_eq(s->recycle.rss_mib, 512);
	ck_assert_int_eq(s->recycle.jitter_percent, 0);
	s = &cfg->services[4];
	ck_assert(!s->notify);
	ck_assert_int_eq(s->settle_ms, 600000);
	ck_assert_int_eq(s->ready_timeout_ms, 3600000);
	ck_assert(!s->has_worker_timeout);
	/* A program linked with libnetcluster counts what it accepts. */
	s = &cfg->services[5];
	ck_assert_int_eq(s->sockets, NC_SOCKETS_CLUSTER);
	ck_assert_int_eq(s->recycle.connections, 5);
	ck_assert_int_eq(s->recycle.jitter_percent, 10);
	nc_config_free(cfg);
}
END_TEST

START_TEST(test_bad_configs)
{
	struct nc_config	*cfg;
	char			*errors, *nl;
	const char		*text = bad_configs[_i].text;

	ck_assert_int_eq(nc_config_parse("t.json", text, strlen(text), &cfg,
	    &errors), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(errors);
	if ((nl = strchr(errors, '\n')) != NULL)
		*nl = '\0';
	ck_assert_str_eq(errors, bad_configs[_i].error);
	free(errors);
}
END_TEST

/*
 * Found by fuzz_config: a NUL byte, which jansson took inside an array,
 * made the error locator loop for ever. It is refused where it is.
 */
START_TEST(test_nul_byte)
{
	static const char	 text[] = "{\"services\": [{\"a\": [1\0, 2]}, "
	    "{\"name\": \"x\", \"handler\": \"zz\", \"listen\": [\"1\"]}]}";
	struct nc_config	*cfg;
	char			*errors;

	ck_assert_int_eq(nc_config_parse("t.json", text, sizeof text - 1,
	    &cfg, &errors), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(errors, "t.json:1:23: a NUL byte\n");
	free(errors);
}
END_TEST

START_TEST(test_all_errors_reported)
{
	struct nc_config	*cfg;
	char			*errors, *p;
	const char		*text = "{\"workers\": 0, \"log_level\": 1, "
	    "\"services\": [{\"name\": \"e\", \"listen\": [\"x\"], "
	    "\"mode\": \"rr\"}], \"x\": 1}";
	int			 lines = 0;

	ck_assert_int_eq(nc_config_parse("t.json", text, strlen(text), &cfg,
	    &errors), -1);
	for (p = errors; *p != '\0'; p++)
		lines += *p == '\n';
	ck_assert_msg(lines == 5, "%s", errors);
	free(errors);
}
END_TEST

START_TEST(test_load_file)
{
	struct nc_config	*cfg;
	char			*errors;
	FILE			*f;
	const char		*path = tmpdir_path("c.json");

	ck_assert_int_eq(nc_config_load(tmpdir_path("missing.json"), &cfg,
	    &errors), -1);
	ck_assert_msg(strstr(errors, "missing.json: No such file or "
	    "directory") != NULL, "%s", errors);
	free(errors);

	path = tmpdir_path("c.json");
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("{\"services\": [{\"name\": \"e\", \"listen\": [\"1\"]}]}", f);
	fclose(f);
	ck_assert_int_eq(nc_config_load(path, &cfg, &errors), 0);
	ck_assert_str_eq(cfg->file, path);
	nc_config_free(cfg);

	/* Oversized files are refused before parsing. */
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	ck_assert_int_eq(fseek(f, NC_CONFIG_MAX_SIZE + 1, SEEK_SET), 0);
	fputc(' ', f);
	fclose(f);
	ck_assert_int_eq(nc_config_load(path, &cfg, &errors), -1);
	ck_assert_msg(strstr(errors, "larger than") != NULL, "%s", errors);
	free(errors);
	tmpdir_cleanup();
}
END_TEST


/* nc_config_error() places a line where its path is in the text. */
START_TEST(test_error_position)
{
	struct nc_config	*cfg;
	char			*errors = NULL;

	cfg = parse_ok("{\"user\": \"u\",\n \"services\": [{\"name\": \"e\",\n"
	    "  \"listen\": [\"1\", \"2\"]}]}");
	nc_config_error(cfg, &errors, "services[0].listen[1]", "bad %d", 2);
	nc_config_error(cfg, &errors, "user", "no user");
	ck_assert_str_eq(errors, "t.json:3:19: services[0].listen[1]: bad 2\n"
	    "t.json:1:10: user: no user\n");
	free(errors);
	nc_config_free(cfg);
}
END_TEST

START_TEST(test_check_fd)
{
	struct sockaddr_in	sin;
	char			err[256];
	bool			listening;
	int			fd, sv[2], l;

	ck_assert_int_eq(nc_config_check_fd(1000, &listening, err,
	    sizeof err), -1);
	ck_assert_str_eq(err, "fd 1000 is not open");
	ck_assert_int_ne(fd = open("/dev/null", O_RDONLY), -1);
	ck_assert_int_eq(nc_config_check_fd(fd, &listening, err,
	    sizeof err), -1);
	ck_assert_msg(strstr(err, "is not a socket") != NULL, "%s", err);
	close(fd);
	ck_assert_int_ne(fd = socket(AF_INET, SOCK_DGRAM, 0), -1);
	ck_assert_int_eq(nc_config_check_fd(fd, &listening, err,
	    sizeof err), -1);
	ck_assert_msg(strstr(err, "is not a stream socket") != NULL, "%s",
	    err);
	close(fd);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(nc_config_check_fd(sv[0], &listening, err,
	    sizeof err), -1);
	ck_assert_msg(strstr(err, "is a connected socket") != NULL, "%s",
	    err);
	close(sv[0]);
	close(sv[1]);
	/* Not listening yet: the daemon listens on it. */
	ck_assert_int_ne(l = socket(AF_INET, SOCK_STREAM, 0), -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(nc_config_check_fd(l, &listening, err, sizeof err),
	    0);
	ck_assert(!listening);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(nc_config_check_fd(l, &listening, err, sizeof err),
	    0);
	ck_assert(listening);
	close(l);
}
END_TEST

START_TEST(test_socket_dir)
{
	char	dir[PATH_MAX], err[512], path[PATH_MAX];
	FILE	*f;

	snprintf(path, sizeof path, "%s", tmpdir_path("c.sock"));
	ck_assert_int_eq(nc_config_socket_dir(path, dir, sizeof dir, err,
	    sizeof err), 0);
	snprintf(path, sizeof path, "%s", tmpdir_path("run/c.sock"));
	ck_assert_int_eq(nc_config_socket_dir(path, dir, sizeof dir, err,
	    sizeof err), 1);
	ck_assert_str_eq(dir, tmpdir_path("run"));
	/* Made to see that it can be, and taken away again. */
	ck_assert_int_eq(access(dir, F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);
	snprintf(path, sizeof path, "%s", tmpdir_path("a/b/c.sock"));
	ck_assert_int_eq(nc_config_socket_dir(path, dir, sizeof dir, err,
	    sizeof err), -1);
	ck_assert_msg(strstr(err, "cannot be made: No such file or "
	    "directory") != NULL, "%s", err);
	ck_assert_ptr_nonnull(f = fopen(tmpdir_path("file"), "w"));
	fclose(f);
	snprintf(path, sizeof path, "%s", tmpdir_path("file/sub/c.sock"));
	ck_assert_int_eq(nc_config_socket_dir(path, dir, sizeof dir, err,
	    sizeof err), -1);
	ck_assert_msg(strstr(err, "cannot be made: Not a directory") != NULL,
	    "%s", err);
	snprintf(path, sizeof path, "%s", tmpdir_path("file/c.sock"));
	ck_assert_int_eq(nc_config_socket_dir(path, dir, sizeof dir, err,
	    sizeof err), -1);
	ck_assert_msg(strstr(err, "is not a directory") != NULL, "%s", err);
	tmpdir_cleanup();
}
END_TEST

static int	 fake_sd_fd = -1;

static int
fake_systemd_fd(const char *name, char *err, size_t errlen, void *arg)
{
	(void)arg;
	if (strcmp(name, "web") == 0)
		return fake_sd_fd;
	snprintf(err, errlen, "no socket named %s", name);
	return -1;
}

static bool
fake_held(const struct nc_listen_addr *a, void *arg)
{
	(void)arg;
	return strcmp(a->text, "fd:999") == 0;
}

/* What nc_config_check() is told of netcluster-worker, or NULL. */
static const char	*fake_worker_binary;

/* Checks text; returns the errors (NULL if none) and frees the config. */
static char *
check_text(const char *text, struct nc_config **keep)
{
	struct nc_config_check_env	 env = {
		.systemd_fd = fake_systemd_fd,
		.held = fake_held,
		.worker_binary = fake_worker_binary
	};
	struct nc_config		*cfg = parse_ok(text);
	char				*errors;

	if (nc_config_check(cfg, &env, &errors) == 0)
		ck_assert_ptr_null(errors);
	if (keep != NULL)
		*keep = cfg;
	else
		nc_config_free(cfg);
	return errors;
}

START_TEST(test_check_listeners)
{
	struct nc_config	*cfg;
	char			*errors, text[512];

	/* Hosts resolve to what the daemon binds; localhost is 127.0.0.1. */
	ck_assert_ptr_null(check_text("{\"services\": [{\"name\": \"e\", "
	    "\"listen\": [\"localhost:0\", \"127.0.0.1:0\", \"0\"]}]}",
	    &cfg));
	ck_assert_str_eq(cfg->services[0].listen[0].address, "127.0.0.1");
	ck_assert_str_eq(cfg->services[0].listen[1].address, "127.0.0.1");
	ck_assert_ptr_null(cfg->services[0].listen[2].address);
	nc_config_free(cfg);
	/* .invalid never resolves (RFC 6761), and says so at once. */
	errors = check_text("{\"services\": [{\"name\": \"e\",\n"
	    "\"listen\": [\"no.invalid:80\"]}]}", NULL);
	ck_assert_str_eq(errors, "t.json:2:12: services[0].listen[0]: cannot "
	    "resolve no.invalid: name or service not known (ENOTFOUND)\n");
	free(errors);
	errors = check_text("{\"services\": [{\"name\": \"p\", \"handler\": "
	    "\"proxy\", \"upstream\": [\"127.0.0.1:1\", \"up.invalid:1\"], "
	    "\"listen\": [\"0\"]}]}", NULL);
	ck_assert_msg(strstr(errors, "services[0].upstream[1]: cannot resolve "
	    "up.invalid") != NULL && strchr(errors, '\n')[1] == '\0', "%s",
	    errors);
	free(errors);

	/* The metrics and agent listeners are checked as a service's. */
	errors = check_text("{\"metrics\": {\"listen\": \"no.invalid:1\"}, "
	    "\"agent\": {\"listen\": \"fd:998\"}, \"services\": [{\"name\": "
	    "\"e\", \"listen\": [\"0\"]}]}", NULL);
	ck_assert_str_eq(errors, "t.json:1:61: agent.listen: fd 998 is not "
	    "open\nt.json:1:24: metrics.listen: cannot resolve no.invalid: "
	    "name or service not known (ENOTFOUND)\n");
	free(errors);
	ck_assert_ptr_null(check_text("{\"metrics\": {\"listen\": "
	    "\"localhost:0\"}, \"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"0\"]}]}", &cfg));
	ck_assert_str_eq(cfg->metrics.listen.address, "127.0.0.1");
	nc_config_free(cfg);

	/* fd: and systemd: are sockets there, unless held already. */
	ck_assert_int_ne(fake_sd_fd = socket(AF_INET, SOCK_STREAM, 0), -1);
	snprintf(text, sizeof text, "{\"services\": [{\"name\": \"e\", "
	    "\"listen\": [\"systemd:web\", \"fd:%d\", \"fd:999\"]}]}",
	    fake_sd_fd);
	ck_assert_ptr_null(check_text(text, NULL));
	errors = check_text("{\"services\": [{\"name\": \"e\", "
	    "\"listen\": [\"systemd:other\", \"fd:998\"]}]}", NULL);
	ck_assert_str_eq(errors, "t.json:1:40: services[0].listen[0]: no "
	    "socket named other\nt.json:1:57: services[0].listen[1]: fd 998 "
	    "is not open\n");
	free(errors);
	close(fake_sd_fd);
	errors = check_text("{\"services\": [{\"name\": \"e\", "
	    "\"listen\": [\"systemd:web\"]}]}", NULL);
	ck_assert_msg(strstr(errors, "services[0].listen[0]: systemd socket "
	    "web: fd ") != NULL, "%s", errors);
	free(errors);
	fake_sd_fd = -1;
}
END_TEST

START_TEST(test_check_modules)
{
	const char	*b = getenv("top_builddir");
	char		 text[PATH_MAX + 256], *errors;

	errors = check_text("{\"services\": [{\"name\": \"m\", \"handler\": "
	    "\"module\", \"module\": \"/nonexistent/m.so\", \"listen\": "
	    "[\"0\"]}]}", NULL);
	ck_assert_msg(strstr(errors, "t.json:1:60: services[0].module: cannot "
	    "load /nonexistent/m.so: ") == errors, "%s", errors);
	free(errors);
	snprintf(text, sizeof text, "{\"services\": [{\"name\": \"m\", "
	    "\"handler\": \"module\", \"module\": "
	    "\"%s/tests/modules/.libs/badversion.so\", \"listen\": [\"0\"]}]}",
	    b != NULL ? b : ".");
	errors = check_text(text, NULL);
	ck_assert_msg(strstr(errors, "is built for handler API version 42") !=
	    NULL, "%s", errors);
	free(errors);
}
END_TEST

START_TEST(test_check_credentials)
{
	struct nc_config	*cfg;
	struct group		*gr;
	char			*errors;

	/* A top-level name is said once, however many services take it. */
	errors = check_text("{\"user\": \"nc-no-such-user\", \"group\": "
	    "\"nc-no-such-group\", \"services\": [{\"name\": \"e\", "
	    "\"listen\": [\"0\"]}, {\"name\": \"f\", \"listen\": [\"1\"]}]}",
	    NULL);
	ck_assert_str_eq(errors, "t.json:1:10: user: no user named "
	    "\"nc-no-such-user\"\nt.json:1:38: group: no group named "
	    "\"nc-no-such-group\"\n");
	free(errors);
	/* A service's own, where it is written. */
	errors = check_text("{\"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"0\"], \"user\": \"nc-no-such-user\"},\n {\"name\": \"f\", "
	    "\"listen\": [\"1\"], \"group\": \"nc-no-such-group\"}]}", &cfg);
	ck_assert_str_eq(errors, "t.json:1:54: services[0].user: no user "
	    "named \"nc-no-such-user\"\nt.json:2:42: services[1].group: no "
	    "group named \"nc-no-such-group\"\n");
	ck_assert_int_eq(cfg->services[0].uid, (uid_t)-1);
	ck_assert_int_eq(cfg->services[1].gid, (gid_t)-1);
	free(errors);
	nc_config_free(cfg);

	errors = check_text("{\"user\": \"root\", \"group\": \"root\", "
	    "\"services\": [{\"name\": \"e\", \"listen\": [\"0\"]}]}", &cfg);
	if (geteuid() == 0) {
		ck_assert_ptr_null(errors);
		ck_assert_int_eq(cfg->services[0].uid, 0);
		ck_assert_int_eq(cfg->services[0].gid, 0);
	} else
		ck_assert_msg(strstr(errors, "must start as root") != NULL,
		    "%s", errors);
	free(errors);
	nc_config_free(cfg);

	/* Each service as its own user, or the top-level one. */
	ck_assert_ptr_nonnull(gr = getgrnam("nogroup"));
	errors = check_text("{\"user\": \"nobody\", \"services\": [{\"name\": "
	    "\"a\", \"listen\": [\"0\"]}, {\"name\": \"b\", \"listen\": [\"1\"], "
	    "\"user\": \"root\"}, {\"name\": \"c\", \"listen\": [\"2\"], "
	    "\"group\": \"nogroup\"}, {\"name\": \"d\", \"listen\": [\"3\"]}]}",
	    &cfg);
	if (geteuid() == 0) {
		ck_assert_ptr_null(errors);
		ck_assert_int_eq(cfg->services[0].uid, 65534);
		ck_assert_int_eq(cfg->services[1].uid, 0);
		ck_assert_int_eq(cfg->services[1].gid, 0);
		ck_assert_int_eq(cfg->services[2].uid, 65534);
		ck_assert_int_eq(cfg->services[2].gid, gr->gr_gid);
		ck_assert_int_eq(cfg->services[3].uid, 65534);
	} else {
		ck_assert_str_eq(errors, "t.json:1:10: user: netclusterd must "
		    "start as root to run workers as another user\n"
		    "t.json:1:104: services[1].user: netclusterd must start as "
		    "root to run workers as another user\n"
		    "t.json:1:153: services[2].group: netclusterd must start "
		    "as root to run workers as another user\n");
		ck_assert_int_eq(cfg->services[0].uid, (uid_t)-1);
	}
	free(errors);
	nc_config_free(cfg);
}
END_TEST

/* Where text has "needle", as the 1-based column errors give. */
static int
column_of(const char *text, const char *needle)
{
	const char	*p = strstr(text, needle);

	ck_assert_ptr_nonnull(p);
	return (int)(p - text) + 1;
}

/*
 * A program's command and cwd, netcluster-worker and a module are asked
 * as the service's user: as nobody when we are root, else as ourselves
 * behind a directory of mode 0.
 */
START_TEST(test_check_access)
{
	struct passwd	*pw;
	char		 locked[PATH_MAX], prog[PATH_MAX], sub[PATH_MAX];
	char		 file[PATH_MAX], none[PATH_MAX], who[128];
	char		 text[8 * PATH_MAX], want[12 * PATH_MAX], *errors;
	const char	*user = geteuid() == 0 ? "\"user\": \"nobody\", " : "";
	FILE		*f;

	ck_assert_int_eq(chmod(tmpdir_path(""), 0755), 0);
	snprintf(locked, sizeof locked, "%s", tmpdir_path("locked"));
	snprintf(prog, sizeof prog, "%s", tmpdir_path("locked/prog"));
	snprintf(sub, sizeof sub, "%s", tmpdir_path("locked/sub"));
	snprintf(file, sizeof file, "%s", tmpdir_path("file"));
	snprintf(none, sizeof none, "%s", tmpdir_path("none"));
	ck_assert_int_eq(mkdir(locked, 0700), 0);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_ptr_nonnull(f = fopen(prog, "w"));
	fclose(f);
	ck_assert_int_eq(chmod(prog, 0755), 0);
	ck_assert_ptr_nonnull(f = fopen(file, "w"));
	fclose(f);
	ck_assert_int_eq(chmod(file, 0755), 0);
	ck_assert_int_eq(chmod(locked, geteuid() == 0 ? 0700 : 0), 0);
	ck_assert_ptr_nonnull(pw = getpwuid(geteuid() == 0 ? 65534 :
	    geteuid()));
	snprintf(who, sizeof who, "user %s (uid %u)", pw->pw_name,
	    (unsigned)pw->pw_uid);

	/* A command behind a directory it may not enter. */
	snprintf(text, sizeof text, "{\"services\": [{\"name\": \"p\", %s"
	    "\"listen\": [\"0\"], \"handler\": \"program\", \"command\": "
	    "[\"%s\"]}]}", user, prog);
	errors = check_text(text, NULL);
	snprintf(want, sizeof want, "t.json:1:%d: services[0].command[0]: %s: "
	    "not accessible to %s: Permission denied\n", column_of(text,
	    "\"command\": [") + 12, prog, who);
	ck_assert_str_eq(errors, want);
	free(errors);

	/* A cwd: unreachable, a file, not there. */
	snprintf(text, sizeof text, "{\"services\": [{\"name\": \"p\", %s"
	    "\"listen\": [\"0\"], \"handler\": \"program\", \"command\": "
	    "[\"%s\"], \"cwd\": \"%s\"},\n {\"name\": \"q\", \"listen\": [\"1\"], "
	    "\"handler\": \"program\", \"command\": [\"%s\"], \"cwd\": \"%s\"},\n"
	    " {\"name\": \"r\", \"listen\": [\"2\"], \"handler\": \"program\", "
	    "\"command\": [\"%s\"], \"cwd\": \"%s\"}]}", user, file, sub, file,
	    file, file, none);
	errors = check_text(text, NULL);
	snprintf(want, sizeof want, "t.json:1:%d: services[0].cwd: %s: not "
	    "accessible to %s: Permission denied\n"
	    "t.json:2:%d: services[1].cwd: %s: not a directory\n"
	    "t.json:3:%d: services[2].cwd: %s: No such file or directory\n",
	    column_of(text, sub) - 1, sub, who,
	    column_of(strchr(text, '\n') + 1, "\"cwd\"") + 7, file,
	    column_of(strrchr(text, '\n') + 1, "\"cwd\"") + 7, none);
	ck_assert_str_eq(errors, want);
	free(errors);

	if (geteuid() != 0)
		goto out;
	/* netcluster-worker, asked once for the top-level user. */
	fake_worker_binary = prog;
	errors = check_text("{\"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"0\"], \"user\": \"nobody\"}]}", NULL);
	snprintf(want, sizeof want, "t.json:1:54: services[0].user: %s: not "
	    "accessible to user nobody (uid 65534): Permission denied\n",
	    prog);
	ck_assert_str_eq(errors, want);
	free(errors);
	errors = check_text("{\"user\": \"nobody\", \"services\": [{\"name\": "
	    "\"e\", \"listen\": [\"0\"]}, {\"name\": \"f\", \"listen\": "
	    "[\"1\"]}, {\"name\": \"g\", \"listen\": [\"2\"], \"user\": "
	    "\"root\"}]}", NULL);
	snprintf(want, sizeof want, "t.json:1:10: user: %s: not accessible to "
	    "user nobody (uid 65534): Permission denied\n", prog);
	ck_assert_str_eq(errors, want);
	free(errors);
	fake_worker_binary = file;
	ck_assert_ptr_null(check_text("{\"user\": \"nobody\", \"services\": "
	    "[{\"name\": \"e\", \"listen\": [\"0\"]}]}", NULL));

	/* A module it may not read (and that does not load either). */
	snprintf(text, sizeof text, "{\"services\": [{\"name\": \"m\", "
	    "\"user\": \"nobody\", \"handler\": \"module\", \"module\": "
	    "\"%s\", \"listen\": [\"0\"]}]}", prog);
	errors = check_text(text, NULL);
	snprintf(want, sizeof want, "services[0].module: %s: not accessible "
	    "to user nobody (uid 65534): Permission denied\n", prog);
	ck_assert_msg(strstr(errors, want) != NULL, "%s", errors);
	free(errors);
out:
	fake_worker_binary = NULL;
	ck_assert_int_eq(chmod(locked, 0700), 0);
	ck_assert_int_eq(rmdir(sub), 0);
	ck_assert_int_eq(unlink(prog), 0);
	ck_assert_int_eq(rmdir(locked), 0);
	tmpdir_cleanup();
}
END_TEST

/* What the check set, carried to a config parsed from the same text. */
START_TEST(test_check_result)
{
	struct nc_config	*cfg, *fresh;
	json_t			*r, *bad;
	char			*s, text[512];
	size_t			 i, k;

	snprintf(text, sizeof text, "{\"metrics\": {\"listen\": "
	    "\"localhost:0\"}, \"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"localhost:0\", \"0\", \"unix:/tmp/nc-result.sock\"]}, "
	    "{\"name\": \"f\", %s\"listen\": [\"127.0.0.1:0\"]}]}",
	    geteuid() == 0 ? "\"user\": \"nobody\", " : "");
	ck_assert_ptr_null(check_text(text, &cfg));
	ck_assert_ptr_nonnull(r = nc_config_check_result(cfg));
	/* As it crosses from one process to another. */
	ck_assert_ptr_nonnull(s = json_dumps(r, JSON_COMPACT));
	json_decref(r);
	ck_assert_ptr_nonnull(r = json_loads(s, 0, NULL));
	free(s);

	fresh = parse_ok(text);
	ck_assert_int_eq(nc_config_check_apply(fresh, r), 0);
	for (i = 0; i < cfg->nservices; i++) {
		ck_assert_int_eq(fresh->services[i].uid, cfg->services[i].uid);
		ck_assert_int_eq(fresh->services[i].gid, cfg->services[i].gid);
		for (k = 0; k < cfg->services[i].nlisten; k++)
			ck_assert_pstr_eq(fresh->services[i].listen[k].address,
			    cfg->services[i].listen[k].address);
	}
	ck_assert_str_eq(fresh->services[0].listen[0].address, "127.0.0.1");
	ck_assert_ptr_null(fresh->services[0].listen[1].address);
	ck_assert_str_eq(fresh->services[1].listen[0].address, "127.0.0.1");
	ck_assert_str_eq(fresh->metrics.listen.address, "127.0.0.1");
	ck_assert_ptr_null(fresh->agent.listen.address);
	ck_assert_int_eq(fresh->services[1].uid, geteuid() == 0 ? 65534 :
	    (uid_t)-1);
	nc_config_free(fresh);

	/* Another config does not take it, and is left as it was. */
	fresh = parse_ok("{\"services\": [{\"name\": \"e\", \"listen\": "
	    "[\"localhost:0\"]}]}");
	ck_assert_int_eq(nc_config_check_apply(fresh, r), -1);
	ck_assert_ptr_null(fresh->services[0].listen[0].address);
	nc_config_free(fresh);
	fresh = parse_ok(text);
	/* An address for a unix listener. */
	ck_assert_ptr_nonnull(bad = json_deep_copy(r));
	ck_assert_int_eq(json_array_set_new(json_object_get(json_array_get(
	    json_object_get(bad, "services"), 0), "listen"), 2,
	    json_string("127.0.0.1")), 0);
	ck_assert_int_eq(nc_config_check_apply(fresh, bad), -1);
	json_decref(bad);
	/* A uid that is not one. */
	ck_assert_ptr_nonnull(bad = json_deep_copy(r));
	ck_assert_int_eq(json_object_set_new(json_array_get(json_object_get(
	    bad, "services"), 1), "uid", json_string("nobody")), 0);
	ck_assert_int_eq(nc_config_check_apply(fresh, bad), -1);
	json_decref(bad);
	ck_assert_int_eq(nc_config_check_apply(fresh, json_null()), -1);
	ck_assert_ptr_null(fresh->services[0].listen[0].address);
	ck_assert_ptr_null(fresh->metrics.listen.address);
	ck_assert_int_eq(fresh->services[1].uid, (uid_t)-1);
	nc_config_free(fresh);
	json_decref(r);
	nc_config_free(cfg);
}
END_TEST

START_TEST(test_check_control_socket)
{
	struct nc_config	*cfg;
	char			 text[PATH_MAX + 256], *errors;
	FILE			*f;

	ck_assert_ptr_nonnull(f = fopen(tmpdir_path("file"), "w"));
	fclose(f);
	snprintf(text, sizeof text, "{\"control_socket\": \"%s\", "
	    "\"services\": [{\"name\": \"e\", \"listen\": [\"0\"]}]}",
	    tmpdir_path("file/run/c.sock"));
	errors = check_text(text, &cfg);
	ck_assert_msg(strstr(errors, "t.json:1:20: control_socket: directory ")
	    == errors && strstr(errors, "cannot be made: Not a directory") !=
	    NULL, "%s", errors);
	free(errors);
	nc_config_free(cfg);
	/* What startup would do, mkdir(2), not what access(2) says. */
	errors = check_text("{\"control_socket\": \"/proc/no-such-dir/c.sock\", "
	    "\"services\": [{\"name\": \"e\", \"listen\": [\"0\"]}]}", NULL);
	if (geteuid() == 0)
		ck_assert_str_eq(errors, "t.json:1:20: control_socket: "
		    "directory /proc/no-such-dir cannot be made: No such file "
		    "or directory\n");
	else
		ck_assert_msg(strstr(errors, "t.json:1:20: control_socket: "
		    "directory /proc/no-such-dir cannot be made: ") == errors,
		    "%s", errors);
	free(errors);
	tmpdir_cleanup();
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("config");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_every_key);
	tcase_add_test(tc, test_endpoints);
	tcase_add_test(tc, test_service_pool);
	tcase_add_test(tc, test_programs_beside);
	tcase_add_test(tc, test_supervision_keys);
	tcase_add_test(tc, test_listen_forms);
	tcase_add_test(tc, test_listen_equal_same);
	tcase_add_loop_test(tc, test_bad_configs, 0,
	    sizeof bad_configs / sizeof bad_configs[0]);
	tcase_add_test(tc, test_all_errors_reported);
	tcase_add_test(tc, test_load_file);
	tcase_add_test(tc, test_error_position);
	tcase_add_test(tc, test_check_fd);
	tcase_add_test(tc, test_socket_dir);
	tcase_add_test(tc, test_check_listeners);
	tcase_add_test(tc, test_check_modules);
	tcase_add_test(tc, test_check_credentials);
	tcase_add_test(tc, test_check_access);
	tcase_add_test(tc, test_check_result);
	tcase_add_test(tc, test_check_control_socket);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
