#!/bin/sh
# Entrypoint of infra/cache (apt-cacher-ng).
#   no argument / "serve": prepare /data, then exec apt-cacher-ng in the
#   foreground as user apt-cacher-ng. It listens on port 3142 inside the
#   container, on the node's infra network only: the LAN's apt reaches it through
#   the proxy's port 3124, the report page through https://ubuntu.cache.<domain>/.
#   anything else: exec'ed as is (e.g. a shell for debugging).
# Cache in /data/cache, logs in /data/log (apt-cacher.log: one line per
# transfer, the source of the report page's statistics; apt-cacher.err:
# errors). Both log files are also followed on stdout/stderr for docker logs.
#
# Optional secret /run/secrets/admin.password (one line, the password): when
# present, the report page's statistics and maintenance actions
# (acng-report.html with doCount, expiration, deletion) require HTTP basic auth
# as user "admin" (apt-cacher-ng's AdminAuth). Without it the page is open, as
# in Debian's default configuration.
set -eu

IMAGE_CONF=/etc/apt-cacher-ng-lapinfra
PACKAGE_CONF=/etc/apt-cacher-ng       # Debian's package: its default upstreams and security rule
ENV_CONF=/env/cache                   # rendered: the environment's upstreams (cache.*_upstream)
CONF_DIR=/run/apt-cacher-ng-conf
ADMIN_SECRET=/run/secrets/admin.password
USER=apt-cacher-ng

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$#" -gt 0 ] && [ "$1" != serve ]; then
    exec "$@"
fi

[ -d /data ] || die "/data missing"
[ -s "$IMAGE_CONF/acng.conf" ] || die "$IMAGE_CONF/acng.conf missing"

mkdir -p /data/cache /data/log /run/apt-cacher-ng
# Only the top directories: the cache below them was written by the same user.
chown "$USER:$USER" /data/cache /data/log /run/apt-cacher-ng

# Runtime configuration directory: the image's files plus, when the secret is
# mounted, security.conf with AdminAuth (readable by root and the daemon only).
rm -rf "$CONF_DIR"
mkdir -p "$CONF_DIR"
cp "$IMAGE_CONF"/* "$CONF_DIR"/
# The Debian security archive's rule, with the host names its clients use, as the
# package writes it (commented out in some versions).
secdeb=$(sed -n 's/^#* *\(Remap-secdeb:.*\)$/\1/p' "$PACKAGE_CONF/acng.conf" | head -n 1)
[ -n "$secdeb" ] || die "no Remap-secdeb rule in $PACKAGE_CONF/acng.conf"
printf '%s\n' "$secdeb" >> "$CONF_DIR/acng.conf"
# Upstreams: the environment's (rendered, non-empty), else the package's defaults.
for archive in debian ubuntu; do
    if [ -s "$ENV_CONF/backends_$archive" ]; then
        cp "$ENV_CONF/backends_$archive" "$CONF_DIR/backends_$archive"
        upstream=$(head -n 1 "$CONF_DIR/backends_$archive")
        log "$archive upstream: $upstream ($ENV_CONF/backends_$archive)"
        # Clients that already use that mirror ask for it by name: cache those requests
        # too (config.py's URL grammar keeps | and & out of the value).
        prefix=${upstream#*://}
        prefix=${prefix%/}
        sed -i "s|^\(Remap-[a-z]*: file:${archive}_mirrors* */$archive\)|\1 $prefix|; s|^\(Remap-[a-z]*: file:deb_mirror\*.gz */$archive\)|\1 $prefix|" "$CONF_DIR/acng.conf"
    elif [ -s "$PACKAGE_CONF/backends_$archive.default" ]; then
        cp "$PACKAGE_CONF/backends_$archive.default" "$CONF_DIR/backends_$archive"
        log "$archive upstream: the package's default ($PACKAGE_CONF/backends_$archive.default)"
    fi
done
if [ -s "$ADMIN_SECRET" ]; then
    password=$(head -n 1 "$ADMIN_SECRET" | tr -d '\r\n')
    [ -n "$password" ] || die "$ADMIN_SECRET has an empty first line"
    umask 027
    printf 'AdminAuth: admin:%s\n' "$password" > "$CONF_DIR/security.conf"
    umask 022
    unset password
    chown "root:$USER" "$CONF_DIR/security.conf"
    log "report page maintenance and statistics require user admin ($ADMIN_SECRET)"
else
    log "no $ADMIN_SECRET: report page open to every client (Debian's default)"
fi
touch /data/log/apt-cacher.log /data/log/apt-cacher.err
chown "$USER:$USER" /data/log/apt-cacher.log /data/log/apt-cacher.err

# Follow the log files into docker logs (new lines only).
tail -n 0 -F /data/log/apt-cacher.log 2>/dev/null &
tail -n 0 -F /data/log/apt-cacher.err 1>&2 2>/dev/null &

exec setpriv --reuid="$USER" --regid="$USER" --init-groups \
    /usr/sbin/apt-cacher-ng -c "$CONF_DIR"
