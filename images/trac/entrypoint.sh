#!/bin/sh
# Entrypoint of infra/trac.
#   no argument / "tracd": create the Trac environment in /data/env on first
#   start, sync it with the rendered /env/trac/trac.ini, grant the anonymous
#   ticket permissions, then exec tracd (as user trac) on port 8000 in the
#   foreground; Trac and tracd log to stderr.
#   anything else: exec'ed as is (e.g. "trac-admin /data/env ...", a shell).
set -eu

ENV_DIR=/data/env                 # the Trac environment (node: /data/trac/env)
RENDERED=/env/trac/trac.ini       # per-environment settings, inherited by it
PORT=8000

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
as_trac() { setpriv --reuid=trac --regid=trac --init-groups "$@"; }

if [ "$#" -gt 0 ] && [ "$1" != tracd ]; then
    exec "$@"
fi

[ -s "$RENDERED" ] || die "$RENDERED missing or empty (environment volume not mounted?)"
[ -d /data ] || die "/data missing"

# Everything in /data belongs to the trac user (also after a restore as root).
chown trac:trac /data
find /data ! -user trac -exec chown -h trac:trac {} +

if [ ! -f "$ENV_DIR/VERSION" ]; then
    if [ -e "$ENV_DIR" ] && [ -n "$(ls -A "$ENV_DIR")" ]; then
        die "$ENV_DIR exists but is no Trac environment (no VERSION file); not touching it"
    fi
    log "creating the Trac environment in $ENV_DIR (SQLite), inheriting $RENDERED"
    # The project name given here is dropped again by prepare.py: the one in
    # $RENDERED applies.
    as_trac /opt/trac/bin/trac-admin "$ENV_DIR" initenv "lap-infra" sqlite:db/trac.db \
        --inherit="$RENDERED" >/dev/null
fi

as_trac /opt/trac/bin/python /usr/local/lib/trac/prepare.py "$ENV_DIR" "$RENDERED"

log "starting tracd on port $PORT"
exec setpriv --reuid=trac --regid=trac --init-groups \
    /opt/trac/bin/tracd --single-env --port "$PORT" --hostname 0.0.0.0 "$ENV_DIR"
