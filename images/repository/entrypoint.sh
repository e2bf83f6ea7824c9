#!/bin/sh
# Entrypoint of infra/repository (nginx with WebDAV; infra_maven and infra_artifact).
#   no argument / "serve": install the htpasswd for nginx's workers, prepare
#   /data, then exec nginx in the foreground (access log on stdout, errors on
#   stderr). Listens on port 80 inside the container.
#   anything else: exec'ed as is (e.g. "nginx -t" or a shell for debugging).
# Secret: /run/secrets/htpasswd, lines "user:<hash>" (bcrypt $2b$/$2y$ works).
set -eu

SECRET=/run/secrets/htpasswd
HTPASSWD=/run/nginx/htpasswd   # what nginx.conf reads: root and group www-data only

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The secrets mount keeps the host's owner/mode (root, 0600) but nginx checks
# passwords in its workers (user www-data): copy it where they can read it.
# Done for every command, so "nginx -t" works as well.
install_htpasswd() {
    mkdir -p /run/nginx
    chmod 0750 /run/nginx
    chown root:www-data /run/nginx
    if [ -s "$SECRET" ]; then
        install -m 0640 -o root -g www-data "$SECRET" "$HTPASSWD"
    fi
}

install_htpasswd
if [ "$#" -gt 0 ] && [ "$1" != serve ]; then
    exec "$@"
fi

[ -s "$SECRET" ] || die "$SECRET missing or empty (secrets not mounted?)"
[ -d /data ] || die "/data missing"

# The workers write uploads: /data and the upload spool belong to www-data.
# Files below were written by the same user, so no recursive chown.
mkdir -p /data/.upload-tmp
chown www-data:www-data /data /data/.upload-tmp
chmod 0755 /data
chmod 0700 /data/.upload-tmp

nginx -t -q || die "nginx configuration test failed"
exec nginx
