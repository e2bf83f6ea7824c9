#!/bin/bash
# Entrypoint of infra/cd (run by tini as PID 1).
#   no argument / "serve": prepare /data, then run the Buildbot master and the
#     local worker as user buildbot. The master is the main process: when it
#     exits, the worker is stopped and the container exits with the master's
#     status. A worker that dies on its own is restarted. SIGTERM/SIGINT
#     (docker stop) are passed to both.
#   "checkconfig": validate /env/cd/master.cfg with `buildbot checkconfig`.
#   anything else: exec'ed as is (e.g. a shell for debugging).
set -euo pipefail

CONF=/env/cd/master.cfg
SECRETS=/run/secrets
PRIVATE=/run/cd                 # copies of the secrets, readable by user buildbot only
MASTER_DIR=/data/master         # buildbot.tac, state.sqlite, gitpoller-work/
WORKER_DIR=/data/worker         # buildbot.tac, one folder per builder
SSH_DIR=/data/ssh               # known_hosts of the git server (kept across restarts)
RUN_AS=(setpriv --reuid=buildbot --regid=buildbot --init-groups --)

log() { echo "entrypoint: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The secrets mount keeps the host's owner and mode (root, 0600): copy them to a
# place only user buildbot can read. The key gets a final newline (ssh needs one).
install_secrets() {
    install -d -m 0700 -o buildbot -g buildbot "$PRIVATE"
    if [ -f "$SECRETS/git.key" ]; then
        install -m 0600 -o buildbot -g buildbot "$SECRETS/git.key" "$PRIVATE/git.key"
        if [ -n "$(tail -c 1 "$PRIVATE/git.key")" ]; then echo >>"$PRIVATE/git.key"; fi
    fi
    if [ -f "$SECRETS/worker.password" ]; then
        install -m 0600 -o buildbot -g buildbot "$SECRETS/worker.password" "$PRIVATE/worker.password"
    fi
    if [ -f "$SECRETS/admin.password" ]; then
        install -m 0600 -o buildbot -g buildbot "$SECRETS/admin.password" "$PRIVATE/admin.password"
    fi
    # Optional: the git server's host key(s) in known_hosts format, pinned. Without
    # it the first key seen is trusted and kept in /data/ssh/known_hosts.
    if [ -f "$SECRETS/git.known_hosts" ]; then
        install -m 0644 -o buildbot -g buildbot "$SECRETS/git.known_hosts" "$PRIVATE/git.known_hosts"
    fi
}

prepare_data() {
    install -d -o buildbot -g buildbot /data "$MASTER_DIR" "$WORKER_DIR" "$SSH_DIR"
    install -m 0644 -o buildbot -g buildbot /opt/cd/master.tac "$MASTER_DIR/buildbot.tac"
    install -m 0644 -o buildbot -g buildbot /opt/cd/worker.tac "$WORKER_DIR/buildbot.tac"
}

# Every git command of the poller (master) and of the Git step (worker) uses the
# secret key; the host key is pinned if given, else trusted on first use.
git_ssh() {
    local known="$SSH_DIR/known_hosts" strict=accept-new
    if [ -f "$PRIVATE/git.known_hosts" ]; then known="$PRIVATE/git.known_hosts"; strict=yes; fi
    export GIT_SSH_COMMAND="ssh -i $PRIVATE/git.key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$known -o StrictHostKeyChecking=$strict -o ConnectTimeout=10"
}

export HOME=/data PYTHONUNBUFFERED=1

if [ "$#" -gt 0 ] && [ "$1" != serve ] && [ "$1" != checkconfig ]; then
    exec "$@"
fi

[ -s "$CONF" ] || die "$CONF missing or empty (environment volume not mounted?)"
install_secrets
[ -s "$PRIVATE/worker.password" ] || die "$SECRETS/worker.password missing or empty (secrets not mounted?)"
[ -s "$PRIVATE/git.key" ] || die "$SECRETS/git.key missing or empty (secrets not mounted?)"
# Without it the web UI and REST API would have no account that may force or stop builds.
[ -s "$PRIVATE/admin.password" ] || die "$SECRETS/admin.password missing or empty (secrets not mounted? a deploy hands it over)"
git_ssh

if [ "${1:-serve}" = checkconfig ]; then
    exec "${RUN_AS[@]}" buildbot checkconfig "$CONF"
fi

prepare_data
# Creates the SQLite database on first start and migrates it after an image
# upgrade; also fails early (with the reason) on a broken master.cfg.
log "upgrade-master $MASTER_DIR"
(cd "$MASTER_DIR" && "${RUN_AS[@]}" buildbot upgrade-master --quiet "$MASTER_DIR") \
    || die "buildbot upgrade-master failed (see above)"

start_master() {
    (cd "$MASTER_DIR" && exec "${RUN_AS[@]}" twistd --nodaemon --no_save --pidfile= -y buildbot.tac) &
    master=$!
    log "master started (pid $master)"
}
start_worker() {
    (cd "$WORKER_DIR" && exec "${RUN_AS[@]}" twistd --nodaemon --no_save --pidfile= -y buildbot.tac) &
    worker=$!
    log "worker started (pid $worker)"
}

stopping=0
stop() {
    stopping=1
    log "stopping master and worker"
    kill -TERM "$master" "$worker" 2>/dev/null || true
}
trap stop TERM INT

start_master
start_worker

rc=0
while :; do
    done_pid=""
    set +e
    wait -n -p done_pid "$master" "$worker" 2>/dev/null
    status=$?
    set -e
    done_pid=${done_pid:-}        # wait -p leaves it unset when a signal interrupted it
    if [ "$done_pid" = "$master" ]; then
        rc=$status
        break
    fi
    if ! kill -0 "$master" 2>/dev/null; then  # reaped while the trap ran
        set +e; wait "$master"; rc=$?; set -e
        break
    fi
    if [ "$done_pid" = "$worker" ] && [ "$stopping" = 0 ]; then
        log "worker exited (status $status); restarting it in 5 s"
        sleep 5
        start_worker
    fi
    # otherwise: interrupted by a signal (trap ran), keep waiting for the master
done
log "master exited (status $rc)"

if kill -0 "$worker" 2>/dev/null; then
    kill -TERM "$worker" 2>/dev/null || true
    wait "$worker" 2>/dev/null || true
fi
exit "$rc"
