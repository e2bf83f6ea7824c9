#!/bin/sh
# Entrypoint of infra/git (gitolite over OpenSSH).
#   no argument / "sshd": set up or update gitolite in /data, then run sshd in
#   the foreground (logs to stderr). Container port 22; the node publishes it
#   on the master's address, port 22 (git@git.internal; the node's own admin
#   sshd listens on 2222 there).
#   anything else: exec'ed as is (e.g. a shell for debugging).
#
# State, all in /data:
#   /data/ssh/   sshd host keys, generated here at first start
#   /data/git/   home of the user git (uid 990): .gitolite.rc, .gitolite/,
#                .ssh/authorized_keys, repositories/ (gitolite-admin.git, ...)
# Every start (idempotent; gitolite commits to gitolite-admin only on a change):
#   - the admin key /run/secrets/admin.pub becomes keydir/admin.pub (user "admin");
#   - /env/git/repositories.conf (rendered from env.git.repositories) is copied to
#     .gitolite/conf/lapinfra-repositories.conf, and gitolite.conf gets an
#     'include "lapinfra-repositories.conf"' line if it lacks one;
#   - gitolite setup compiles the configuration, creates missing repositories
#     and rewrites authorized_keys.
set -eu

HOME_DIR=/data/git
HOSTKEY_DIR=/data/ssh
SECRET_KEY=/run/secrets/admin.pub
ADMIN_KEY=/run/gitolite/admin.pub     # the file name makes the gitolite user "admin"
CD_SECRET=/run/secrets/cd.pub         # optional: the CD server's read key (gitolite user "cd")
CD_KEY=/run/gitolite/cd.pub
RENDERED=/env/git/repositories.conf
INCLUDED=lapinfra-repositories.conf   # in $HOME_DIR/.gitolite/conf/
CONF=$HOME_DIR/.gitolite/conf/gitolite.conf

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a command as git with a clean environment (gitolite reads HOME and USER).
as_git() {
    (cd "$HOME_DIR" && runuser -u git -- env -i HOME="$HOME_DIR" USER=git LOGNAME=git \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@")
}

if [ "$#" -gt 0 ] && [ "$1" != sshd ]; then
    exec "$@"
fi

[ -d /data ] || die "/data missing"
[ -s "$SECRET_KEY" ] || die "$SECRET_KEY missing or empty (secrets not mounted?)"
[ -s "$RENDERED" ] || die "$RENDERED missing or empty (environment volume not mounted?)"

# --- sshd host keys -------------------------------------------------------
mkdir -p "$HOSTKEY_DIR"
chown root:root "$HOSTKEY_DIR"
chmod 0755 "$HOSTKEY_DIR"
for type in ed25519 ecdsa rsa; do
    key=$HOSTKEY_DIR/ssh_host_${type}_key
    if [ ! -s "$key" ]; then
        log "generating sshd host key $key"
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t "$type" -N '' -C "infra_git" -f "$key"
    elif [ ! -s "$key.pub" ]; then
        ssh-keygen -y -f "$key" > "$key.pub"
    fi
    chmod 0600 "$key"
    chmod 0644 "$key.pub"
    log "host key: $(ssh-keygen -l -f "$key.pub")"
done

# --- home of git ----------------------------------------------------------
if [ ! -d "$HOME_DIR" ]; then
    install -d -m 0750 -o git -g git "$HOME_DIR"
fi
# The uid is fixed in the image; re-own data written by another uid (old image).
if [ "$(stat -c %u:%g "$HOME_DIR")" != "$(id -u git):$(id -g git)" ]; then
    log "re-owning $HOME_DIR to git"
    chown -R git:git "$HOME_DIR"
fi
chmod 0750 "$HOME_DIR"   # sshd's StrictModes: not group/world writable

# The secret is root-only (0600) as mounted: copy it for git, under the name
# that makes gitolite call the key's owner "admin".
mkdir -p /run/gitolite
chown git:git /run/gitolite
chmod 0700 /run/gitolite
install -m 0600 -o git -g git "$SECRET_KEY" "$ADMIN_KEY"
ssh-keygen -l -f "$ADMIN_KEY" >/dev/null 2>&1 || die "$SECRET_KEY is not an SSH public key"
[ "$(grep -c . "$ADMIN_KEY")" -eq 1 ] || die "$SECRET_KEY must hold exactly one key line"

# --- gitolite ---------------------------------------------------------------
if [ ! -f "$CONF" ]; then
    log "first start: gitolite setup with the admin key"
    as_git gitolite setup -pk "$ADMIN_KEY" -m "gitolite setup (first start of infra_git)" >&2
fi

install -m 0640 -o git -g git "$RENDERED" "$HOME_DIR/.gitolite/conf/$INCLUDED"
if ! grep -Eq "^[[:space:]]*include[[:space:]]+[\"']$INCLUDED[\"']" "$CONF"; then
    log "adding include \"$INCLUDED\" to gitolite.conf"
    printf '\n# Repositories of the environment (env.git.repositories), maintained by\n# the git container from /env/git/repositories.conf: do not remove.\ninclude "%s"\n' \
        "$INCLUDED" >> "$CONF"
    chown git:git "$CONF"
fi

# Commits gitolite.conf / keydir/admin.pub to gitolite-admin when they changed,
# compiles, creates missing repositories and rewrites authorized_keys.
as_git gitolite setup -pk "$ADMIN_KEY" -m "infra_git start: admin key and environment repositories" >&2
if [ -f "$CD_SECRET" ]; then
    install -m 0600 -o git -g git "$CD_SECRET" "$CD_KEY"
    ssh-keygen -l -f "$CD_KEY" >/dev/null 2>&1 || die "$CD_SECRET is not an SSH public key"
    as_git gitolite setup -pk "$CD_KEY" -m "infra_git start: CD server key" >&2
fi
log "repositories: $(as_git gitolite list-phy-repos | tr '\n' ' ')"

# --- sshd -------------------------------------------------------------------
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd -t || die "sshd configuration invalid"
log "starting sshd"
exec /usr/sbin/sshd -D -e
