#!/usr/bin/env bash
# Certificates for a MoMa hub (and a Flower federation): a private CA, one server certificate
# for the names the clients dial, and optional client certificates for mutual TLS.
#
#   deploy/make-certs.sh [-o DIR] [-d DAYS] [-c CLIENT]... [-n SERVER_NAME] HOST [HOST...]
#
#   HOST        DNS names and/or IP addresses the server is reached at (all go into the
#               certificate's subjectAltName; the first is its common name). localhost and
#               127.0.0.1 are NOT added unless you list them.
#   -o DIR      output folder (default: ./certs); created with mode 0700
#   -d DAYS     validity of the server and client certificates (default 397; CA: 3650)
#   -c CLIENT   also make a client certificate CLIENT.pem / CLIENT.key (repeatable): one per lab
#               or operator when the hub runs with --client-ca (mutual TLS)
#   -n NAME     file name stem of the server certificate (default: server); run again with
#               another name (e.g. -n superlink) to make more server certificates from one CA
#
# Output (private keys mode 0600, certificates 0644):
#   ca.pem ca.key            the CA (keep ca.key offline once all certificates are made)
#   NAME.pem NAME.key        server certificate (EKU serverAuth) and key
#   CLIENT.pem CLIENT.key    client certificates (EKU clientAuth)
# An existing CA in DIR is reused, so running again adds certificates signed by the same CA.
# Keys are ECDSA P-256; certificates are signed with SHA-256. Needs openssl >= 1.1.1.
set -euo pipefail

out=./certs
days=397
name=server
clients=()
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "o:d:c:n:h" opt; do
  case "$opt" in
    o) out=$OPTARG ;;
    d) days=$OPTARG ;;
    c) clients+=("$OPTARG") ;;
    n) name=$OPTARG ;;
    h) usage 0 ;;
    *) usage 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || { echo "error: give at least one HOST (DNS name or IP address)" >&2; usage 2; }
command -v openssl >/dev/null || { echo "error: openssl not found" >&2; exit 1; }
for stem in "$name" "${clients[@]}"; do
  [[ "$stem" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "error: bad file name stem '$stem'" >&2; exit 2; }
done

umask 077
mkdir -p "$out"
chmod 700 "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

newkey() {  # $1: key file (created 0600 thanks to the umask)
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

if [ -f "$out/ca.pem" ] && [ -f "$out/ca.key" ]; then
  echo "reusing CA $out/ca.pem"
else
  newkey "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days 3650 -subj "/CN=MoMa hub CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$out/ca.pem"
  chmod 644 "$out/ca.pem"
  echo "made CA $out/ca.pem"
fi

sign() {  # $1 stem, $2 CN, $3 extension file
  newkey "$out/$1.key"
  openssl req -new -key "$out/$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  openssl x509 -req -in "$work/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -CAserial "$work/ca.srl" -CAcreateserial -sha256 -days "$days" -extfile "$3" \
    -out "$out/$1.pem" 2>/dev/null
  chmod 644 "$out/$1.pem"
  openssl verify -CAfile "$out/ca.pem" "$out/$1.pem" >/dev/null
}

san=""
for host in "$@"; do
  if [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then
    san+="${san:+,}IP:$host"
  else
    san+="${san:+,}DNS:$host"
  fi
done
cat > "$work/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
authorityKeyIdentifier=keyid
EOF
sign "$name" "$1" "$work/server.ext"
echo "made server certificate $out/$name.pem for $san"

cat > "$work/client.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
EOF
for client in "${clients[@]}"; do
  sign "$client" "$client" "$work/client.ext"
  echo "made client certificate $out/$client.pem"
done
