#!/bin/sh
# Entrypoint of infra/proxy.
#   no argument / "serve": check that /run/secrets holds port 443's certificate, validate /env/proxy/nginx.conf with nginx -t, then
#   exec nginx in the foreground (access log on stdout, errors on stderr).
#   "check": only validate the configuration (exit status of nginx -t).
#   anything else: exec'ed as is.
# nginx resolves the upstream host names (infra_<service>) when it loads the
# configuration, so every backend container must be running when the proxy
# starts (the framework starts the proxy last). To ride out start-order races
# (e.g. after a node reboot, when docker restarts all containers at once),
# "serve" retries nginx -t for up to PROXY_WAIT_SECONDS (default 30) while it
# fails with "host not found in upstream"; any other error fails at once.
set -eu

CONF=/env/proxy/nginx.conf
WAIT=${PROXY_WAIT_SECONDS:-30}

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "${1:-serve}" in
    serve|check) ;;
    *) exec "$@" ;;
esac

[ -s "$CONF" ] || die "$CONF missing or empty (environment volume not mounted?)"
for file in tls.crt tls.key; do
    [ -s "/run/secrets/$file" ] || die "/run/secrets/$file missing (port 443's certificate: secrets/<env>/proxy.crt, handed over by a deploy)"
done
if [ "${1:-serve}" = check ]; then
    /usr/local/bin/upstreams once
    nginx -t -q -c "$CONF" || die "nginx -t -c $CONF failed"
    log "$CONF is valid"
    exit 0
fi

# The applications' replicas (swarm services on the workers): written once before
# nginx reads its configuration, then kept current in the background.
/usr/local/bin/upstreams once
waited=0
until out=$(nginx -t -q -c "$CONF" 2>&1); do
    case "$out" in
        *"host not found in upstream"*)
            if [ "$waited" -ge "$WAIT" ]; then
                printf '%s\n' "$out" >&2
                die "upstream host names still unresolved after ${WAIT}s"
            fi
            if [ "$waited" -eq 0 ]; then log "waiting for upstream containers: $(printf '%s' "$out" | head -n 1)"; fi
            sleep 1
            waited=$((waited + 1))
            ;;
        *)
            printf '%s\n' "$out" >&2
            die "nginx -t -c $CONF failed"
            ;;
    esac
done
if [ "$waited" -gt 0 ]; then log "upstreams resolved after ${waited}s"; fi

if [ -s /env/proxy/apps ]; then
    /usr/local/bin/upstreams watch &
fi
exec nginx -c "$CONF" -g 'daemon off;'
