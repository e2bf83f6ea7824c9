#!/bin/bash
# Entrypoint of infra/registry.
#   no argument / "serve": check the mounts, write the accounts' files, then run the
#   registry on the container's loopback (127.0.0.1:5001) and in front of it the
#   authorizing nginx on container port 5000 (TLS; pulls with the pull or the push
#   account, everything else with the push account only). The container exits when
#   either exits; SIGTERM (docker stop) is passed to both. Logs go to stdout.
#   The host side of the port mapping is env.registry.port.
#   anything else: exec'ed as is (e.g. a shell for debugging).
set -euo pipefail

CONF=/env/registry/config.yml
NGINX_CONF=/env/registry/nginx.conf
SECRETS=/run/secrets
ACCOUNTS=/run/registry           # readers/writers.htpasswd, readable by nginx's workers only

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$#" -gt 0 ] && [ "$1" != serve ]; then
    exec "$@"
fi

[ -s "$CONF" ] || die "$CONF missing or empty (environment volume not mounted?)"
[ -s "$NGINX_CONF" ] || die "$NGINX_CONF missing or empty (environment volume not mounted?)"
for f in htpasswd pull.htpasswd tls.crt tls.key; do
    [ -s "$SECRETS/$f" ] || die "$SECRETS/$f missing or empty (secrets not mounted? a deploy hands them over)"
done
[ -d /data ] || die "/data missing"

# The secrets mount keeps the host's owner and mode (root, 0600); nginx's workers
# (www-data) read the account files at every request.
install -d -m 0750 -o root -g www-data "$ACCOUNTS"
cat "$SECRETS/htpasswd" "$SECRETS/pull.htpasswd" | install -m 0640 -o root -g www-data /dev/stdin "$ACCOUNTS/readers.htpasswd"
install -m 0640 -o root -g www-data "$SECRETS/htpasswd" "$ACCOUNTS/writers.htpasswd"

nginx -t -q -c "$NGINX_CONF" || die "nginx -t rejected $NGINX_CONF"

# The registry logs to stderr; send it to stdout as well (one stream in docker logs).
/usr/bin/docker-registry serve "$CONF" 2>&1 &
registry=$!
nginx -c "$NGINX_CONF" -g "daemon off;" &
proxy=$!
log "registry (pid $registry) on 127.0.0.1:5001, nginx (pid $proxy) on :5000"

trap 'kill -TERM "$registry" "$proxy" 2>/dev/null || true' TERM INT
set +e
wait -n "$registry" "$proxy"
status=$?
set -e
kill -TERM "$registry" "$proxy" 2>/dev/null || true
wait "$registry" "$proxy" 2>/dev/null || true
log "exiting (status $status)"
exit "$status"
