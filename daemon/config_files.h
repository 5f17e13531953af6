/* config_files.h - the files a configuration names (internal to the config module): paths
 * resolved against the configuration's directory, trust stores, the API token, the event log. */
#ifndef FS_CONFIG_FILES_H
#define FS_CONFIG_FILES_H

#include "daemon/config.h"

/* Every file is opened with fs_read_file's checks (a regular file within its size cap: a FIFO
 * or a device is refused without being read). Functions that fail fill err with a message
 * that names the JSON path of the key and the file as written and resolved, and return -1. */

/* Absolute form of rel against base (absolute): "." segments and repeated slashes dropped,
 * ".." kept so the kernel resolves it (lexical ".." removal is wrong across symlinks).
 * Returns a new string. */
char *cfg__path_resolve(const char *base, const char *rel);

/* Loads the trust store at JSON path `path` from the paths as written (ca_file, ca_dir and
 * inter may each be NULL, not both ca_file and ca_dir): sets t's absolute paths (also on
 * failure, for cfg_free), counts the certificates of the PEM files (at least one each), checks
 * the hashed directory and hashes every file OpenSSL will read into t->digest. */
int cfg__trust_load(cfg_trust_t *t, const char *base_dir, const char *path, const char *ca_file,
                    const char *ca_dir, const char *inter, char err[256]);

/* Reads api_token_file: sets c->api_token_file (absolute), the trimmed one-word token in
 * c->api_token, and the file's mode and group (cfg_warnings). */
int cfg__token_load(cfg_t *c, const char *base_dir, const char *written, char err[256]);

/* Checks that event_log can be appended to: a writable regular file, or a new file in an
 * existing writable directory. Sets c->event_log (absolute). */
int cfg__event_log_check(cfg_t *c, const char *base_dir, const char *written, char err[256]);

#endif
