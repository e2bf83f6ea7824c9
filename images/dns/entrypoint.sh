#!/bin/sh
# Entrypoint of infra/dns.
#   no argument / "named": prepare /data and start named in the foreground.
#   anything else (e.g. "named-checkconf /env/dns/named.conf"): exec'ed as is,
#   so the image can validate rendered configuration files.
set -eu

CONF=/env/dns/named.conf
RENDERED=/env/dns/db.zone
KEY=/run/secrets/tsig.key
KEY_COPY=/run/named/tsig.key  # what named.conf includes: readable by user bind
ZONE=/data/db.zone            # live zone file, rewritten by named after updates
JOURNAL=/data/db.zone.jnl     # dynamic update journal
INSTALLED=/data/db.zone.rendered  # copy of the rendered zone last installed

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# named (9.18) already runs as user bind when it parses named.conf, and the
# read-only secrets mount keeps the host's owner/mode (typically root, 0600), so
# the key is copied to a place only root and group bind can read. This is also
# done for other commands, so "named-checkconf /env/dns/named.conf" works.
install_key() {
    mkdir -p /run/named
    chown bind:bind /run/named
    chmod 0750 /run/named
    if [ -f "$KEY" ]; then
        install -m 0640 -o root -g bind "$KEY" "$KEY_COPY"
    fi
}

install_key
if [ "$#" -gt 0 ] && [ "$1" != named ]; then
    exec "$@"
fi

[ -f "$CONF" ] || die "$CONF missing (environment volume not mounted?)"
[ -s "$RENDERED" ] || die "$RENDERED missing or empty"
[ -f "$KEY" ] || die "$KEY missing (secrets not mounted?)"

# The zone name is the first zone statement of the rendered named.conf.
ZONE_NAME=$(sed -n 's/^[[:space:]]*zone[[:space:]]*"\([^"]*\)".*/\1/p' "$CONF" | head -n 1)
[ -n "$ZONE_NAME" ] || die "no zone statement in $CONF"

# Validate the rendered configuration and zone before anything in /data changes.
named-checkconf "$CONF" >&2 || die "named-checkconf $CONF failed"
named-checkzone -q "$ZONE_NAME" "$RENDERED" \
    || { named-checkzone "$ZONE_NAME" "$RENDERED" >&2 || true; die "rendered zone $RENDERED is invalid"; }

# Install the rendered zone when there is no live zone yet, or when the rendered
# zone changed since the last install. Otherwise keep the live zone and its
# journal, so records added by dynamic updates survive restarts.
if [ ! -s "$ZONE" ] || [ ! -f "$INSTALLED" ] || ! cmp -s "$RENDERED" "$INSTALLED"; then
    log "installing rendered zone $RENDERED into $ZONE (dropping journal)"
    cp "$RENDERED" "$ZONE.tmp"
    mv "$ZONE.tmp" "$ZONE"
    rm -f "$JOURNAL"
    cp "$RENDERED" "$INSTALLED"
else
    log "rendered zone unchanged since last install; keeping live zone and journal"
fi

# named runs as user bind and writes the journal and the zone file into /data.
chown bind:bind /data
chown bind:bind "$ZONE" "$INSTALLED"
if [ -f "$JOURNAL" ]; then chown bind:bind "$JOURNAL"; fi
chmod 0644 "$ZONE"

named-checkzone -q "$ZONE_NAME" "$ZONE" \
    || { named-checkzone "$ZONE_NAME" "$ZONE" >&2 || true; die "live zone $ZONE is invalid"; }

exec named -g -u bind -c "$CONF"
