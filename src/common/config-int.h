/*
 * What config.c (the walk over the keys) and config-error.c (placing and
 * telling its errors) share: the walk's context, whose path says where
 * an error is.
 */

#ifndef CONFIG_INT_H
#define CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_DEPTH	8

struct config_seg {
	const char	*key;	/* NULL for an array index */
	size_t		 index;
};

struct config_ctx {
	const char		*name;
	const char		*text;
	size_t			 len;
	struct config_seg	 segs[CONFIG_MAX_DEPTH];
	size_t			 nsegs;
	char			*errors;
	size_t			 errlen;
	int			 nerrors;
};

/* config-error.c */
void	config_error(struct config_ctx *, bool at_key, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));
void	config_append(struct config_ctx *, const char *line);
void	config_position(const struct config_ctx *, const char *at,
	    int *line, int *col);
void	config_push_key(struct config_ctx *, const char *key);
void	config_push_index(struct config_ctx *, size_t index);
void	config_pop(struct config_ctx *);

#endif /* CONFIG_INT_H */
