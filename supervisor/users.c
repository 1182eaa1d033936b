/*
 * The management API's changes (issue 10), applied by the supervisor:
 * the dcpool serves the API but never writes configuration. A change is
 * made to the users in api.users_file, written atomically (a backup of
 * the previous one kept), and validated by loading the whole config as
 * a reload would; if that fails, the previous file is put back and the
 * error (file:line: option: what, as -t prints it) is the answer. The
 * caller then reloads, which applies users in place.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "apiuser.h"
#include "config.h"
#include "log.h"
#include "users.h"
#include "util.h"

void
users_revision(const char *path, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	char buf[8192];
	size_t n;
	FILE *f = fopen(path, "re");

	if (c == NULL || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
		goto fail;
	if (f != NULL)
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			EVP_DigestUpdate(c, buf, n);
	if (!EVP_DigestFinal_ex(c, md, &mdlen) || mdlen != 32)
		goto fail;
	for (unsigned i = 0; i < mdlen; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	goto out;
fail:
	snprintf(out, 65, "%s", "unknown");
out:
	if (f)
		fclose(f);
	EVP_MD_CTX_free(c);
}

static char *answer(int *status, int code, const char *ecode, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

/* An error answer: {"code":..., "message":...}. */
static char *
answer(int *status, int code, const char *ecode, const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*status = code;
	json_t *o = json_pack("{s:s,s:s}", "code", ecode, "message", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

/* Write text to path atomically, root's and 0600; the old one, if any,
 * is kept as path.bak. */
static int
write_users(const char *path, const char *text, int *had_old)
{
	char tmp[4200], bak[4200];
	size_t len = strlen(text);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(bak, sizeof(bak), "%s.bak", path);
	*had_old = access(path, F_OK) == 0;
	if (*had_old) {
		/* A hard link: the backup is the old file itself. */
		unlink(bak);
		if (link(path, bak) == -1)
			return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) == -1) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void
restore_users(const char *path, int had_old)
{
	char bak[4200];

	snprintf(bak, sizeof(bak), "%s.bak", path);
	if (had_old) {
		if (rename(bak, path) == -1)
			log_warn("api: cannot restore %s from %s", path, bak);
	} else
		unlink(path);
}

/* Does some listener of cfg have user name with this secret? */
static int
in_config(const struct config *cfg, const char *name, const uint8_t *secret)
{
	for (size_t i = 0; i < cfg->nlisteners; i++)
		for (size_t u = 0; u < cfg->listeners[i].nusers; u++) {
			const struct config_user *cu =
			    &cfg->listeners[i].users[u];
			if (strcmp(cu->name, name) == 0 &&
			    (secret == NULL ||
			        memcmp(cu->secret, secret, 16) == 0))
				return 1;
		}
	return 0;
}

static void
strip_etag(const char *in, char *out, size_t cap)
{
	while (*in == ' ' || *in == '\t' || *in == '"')
		in++;
	snprintf(out, cap, "%s", in);
	size_t n = strlen(out);
	while (
	    n && (out[n - 1] == ' ' || out[n - 1] == '\t' || out[n - 1] == '"'))
		out[--n] = '\0';
}

char *
users_api(const struct config *cfg, const char *config_path,
    const char *request, int *status)
{
	json_t *req = json_loads(request, 0, NULL);
	const char *op = NULL, *name = NULL, *ifm = NULL, *body = "";
	const char *path = cfg->api_users_file;
	char err[CONFIG_ERR_MAX], rev[65], want[128];
	struct config_user *us = NULL;
	struct api_user_patch p;
	char secret_hex[33] = "";
	char *text = NULL, *out = NULL;
	size_t n = 0;
	int had_old, idx = -1;

	if (req == NULL ||
	    json_unpack(req, "{s:s,s?s,s?s,s?s}", "op", &op, "user", &name,
	        "if_match", &ifm, "body", &body) == -1) {
		out = answer(status, 400, "bad_request", "malformed request");
		goto done;
	}
	if (config_path == NULL) {
		out = answer(status, 409, "no_config_file",
		    "mtprotod runs its built-in config; the API needs a "
		    "config file whose listeners include api.users_file");
		goto done;
	}
	if (config_users_load(path, &us, &n, err, sizeof(err)) == -1) {
		out = answer(status, 500, "internal_error", "%s", err);
		goto done;
	}
	users_revision(path, rev);
	if (ifm != NULL) {
		strip_etag(ifm, want, sizeof(want));
		if (strcmp(want, rev) != 0) {
			out = answer(status, 409, "revision_conflict",
			    "If-Match %s: the users file's revision is %s",
			    want, rev);
			goto done;
		}
	}
	enum api_body kind;
	if (api_op_parse(op, body, strlen(body), &kind, &p, err, sizeof(err)) ==
	    -1) {
		out = answer(status, 400, "bad_request", "%s", err);
		goto done;
	}
	if (kind == API_BODY_CREATE)
		name = p.u.name;
	if (name == NULL) {
		out = answer(status, 400, "bad_request", "no user named");
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(us[i].name, name) == 0)
			idx = (int)i;
	if (kind == API_BODY_CREATE) {
		if (idx >= 0 || in_config(cfg, name, NULL)) {
			out = answer(status, 409, "user_exists",
			    "user \"%s\" exists", name);
			goto done;
		}
		struct config_user *nu = realloc(us, (n + 1) * sizeof(*us));
		if (nu == NULL) {
			out = answer(status, 500, "internal_error", "memory");
			goto done;
		}
		us = nu;
		idx = (int)n++;
		api_user_defaults(&us[idx]);
		snprintf(us[idx].name, sizeof(us[idx].name), "%s", name);
		if (!(p.set & AU_SECRET))
			random_bytes(p.u.secret, 16), p.set |= AU_SECRET;
	} else if (idx < 0) {
		if (in_config(cfg, name, NULL))
			out = answer(status, 409, "user_not_editable",
			    "user \"%s\" is in %s, not in api.users_file %s; "
			    "change it there",
			    name, config_path, path);
		else
			out = answer(
			    status, 404, "not_found", "no user \"%s\"", name);
		goto done;
	}
	if (strcmp(op, "delete") == 0) {
		memmove(&us[idx], &us[idx + 1],
		    (n - (size_t)idx - 1) * sizeof(*us));
		n--;
	} else if (strcmp(op, "enable") == 0 || strcmp(op, "disable") == 0)
		us[idx].enabled = op[0] == 'e';
	else if (strcmp(op, "rotate") == 0) {
		if (!(p.set & AU_SECRET))
			random_bytes(p.u.secret, 16);
		memcpy(us[idx].secret, p.u.secret, 16);
	} else if (kind != API_BODY_PATCH || strcmp(op, "patch") == 0)
		api_user_apply(&us[idx], &p);
	else {
		out = answer(status, 400, "bad_request", "unknown op");
		goto done;
	}
	if (strcmp(op, "delete") != 0)
		for (int i = 0; i < 16; i++)
			sprintf(secret_hex + 2 * i, "%02x", us[idx].secret[i]);

	/* Written, then the whole config loaded as a reload would. */
	if ((text = api_users_text(us, n)) == NULL ||
	    write_users(path, text, &had_old) == -1) {
		out = answer(status, 500, "internal_error", "writing %s: %s",
		    path, strerror(errno));
		goto done;
	}
	struct config *ncfg = config_load(config_path, err, sizeof(err));
	if (ncfg == NULL) {
		restore_users(path, had_old);
		out = answer(status, 400, "bad_request", "%s", err);
		goto done;
	}
	int seen =
	    strcmp(op, "delete") == 0 || in_config(ncfg, name, us[idx].secret);
	config_free(ncfg);
	if (!seen) {
		restore_users(path, had_old);
		out = answer(status, 409, "users_file_not_included",
		    "%s does not include api.users_file %s: give a listener "
		    "users = ( @include \"%s\" )",
		    config_path, path, path);
		goto done;
	}
	users_revision(path, rev);
	log_notice("api: user %s %s%s", name,
	    strcmp(op, "create") == 0        ? "created"
	        : strcmp(op, "delete") == 0  ? "deleted"
	        : strcmp(op, "rotate") == 0  ? "given a new secret"
	        : strcmp(op, "enable") == 0  ? "enabled"
	        : strcmp(op, "disable") == 0 ? "disabled"
	                                     : "changed",
	    "; reloading");
	*status = kind == API_BODY_CREATE ? 201 : 200;
	json_t *o = json_pack("{s:s,s:s,s:s}", "revision", rev, "user", name,
	    "secret", secret_hex);
	out = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
done:
	if (us)
		explicit_bzero(us, n * sizeof(*us));
	free(us);
	if (text)
		explicit_bzero(text, strlen(text));
	free(text);
	json_decref(req);
	explicit_bzero(&p, sizeof(p));
	return out;
}
