# tests/support/certs.sh - certificates made at run time with the openssl CLI, for the TLS
# tests (test_tls.sh: Temporal over TLS; test_redis_tls.sh: rediss://) and the benches over TLS
# (bench/fleet TLS=1, bench/redis_tls). Source it with CERT_DIR set; files land there as
# NAME.pem / NAME.key, openssl's output in CERT_DIR/openssl.log. Each function returns non-zero
# (and says why on stderr) on failure.
# EC P-256 keys, valid for 2 days: fast to make, never long-lived.

cert_ossl() {
  openssl "$@" >>"$CERT_DIR/openssl.log" 2>&1 && return 0
  echo "openssl $1 failed (see $CERT_DIR/openssl.log)" >&2
  return 1
}

# new_ca NAME: a self-signed CA
new_ca() {
  cert_ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$CERT_DIR/$1.key" -out "$CERT_DIR/$1.pem" -subj "/CN=dispatchd test $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# new_cert NAME CA SAN EKU: a leaf signed by CA, e.g. new_cert server ca "IP:127.0.0.1" serverAuth
new_cert() {
  cert_ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$CERT_DIR/$1.key" -out "$CERT_DIR/$1.csr" -subj "/CN=$1" || return 1
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" \
    >"$CERT_DIR/$1.ext"
  cert_ossl x509 -req -in "$CERT_DIR/$1.csr" -CA "$CERT_DIR/$2.pem" -CAkey "$CERT_DIR/$2.key" \
    -CAcreateserial -days 2 -out "$CERT_DIR/$1.pem" -extfile "$CERT_DIR/$1.ext"
}
