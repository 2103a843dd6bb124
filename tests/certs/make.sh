#!/usr/bin/env sh
# Test-only TLS material (never use it elsewhere): a CA, a server and a client certificate signed by
# it (valid for 100 years, server for 127.0.0.1, ::1 and localhost), and an unrelated CA.
set -eu
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 36500 \
  -subj "/CN=thrift-handshake test CA" -config san.cnf -extensions ca
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" -subj "/CN=thrift-handshake test $who" \
    -config san.cnf
  openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.pem" -days 36500 \
    -extfile san.cnf -extensions "$who"
done
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 36500 \
  -subj "/CN=untrusted CA" -config san.cnf -extensions ca
rm -f ./*.csr ./*.srl ca.key other-ca.key
