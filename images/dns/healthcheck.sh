#!/bin/sh
# Healthy when named answers authoritatively (no recursion) for the SOA of every
# zone of named.conf: the domain's own zone and the dynamic ones.
ZONES=$(sed -n 's/^[[:space:]]*zone[[:space:]]*"\([^"]*\)".*/\1/p' /env/dns/named.conf)
[ -n "$ZONES" ] || exit 1
for zone in $ZONES; do
    dig +norec +time=2 +tries=1 @127.0.0.1 -t SOA "$zone" 2>/dev/null \
        | grep -q 'status: NOERROR' || exit 1
done
