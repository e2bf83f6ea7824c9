#!/bin/sh
# Entrypoint of infra/sampleapp.
#   no argument / "serve": busybox httpd on port 8080 in the foreground, access
#   log on stderr. Every path is answered by /srv/www/cgi-bin/index.cgi (a 404
#   page that is the CGI's output would need a rewrite busybox lacks, so the
#   error pages are written at start with the backend's name as well).
#   anything else: exec'ed as is.
set -eu

if [ "$#" -gt 0 ] && [ "$1" != serve ]; then
    exec "$@"
fi

WWW=/srv/www
backend=$(busybox hostname)
# "/" and every directory run cgi-bin/index.cgi (busybox httpd does that when a
# directory has no index.html); other paths get these pages.
for code in 403 404; do
    printf 'backend=%s\nstatus=%s\n' "$backend" "$code" > "/tmp/$code.txt"
done
cat > /tmp/httpd.conf <<CONF
E403:/tmp/403.txt
E404:/tmp/404.txt
CONF

echo "sampleapp: backend=$backend listening on :8080" >&2
# busybox httpd as PID 1 would ignore SIGTERM (no handler), so docker stop would
# wait for SIGKILL; the shell stays PID 1, forwards TERM/INT and exits.
busybox httpd -f -vv -p 8080 -h "$WWW" -c /tmp/httpd.conf &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0' TERM INT
wait "$pid"
