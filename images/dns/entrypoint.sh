#!/bin/sh
# Entrypoint of infra/dns.
#   no argument / "named": prepare /data and start named in the foreground.
#   anything else (e.g. "named-checkconf /env/dns/named.conf"): exec'ed as is,
#   so the image can validate rendered configuration files.
set -eu

CONF=/env/dns/named.conf
RENDERED=/env/dns/db.zone
SECRETS=/run/secrets
KEY=$SECRETS/tsig.key         # the transfer key; tsig-<zone>.key: each dynamic zone's update key
KEYS_COPY=/run/named          # what named.conf includes: readable by user bind
ZONE=/data/db.zone            # live zone file, rewritten by named after updates
JOURNAL=/data/db.zone.jnl     # dynamic update journal
INSTALLED=/data/db.zone.rendered  # copy of the rendered zone last installed
DYNAMIC=/data/dynamic         # the dynamic zones (host, node, pc): <zone>.zone and its .jnl
DYNAMIC_TEMPLATE=/env/dns/dynamic.zone  # the empty start of each of them

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# named (9.18) already runs as user bind when it parses named.conf, and the
# read-only secrets mount keeps the host's owner/mode (typically root, 0600), so
# the keys are copied to a place only root and group bind can read. This is also
# done for other commands, so "named-checkconf /env/dns/named.conf" works.
install_key() {
    mkdir -p "$KEYS_COPY"
    chown bind:bind "$KEYS_COPY"
    chmod 0750 "$KEYS_COPY"
    for key in "$SECRETS"/tsig*.key; do
        if [ -f "$key" ]; then
            install -m 0640 -o root -g bind "$key" "$KEYS_COPY/$(basename "$key")"
        fi
    done
}

install_key
if [ "$#" -gt 0 ] && [ "$1" != named ]; then
    exec "$@"
fi

[ -f "$CONF" ] || die "$CONF missing (environment volume not mounted?)"
[ -s "$RENDERED" ] || die "$RENDERED missing or empty"
[ -f "$KEY" ] || die "$KEY missing (secrets not mounted?)"
# Every key named.conf includes must be there (a deploy hands them all to the container).
for include in $(sed -n 's|^[[:space:]]*include[[:space:]]*"'"$KEYS_COPY"'/\([^"/]*\)".*|\1|p' "$CONF"); do
    [ -f "$SECRETS/$include" ] || die "$SECRETS/$include missing: named.conf includes it (run a deploy, which hands every TSIG key to the DNS)"
done

# The zone name is the first zone statement of the rendered named.conf.
ZONE_NAME=$(sed -n 's/^[[:space:]]*zone[[:space:]]*"\([^"]*\)".*/\1/p' "$CONF" | head -n 1)
[ -n "$ZONE_NAME" ] || die "no zone statement in $CONF"

# The dynamic zones are those whose file named.conf puts into $DYNAMIC.
DYNAMIC_ZONES=$(sed -n 's|^[[:space:]]*file[[:space:]]*"'"$DYNAMIC"'/\([^"/]*\)\.zone".*|\1|p' "$CONF")

# check_zone NAME FILE WHAT [OPTIONS]: named-checkzone, its report on failure.
# The dynamic zones' NS (ns.<domain>) lies outside them: their checks take
# "-i local", so that named-checkzone does not look it up through the resolver.
check_zone() {
    named-checkzone -q ${4-} "$1" "$2" \
        || { named-checkzone ${4-} "$1" "$2" >&2 || true; die "$3 $2 is invalid"; }
}

# Validate the rendered configuration and zones before anything in /data changes.
named-checkconf "$CONF" >&2 || die "named-checkconf $CONF failed"
check_zone "$ZONE_NAME" "$RENDERED" "rendered zone"
if [ -n "$DYNAMIC_ZONES" ]; then
    [ -s "$DYNAMIC_TEMPLATE" ] || die "$DYNAMIC_TEMPLATE missing or empty"
    for zone in $DYNAMIC_ZONES; do
        check_zone "$zone" "$DYNAMIC_TEMPLATE" "rendered dynamic zone template (as $zone)" "-i local"
    done
fi

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

# Each dynamic zone is created from the template once, when its file does not
# exist yet, and kept as it is from then on: the rendered configuration never
# replaces it, so registered names survive restarts, re-renders and deploys (and
# restores, since /data/dns is in every snapshot). A journal without its zone
# file belongs to a zone that is gone and would not apply to the new one.
mkdir -p "$DYNAMIC"
for zone in $DYNAMIC_ZONES; do
    file="$DYNAMIC/$zone.zone"
    if [ ! -s "$file" ]; then
        log "creating dynamic zone $zone in $file from $DYNAMIC_TEMPLATE"
        cp "$DYNAMIC_TEMPLATE" "$file.tmp"
        mv "$file.tmp" "$file"
        rm -f "$file.jnl"
    else
        log "dynamic zone $zone: keeping $file and its journal"
    fi
done

# named runs as user bind and writes the journals and the zone files into /data.
chown bind:bind /data
chown bind:bind "$ZONE" "$INSTALLED"
if [ -f "$JOURNAL" ]; then chown bind:bind "$JOURNAL"; fi
chmod 0644 "$ZONE"
chown -R bind:bind "$DYNAMIC"

check_zone "$ZONE_NAME" "$ZONE" "live zone"
for zone in $DYNAMIC_ZONES; do
    check_zone "$zone" "$DYNAMIC/$zone.zone" "dynamic zone" "-i local"
done

exec named -g -u bind -c "$CONF"
