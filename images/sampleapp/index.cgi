#!/bin/sh
# CGI of infra/sampleapp (run by busybox httpd for every request, see entrypoint.sh).
# Says which backend served the request, and what the load balancer passed on.
backend=$(busybox hostname)
# A request body (POST/PUT through the proxy, e.g. an upload test) is read and
# counted, so the client can see that all of it arrived.
received=0
if [ "${CONTENT_LENGTH:-0}" -gt 0 ] 2>/dev/null; then
    received=$(busybox head -c "$CONTENT_LENGTH" | busybox wc -c)
fi
printf 'Content-Type: text/plain\r\n'
printf 'Cache-Control: no-store\r\n'
printf 'X-Backend: %s\r\n' "$backend"
printf '\r\n'
[ "$REQUEST_METHOD" = HEAD ] && exit 0
printf 'backend=%s\n' "$backend"
printf 'method=%s\n' "$REQUEST_METHOD"
printf 'uri=%s\n' "$REQUEST_URI"
printf 'host=%s\n' "$HTTP_HOST"
printf 'x_forwarded_for=%s\n' "$HTTP_X_FORWARDED_FOR"
printf 'body_bytes=%s\n' "$received"
