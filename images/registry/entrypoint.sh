#!/bin/sh
# Entrypoint of infra/registry.
#   no argument / "serve": check the mounts, then exec the registry in the
#   foreground (logs to stdout). The registry listens on port 5000 inside the
#   container; the host side of the port mapping is env.registry.port.
#   anything else: exec'ed as is (e.g. a shell for debugging).
set -eu

CONF=/env/registry/config.yml

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$#" -gt 0 ] && [ "$1" != serve ]; then
    exec "$@"
fi

[ -s "$CONF" ] || die "$CONF missing or empty (environment volume not mounted?)"
for f in htpasswd tls.crt tls.key; do
    [ -s "/run/secrets/$f" ] || die "/run/secrets/$f missing or empty (secrets not mounted?)"
done
[ -d /data ] || die "/data missing"

# The registry logs to stderr; send it to stdout as well (one stream in docker logs).
# Runs as root inside the container (like the upstream registry image): the
# secrets are mounted read-only with whatever owner/mode the host gave them.
exec /usr/bin/docker-registry serve "$CONF" 2>&1
