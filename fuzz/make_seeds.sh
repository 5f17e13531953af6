#!/usr/bin/env bash
# make_seeds.sh - regenerates the seed corpora in fuzz/corpus/ (already checked in; run this only
# to refresh them). Needs the openssl CLI and python3 (for capturing real TLS server flights).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
c=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$c"/{config,crl,url,tlsc,http}

# ---- a small CA (same name as fuzz_crl's fixed issuer), three leaves, a CRL listing them ----
cd "$work"
cat >ca.cnf <<'EOF'
[ca]
default_ca = CA
[CA]
dir = .
database = index.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_crl_days = 7
crl_extensions = crl_ext
policy = pol
[pol]
commonName = supplied
[crl_ext]
authorityKeyIdentifier = keyid:always
EOF
cat >leaf.ext <<'EOF'
crlDistributionPoints = URI:http://crl.lab.test/inter.crl,URI:ldap://ldap.lab.test/cn=CA
authorityInfoAccess = caIssuers;URI:http://crl.lab.test/inter.der
subjectAltName = DNS:fuzz.lab.test
EOF
touch index.txt
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -subj "/CN=Lab Issuing CA 1" -days 3650 \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for s in 80 0123 7fffffffffffffff; do
    openssl req -new "${ec[@]}" -keyout "l$s.key" -subj "/CN=leaf$s" -out "l$s.csr" 2>/dev/null
    openssl x509 -req -in "l$s.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$s" -days 3650 \
        -extfile leaf.ext -out "l$s.pem" 2>/dev/null
done
openssl ca -config ca.cnf -gencrl -out empty.pem 2>/dev/null
openssl ca -config ca.cnf -revoke l80.pem -crl_reason keyCompromise 2>/dev/null
openssl ca -config ca.cnf -revoke l0123.pem -crl_reason removeFromCRL 2>/dev/null
openssl ca -config ca.cnf -revoke l7fffffffffffffff.pem 2>/dev/null
openssl ca -config ca.cnf -gencrl -out crl.pem 2>/dev/null

# ---- crl: CRLs and AIA payloads, valid and broken ----
openssl crl -in crl.pem -outform DER -out "$c/crl/crl-3-entries.der"
cp crl.pem "$c/crl/crl-3-entries.pem"
openssl crl -in empty.pem -outform DER -out "$c/crl/crl-empty.der"
head -c 120 "$c/crl/crl-3-entries.der" >"$c/crl/crl-truncated.der"
{ cat "$c/crl/crl-3-entries.der"; printf 'trailing'; } >"$c/crl/crl-trailing-data.der"
openssl x509 -in l80.pem -outform DER -out "$c/crl/cert.der"
cat l80.pem ca.pem >"$c/crl/certs-chain.pem"
openssl crl2pkcs7 -nocrl -certfile "$c/crl/certs-chain.pem" -outform DER -out "$c/crl/p7-bundle.der"
openssl crl2pkcs7 -nocrl -certfile l80.pem -out "$c/crl/p7-bundle.pem"
printf -- '-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n' \
    >"$c/crl/pem-garbage.pem"
printf '\x30\x82\xff\xff\x30\x00' >"$c/crl/der-bad-length.der"

# ---- tlsc: what a server sends back (first byte: chunk size) ----
python3 - "$work" "$c/tlsc" <<'EOF'
import ssl, sys
work, out = sys.argv[1], sys.argv[2]
def flight(version):
    s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    s.load_cert_chain(work + "/l80.pem", work + "/l80.key")
    s.minimum_version = s.maximum_version = version
    cl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cl.check_hostname = False
    cl.verify_mode = ssl.CERT_NONE
    ci, co, si, so = (ssl.MemoryBIO() for _ in range(4))
    c = cl.wrap_bio(ci, co, server_hostname="fuzz.lab.test")
    srv = s.wrap_bio(si, so, server_side=True)
    for obj in (c, srv):
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        si.write(co.read())
    return so.read()
seeds = {
    "tls12-server-flight": bytes([0]) + flight(ssl.TLSVersion.TLSv1_2),
    "tls12-server-flight-chunk7": bytes([7]) + flight(ssl.TLSVersion.TLSv1_2),
    "tls13-server-flight": bytes([0]) + flight(ssl.TLSVersion.TLSv1_3),
    "alert-handshake-failure": bytes([0]) + b"\x15\x03\x03\x00\x02\x02\x28",
    "alert-protocol-version": bytes([1]) + b"\x15\x03\x01\x00\x02\x02\x46",
    "plain-http": bytes([0]) + b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "garbage": bytes([3]) + b"\x16\x03\x03\xff\xff" + b"\x00" * 16,
    "close-now": bytes([0]),
}
for name, data in seeds.items():
    with open(f"{out}/{name}", "wb") as f:
        f.write(data)
EOF

# ---- url: profile URLs and --resolve specs ----
u=$c/url
printf 'https://ns.corp.example/Altiris/NS/Agent/GetClientPolicies.aspx' >"$u/https-path"
printf 'http://ns.corp.example:8080/' >"$u/http-port"
printf 'https://[2001:db8::1]:8443/x?y=1' >"$u/ipv6-port-query"
printf 'https://host:0/' >"$u/bad-port"
printf 'ftp://x/' >"$u/bad-scheme"
printf 'https://[::1' >"$u/unterminated-v6"
printf 'http://user:s3cret@proxy.corp:3128' >"$u/proxy-credentials"
printf 'http://user:p%%40ss@[::1]:8080' >"$u/proxy-credentials-encoded-v6"
printf 'ns.corp.example:10.0.0.5' >"$u/resolve-v4"
printf 'ns.corp.example:[2001:db8::5]' >"$u/resolve-v6-brackets"
printf 'ns.corp.example:not-an-ip' >"$u/resolve-bad-addr"

# ---- http: what a server answers to GET on the agent URL ----
h=$c/http
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>' >"$h/ok-200"
printf 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n' \
    >"$h/continue-then-500"
printf 'HTTP/1.1 103 Early Hints\nLink: </a.css>; rel=preload\n\nHTTP/1.1 204 No Content\n\n' \
    >"$h/early-hints-bare-lf"
printf 'HTTP/1.1 5000 X\r\n\r\n' >"$h/bad-code-4-digits"
printf 'HTTP/1.1 200 O\0K\r\n\r\n' >"$h/nul-in-status-line"

# ---- config: against fuzz_config's scratch dir (pki/ca.pem, pki/inter.pem, token,
#      hashdir/, logs/) ----
k=$c/config
sed -e 's|pki/corp-root.pem|pki/ca.pem|; s|pki/old-root.pem|pki/ca.pem|' \
    -e 's|pki/corp-intermediates.pem|pki/inter.pem|' \
    "$src/config/fleetscan.example.jsonc" >"$k/example.jsonc"
cat >"$k/minimal.json" <<'EOF'
{"trust_stores": {"corp": {"ca_file": "pki/ca.pem"}},
 "profiles": {"default": {"url": "https://ns.corp.example/"}},
 "groups": [{"name": "all", "count": 1000}]}
EOF
cat >"$k/files-and-network.jsonc" <<'EOF'
// every file-backed key, resolve overrides, proxy, pin
{
  "listen": "[::1]:0", "api_token_file": "token", "event_log": "logs/agent.log",
  "shard": "1/3", "vantage": "dc1",
  "trust_stores": {"d": {"ca_dir": "hashdir", "intermediates_file": "pki/inter.pem"},
                   "f": {"ca_file": "pki/ca.pem", "ca_dir": null}},
  "profiles": {"p": {"url": "https://[2001:db8::1]:8443/a?b",
                     "expect_thumbprint": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"}},
  "reference": {"profile": "p", "trust": "d"},
  "groups": [{"name": "g", "count": 2, "clock_skew_s": -3600,
              "tls": {"min_version": "1.0", "max_version": "1.2", "ciphers": "HIGH:!aNULL",
                      "ciphersuites": "TLS_AES_128_GCM_SHA256", "sni": false},
              "network": {"resolve": {"ns.corp.example": "[::1]", "crl.corp.example": "10.0.0.1"},
                          "proxy": "http://proxy.corp:3128", "source_address": "127.0.0.1"}},],
}
EOF
cat >"$k/bad-trust-ref.json" <<'EOF'
{"trust_stores": {"corp": {"ca_file": "pki/ca.pem"}},
 "profiles": {"default": {"url": "https://ns.corp.example/"}},
 "groups": [{"name": "all", "count": 1, "trust": "legcy", "revocation": {"mode": "strikt"}}]}
EOF
printf '{"groups": [1, 2,\n /* unterminated comment' >"$k/unterminated-comment.jsonc"
printf '\xef\xbb\xbf{"interval_s": -1, "jitter": 2, "shard": "3/2"}' >"$k/bom-bad-values.json"
printf '["not", "an", "object"]' >"$k/array.json"
printf '{"trust_stores": {"x": {"ca_file": "/nonexistent/ca.pem"}}}' >"$k/missing-file.json"

# ---- API requests (fuzz_api): byte 0 the method (0 GET, 1 HEAD, 2 POST, 3 PUT, 4 DELETE,
# 5 OPTIONS, 6 XYZZY), byte 1 extras (1 token, 2 a header line follows the target, 4 that header
# is Authorization), the target, then the header value and the body after newlines ----
a=$c/api
mkdir -p "$a"
seed() { printf '%b' "$2" >"$a/$1"; }
seed get-status '\000\000/api/v1/status'
seed get-endpoints-filtered '\000\000/api/v1/endpoints?state=offline&cause=crl_unreachable&group=hq&limit=1&offset=1'
seed get-endpoint '\000\000/api/v1/endpoints/hq-00001'
seed get-endpoint-unknown '\000\000/api/v1/endpoints/hq-1'
seed get-targets '\000\000/api/v1/targets'
seed get-causes '\000\000/api/v1/causes'
seed get-events-since '\000\000/api/v1/events?since=2025-11-24T16:00:00Z'
seed get-history '\000\000/api/v1/history?since=1764000000&until=1764003600&step=60'
seed get-forecast '\000\000/api/v1/forecast?days=30'
seed get-metrics '\000\000/metrics'
seed get-healthz '\000\000/healthz'
seed get-dashboard '\000\000/'
seed head-status '\001\000/api/v1/status'
seed post-scan-token '\002\001/api/v1/scan'
seed post-scan-no-token '\002\000/api/v1/scan'
seed post-scan-wrong-token '\002\006/api/v1/scan\nBearer nope\n'
seed post-preflight-pem '\002\001/api/v1/preflight\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
seed put-preflight '\003\001/api/v1/preflight\nbody'
seed delete-status '\004\000/api/v1/status'
seed odd-method '\006\000/api/v1/endpoints'
seed nul-and-utf8 '\000\000/api/v1/endpoints?group=%ff%fe%00&state=online%00'
seed overflow-limit '\000\000/api/v1/endpoints?limit=18446744073709551616&offset=-1'
seed many-params '\000\000/api/v1/endpoints?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&limit=2'
seed header-line '\000\002/api/v1/status\nX-Forwarded-For: 10.0.0.1\n'

# ---- OCSP responses (fuzz_ocsp): written by the target itself, with its fixed keys, so their
# signatures verify; any build of it does (the ASan build's replay driver by default) ----
o=$c/ocsp
mkdir -p "$o"
seeder=${OCSP_SEEDER:-$src/build-asan/fuzz_ocsp_replay}
if [ -x "$seeder" ]; then
    FLEETSCAN_FUZZ_OCSP_SEEDS=$o "$seeder" /dev/null
else
    echo "make_seeds.sh: $seeder not built: OCSP seeds left as they are" >&2
fi
