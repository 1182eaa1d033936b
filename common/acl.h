/*
 * Address lists (access.allow / access.deny): CIDR blocks kept as sorted,
 * merged ranges per family, so a lookup is a binary search however long
 * the list (100,000 blocks from a file are one sort at load).
 */
#ifndef MTP_ACL_H
#define MTP_ACL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

struct acl_range4 {
	uint32_t lo, hi; /* host order, inclusive */
};

struct acl_range6 {
	uint8_t lo[16], hi[16]; /* network order, inclusive */
};

struct acl {
	struct acl_range4 *v4;
	size_t n4, cap4;
	struct acl_range6 *v6;
	size_t n6, cap6;
};

/* Add a block (the list is unsorted until acl_finish): 0, or -1 (ENOMEM). */
int acl_add(struct acl *, const struct cidr *);
/* Sort and merge overlapping or adjacent ranges; before acl_match. */
void acl_finish(struct acl *);
/* 1 when sa (an IPv4-mapped IPv6 address counts as IPv4) is in the list. */
int acl_match(const struct acl *, const struct sockaddr *sa);
/* Ranges after acl_finish (0: an empty list). */
size_t acl_size(const struct acl *);
/*
 * One block a line, "#" starts a comment, blank lines skipped. 0, or -1
 * with err "path:line: what" (or the open error).
 */
int acl_load_file(struct acl *, const char *path, char *err, size_t errlen);
/* Same ranges (both finished). */
int acl_equal(const struct acl *, const struct acl *);
void acl_free(struct acl *);

#endif
