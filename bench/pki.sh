#!/usr/bin/env bash
# pki.sh OUT CRL_BASE_URL [CRL_SECONDS [OCSP_URL_RSA OCSP_URL_ECDSA]]
# Two three-level chains with the openssl CLI: RSA-2048 (root, intermediate, leaf) and
# ECDSA P-256 (root, intermediate, leaf). The leaf names rsa.bench.test / ecdsa.bench.test
# (and ALG-pkg.bench.test, a second target's name, and localhost, the name the system resolver
# answers); every non-root certificate carries a CRL distribution point under CRL_BASE_URL
# (ALG-root.crl for the intermediate, ALG-int.crl for the leaf). The CRLs (DER) are written
# to OUT/crl/; their nextUpdate is CRL_SECONDS from now (default 7 days), their thisUpdate
# 10 minutes ago (as CAs back-date it for clock skew).
# Two more leaves per chain, same key type and issuing CA, for the revocation paths:
#   ALG-ocsp.bench.test   AIA OCSP URL OCSP_URL_ALG (answered by `openssl ocsp -index
#                         OUT/db-ALG-int/index.txt`, signed by the issuing CA), CDP as the leaf
#   ALG-delta.bench.test  CDP ALG-int.crl and a freshestCRL pointing at ALG-int-delta.crl, a
#                         delta CRL of that base (Delta CRL Indicator = the base's CRL number)
# Re-running with an existing OUT only regenerates the CRLs and the deltas.
set -euo pipefail
trap 'echo "pki.sh: failed at line $LINENO" >&2' ERR
out=$1 base=$2 crlsec=${3:-604800} ocsp_rsa=${4:-} ocsp_ecdsa=${5:-}
mkdir -p "$out/crl"
cd "$out"

ca_conf() { # ca_conf NAME: a minimal `openssl ca` database (issuing and CRLs)
    mkdir -p "db-$1/new"
    [ -f "db-$1/index.txt" ] || : > "db-$1/index.txt"
    [ -f "db-$1/crlnumber" ] || echo 1000 > "db-$1/crlnumber"
    [ -f "db-$1/serial" ] || echo "$2" > "db-$1/serial"
    cat > "db-$1/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $out/db-$1/index.txt
crlnumber = $out/db-$1/crlnumber
serial = $out/db-$1/serial
new_certs_dir = $out/db-$1/new
unique_subject = no
default_md = sha256
policy = any
crl_extensions = crl_ext
[any]
organizationName = optional
commonName = supplied
[crl_ext]
authorityKeyIdentifier = keyid:always
CNF
}

# Certificates are back-dated by a day: a real server certificate is never seconds old, and a
# client that verifies at a rounded time must not see a brand-new certificate as not yet valid.
START=$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)
sign() { # sign CA_DB CA_KEY CA_CERT|-selfsign CSR EXT_SECTION DAYS OUT
    local issuer=(-cert "$3")
    [ "$3" = -selfsign ] && issuer=(-selfsign)
    openssl ca -batch -notext -config "db-$1/ca.cnf" -keyfile "$2" "${issuer[@]}" -in "$4" \
        -extfile "$ALG_EXT" -extensions "$5" -startdate "$START" \
        -enddate "$(date -u -d "+$6 days" +%Y%m%d%H%M%SZ)" -out "$7" 2>/dev/null
}

gencrl() { # gencrl CA_NAME [PEM_OUT]
    openssl ca -batch -gencrl -config "db-$1/ca.cnf" -keyfile "$1.key" -cert "$1.pem" \
        -crl_lastupdate "$(date -u -d '-10 min' +%Y%m%d%H%M%SZ)" \
        -crl_nextupdate "$(date -u -d "+$crlsec sec" +%Y%m%d%H%M%SZ)" \
        -out "${2:-db-$1/crl.pem}" 2>/dev/null
    [ -n "${2:-}" ] && return 0
    openssl crl -in "db-$1/crl.pem" -outform DER -out "crl/$1.crl.tmp"
    mv "crl/$1.crl.tmp" "crl/$1.crl" # atomic for nginx
}

# The delta of CA_NAME's current base CRL: a newer CRL (the next CRL number) diffed against the
# base; its Delta CRL Indicator names the base's number, so base and delta always match.
gendelta() { # gendelta CA_NAME
    gencrl "$1" "db-$1/crl-newer.pem"
    openssl crl -in "db-$1/crl.pem" -gendelta "db-$1/crl-newer.pem" -key "$1.key" -sha256 \
        -outform DER -out "crl/$1-delta.crl.tmp"
    mv "crl/$1-delta.crl.tmp" "crl/$1-delta.crl"
}

newkey() { # newkey ALG FILE
    if [ "$1" = rsa ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" 2>/dev/null
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2" 2>/dev/null
    fi
}

if [ ! -f ecdsa-leaf.pem ]; then
    for alg in rsa ecdsa; do
        ocsp=$ocsp_rsa
        [ $alg = ecdsa ] && ocsp=$ocsp_ecdsa
        ocsp=${ocsp:-http://ocsp.bench.test/} # the responder is only needed by the OCSP rows
        newkey $alg $alg-root.key
        newkey $alg $alg-int.key
        newkey $alg $alg-leaf.key
        cat > $alg-ext.cnf <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
[root]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[int]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
crlDistributionPoints = URI:$base/$alg-root.crl
[leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:$alg.bench.test, DNS:$alg-pkg.bench.test, DNS:localhost
crlDistributionPoints = URI:$base/$alg-int.crl
[leaf_ocsp]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:$alg-ocsp.bench.test
crlDistributionPoints = URI:$base/$alg-int.crl
authorityInfoAccess = OCSP;URI:$ocsp
[leaf_delta]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:$alg-delta.bench.test
crlDistributionPoints = URI:$base/$alg-int.crl
freshestCRL = URI:$base/$alg-int-delta.crl
CNF
        ALG_EXT=$out/$alg-ext.cnf
        ca_conf $alg-root 1001
        ca_conf $alg-int 2001
        openssl req -new -key $alg-root.key -subj "/O=fleetscan bench/CN=Bench ${alg^^} Root" \
            -config $alg-ext.cnf -out $alg-root.csr 2>/dev/null
        sign $alg-root $alg-root.key -selfsign $alg-root.csr root 3650 $alg-root.pem
        openssl req -new -key $alg-int.key -subj "/O=fleetscan bench/CN=Bench ${alg^^} Issuing CA" \
            -config $alg-ext.cnf -out $alg-int.csr 2>/dev/null
        sign $alg-root $alg-root.key $alg-root.pem $alg-int.csr int 1825 $alg-int.pem
        openssl req -new -key $alg-leaf.key -subj "/O=fleetscan bench/CN=$alg.bench.test" \
            -config $alg-ext.cnf -out $alg-leaf.csr 2>/dev/null
        sign $alg-int $alg-int.key $alg-int.pem $alg-leaf.csr leaf 365 $alg-leaf.pem
        cat $alg-leaf.pem $alg-int.pem > $alg-chain.pem # what nginx sends
        for v in ocsp delta; do
            newkey $alg $alg-$v.key
            openssl req -new -key $alg-$v.key -subj "/O=fleetscan bench/CN=$alg-$v.bench.test" \
                -config $alg-ext.cnf -out $alg-$v.csr 2>/dev/null
            sign $alg-int $alg-int.key $alg-int.pem $alg-$v.csr leaf_$v 365 $alg-$v.pem
            cat $alg-$v.pem $alg-int.pem > $alg-$v-chain.pem
        done
    done
fi
for alg in rsa ecdsa; do
    gencrl $alg-root
    gencrl $alg-int
    gendelta $alg-int
done
