#!/bin/sh
# trac-admin as the trac user, so that `docker exec infra_trac trac-admin /data/env ...`
# never leaves root-owned files (database journal, logs) in the Trac environment.
if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=trac --regid=trac --init-groups /opt/trac/bin/trac-admin "$@"
fi
exec /opt/trac/bin/trac-admin "$@"
