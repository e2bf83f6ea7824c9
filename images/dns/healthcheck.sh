#!/bin/sh
# Healthy when named answers authoritatively (no recursion) for its zone's SOA.
ZONE_NAME=$(sed -n 's/^[[:space:]]*zone[[:space:]]*"\([^"]*\)".*/\1/p' /env/dns/named.conf | head -n 1)
[ -n "$ZONE_NAME" ] || exit 1
dig +norec +time=2 +tries=1 @127.0.0.1 -t SOA "$ZONE_NAME" 2>/dev/null \
    | grep -q 'status: NOERROR' || exit 1
