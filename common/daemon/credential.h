/* credential.h — files a daemon gets as systemd credentials (LoadCredential=, systemd.exec(5)).
 *
 * A TLS key that only root may read (Debian's /etc/ssl/private/ssl-cert-snakeoil.key) cannot be
 * opened by postern-smtpd, which runs as postern. postern-generator then writes a drop-in with
 * LoadCredential=<name>:<path>: systemd reads the file as root when the service starts and puts a
 * copy, readable by the service only, in $CREDENTIALS_DIRECTORY/<name>. The name is derived from
 * the path (credential_name_for_path()), so the daemon finds the copy of whatever path main.cf
 * names (credential_path_for()) without any other configuration. */
#pragma once

/* The credential name for an absolute path: the path without its leading "/", each "/" as "-",
 * letters, digits and "." (not first) kept, every other byte as "_" and two hex digits
 * ("/etc/ssl/private/a-b.key" -> "etc-ssl-private-a_2db.key"). No backslashes, colons or slashes,
 * so it is usable in LoadCredential= as it is. -EINVAL for a relative or empty path, or a name
 * longer than a file name may be. */
int credential_name_for_path(const char *path, char **ret);

/* When $CREDENTIALS_DIRECTORY holds the credential for path: 1 and *ret = the credential's file;
 * otherwise 0 and *ret = NULL. <0 only for -ENOMEM. */
int credential_path_for(const char *path, char **ret);
