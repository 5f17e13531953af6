#!/usr/bin/env bash
# test_deploy.sh - checks the deployment files under deploy/ and the runbook anchors of
# docs/OPERATIONS.md. Run by CTest (CMakeLists.txt globs tests/test_*.sh) with FLEETSCAN_SRC,
# FLEETSCAN_BIN and FLEETSCAN_BUILD set; by hand:
#   FLEETSCAN_SRC=$PWD FLEETSCAN_BIN=$PWD/build/fleetscan bash tests/test_deploy.sh
#
# What it checks:
#   prometheus  promtool check rules / test rules / check config; the PromQL of the Grafana
#               dashboard parses; every metric the rules and the dashboard use is served by a
#               real daemon (run against an openssl s_server on loopback)
#   grafana     the dashboard is valid JSON with the expected variables and datasource
#   systemd     required directives present; systemd-analyze verify when available
#   container   runtime stage installs the package of every library the binary links,
#               build stage the package of every pkg-config module CMakeLists.txt needs;
#               the example config passes `fleetscan run --check`
#   kubernetes  YAML parses (when python3-yaml is there); security and probe settings; the
#               ConfigMap's fleetscan.json passes --check; the StatefulSet's shell command
#               gives pod fleetscan-shard-2 shard 2/3
#   runbook     every runbook anchor named by an alert exists in docs/OPERATIONS.md
# A check whose tool is missing is reported as SKIP; any FAIL makes the script exit 1.
set -u

SRC=${FLEETSCAN_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${FLEETSCAN_BIN:-$SRC/build/fleetscan}
DEPLOY=$SRC/deploy
PROM=$DEPLOY/prometheus
nfail=0
npass=0
nskip=0

pass() { npass=$((npass + 1)); printf "PASS  %s\n" "$*"; }
skip() { nskip=$((nskip + 1)); printf 'SKIP  %s\n' "$*"; }
fail() { nfail=$((nfail + 1)); printf 'FAIL  %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
# run NAME CMD...: runs CMD, PASS or FAIL with its output indented.
run() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name: \`$*\` failed:"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleetscan-deploy.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -x "$BIN" ]; then
    echo "FAIL  fleetscan binary not found or not executable: $BIN (set FLEETSCAN_BIN)"
    exit 1
fi
PY=""
have python3 && PY=python3
HAVE_YAML=0
if [ -n "$PY" ] && $PY -c 'import yaml' 2>/dev/null; then HAVE_YAML=1; fi

# A self-signed "corp root" and a token, for configs that name pki/corp-root.pem and token.
make_conf_dir() { # DIR: pki/corp-root.pem + token
    mkdir -p "$1/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=Test Corp Root" -keyout "$1/pki/corp-root.key" -out "$1/pki/corp-root.pem" \
        >/dev/null 2>&1 || return 1
    openssl rand -hex 32 >"$1/token"
}

# ---- Prometheus ------------------------------------------------------------------------------
if have promtool; then
    run "promtool check rules fleetscan.rules.yml" promtool check rules "$PROM/fleetscan.rules.yml"
    run "promtool test rules fleetscan.rules.test.yml" promtool test rules "$PROM/fleetscan.rules.test.yml"
    # Debian's promtool is built without Kubernetes service discovery: when it rejects
    # kubernetes_sd_configs, check the file without the Kubernetes job (the last one).
    if out=$(promtool check config "$PROM/prometheus.yml" 2>&1); then
        pass "promtool check config prometheus.yml"
    elif printf '%s' "$out" | grep -q 'field kubernetes_sd_configs not found'; then
        mkdir -p "$TMP/prom"
        sed '/^  - job_name: fleetscan-kubernetes/,$d' "$PROM/prometheus.yml" >"$TMP/prom/prometheus.yml"
        cp "$PROM/fleetscan.rules.yml" "$TMP/prom/"
        run "promtool check config prometheus.yml (static job; this promtool lacks kubernetes_sd)" \
            promtool check config "$TMP/prom/prometheus.yml"
        skip "kubernetes_sd_configs job of prometheus.yml: $(command -v promtool) is built without Kubernetes SD"
    else
        fail "promtool check config prometheus.yml:"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
else
    fail "promtool not found: install the Debian package prometheus (scripts/deps.sh does)"
fi

# ---- Grafana ---------------------------------------------------------------------------------
DASH=$DEPLOY/grafana/fleetscan-dashboard.json
if [ -n "$PY" ]; then
    run "grafana dashboard is valid JSON" $PY -m json.tool "$DASH"
    if out=$($PY - "$DASH" "$TMP/dash-exprs.yml" <<'EOF' 2>&1
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit("not JSON: %s" % e)
errs = []
names = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
for n in ("DS_PROMETHEUS", "vantage", "group"):
    if n not in names:
        errs.append("missing variable %s" % n)
if names.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    errs.append("DS_PROMETHEUS must be a datasource variable")
if not 36 <= d.get("schemaVersion", 0) <= 41:
    errs.append("schemaVersion %r" % d.get("schemaVersion"))
ids, exprs = set(), []
for p in d.get("panels", []):
    if p.get("id") in ids:
        errs.append("duplicate panel id %r" % p.get("id"))
    ids.add(p.get("id"))
    for t in p.get("targets", []):
        if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errs.append("panel %r: target without ${DS_PROMETHEUS}" % p.get("title"))
        exprs.append((p.get("title"), t["expr"]))
# Grafana variables -> values, so promtool can parse each query as a recording rule.
subst = {"$__rate_interval": "1m", "$vantage": ".*", "$group": ".*", "$phase": "tls"}
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, e) in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        if "$" in e:
            errs.append("panel %r: unsubstituted variable in %s" % (title, e))
        f.write("      - record: dashboard_query_%d\n        expr: %s\n" % (i, json.dumps(e)))
if errs:
    print("\n".join(errs))
    sys.exit(1)
EOF
    ); then
        pass "grafana dashboard: variables DS_PROMETHEUS/vantage/group, datasource on every target"
        if have promtool; then
            run "grafana dashboard: every PromQL query parses (promtool)" promtool check rules "$TMP/dash-exprs.yml"
        fi
    else
        fail "grafana dashboard structure:"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
elif have jq; then
    run "grafana dashboard is valid JSON (jq)" jq empty "$DASH"
else
    fail "neither python3 nor jq to validate $DASH"
fi

# ---- systemd ---------------------------------------------------------------------------------
UNIT=$DEPLOY/systemd/fleetscan.service
missing=()
while IFS= read -r d; do
    grep -qxF -- "$d" "$UNIT" || missing+=("$d")
done <<'EOF'
DynamicUser=yes
StateDirectory=fleetscan
ConfigurationDirectory=fleetscan
ProtectSystem=strict
ProtectHome=yes
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
CapabilityBoundingSet=
SystemCallFilter=@system-service
MemoryDenyWriteExecute=yes
LockPersonality=yes
ExecStart=/usr/local/bin/fleetscan run -c /etc/fleetscan/fleetscan.json --state-db /var/lib/fleetscan/fleetscan.state.db
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
LimitNOFILE=65536
EOF
if [ ${#missing[@]} -eq 0 ]; then
    pass "systemd unit has the required directives"
else
    fail "systemd unit lacks: ${missing[*]}"
fi
if have systemd-analyze; then
    # verify checks that ExecStart's binary exists: point it at the binary under test.
    mkdir -p "$TMP/unit"
    sed "s#/usr/local/bin/fleetscan#$BIN#g" "$UNIT" >"$TMP/unit/fleetscan.service"
    if out=$(cd "$TMP/unit" && systemd-analyze verify ./fleetscan.service 2>&1) && [ -z "$out" ]; then
        pass "systemd-analyze verify fleetscan.service"
    else
        fail "systemd-analyze verify fleetscan.service:"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
else
    skip "systemd-analyze not installed"
fi

# ---- container -------------------------------------------------------------------------------
DF=$DEPLOY/container/Dockerfile
# Package lists of the two stages: the apt-get install lines after each FROM.
stage_pkgs() { # N: packages installed in the N-th stage
    awk -v n="$1" '
        /^FROM /{s++}
        s==n && /apt-get install/{on=1}
        s==n && on{print; if ($0 !~ /\\$/) on=0}' "$DF" |
        tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|rm|DEBIAN_FRONTEND=.*)$'
}
BUILD_PKGS=" $(stage_pkgs 1 | tr '\n' ' ') "
RUN_PKGS=" $(stage_pkgs 2 | tr '\n' ' ') "
[ "$(grep -c '^FROM debian:12' "$DF")" -eq 2 ] && pass "Dockerfile: two stages on debian:12" ||
    fail "Dockerfile: expected two FROM debian:12 stages"
grep -q 'cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release' "$DF" && grep -q 'cmake --build /build' "$DF" &&
    pass "Dockerfile: Release build with cmake" || fail "Dockerfile: cmake Release build missing"
grep -qx 'EXPOSE 8787' "$DF" && grep -q '^HEALTHCHECK' "$DF" && grep -q 'http://127.0.0.1:8787/healthz' "$DF" &&
    pass "Dockerfile: EXPOSE 8787 and HEALTHCHECK on /healthz" || fail "Dockerfile: EXPOSE 8787 / HEALTHCHECK /healthz missing"
grep -qE '^USER [1-9][0-9]*(:[0-9]+)?$' "$DF" && pass "Dockerfile: numeric non-root USER" ||
    fail "Dockerfile: USER must be a numeric non-root uid (Kubernetes runAsNonRoot)"
for p in libuv1 libssl3 libmicrohttpd12 libcjson1 libcurl4 ca-certificates curl; do
    case "$RUN_PKGS" in *" $p "*) ;; *) fail "Dockerfile runtime stage does not install $p" ;; esac
done
for p in libuv1-dev libssl-dev libmicrohttpd-dev libcjson-dev libcurl4-openssl-dev cmake pkg-config; do
    case "$BUILD_PKGS" in *" $p "*) ;; *) fail "Dockerfile build stage does not install $p" ;; esac
done
if have dpkg && have readelf && have ldd; then
    # Every library the binary needs must come from a package of the runtime stage (libc6 is
    # in the base image). Only meaningful on Debian, where this binary was built.
    bad=()
    for lib in $(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        path=$(ldd "$BIN" | awk -v l="$lib" '$1==l{print $3}')
        [ -n "$path" ] || { bad+=("$lib(unresolved)"); continue; }
        pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
        [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
        # libc6 is in the base image; the sanitizer runtimes only appear in the ASan+UBSan
        # build of the suite, never in the image's Release build.
        case "$pkg" in libc6 | libasan* | libubsan* | liblsan* | libtsan*) continue ;; esac
        case "$RUN_PKGS" in *" $pkg "*) ;; *) bad+=("$lib->${pkg:-?}") ;; esac
    done
    [ ${#bad[@]} -eq 0 ] && pass "Dockerfile runtime stage covers every shared library of the binary" ||
        fail "Dockerfile runtime stage lacks the package of: ${bad[*]}"
    if have pkg-config; then
        bad=()
        for mod in $(sed -n 's/.*pkg_check_modules([A-Z_]* REQUIRED IMPORTED_TARGET \([a-z0-9_-]*\)).*/\1/p' "$SRC/CMakeLists.txt"); do
            pc=$(pkg-config --variable=pcfiledir "$mod" 2>/dev/null)/$mod.pc
            pkg=$(dpkg -S "$(readlink -f "$pc")" 2>/dev/null | head -1 | cut -d: -f1)
            case "$BUILD_PKGS" in *" $pkg "*) ;; *) bad+=("$mod->${pkg:-?}") ;; esac
        done
        [ ${#bad[@]} -eq 0 ] && pass "Dockerfile build stage covers every pkg-config module of CMakeLists.txt" ||
            fail "Dockerfile build stage lacks the -dev package of: ${bad[*]}"
    fi
else
    skip "dpkg/readelf/ldd missing: runtime libraries of the image not cross-checked"
fi

check_config() { # NAME FILE: copy FILE next to a generated pki/ and token, run --check
    local name=$1 file=$2 dir out
    dir=$TMP/conf-$name
    if ! make_conf_dir "$dir"; then
        fail "$name: cannot generate a test CA with openssl"
        return
    fi
    cp "$file" "$dir/fleetscan.json"
    if out=$("$BIN" run --check -c "$dir/fleetscan.json" 2>&1); then
        if printf '%s' "$out" | grep -q 'API on 0.0.0.0:8787'; then
            pass "$name: fleetscan run --check ($out)"
        else
            fail "$name: must listen on 0.0.0.0:8787 in a container: $out"
        fi
    else
        fail "$name: fleetscan run --check: $out"
    fi
}
if have openssl; then
    check_config container "$DEPLOY/container/fleetscan.json"
else
    fail "openssl CLI missing (scripts/deps.sh installs it)"
fi

# ---- Kubernetes ------------------------------------------------------------------------------
K8S=$DEPLOY/kubernetes
if [ "$HAVE_YAML" = 1 ]; then
    if out=$($PY - "$K8S" "$TMP/k8s-fleetscan.json" "$TMP/k8s-shard-cmd.sh" <<'EOF' 2>&1
import os, sys, yaml
k8s, json_out, cmd_out = sys.argv[1:4]
errs = []
docs = {}
for f in sorted(os.listdir(k8s)):
    if f.endswith(".yaml"):
        for d in yaml.safe_load_all(open(os.path.join(k8s, f))):
            if d:
                docs[(d["kind"], d["metadata"]["name"])] = d
cm = docs.get(("ConfigMap", "fleetscan-config"))
if cm is None:
    errs.append("no ConfigMap fleetscan-config")
else:
    open(json_out, "w").write(cm["data"]["fleetscan.json"])

def check_pod(kind, name):
    w = docs.get((kind, name))
    if w is None:
        errs.append("no %s %s" % (kind, name))
        return None
    spec = w["spec"]["template"]["spec"]
    ann = w["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "8787":
        errs.append("%s: pod template lacks prometheus.io annotations" % name)
    if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
        errs.append("%s: securityContext.runAsNonRoot" % name)
    c = spec["containers"][0]
    sc = c.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
        errs.append("%s: readOnlyRootFilesystem / allowPrivilegeEscalation" % name)
    for p in ("readinessProbe", "livenessProbe"):
        if c.get(p, {}).get("httpGet", {}).get("path") != "/healthz":
            errs.append("%s: %s must GET /healthz" % (name, p))
    if not c.get("resources", {}).get("limits") or not c.get("resources", {}).get("requests"):
        errs.append("%s: resources" % name)
    if [p["containerPort"] for p in c.get("ports", [])] != [8787]:
        errs.append("%s: containerPort 8787" % name)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if "/etc/fleetscan" not in mounts:
        errs.append("%s: config not mounted at /etc/fleetscan" % name)
    # The state database (--state-db) on a persistent volume, not the pod's own disk.
    argv = " ".join(c.get("args", []) + c.get("command", []))
    if "--state-db /var/lib/fleetscan/" not in argv:
        errs.append("%s: --state-db /var/lib/fleetscan/... missing" % name)
    st = mounts.get("/var/lib/fleetscan")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    claims = [t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])]
    if st is None:
        errs.append("%s: nothing mounted at /var/lib/fleetscan" % name)
    elif st["name"] not in claims and "persistentVolumeClaim" not in vols.get(st["name"], {}):
        errs.append("%s: /var/lib/fleetscan is not a persistent volume claim" % name)
    return w

check_pod("Deployment", "fleetscan")
sts = check_pod("StatefulSet", "fleetscan-shard")
svc = docs.get(("Service", "fleetscan"))
if svc is None or svc["spec"]["ports"][0]["port"] != 8787:
    errs.append("Service fleetscan on 8787")
if sts is not None:
    c = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if str(sts["spec"]["replicas"]) != env.get("FLEETSCAN_SHARDS"):
        errs.append("StatefulSet: replicas %s != FLEETSCAN_SHARDS %s" % (sts["spec"]["replicas"], env.get("FLEETSCAN_SHARDS")))
    hs = docs.get(("Service", sts["spec"]["serviceName"]))
    if hs is None or hs["spec"].get("clusterIP") != "None":
        errs.append("StatefulSet: headless Service %s missing" % sts["spec"]["serviceName"])
    cmd = c.get("command", [])
    if cmd[:2] != ["/bin/sh", "-c"] or "--shard" not in cmd[2]:
        errs.append("StatefulSet: command must be /bin/sh -c '... --shard ...'")
    else:
        open(cmd_out, "w").write("FLEETSCAN_SHARDS=%s\n%s\n" % (env.get("FLEETSCAN_SHARDS"), cmd[2]))
if errs:
    print("\n".join(errs))
    sys.exit(1)
EOF
    ); then
        pass "kubernetes manifests: YAML, securityContext, /healthz probes, resources, shards = replicas"
    else
        fail "kubernetes manifests:"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
else
    skip "python3 yaml module missing: Kubernetes YAML not parsed (apt-get install python3-yaml)"
    # Without a YAML parser: the ConfigMap's block scalar is the indented text after
    # "fleetscan.json: |".
    awk '/^  fleetscan.json: \|/{on=1; next} on && /^    /{print substr($0, 5); next} on && /^[^ ]/{on=0}' \
        "$K8S/configmap.yaml" >"$TMP/k8s-fleetscan.json"
fi
if [ -s "$TMP/k8s-fleetscan.json" ] && have openssl; then
    check_config kubernetes-configmap "$TMP/k8s-fleetscan.json"
    if [ -s "$TMP/k8s-shard-cmd.sh" ]; then
        # The StatefulSet's command, as pod fleetscan-shard-2 runs it, with --check appended.
        dir=$TMP/conf-kubernetes-configmap
        script=$(sed -n 2p "$TMP/k8s-shard-cmd.sh")
        script=${script//\/usr\/local\/bin\/fleetscan/$BIN}
        script=${script//\/etc\/fleetscan\/fleetscan.json/$dir\/fleetscan.json}
        shards=$(sed -n 's/^FLEETSCAN_SHARDS=//p' "$TMP/k8s-shard-cmd.sh")
        if out=$(HOSTNAME=fleetscan-shard-2 FLEETSCAN_SHARDS=$shards sh -c "$script --check" 2>&1) &&
            printf '%s' "$out" | grep -q "shard 2/$shards"; then
            pass "kubernetes StatefulSet command: pod fleetscan-shard-2 runs shard 2/$shards"
        else
            fail "kubernetes StatefulSet command for pod fleetscan-shard-2: $out"
        fi
    fi
elif [ ! -s "$TMP/k8s-fleetscan.json" ]; then
    fail "could not extract fleetscan.json from $K8S/configmap.yaml"
fi

# ---- runbook anchors -------------------------------------------------------------------------
OPS=$SRC/docs/OPERATIONS.md
if [ -f "$OPS" ]; then
    # GitHub heading anchors: lower case, punctuation dropped, blanks to '-'.
    anchors=$(sed -n 's/^#\{1,6\} \(.*\)$/\1/p' "$OPS" | tr 'A-Z' 'a-z' |
        sed 's/[^a-z0-9 _-]//g; s/ /-/g')
    bad=()
    for a in $(sed -n 's/^ *runbook: docs\/OPERATIONS.md#\(.*\)$/\1/p' "$PROM/fleetscan.rules.yml"); do
        printf '%s\n' "$anchors" | grep -qxF "$a" || bad+=("$a")
    done
    nalerts=$(grep -c '^ *- alert:' "$PROM/fleetscan.rules.yml")
    nrunbooks=$(grep -c '^ *runbook: docs/OPERATIONS.md#' "$PROM/fleetscan.rules.yml")
    if [ ${#bad[@]} -eq 0 ] && [ "$nalerts" = "$nrunbooks" ]; then
        pass "every alert ($nalerts) names a runbook section that exists in docs/OPERATIONS.md"
    else
        fail "runbook anchors: $nalerts alerts, $nrunbooks runbook annotations; missing sections: ${bad[*]}"
    fi
else
    fail "docs/OPERATIONS.md missing"
fi

# ---- metrics used by the rules and the dashboard exist ---------------------------------------
# A real daemon probes an openssl s_server on loopback. Its certificate names a CRL served by
# a small HTTP server, so the reference gauges (certificate, CRL reachability and nextUpdate,
# reference_up) are served too. Certificates and CRL are backdated with `openssl ca`: the
# daemon validates at minute granularity, and a certificate issued this very minute would be
# "not yet valid" to it.
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
live_pki() { # DIR CRL_PORT
    local L=$1
    cat >"$L/ca.cnf" <<EOF
[ca]
default_ca = ca_default
[ca_default]
database = $L/index.txt
new_certs_dir = $L
serial = $L/serial
crlnumber = $L/crlnumber
default_md = sha256
policy = pol
unique_subject = no
[pol]
commonName = supplied
[v3_root]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:ns.test.example
crlDistributionPoints = URI:http://127.0.0.1:$2/test.crl
authorityKeyIdentifier = keyid
EOF
    : >"$L/index.txt"
    echo 1000 >"$L/serial"
    echo 1000 >"$L/crlnumber"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=Live Root" \
        -keyout "$L/root.key" -out "$L/root.csr" &&
        openssl ca -batch -notext -config "$L/ca.cnf" -selfsign -keyfile "$L/root.key" \
            -in "$L/root.csr" -out "$L/root.pem" -extensions v3_root \
            -startdate 20200101000000Z -enddate 20400101000000Z &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=ns.test.example" \
            -keyout "$L/leaf.key" -out "$L/leaf.csr" &&
        openssl ca -batch -notext -config "$L/ca.cnf" -cert "$L/root.pem" -keyfile "$L/root.key" \
            -in "$L/leaf.csr" -out "$L/leaf.pem" -extensions v3_leaf -startdate 20200101000000Z -days 10 &&
        openssl ca -batch -config "$L/ca.cnf" -gencrl -cert "$L/root.pem" -keyfile "$L/root.key" \
            -crl_lastupdate 20200101000000Z -crldays 2 -out "$L/test.crl.pem" &&
        openssl crl -in "$L/test.crl.pem" -outform DER -out "$L/www/test.crl"
}
if [ -n "$PY" ] && have openssl && have curl; then
    L=$TMP/live
    mkdir -p "$L/www"
    tls_port=$(free_port)
    crl_port=$(free_port)
    if ! live_pki "$L" "$crl_port" >"$L/pki.log" 2>&1; then
        fail "live daemon: cannot build the test PKI with openssl ca: $(tail -3 "$L/pki.log")"
    else
        openssl s_server -accept "127.0.0.1:$tls_port" -cert "$L/leaf.pem" -key "$L/leaf.key" -quiet \
            </dev/null >"$L/s_server.log" 2>&1 &
        PIDS+=($!)
        $PY -m http.server --bind 127.0.0.1 --directory "$L/www" "$crl_port" >"$L/http.log" 2>&1 &
        PIDS+=($!)
        # Both servers must answer before the daemon starts: a failed CRL fetch is remembered.
        for _ in $(seq 1 50); do
            curl -sf -o /dev/null "http://127.0.0.1:$crl_port/test.crl" &&
                (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null && break
            sleep 0.1
        done
        cat >"$L/fleetscan.json" <<EOF
{"vantage": "deploy-test", "listen": "127.0.0.1:0", "interval_s": 1, "jitter": 0,
 "trust_stores": {"test": {"ca_file": "root.pem"}},
 "profiles": {"default": {"url": "https://ns.test.example:$tls_port"}},
 "groups": [{"name": "g", "count": 2, "revocation": {"mode": "strict"},
             "network": {"resolve": {"ns.test.example": "127.0.0.1"}}}]}
EOF
        "$BIN" run -c "$L/fleetscan.json" >"$L/daemon.out" 2>"$L/daemon.err" &
        PIDS+=($!)
        api=""
        ok=0
        for _ in $(seq 1 150); do
            [ -n "$api" ] || api=$(sed -n 's#^fleetscan: API listening on \(http://[^ ]*\)/$#\1#p' "$L/daemon.out")
            if [ -n "$api" ] && curl -sf "$api/metrics" >"$L/metrics" 2>/dev/null &&
                grep -q '^fleetscan_cert_not_after_seconds{' "$L/metrics" &&
                grep -q '^fleetscan_crl_next_update_seconds{' "$L/metrics" &&
                grep -q '^fleetscan_probes_total{.*result="online"} [1-9]' "$L/metrics"; then
                ok=1
                break
            fi
            sleep 0.2
        done
        if [ "$ok" = 1 ]; then
            served=$(sed -n 's/^\(fleetscan_[a-z_]*\)[{ ].*/\1/p' "$L/metrics" | sort -u)
            used=$(grep -ohE 'fleetscan_[a-z_]+' "$PROM/fleetscan.rules.yml" "$DASH" | sort -u)
            # Served only during an incident (a revocation URL down with strict endpoints depending
            # on it), so not by this healthy daemon: its family must be announced all the same.
            incident_only="fleetscan_strict_endpoints_offline_at_seconds"
            bad=()
            for m in $used; do
                printf '%s\n' "$served" | grep -qxF "$m" && continue
                case " $incident_only " in
                *" $m "*) grep -q "^# TYPE $m gauge$" "$L/metrics" && continue ;;
                esac
                bad+=("$m")
            done
            [ ${#bad[@]} -eq 0 ] && pass "every metric the rules and dashboard use is served by a live daemon ($(echo $used | wc -w) names)" ||
                fail "metrics used by rules/dashboard but not served: ${bad[*]}"
            grep -q '^fleetscan_crl_reachable{.*} 1$' "$L/metrics" && grep -q '^fleetscan_reference_up{.*} 1$' "$L/metrics" &&
                pass "live daemon: reference up, CRL reachable" ||
                fail "live daemon: expected reference_up 1 and crl_reachable 1: $(grep -E '^fleetscan_(reference_up|crl_)' "$L/metrics")"
            # Every sample carries vantage and shard (the rules aggregate on them).
            nolabels=$(grep -v '^#' "$L/metrics" | grep -v 'vantage="deploy-test",shard="0/1"' | head -3)
            [ -z "$nolabels" ] && pass "every sample carries vantage and shard" ||
                fail "samples without vantage/shard: $nolabels"
        else
            fail "live daemon: no complete /metrics within 30 s (api=${api:-none}); last metrics: $(grep -E '^fleetscan_(endpoints|reference_up|crl_)' "$L/metrics" 2>/dev/null | grep -v ' 0$' | tr '\n' ' ') stderr: $(tail -3 "$L/daemon.err")"
        fi
    fi
else
    skip "python3/openssl/curl missing: metrics not checked against a live daemon"
fi

echo "test_deploy: $npass passed, $nfail failed, $nskip skipped"
[ "$nfail" -eq 0 ]
