#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vectors.h"

static json_t *root;

static void
die(const char *what, const char *path)
{
	fprintf(stderr, "vectors: %s: %s\n", what, path);
	abort();
}

void
vec_load(void)
{
	json_error_t err;
	if (root)
		return;
	root = json_load_file(VECTORS_JSON, 0, &err);
	if (root == NULL) {
		fprintf(stderr, "vectors: %s:%d: %s\n", VECTORS_JSON, err.line,
		    err.text);
		abort();
	}
}

static json_t *
lookup(const char *path)
{
	char buf[256], *save, *tok;
	json_t *j;

	vec_load();
	j = root;
	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && j;
	     tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(j))
			j = json_array_get(j, strtoul(tok, NULL, 10));
		else
			j = json_object_get(j, tok);
	}
	if (j == NULL)
		die("no such vector", path);
	return j;
}

const char *
vec_str(const char *path)
{
	json_t *j = lookup(path);
	if (!json_is_string(j))
		die("not a string", path);
	return json_string_value(j);
}

long long
vec_int(const char *path)
{
	json_t *j = lookup(path);
	if (!json_is_integer(j))
		die("not an integer", path);
	return json_integer_value(j);
}

size_t
vec_len(const char *path)
{
	json_t *j = lookup(path);
	if (!json_is_array(j))
		die("not an array", path);
	return json_array_size(j);
}

static int
nib(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint8_t *
vec_hex(const char *path, size_t *len)
{
	const char *s = vec_str(path);
	size_t n = strlen(s);
	if (n % 2)
		die("odd-length hex", path);
	uint8_t *out = malloc(n / 2 + 1);
	if (out == NULL)
		abort();
	for (size_t i = 0; i < n / 2; i++) {
		int hi = nib(s[2 * i]), lo = nib(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			die("not hex", path);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return out;
}
