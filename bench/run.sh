#!/usr/bin/env bash
# bench/run.sh - the fleetscan benchmark (docs/PERFORMANCE.md). One command, figures only:
#   bash bench/run.sh        (or: make bench)
# Installs nginx, wrk and prometheus-blackbox-exporter from Debian when missing, builds
# fleetscan (Release) and a bare OpenSSL client, starts a loopback nginx serving an RSA-2048
# and an ECDSA P-256 chain (TLS 1.3, no session reuse) plus a CRL distribution point, and
# prints side by side:
#   1. client CPU per probe: fleetscan daemon vs a bare OpenSSL client vs blackbox_exporter,
#      each alone (1) and in pairs measured in the same window (1b); what each feature (CRL,
#      OCSP, delta CRL, targets with several addresses, the state database) adds (1c); heap
#      allocations and system calls per probe against the bare client (1d)
#   2. RSS with 100,000 endpoints, flat over cycles
#   3. API latency (wrk --latency, and one paced poller) while the daemon probes at full rate
#   4. CRL fetches per CRL URL vs probes (10,000 strict endpoints)
#   5. the resolve cache: CPU per probe of a name the system resolver answers, one lookup per
#      probe vs a shared cache (bench/dns_driver.c on the probe engine)
#   6. the state database: store-thread CPU per snapshot tick and size per day of history at
#      100,000 endpoints (bench/store_bench.c, no network)
#   soak (on request): RSS, open fds and /status p99 every minute of a long run at full rate with
#      a stalling and a trickling server among the targets
# Everything listens on 127.0.0.1 on ports picked at run time and is stopped at the end.
#
# Knobs (environment): BENCH_SECTIONS=cpu,paired,feat,sys,mem,api,crl,dns,store (api runs on the
#   mem daemon); soak (not in the default list: BENCH_SOAK_MINUTES=30, BENCH_SOAK_ENDPOINTS=100000,
#   BENCH_SOAK_HOSTILE=500 endpoints on each hostile server)  BENCH_FEAT_VARIANTS="crl ocsp delta targets store"
#   BENCH_SYS_ALGS=ecdsa BENCH_SYS_WINDOW_S=10 (allocations and system calls per probe)
#   BENCH_RATE=300  BENCH_ENDPOINTS=2000
#   BENCH_WARMUP_S=10  BENCH_WINDOW_S=20  BENCH_REPEAT=3  BENCH_MEM_ENDPOINTS=100000
#   BENCH_MEM_CYCLES=10  BENCH_MEM_MAX_S=900 (time cap of each memory phase)
#   BENCH_MEM_IN_FLIGHT=1000  BENCH_MEM_VARIANT=full (targets, OCSP, delta CRLs, 3 addresses a name; "" plain)  BENCH_MEM_RATE=100000  BENCH_CRL_ENDPOINTS=10000  BENCH_CRL_PERIOD_S=20
#   BENCH_ALGS="rsa ecdsa rsa12" (bindings: TLS 1.3 RSA/ECDSA, TLS 1.2 RSA as IIS serves it)
#   BENCH_DNS_PROBES=100000 BENCH_DNS_IN_FLIGHT=1000 BENCH_DNS_ENDPOINTS=100000
#   BENCH_PERF=1 (perf record the daemon during a CPU run; needs linux-perf)
#   BENCH_SECTIONS=ab with BENCH_AB_FLEETSCAN=/other/fleetscan and/or BENCH_AB_PRELOAD=lib.so:
#     two daemons side by side in the same window (before/after comparisons)
#   BENCH_API_NICE=N (section 3: renice the daemon's libmicrohttpd threads, an experiment)
#   BENCH_PAIRED_OTHERS="bare tls_connect http_2xx" (the clients section 1b pairs fleetscan with)
#   BENCH_BARE_BUILTIN_KEYS=1 (the bare client uses fleetscan's OpenSSL 3.0 key decoding too)
#   FLEETSCAN=/path/to/fleetscan (skip the build)  BENCH_KEEP=1 (keep the work directory)
#   BENCH_REPORT=FILE (where the summary is also written; default /tmp/fleetscan-bench-report.txt)
set -euo pipefail
trap 'echo "bench: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECTIONS=${BENCH_SECTIONS:-cpu,paired,feat,sys,mem,api,crl,dns,store}
RATE=${BENCH_RATE:-300}
EPS=${BENCH_ENDPOINTS:-2000}
WARM=${BENCH_WARMUP_S:-10}
WIN=${BENCH_WINDOW_S:-20}
REPEAT=${BENCH_REPEAT:-3}
MEM_EPS=${BENCH_MEM_ENDPOINTS:-100000}
MEM_CYCLES=${BENCH_MEM_CYCLES:-10}
MEM_RATE=${BENCH_MEM_RATE:-100000}
MEM_MAX_S=${BENCH_MEM_MAX_S:-900}
MEM_IN_FLIGHT=${BENCH_MEM_IN_FLIGHT:-1000}
MEM_VARIANT=${BENCH_MEM_VARIANT:-full} # fs_config's FS_VARIANT: two targets, OCSP, delta CRLs
CRL_EPS=${BENCH_CRL_ENDPOINTS:-10000}
CRL_PERIOD=${BENCH_CRL_PERIOD_S:-20}
DNS_PROBES=${BENCH_DNS_PROBES:-100000}
PERF=${BENCH_PERF:-0}
# Bindings: rsa and ecdsa are TLS 1.3; rsa12 is RSA-2048 over TLS 1.2 ECDHE-RSA-AES-GCM (IIS).
ALGS=${BENCH_ALGS:-rsa ecdsa rsa12}
REPORT=${BENCH_REPORT:-/tmp/fleetscan-bench-report.txt}
HZ=$(getconf CLK_TCK)
export BARE_BUILTIN_KEYS=${BENCH_BARE_BUILTIN_KEYS:-0}

has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- dependencies -------------------------------------------------------------------------
install_deps() {
    local pkgs=(nginx wrk prometheus-blackbox-exporter build-essential cmake pkg-config
                libssl-dev curl jq iproute2 procps)
    has sys && pkgs+=(strace binutils)
    [ "$PERF" = 1 ] && pkgs+=(linux-perf)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    bash "$ROOT/scripts/deps.sh" # fleetscan's own build dependencies
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo="" made_policy=0
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # The packages would start system services (nginx on :80, the exporter on :9115): the
    # bench runs its own instances, so keep the system ones from starting while installing.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" \
        >&2
    [ $made_policy = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
    return 0
}

# ---- processes ------------------------------------------------------------------------------
WORK=""
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$WORK" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    elif [ -n "$WORK" ]; then
        log "work directory kept: $WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() { # stop_pid PID: SIGTERM, wait
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

USED_PORTS=" "
# A port below the kernel's ephemeral range (so no outgoing connection of another program can
# hold it between the pick and the bind) that no socket uses now, in any state.
free_port() {
    local p inuse lo
    lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2> /dev/null || echo 32768)
    [ "$lo" -gt 12000 ] || lo=61000 # an unusual range: fall back to above it
    inuse=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | tr '\n' ' ')
    while :; do
        if [ "$lo" = 61000 ]; then p=$((61000 + RANDOM % 4000)); else p=$((10000 + RANDOM % (lo - 10000))); fi
        [[ " $inuse " == *" $p "* || "$USED_PORTS" == *" $p "* ]] && continue
        USED_PORTS+="$p "
        echo "$p"
        return
    done
}

wait_port() { # wait_port PORT
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

cpu_ticks() { # utime+stime (all threads) of PID, in clock ticks
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

RES="" # results file: key=value lines
put() { echo "$1=$2" >> "$RES"; }
get() { awk -v k="$1" 'index($0, k "=") == 1 {v = substr($0, length(k) + 2)} END {print v}' "$RES"; }

# ---- fleetscan -------------------------------------------------------------------------------
FS_PID="" FS_URL=""
# fs_config FILE ALG PATH REV COUNT INTERVAL_S RATE MAX_IN_FLIGHT [EXTRA_TOP_LEVEL_JSON]
# FS_VARIANT (set for the call) picks what the endpoints meet besides the handshake:
#   ""       the leaf ALG.bench.test, revocation through its CDPs (base CRLs)
#   ocsp     the leaf ALG-ocsp.bench.test: OCSP first (the bench responder), CRL for the issuer
#   delta    the leaf ALG-delta.bench.test: base CRL + its delta CRL (freshestCRL)
#   targets  two targets (ALG.bench.test, ALG-pkg.bench.test), one group each, each name with
#            three addresses (127.0.0.1-3, network.resolve lists: round robin per name)
#   full     targets with the ocsp and delta leaves: ALG-ocsp.bench.test and ALG-delta.bench.test,
#            three addresses each (the memory section: every feature on, the store too)
#   nostore  as "", without the state database (state_db null)
#   sysdns   the URL host is localhost, resolved by the system resolver (no resolve entry; the
#            daemon's resolve cache) instead of the resolve map
fs_config() {
    local cert port host v=${FS_VARIANT:-} resolve extra_groups="" store="" count=$5
    cert=$(cert_of "$2"); port=$(port_of "$2")
    host=$cert.bench.test
    case "$v" in ocsp | delta) host=$cert-$v.bench.test ;; sysdns) host=localhost ;; esac
    resolve="\"$host\": \"127.0.0.1\", "
    [ "$v" = sysdns ] && resolve=""
    [ "$v" = nostore ] && store='"state_db": null,'
    local profiles="\"default\": {\"url\": \"https://$host:$port$3\"}" targets=""
    if [ "$v" = targets ] || [ "$v" = full ]; then
        local h1=$cert.bench.test h2=$cert-pkg.bench.test
        [ "$v" = full ] && h1=$cert-ocsp.bench.test h2=$cert-delta.bench.test
        local three='["127.0.0.1", "127.0.0.2", "127.0.0.3"]'
        resolve="\"$h1\": $three, \"$h2\": $three, "
        profiles="\"default\": {\"url\": \"https://$h1:$port$3\"}, \"pkg\": {\"url\": \"https://$h2:$port$3\"}"
        targets="\"targets\": {\"ns\": {\"url\": \"https://$h1:$port\"},
              \"pkg\": {\"url\": \"https://$h2:$port\"}},"
        count=$(($5 / 2))
        extra_groups=",
             {\"name\": \"pkg\", \"count\": $(($5 - count)), \"profile\": \"pkg\",
              \"revocation\": {\"mode\": \"$4\"},
              \"network\": {\"resolve\": {$resolve\"crl.bench.test\": \"127.0.0.1\",
                                      \"ocsp.bench.test\": \"127.0.0.1\"}}}"
    fi
    cat > "$1" <<JSON
{
  "vantage": "bench",
  "listen": "127.0.0.1:0",
  "interval_s": $6,
  "jitter": 0.2,
  ${9:+$9,}
  $store
  "limits": {"max_in_flight": $8, "handshakes_per_s": $7},
  "trust_stores": {"bench": {"ca_file": "$WORK/pki/$cert-root.pem"}},
  "profiles": {$profiles},
  $targets
  "groups": [{"name": "g", "count": $count,
              "revocation": {"mode": "$4"},
              "network": {"resolve": {$resolve"crl.bench.test": "127.0.0.1",
                                      "ocsp.bench.test": "127.0.0.1"}}}$extra_groups]
}
JSON
}
port_of() {
    case "$1" in rsa) echo "$PORT_RSA" ;; rsa12) echo "$PORT_RSA12" ;; *) echo "$PORT_ECDSA" ;; esac
}
# The chain (and name) an alg's binding serves: rsa12 is the RSA chain over TLS 1.2 only.
cert_of() { if [ "$1" = rsa12 ]; then echo rsa; else echo "$1"; fi; }
# The bare client's protocol for an alg.
tls_of() { if [ "$1" = rsa12 ]; then echo 1.2; else echo 1.3; fi; }

fs_start() { # fs_start CONFIG LOGPREFIX [BINARY [LD_PRELOAD]]
    # Names outside the resolve maps never reach the system resolver, except with FS_SYSTEM_DNS=1
    # (the sysdns variant: the URL's name goes through the daemon's resolve cache).
    local dns_env=FLEETSCAN_DNS_OVERRIDE_ONLY=1
    [ "${FS_SYSTEM_DNS:-0}" = 1 ] && dns_env=FLEETSCAN_BENCH=1
    env ${4:+LD_PRELOAD=$4} "$dns_env" "${3:-$FS}" run -c "$1" > "$2.out" 2> "$2.err" &
    FS_PID=$!
    PIDS+=("$FS_PID")
    local i
    for i in $(seq 1 100); do
        FS_URL=$(sed -n 's|^fleetscan: API listening on \(http://[^ ]*\)/$|\1|p' "$2.out")
        [ -n "$FS_URL" ] && return 0
        if ! kill -0 "$FS_PID" 2>/dev/null; then
            echo "bench: fleetscan exited:" >&2
            cat "$2.err" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "bench: fleetscan did not print its API address" >&2
    return 1
}
fs_status() { curl -sf --max-time 10 "$FS_URL/api/v1/status"; }
fs_probes() { fs_status | jq -r '.scan.probes_total'; }
fs_check() { # prints a one-line state summary and the causes
    fs_status | jq -r '"online=\(.endpoints.online) offline=\(.endpoints.offline) pending=\(.endpoints.pending) causes=\(.causes|tostring) warnings=\(.warnings|tostring)"'
}
fs_retrievals() { # the revocation retrievals of the first endpoint's last probe: kind:depth:ok
    local id
    id=$(curl -sf --max-time 10 "$FS_URL/api/v1/endpoints?limit=1" | jq -r '.items[0].id')
    curl -sf --max-time 10 "$FS_URL/api/v1/endpoints/$id" |
        jq -r '[.detail.retrievals[] | "\(.kind)@\(.cert_depth):\(if .ok then "ok" else "FAILED" end)\(if .from_cache then "(cached)" else "" end)"] | join(" ")'
}

# One CPU measurement of fleetscan: NAME ALG PATH REV
fs_cpu() {
    local name=$1 alg=$2 path=$3 rev=$4 rep=$5
    local cfg="$WORK/fs-$name-$alg.json" interval
    # Backlogged on purpose: every endpoint is due more often than the token bucket allows, so
    # the daemon probes continuously at exactly RATE handshakes per second.
    interval=$(awk -v n="$EPS" -v r="$RATE" 'BEGIN {printf "%.2f", n / r * 0.6}')
    fs_config "$cfg" "$alg" "$path" "$rev" "$EPS" "$interval" "$RATE" 256
    fs_start "$cfg" "$WORK/fs-$name-$alg-$rep"
    sleep "$WARM"
    local t0 p0 t1 p1 state
    t0=$(cpu_ticks "$FS_PID"); p0=$(fs_probes)
    sleep "$WIN"
    t1=$(cpu_ticks "$FS_PID"); p1=$(fs_probes)
    state=$(fs_check)
    local us
    us=$(awk -v dt=$((t1 - t0)) -v hz="$HZ" -v dp=$((p1 - p0)) \
        'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
    log "fleetscan $name $alg #$rep: $((p1 - p0)) probes in ${WIN}s, $((t1 - t0)) ticks -> $us us/probe; $state; load $(loadavg)"
    case "$state" in *"offline=0 "*) ;; *) log "WARNING: offline endpoints during the CPU run" ;; esac
    put "cpu.fs_$name.$alg.$rep" "$us"
    put "load.cpu.fs_$name.$alg.$rep" "$(cut -d' ' -f1 /proc/loadavg)"
    put "rate.fs_$name.$alg.$rep" "$(awk -v d=$((p1 - p0)) -v w="$WIN" 'BEGIN {printf "%.0f", d / w}')"
    if [ "$PERF" = 1 ] && [ "$rep" = 1 ]; then
        log "perf record of fleetscan $name $alg (${WIN}s, not part of the figures)"
        perf record -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$FS_PID" \
            -o "$WORK/perf-$name-$alg.data" -- sleep "$WIN" > /dev/null 2>&1 || true
        perf report -i "$WORK/perf-$name-$alg.data" --no-children --sort symbol,dso --stdio \
            -g none --percent-limit 0.7 2> /dev/null | grep -v '^#' | grep -v '^$' |
            head -45 > "$WORK/perf-$name-$alg.self.txt" || true
        perf report -i "$WORK/perf-$name-$alg.data" --children --sort symbol --stdio -g none \
            --percent-limit 3 2> /dev/null | grep -v '^#' | grep -v '^$' |
            head -60 > "$WORK/perf-$name-$alg.children.txt" || true
        mkdir -p "${BENCH_PERF_OUT:-/tmp/fleetscan-bench-perf}"
        cp "$WORK/perf-$name-$alg".*.txt "${BENCH_PERF_OUT:-/tmp/fleetscan-bench-perf}/"
    fi
    stop_pid "$FS_PID"
}

# ---- bare client ----------------------------------------------------------------------------
bare_cpu() { # ALG REP
    local alg=$1 rep=$2 out us
    out=$("$WORK/bare_client" 127.0.0.1 "$(port_of "$alg")" "$(cert_of "$alg").bench.test" \
        "$WORK/pki/$(cert_of "$alg")-root.pem" "$RATE" "$WIN" "$WARM" "$(tls_of "$alg")")
    us=$(sed -n 's/.*us_per_handshake=\([0-9]*\).*/\1/p' <<< "$out")
    log "bare client $alg #$rep: $out; load $(loadavg)"
    put "cpu.bare.$alg.$rep" "$us"
    put "load.cpu.bare.$alg.$rep" "$(cut -d' ' -f1 /proc/loadavg)"
}

# ---- blackbox_exporter ----------------------------------------------------------------------
BB_PID="" BB_PORT=""
bb_start() {
    BB_PORT=$(free_port)
    sed "s|@WORK@|$WORK|g" "$ROOT/bench/blackbox.yml.in" > "$WORK/blackbox.yml"
    prometheus-blackbox-exporter --config.file="$WORK/blackbox.yml" \
        --web.listen-address="127.0.0.1:$BB_PORT" --log.level=warn \
        > "$WORK/blackbox.log" 2>&1 &
    BB_PID=$!
    PIDS+=("$BB_PID")
    wait_port "$BB_PORT"
}
# wrk at a paced rate against /probe; prints "probes_ok=N probes_failed=M"
bb_drive() { # URL SECONDS DELAY_MS
    BENCH_DELAY_MS=$3 wrk -t1 -c"$BB_CONNS" -d"$2s" --timeout 10s -s "$ROOT/bench/probe_driver.lua" \
        "$1" 2> /dev/null | grep '^probes_'
}
BB_CONNS=4
bb_cpu() { # KIND(tls_connect|http_2xx) ALG REP
    local kind=$1 alg=$2 rep=$3 target url
    if [ "$kind" = tls_connect ]; then
        target="127.0.0.1:$(port_of "$alg")"
    else
        target="https://127.0.0.1:$(port_of "$alg")/Altiris/NS/Agent/GetClientPolicies.aspx"
    fi
    url="http://127.0.0.1:$BB_PORT/probe?module=${kind}_$alg&target=$(jq -rn --arg t "$target" '$t|@uri')"
    curl -sf "$url" | grep -q '^probe_success 1' || {
        echo "bench: blackbox probe fails:" >&2
        curl -s "$url&debug=true" | head -40 >&2
        return 1
    }
    # Calibrate the pause between requests per connection so the exporter sees about RATE/s.
    local w ok lat delay
    w=$(bb_drive "$url" "$WARM" 10)
    ok=$(awk -F'[= ]' '{print $2 + $4}' <<< "$w")
    lat=$(awk -v c="$BB_CONNS" -v s="$WARM" -v n="$ok" 'BEGIN {l = c * s * 1000 / n - 10; print l < 0 ? 0 : l}')
    delay=$(awk -v c="$BB_CONNS" -v r="$RATE" -v l="$lat" 'BEGIN {d = c * 1000 / r - l; printf "%.0f", d < 0 ? 0 : d}')
    local t0 t1 res n failed us
    t0=$(cpu_ticks "$BB_PID")
    res=$(bb_drive "$url" "$WIN" "$delay")
    t1=$(cpu_ticks "$BB_PID")
    n=$(awk -F'[= ]' '{print $2 + $4}' <<< "$res")
    failed=$(sed -n 's/.*probes_failed=\([0-9]*\)/\1/p' <<< "$res")
    us=$(awk -v dt=$((t1 - t0)) -v hz="$HZ" -v dp="$n" 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
    log "blackbox $kind $alg #$rep: $res in ${WIN}s (delay ${delay} ms), $((t1 - t0)) ticks -> $us us/probe; load $(loadavg)"
    [ "$failed" = 0 ] || log "WARNING: $failed failed blackbox probes"
    put "cpu.bb_$kind.$alg.$rep" "$us"
    put "load.cpu.bb_$kind.$alg.$rep" "$(cut -d' ' -f1 /proc/loadavg)"
    put "rate.bb_$kind.$alg.$rep" "$(awk -v d="$n" -v w="$WIN" 'BEGIN {printf "%.0f", d / w}')"
}

# ---- paired runs ---------------------------------------------------------------------------
# The machine is shared: the load of other jobs changes from one 20 s window to the next, and
# CPU per operation grows with contention (caches, hypervisor). A pair of clients measured in
# the same window sees the same conditions, so their ratio is steadier than the ratio of two
# sequential figures. Each pair: a fleetscan daemon at RATE/s and another client at RATE/s,
# against the same nginx, CPU of both over the same window.
paired() { # paired ALG REP OTHER(bare|tls_connect|http_2xx)
    local alg=$1 rep=$2 other=$3 path="" name=hs
    if [ "$other" = http_2xx ]; then
        path=/Altiris/NS/Agent/GetClientPolicies.aspx
        name=url
    fi
    local cfg="$WORK/fs-pair-$alg.json" interval
    interval=$(awk -v n="$EPS" -v r="$RATE" 'BEGIN {printf "%.2f", n / r * 0.6}')
    fs_config "$cfg" "$alg" "$path" strict "$EPS" "$interval" "$RATE" 256
    fs_start "$cfg" "$WORK/fs-pair-$name-$alg-$other-$rep"
    local t0 p0 t1 p1 o0 o1 other_us=0 n url target
    if [ "$other" = bare ]; then
        "$WORK/bare_client" 127.0.0.1 "$(port_of "$alg")" "$(cert_of "$alg").bench.test" \
            "$WORK/pki/$(cert_of "$alg")-root.pem" "$RATE" "$WIN" "$WARM" "$(tls_of "$alg")" \
            > "$WORK/pair-bare.out" &
        local bpid=$!
        PIDS+=("$bpid")
        sleep "$WARM"
        t0=$(cpu_ticks "$FS_PID"); p0=$(fs_probes)
        wait "$bpid" || true
        forget_pid "$bpid"
        t1=$(cpu_ticks "$FS_PID"); p1=$(fs_probes)
        other_us=$(sed -n 's/.*us_per_handshake=\([0-9]*\).*/\1/p' "$WORK/pair-bare.out")
    else
        if [ "$other" = tls_connect ]; then
            target="127.0.0.1:$(port_of "$alg")"
        else
            target="https://127.0.0.1:$(port_of "$alg")$path"
        fi
        url="http://127.0.0.1:$BB_PORT/probe?module=${other}_$alg&target=$(jq -rn --arg t "$target" '$t|@uri')"
        local w lat delay res
        w=$(bb_drive "$url" "$WARM" 10)
        n=$(awk -F'[= ]' '{print $2 + $4}' <<< "$w")
        lat=$(awk -v c="$BB_CONNS" -v s="$WARM" -v n="$n" 'BEGIN {l = c * s * 1000 / n - 10; print l < 0 ? 0 : l}')
        delay=$(awk -v c="$BB_CONNS" -v r="$RATE" -v l="$lat" 'BEGIN {d = c * 1000 / r - l; printf "%.0f", d < 0 ? 0 : d}')
        t0=$(cpu_ticks "$FS_PID"); p0=$(fs_probes); o0=$(cpu_ticks "$BB_PID")
        res=$(bb_drive "$url" "$WIN" "$delay")
        t1=$(cpu_ticks "$FS_PID"); p1=$(fs_probes); o1=$(cpu_ticks "$BB_PID")
        n=$(awk -F'[= ]' '{print $2 + $4}' <<< "$res")
        other_us=$(awk -v dt=$((o1 - o0)) -v hz="$HZ" -v dp="$n" 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
    fi
    local us state
    us=$(awk -v dt=$((t1 - t0)) -v hz="$HZ" -v dp=$((p1 - p0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
    state=$(fs_check)
    stop_pid "$FS_PID"
    log "paired $alg #$rep: fleetscan $name $us us/probe ($((p1 - p0)) probes) | $other $other_us us/probe; load $(loadavg)"
    case "$state" in *"offline=0 "*) ;; *) log "WARNING: fleetscan offline endpoints: $state" ;; esac
    put "pair.$other.fs.$alg.$rep" "$us"
    put "pair.$other.other.$alg.$rep" "$other_us"
    put "pair.$other.ratio.$alg.$rep" "$(awk -v a="$us" -v b="$other_us" 'BEGIN {printf "%.2f", b ? a / b : 0}')"
}

# A/B: two fleetscan daemons side by side in the same window, same config and rate: A is the
# build under test, B another binary (BENCH_AB_FLEETSCAN) and/or the same one with LD_PRELOAD
# (BENCH_AB_PRELOAD, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2). For before/after checks.
section_ab() {
    local b=${BENCH_AB_FLEETSCAN:-$FS} pre=${BENCH_AB_PRELOAD:-} rep alg
    log "== A/B: A=$FS  B=$b${pre:+ with LD_PRELOAD=$pre}"
    for rep in $(seq 1 "$REPEAT"); do
        for alg in $ALGS; do
            local cfg="$WORK/fs-ab-$alg.json" interval
            interval=$(awk -v n="$EPS" -v r="$RATE" 'BEGIN {printf "%.2f", n / r * 0.6}')
            fs_config "$cfg" "$alg" "" strict "$EPS" "$interval" "$RATE" 256
            # B gets its own copy: the state database sits beside the configuration, and a
            # second daemon on the same file would run without it (the file is locked).
            cp "$cfg" "$WORK/fs-ab-b-$alg.json"
            fs_start "$cfg" "$WORK/fs-ab-a-$alg-$rep"
            local apid=$FS_PID aurl=$FS_URL
            fs_start "$WORK/fs-ab-b-$alg.json" "$WORK/fs-ab-b-$alg-$rep" "$b" "$pre"
            local bpid=$FS_PID burl=$FS_URL
            sleep "$WARM"
            local ta0 tb0 pa0 pb0 ta1 tb1 pa1 pb1
            FS_URL=$aurl; pa0=$(fs_probes); ta0=$(cpu_ticks "$apid")
            FS_URL=$burl; pb0=$(fs_probes); tb0=$(cpu_ticks "$bpid")
            sleep "$WIN"
            FS_URL=$aurl; pa1=$(fs_probes); ta1=$(cpu_ticks "$apid")
            FS_URL=$burl; pb1=$(fs_probes); tb1=$(cpu_ticks "$bpid")
            stop_pid "$apid"; stop_pid "$bpid"
            local ua ub
            ua=$(awk -v dt=$((ta1 - ta0)) -v hz="$HZ" -v dp=$((pa1 - pa0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
            ub=$(awk -v dt=$((tb1 - tb0)) -v hz="$HZ" -v dp=$((pb1 - pb0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
            log "A/B $alg #$rep: A $ua us/probe ($((pa1 - pa0)) probes) | B $ub us/probe ($((pb1 - pb0)) probes); load $(loadavg)"
            put "ab.a.$alg.$rep" "$ua"
            put "ab.b.$alg.$rep" "$ub"
            put "ab.ratio.$alg.$rep" "$(awk -v a="$ua" -v b="$ub" 'BEGIN {printf "%.3f", a ? b / a : 0}')"
        done
    done
}

# The features' own cost: a daemon without the feature (A) and one with it (B), side by side in
# the same window at RATE/s each, handshake-only; B/A per run. The revocation paths (crl, ocsp,
# delta) are measured against revocation off, with the same handshake (same key type and chain
# shape); targets and store against strict CRL checking without them:
#   crl      strict, base CRLs (leaf and issuing CA), cached
#   ocsp     strict, the leaf through OCSP (cached answer), the issuing CA through its CRL
#   delta    strict, base + delta CRL for the leaf (cached), CRL for the issuing CA
#   targets  two targets, one group each, three addresses a name (round robin), vs one target
#            with one address
#   store    the state database on (the default) vs state_db null
FEAT_VARIANTS=${BENCH_FEAT_VARIANTS:-crl ocsp delta targets store}
section_feat() {
    local rep alg v
    log "== 1c. features: each of ($FEAT_VARIANTS) vs the same without it, same window, $RATE/s each"
    for rep in $(seq 1 "$REPEAT"); do
        for alg in $ALGS; do
            for v in $FEAT_VARIANTS; do
                local interval cfga="$WORK/fs-feat-$v-a-$alg.json" cfgb="$WORK/fs-feat-$v-b-$alg.json"
                interval=$(awk -v n="$EPS" -v r="$RATE" 'BEGIN {printf "%.2f", n / r * 0.6}')
                case $v in
                targets) fs_config "$cfga" "$alg" "" strict "$EPS" "$interval" "$RATE" 256 ;;
                store) FS_VARIANT=nostore fs_config "$cfga" "$alg" "" strict "$EPS" "$interval" "$RATE" 256 ;;
                *) fs_config "$cfga" "$alg" "" off "$EPS" "$interval" "$RATE" 256 ;;
                esac
                case $v in
                crl | store) fs_config "$cfgb" "$alg" "" strict "$EPS" "$interval" "$RATE" 256 ;;
                *) FS_VARIANT=$v fs_config "$cfgb" "$alg" "" strict "$EPS" "$interval" "$RATE" 256 ;;
                esac
                fs_start "$cfga" "$WORK/fs-feat-$v-a-$alg-$rep"
                local apid=$FS_PID aurl=$FS_URL
                fs_start "$cfgb" "$WORK/fs-feat-$v-b-$alg-$rep"
                local bpid=$FS_PID burl=$FS_URL
                sleep "$WARM"
                local ta0 tb0 pa0 pb0 ta1 tb1 pa1 pb1 state rets
                FS_URL=$aurl; pa0=$(fs_probes); ta0=$(cpu_ticks "$apid")
                FS_URL=$burl; pb0=$(fs_probes); tb0=$(cpu_ticks "$bpid")
                sleep "$WIN"
                FS_URL=$aurl; pa1=$(fs_probes); ta1=$(cpu_ticks "$apid")
                FS_URL=$burl; pb1=$(fs_probes); tb1=$(cpu_ticks "$bpid")
                state=$(fs_check); rets=$(fs_retrievals)
                stop_pid "$apid"; stop_pid "$bpid"
                local ua ub
                ua=$(awk -v dt=$((ta1 - ta0)) -v hz="$HZ" -v dp=$((pa1 - pa0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
                ub=$(awk -v dt=$((tb1 - tb0)) -v hz="$HZ" -v dp=$((pb1 - pb0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
                log "feature $v $alg #$rep: without $ua us/probe ($((pa1 - pa0))) | with $ub us/probe ($((pb1 - pb0))); $state; retrievals: ${rets:-none}; load $(loadavg)"
                case "$state" in *"offline=0 "*) ;; *) log "WARNING: offline endpoints in the $v run" ;; esac
                put "feat.off.$v.$alg.$rep" "$ua"
                put "feat.on.$v.$alg.$rep" "$ub"
                put "feat.ratio.$v.$alg.$rep" "$(awk -v a="$ua" -v b="$ub" 'BEGIN {printf "%.3f", a ? b / a : 0}')"
                put "feat.rets.$v.$alg" "$rets"
            done
        done
    done
}

# Heap allocations and system calls per probe, fleetscan (handshake-only, strict CRL) and the
# bare client, each alone at RATE/s. Allocations: bench/malloc_count.c preloaded, counted
# between two SIGUSR2 over WIN_SYS seconds, each attributed to the nearest fleetscan function
# on its stack (OpenSSL's own allocations inside tlsc_handshake count there). System calls:
# strace -c -f over the same length of window, per connect (one connect per probe).
WIN_SYS=${BENCH_SYS_WINDOW_S:-10}
SYS_ALGS=${BENCH_SYS_ALGS:-ecdsa}
section_sys() {
    local alg cfg lib="$WORK/libmalloc_count.so"
    cc -O2 -shared -fPIC -o "$lib" "$ROOT/bench/malloc_count.c" -ldl
    log "== 1d. allocations and system calls per probe ($SYS_ALGS), ${WIN_SYS}s windows"
    for alg in $SYS_ALGS; do
        cfg="$WORK/fs-sys-$alg.json"
        fs_config "$cfg" "$alg" "" strict "$EPS" 4 "$RATE" 256
        # allocations, fleetscan: stacks on (slower, the counts are per probe anyway)
        MALLOC_COUNT_OUT=$WORK/alloc-fs.txt fs_start "$cfg" "$WORK/fs-sys-$alg" "$FS" "$lib"
        sleep "$WARM"
        local p0 p1
        kill -USR2 "$FS_PID"; p0=$(fs_probes)
        sleep "$WIN_SYS"
        kill -USR2 "$FS_PID"; p1=$(fs_probes)
        sleep 0.5
        stop_pid "$FS_PID"
        local n=$((p1 - p0))
        put "sys.alloc.fs.$alg" "$(awk -v n="$n" 'NR == 1 {printf "%.0f", $2 / n}' "$WORK/alloc-fs.txt")"
        put "sys.alloc.fs_bytes.$alg" "$(awk -v n="$n" 'NR == 1 {printf "%.0f", $6 / n}' "$WORK/alloc-fs.txt")"
        # the nearest fleetscan function of each allocation, per probe (addr2line for statics)
        awk '/^by the nearest frame in the executable/ {on = 1; next} /^by the/ {on = 0} on' \
            "$WORK/alloc-fs.txt" | while read -r c name rest; do
            case "$name" in
            exe+*) name=$(addr2line -f -e "$FS" "$(printf '%#x' $((${name#exe+} - 1)))" | head -1) ;;
            esac
            echo "$c $name"
        done | awk -v n="$n" '{a[$2] += $1} END {for (k in a) printf "%.1f %s\n", a[k] / n, k}' |
            sort -rn | head -12 | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}' > "$WORK/alloc-sites.txt"
        put "sys.alloc.sites.$alg" "$(cat "$WORK/alloc-sites.txt")"
        log "allocations, fleetscan $alg: $(get sys.alloc.fs.$alg) per probe ($n probes); by function: $(cat "$WORK/alloc-sites.txt")"
        # allocations, bare client: counts only, so it holds its rate
        local bargs=(127.0.0.1 "$(port_of "$alg")" "$(cert_of "$alg").bench.test"
            "$WORK/pki/$(cert_of "$alg")-root.pem" "$RATE" $((WIN_SYS + 2)) 2 "$(tls_of "$alg")")
        MALLOC_COUNT_SITES=0 MALLOC_COUNT_OUT=$WORK/alloc-bare.txt LD_PRELOAD=$lib \
            "$WORK/bare_client" "${bargs[@]}" > /dev/null &
        local bpid=$!
        PIDS+=("$bpid")
        sleep 3
        kill -USR2 "$bpid"
        sleep "$WIN_SYS"
        kill -USR2 "$bpid"
        wait "$bpid" || true
        forget_pid "$bpid"
        put "sys.alloc.bare.$alg" "$(awk -v n=$((RATE * WIN_SYS)) 'NR == 1 {printf "%.0f", $2 / n}' "$WORK/alloc-bare.txt")"
        log "allocations, bare client $alg: $(get sys.alloc.bare.$alg) per handshake"
        # system calls: strace -c over a window, per connect
        fs_start "$cfg" "$WORK/fs-sys2-$alg"
        sleep "$WARM"
        timeout -s INT "$WIN_SYS" strace -c -f -o "$WORK/strace-fs.txt" -p "$FS_PID" 2> /dev/null || true
        stop_pid "$FS_PID"
        "$WORK/bare_client" "${bargs[@]}" > /dev/null &
        bpid=$!
        PIDS+=("$bpid")
        sleep 2
        timeout -s INT "$WIN_SYS" strace -c -f -o "$WORK/strace-bare.txt" -p "$bpid" 2> /dev/null || true
        wait "$bpid" || true
        forget_pid "$bpid"
        local who
        for who in fs bare; do
            put "sys.calls.$who.$alg" "$(awk '$NF == "connect" {c = $4} $NF == "total" {t = $4} END {printf "%.1f", c ? t / c : 0}' "$WORK/strace-$who.txt")"
            put "sys.calls_by.$who.$alg" "$(awk '$NF == "connect" {c = $4} /^ *[0-9]/ && $NF != "total" {n[$NF] = $4} END {for (k in n) if (n[k] / c >= 0.5) printf "%s %.1f\n", k, n[k] / c}' "$WORK/strace-$who.txt" | sort -k2 -rn | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')"
        done
        log "system calls per probe $alg: fleetscan $(get sys.calls.fs.$alg) ($(get sys.calls_by.fs.$alg)); bare client $(get sys.calls.bare.$alg) ($(get sys.calls_by.bare.$alg))"
    done
}

section_paired() {
    log "== 1b. paired runs (same window): fleetscan vs bare client, vs blackbox tls_connect, vs http_2xx"
    [ -n "$BB_PID" ] && kill -0 "$BB_PID" 2> /dev/null || bb_start
    local rep alg other
    for rep in $(seq 1 "$REPEAT"); do
        for alg in $ALGS; do
            for other in ${BENCH_PAIRED_OTHERS:-bare tls_connect http_2xx}; do
                paired "$alg" "$rep" "$other"
            done
        done
    done
    stop_pid "$BB_PID"
    BB_PID=""
}

# ---- sections -------------------------------------------------------------------------------
section_cpu() {
    log "== 1. client CPU per probe: $EPS endpoints at $RATE/s, warm-up ${WARM}s, window ${WIN}s, $REPEAT runs"
    bb_start
    local rep alg
    for rep in $(seq 1 "$REPEAT"); do
        for alg in $ALGS; do
            bare_cpu "$alg" "$rep"
            fs_cpu hs "$alg" "" strict "$rep"
            fs_cpu hs_norev "$alg" "" off "$rep"
            fs_cpu url "$alg" "/Altiris/NS/Agent/GetClientPolicies.aspx" strict "$rep"
            bb_cpu tls_connect "$alg" "$rep"
            bb_cpu http_2xx "$alg" "$rep"
        done
    done
    stop_pid "$BB_PID"
}

# 100,000 endpoints; RSS after the first full cycle and after MEM_CYCLES more. The API latency
# section runs on the same daemon afterwards, while it keeps probing at full rate.
section_mem_api() {
    local cfg="$WORK/fs-mem.json"
    # A short interval and no effective rate limit: the daemon probes back to back, as fast as
    # max_in_flight (1000) and the machine allow; a cycle is MEM_EPS probes.
    FS_VARIANT=$MEM_VARIANT fs_config "$cfg" ecdsa "" strict "$MEM_EPS" 5 "$MEM_RATE" "$MEM_IN_FLIGHT"
    fs_start "$cfg" "$WORK/fs-mem"
    local rss0 rss_start p t_start cyc=0 target
    rss_start=$(rss_kib "$FS_PID")
    t_start=$(date +%s)
    log "== 2. memory: $MEM_EPS endpoints, max_in_flight $MEM_IN_FLIGHT; RSS at start ${rss_start} KiB"
    : > "$WORK/rss.txt"
    wait_cycles() { # wait_cycles PROBES MAX_SECONDS: until probes_total >= PROBES; RSS every 2 s
        local until=$(($(date +%s) + $2))
        while :; do
            p=$(fs_probes)
            echo "$(($(date +%s) - t_start)) $p $(rss_kib "$FS_PID")" >> "$WORK/rss.txt"
            [ "$p" -ge "$1" ] && return 0
            [ "$(date +%s)" -ge "$until" ] && { log "time cap reached at $p probes"; return 0; }
            kill -0 "$FS_PID" || { echo "bench: fleetscan died" >&2; return 1; }
            sleep 2
        done
    }
    wait_cycles "$MEM_EPS" "$MEM_MAX_S"
    local t1 p1
    t1=$(date +%s); p1=$(fs_probes)
    rss0=$(rss_kib "$FS_PID")
    local mark
    mark=$(wc -l < "$WORK/rss.txt")
    log "after cycle 1 ($p1 probes, $((t1 - t_start)) s): RSS ${rss0} KiB; $(fs_check)"
    wait_cycles $((p1 + MEM_EPS * MEM_CYCLES)) "$MEM_MAX_S"
    local t2 p2 rss1 hwm
    t2=$(date +%s); p2=$(fs_probes)
    rss1=$(rss_kib "$FS_PID"); hwm=$(hwm_kib "$FS_PID")
    log "after $((p2 - p1)) more probes ($((t2 - t_start)) s): RSS ${rss1} KiB, peak ${hwm} KiB; $(fs_check)"
    put mem.endpoints "$MEM_EPS"
    put mem.rss_start_kib "$rss_start"
    put mem.rss_cycle1_kib "$rss0"
    put mem.rss_after_kib "$rss1"
    put mem.hwm_kib "$hwm"
    put mem.cycles "$(awk -v d=$((p2 - p1)) -v n="$MEM_EPS" 'BEGIN {printf "%.1f", d / n}')"
    put mem.rss_range_kib "$(tail -n +"$mark" "$WORK/rss.txt" | awk 'NR == 1 {a = b = $3} {if ($3 < a) a = $3; if ($3 > b) b = $3} END {print a " " b}')"
    put mem.rate "$(awk -v d=$((p2 - p1)) -v w=$((t2 - t1)) 'BEGIN {printf "%.0f", w ? d / w : 0}')"
    put mem.cycle_s "$(awk -v w=$((t2 - t1)) -v d=$((p2 - p1)) -v n="$MEM_EPS" 'BEGIN {printf "%.0f", d ? w * n / d : 0}')"
    put mem.state "$(fs_check)"
    cp "$WORK/rss.txt" "${REPORT%.txt}-rss.txt" 2> /dev/null || true
    if has api; then section_api; fi
    stop_pid "$FS_PID"
}

# nginx's workers for the API section: SCHED_IDLE by default (BENCH_API_SERVER_IDLE=0: as the
# other sections, normal). The TLS server shares this host's 2 cores only because the bench runs
# it here: at normal priority its workers, busy with the prober's handshakes, run 1-4 ms slices
# before the API thread woken by a request gets the CPU (perf sched: every wakeup delay of the
# API threads over 0.8 ms was spent behind an nginx worker), a delay a remote server never
# causes. SCHED_IDLE keeps it from preempting anyone; the probe rate stays the same.
nginx_sched() { # nginx_sched -i|-o
    local w
    for w in $(pgrep -P "$NGINX_PID" 2> /dev/null); do chrt "$1" -p 0 "$w" 2> /dev/null || true; done
}

# CPU ticks (USER_HZ) of each thread of process $1 summed per thread name, "name ticks" lines;
# then of the nginx workers and of the whole machine (busy), so a window can be split into the
# daemon's threads, the bench's TLS server and the rest (the load generator).
split_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1\t\2/' "$t/stat" 2> /dev/null
    done | awk -F'\t' '{split($2, a, " "); n = $1; gsub(/[ 0-9]+$/, "", n); c[n] += a[12] + a[13]}
                       END {for (n in c) print "fleetscan:" n, c[n]}'
    local w sum=0
    for w in $(pgrep -P "$NGINX_PID" 2> /dev/null); do
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$w/stat")))
    done
    echo "nginx $sum"
    awk '/^cpu / {print "machine", $2 + $3 + $4 + $7 + $8}' /proc/stat
}
# "name share%" of each line of two split_ticks outputs over the window, against 2 cores' worth.
cpu_split() { # cpu_split BEFORE AFTER SECONDS
    awk -v s="$3" -v hz="$(getconf CLK_TCK)" -v ncpu="$(nproc)" 'NR == FNR {b[$1] = $2; next}
        {d = $2 - b[$1]; printf "%s %.0f%%  ", $1, d * 100 / (s * hz * ncpu)}' "$1" "$2"
}

section_api() {
    log "== 3. API latency under full probing (wrk -t2 -c16 -d15s --latency)"
    local idle=${BENCH_API_SERVER_IDLE:-1}
    [ "$idle" = 1 ] && nginx_sched -i
    put api.server_idle "$idle"
    if [ -n "${BENCH_API_NICE:-}" ]; then # experiment: the API's threads below the probe loop
        local t
        for t in /proc/"$FS_PID"/task/*; do
            grep -q '^MHD' "$t/comm" && renice -n "$BENCH_API_NICE" -p "${t##*/}" > /dev/null
        done
        log "API threads reniced to $BENCH_API_NICE"
    fi
    local route p0 p1 out
    for route in /api/v1/status /metrics; do
        p0=$(fs_probes)
        split_ticks "$FS_PID" > "$WORK/cpu0"
        out=$(wrk -t2 -c16 -d15s --latency "$FS_URL$route" 2>&1)
        split_ticks "$FS_PID" > "$WORK/cpu1"
        p1=$(fs_probes)
        echo "$out" > "$WORK/wrk-${route//\//_}.txt"
        local p50 p99 rps key
        p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
        p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
        rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<< "$out")
        key=$([ "$route" = /metrics ] && echo metrics || echo status)
        put "api.$key.p50" "$p50"
        put "api.$key.p99" "$p99"
        put "api.$key.rps" "$rps"
        put "api.$key.probe_rate" "$(( (p1 - p0) / 15 ))"
        put "api.$key.cpu" "$(cpu_split "$WORK/cpu0" "$WORK/cpu1" 15)"
        log "$route: p50 $p50 p99 $p99, $rps req/s, daemon probing $(( (p1 - p0) / 15 ))/s; load $(loadavg)"
        log "   CPU of 2 cores during it: $(get "api.$key.cpu")"
    done
    # One poller at 100 requests/s on one keep-alive connection: what an admin's curl loop or
    # a scraper sees while the daemon probes at full rate (wrk above saturates the CPU itself).
    local n=1500 urls=() i
    for i in $(seq 1 "$n"); do urls+=(-o /dev/null "$FS_URL/api/v1/status"); done
    p0=$(fs_probes)
    local t0=$(date +%s%N)
    # The poller at SCHED_FIFO when allowed: on this kernel (PREEMPT_NONE, HZ=250) a normal
    # client woken by the answer waits up to a tick behind whatever runs in the kernel, and that
    # wait is the client's, not the daemon's.
    local rt=()
    chrt -f 10 true 2> /dev/null && rt=(chrt -f 10)
    put api.poll.fifo "${#rt[@]}"
    split_ticks "$FS_PID" > "$WORK/cpu0"
    "${rt[@]}" curl -s --rate 100/s -w '%{time_total}\n' "${urls[@]}" > "$WORK/poll.txt"
    split_ticks "$FS_PID" > "$WORK/cpu1"
    local el=$((($(date +%s%N) - t0) / 1000000))
    p1=$(fs_probes)
    sort -g "$WORK/poll.txt" | awk -v n="$n" '{a[NR] = $1} END {printf "%.2fms %.2fms %.2fms\n", a[int(NR * 0.5)] * 1000, a[int(NR * 0.99)] * 1000, a[NR] * 1000}' > "$WORK/poll.stats"
    read -r p50 p99 pmax < "$WORK/poll.stats"
    put api.poll.p50 "$p50"
    put api.poll.p99 "$p99"
    put api.poll.max "$pmax"
    put api.poll.probe_rate "$(awk -v d=$((p1 - p0)) -v ms="$el" 'BEGIN {printf "%.0f", d * 1000 / ms}')"
    put api.poll.cpu "$(cpu_split "$WORK/cpu0" "$WORK/cpu1" "$((el / 1000))")"
    log "/api/v1/status, one poller x $n: p50 $p50 p99 $p99 max $pmax; daemon probing $(get api.poll.probe_rate)/s; load $(loadavg)"
    log "   CPU of 2 cores during it: $(get api.poll.cpu)"
    put api.rss_after_kib "$(rss_kib "$FS_PID")"
    [ "$idle" = 1 ] && nginx_sched -o
}

# Soak (issue 14): SOAK_EPS endpoints at full rate with every feature on (FS_VARIANT full) plus
# two hostile groups, for SOAK_MIN minutes: "stall" (a server that accepts and never speaks)
# and "trickle" (one that sends a byte every 500 ms), bench/hostile.c, each SOAK_HOSTILE
# endpoints and its own target. Every minute: RSS, open file descriptors, the /status p99 of
# one poller at SCHED_FIFO (10 s at 100/s), /healthz, the probe rate and the state counts.
SOAK_MIN=${BENCH_SOAK_MINUTES:-30}
SOAK_EPS=${BENCH_SOAK_ENDPOINTS:-100000}
SOAK_HOSTILE=${BENCH_SOAK_HOSTILE:-500}
section_soak() {
    cc -O2 -std=c11 -o "$WORK/hostile" "$ROOT/bench/hostile.c"
    "$WORK/hostile" > "$WORK/hostile.out" &
    local hpid=$! i ps="" pt=""
    PIDS+=("$hpid")
    for i in $(seq 1 50); do
        ps=$(sed -n 's/^stall=\([0-9]*\) .*/\1/p' "$WORK/hostile.out")
        pt=$(sed -n 's/.* trickle=\([0-9]*\)$/\1/p' "$WORK/hostile.out")
        [ -n "$pt" ] && break
        sleep 0.1
    done
    local cfg="$WORK/fs-soak.json" base="$WORK/fs-soak-base.json" main=$((SOAK_EPS - 2 * SOAK_HOSTILE))
    FS_VARIANT=full fs_config "$base" ecdsa "" strict "$main" 5 "$MEM_RATE" "$MEM_IN_FLIGHT"
    jq --arg ps "$ps" --arg pt "$pt" --argjson n "$SOAK_HOSTILE" '
        .targets.stall = {url: "https://stall.bench.test:\($ps)"} |
        .targets.trickle = {url: "https://trickle.bench.test:\($pt)"} |
        .profiles.stall = {url: "https://stall.bench.test:\($ps)"} |
        .profiles.trickle = {url: "https://trickle.bench.test:\($pt)"} |
        .groups += [{name: "stall", count: $n, profile: "stall", revocation: {mode: "strict"},
                     network: {resolve: {"stall.bench.test": "127.0.0.1", "crl.bench.test": "127.0.0.1"}}},
                    {name: "trickle", count: $n, profile: "trickle", revocation: {mode: "strict"},
                     network: {resolve: {"trickle.bench.test": "127.0.0.1", "crl.bench.test": "127.0.0.1"}}}]' \
        "$base" > "$cfg"
    fs_start "$cfg" "$WORK/fs-soak"
    [ "${BENCH_API_SERVER_IDLE:-1}" = 1 ] && nginx_sched -i # as in the API section
    log "== soak: $SOAK_EPS endpoints ($SOAK_HOSTILE stalling, $SOAK_HOSTILE trickling), max_in_flight $MEM_IN_FLIGHT, full rate, $SOAK_MIN minutes"
    local rt=() t_start min urls=() k
    chrt -f 10 true 2> /dev/null && rt=(chrt -f 10)
    for k in $(seq 1 1000); do urls+=(-o /dev/null "$FS_URL/api/v1/status"); done
    t_start=$(date +%s)
    for min in $(seq 1 "$SOAK_MIN"); do
        local due=$((t_start + min * 60)) p0 p1 t0 t1 p99 hz state rss fds
        while [ "$(date +%s)" -lt $((due - 12)) ]; do sleep 1; done
        kill -0 "$FS_PID" || { echo "bench: fleetscan died during the soak" >&2; return 1; }
        p0=$(fs_probes); t0=$(date +%s%N)
        "${rt[@]}" curl -s --rate 100/s -w '%{time_total}\n' "${urls[@]}" > "$WORK/soak-poll.txt" || true
        p1=$(fs_probes); t1=$(date +%s%N)
        p99=$(sort -g "$WORK/soak-poll.txt" | awk '{a[NR] = $1} END {printf "%.2f", a[int(NR * 0.99)] * 1000}')
        hz=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$FS_URL/healthz" || true)
        rss=$(rss_kib "$FS_PID"); fds=$(ls "/proc/$FS_PID/fd" | wc -l)
        state=$(fs_status | jq -r '"online=\(.endpoints.online) offline=\(.endpoints.offline) causes=\(.causes|tostring)"')
        put "soak.$min.rss_kib" "$rss"
        put "soak.$min.fds" "$fds"
        put "soak.$min.p99_ms" "$p99"
        put "soak.$min.healthz" "$hz"
        put "soak.$min.rate" "$(awk -v d=$((p1 - p0)) -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", d * 1e9 / ns}')"
        put "soak.$min.state" "$state"
        log "soak minute $min: RSS $((rss / 1024)) MiB, $fds fds, /status p99 ${p99} ms (one poller), /healthz $hz, probing $(get soak.$min.rate)/s; $state"
        while [ "$(date +%s)" -lt "$due" ]; do sleep 1; done
    done
    put soak.hwm_kib "$(hwm_kib "$FS_PID")"
    [ "${BENCH_API_SERVER_IDLE:-1}" = 1 ] && nginx_sched -o
    stop_pid "$FS_PID"
    stop_pid "$hpid"
    put soak.hostile "$(tail -1 "$WORK/hostile.out")"
}

section_crl() {
    log "== 4. CRL economy: $CRL_EPS endpoints, strict revocation (scope chain_exclude_root)"
    local cfg="$WORK/fs-crl.json" alg=rsa
    # (a) CRLs valid for 7 days: one fetch per URL expected for the whole run.
    bash "$ROOT/bench/pki.sh" "$WORK/pki" "$CRL_BASE" 604800
    fs_config "$cfg" "$alg" "" strict "$CRL_EPS" 5 2000 1000 '"crl_expiring_soon_hours": 0'
    : > "$WORK/nginx/crl-access.log"
    fs_start "$cfg" "$WORK/fs-crl-a"
    local p
    while :; do
        p=$(fs_probes)
        [ "$p" -ge $((CRL_EPS * 3)) ] && break
        sleep 1
    done
    local state
    state=$(fs_check)
    CRL_PROBES=$(fs_probes)
    stop_pid "$FS_PID"
    crl_count a "$state"
    # (b) The CA republishes every P = CRL_PERIOD s, each CRL valid 1.5 P (overlapping, as CAs
    # do). A client that fetches exactly once per nextUpdate fetches at 0, 1.5P, 2.5P, 3.5P:
    # 4 times per URL (and network view) in a 4P run.
    local dur=$((CRL_PERIOD * 4)) life=$((CRL_PERIOD * 3 / 2))
    bash "$ROOT/bench/pki.sh" "$WORK/pki" "$CRL_BASE" "$life"
    : > "$WORK/nginx/crl-access.log"
    (
        trap 'kill $! 2> /dev/null; exit 0' TERM
        while :; do
            sleep "$CRL_PERIOD" & wait $!
            bash "$ROOT/bench/pki.sh" "$WORK/pki" "$CRL_BASE" "$life"
        done
    ) &
    local regen=$!
    PIDS+=("$regen")
    fs_config "$cfg" "$alg" "" strict "$CRL_EPS" 5 2000 1000 '"crl_expiring_soon_hours": 0'
    fs_start "$cfg" "$WORK/fs-crl-b"
    sleep "$dur"
    state=$(fs_check)
    CRL_PROBES=$(fs_probes)
    stop_pid "$FS_PID"
    stop_pid "$regen"
    put crl.b.duration_s "$dur"
    put crl.b.period_s "$CRL_PERIOD"
    crl_count b "$state"
}
CRL_PROBES=0
crl_count() { # PHASE STATE: fetches per URL from nginx's log vs probes
    local phase=$1 state=$2 probes=$CRL_PROBES urls
    urls=$(awk '{print $2}' "$WORK/nginx/crl-access.log" | sort | uniq -c |
        awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}')
    put "crl.$phase.probes" "$probes"
    put "crl.$phase.fetches" "$(wc -l < "$WORK/nginx/crl-access.log")"
    put "crl.$phase.by_url" "${urls:-none}"
    put "crl.$phase.state" "$state"
    log "CRL ($phase): ${probes} probes; fetches: ${urls:-none}; $state"
}

section_store() {
    log "== 5. State database: $MEM_EPS endpoints, 20 groups"
    local bdir=${BENCH_BUILD:-$ROOT/build-bench}
    cmake -S "$ROOT" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DFLEETSCAN_WERROR=OFF > /dev/null
    cmake --build "$bdir" -j "$(nproc)" --target bench_store > /dev/null
    "$bdir/bench_store" "$MEM_EPS" 20 "$WORK" > "$WORK/store.txt"
}

# ---- report ---------------------------------------------------------------------------------
# The resolve cache (probes/dns.c), at 100,000 endpoints and 1,000 in flight.
# (a) On the engine (bench/dns_driver.c): probes of localhost (the system path; /etc/hosts, never
# a name server) to a closed port, so a probe is resolve + connect + refused and the name's cost
# shows: an IP literal (no resolution), a c-ares lookup of its own per probe (no cache), one
# shared cache; CPU per probe, lookups, and system calls per probe (strace -c, a run of
# DNS_STRACE_PROBES). (b) In the daemon: DNS_EPS endpoints whose URL names localhost, resolved
# through the daemon's resolve cache (FS_VARIANT sysdns), beside the same fleet with the name
# in network.resolve (no resolution at all), RATE/s each, same window; then system calls per
# probe of the first over a window.
DNS_IN_FLIGHT=${BENCH_DNS_IN_FLIGHT:-1000}
DNS_EPS=${BENCH_DNS_ENDPOINTS:-100000}
DNS_STRACE_PROBES=${BENCH_DNS_STRACE_PROBES:-20000}
section_dns() {
    local bdir=${BENCH_BUILD:-$ROOT/build-bench} rep mode out
    log "== 5. resolve cache: $DNS_PROBES probes of localhost per run, $DNS_IN_FLIGHT in flight, $REPEAT runs"
    cmake -S "$ROOT" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DFLEETSCAN_WERROR=OFF > /dev/null
    cmake --build "$bdir" -j "$(nproc)" --target fsprobes > /dev/null
    # shellcheck disable=SC2046 # pkg-config prints several words on purpose
    cc -O2 -std=c11 -D_DEFAULT_SOURCE -DOPENSSL_API_COMPAT=30000 -I"$ROOT" -o "$WORK/dns_driver" \
        "$ROOT/bench/dns_driver.c" "$bdir/libfsprobes.a" \
        $(pkg-config --cflags --libs libuv openssl libcurl libcares) -lpthread -lm
    for rep in $(seq 1 "$REPEAT"); do
        for mode in ip none cache; do
            out=$("$WORK/dns_driver" "$mode" "$DNS_PROBES" "$DNS_IN_FLIGHT")
            log "   $out"
            put "dns.$mode.us.$rep" "$(sed -n 's/.*us_per_probe=\([0-9.]*\).*/\1/p' <<< "$out")"
            put "dns.$mode.lookups" "$(sed -n 's/.*lookups=\([0-9]*\).*/\1/p' <<< "$out")"
        done
    done
    if command -v strace > /dev/null; then
        for mode in ip none cache; do
            strace -c -f -o "$WORK/strace-dns-$mode.txt" \
                "$WORK/dns_driver" "$mode" "$DNS_STRACE_PROBES" "$DNS_IN_FLIGHT" > /dev/null 2>&1 || true
            put "dns.$mode.syscalls" "$(awk -v n="$DNS_STRACE_PROBES" '$NF == "total" {printf "%.1f", $4 / n}' "$WORK/strace-dns-$mode.txt")"
            put "dns.$mode.syscalls_by" "$(awk -v n="$DNS_STRACE_PROBES" '/^ *[0-9]/ && $NF != "total" && $4 / n >= 0.2 {printf "%s %.1f\n", $NF, $4 / n}' "$WORK/strace-dns-$mode.txt" | sort -k2 -rn | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')"
            log "   $mode: $(get dns.$mode.syscalls) system calls per probe ($(get dns.$mode.syscalls_by))"
        done
    fi
    # (b) the daemon, DNS_EPS endpoints: the name through the resolve cache vs the resolve map
    local alg=ecdsa interval cfga="$WORK/fs-dns-map.json" cfgb="$WORK/fs-dns-sys.json"
    interval=$(awk -v n="$DNS_EPS" -v r="$RATE" 'BEGIN {printf "%.0f", n / r * 0.6}')
    log "   daemon: $DNS_EPS endpoints, $RATE/s, max_in_flight $DNS_IN_FLIGHT: resolve map vs the system resolver through the cache"
    for rep in $(seq 1 "$REPEAT"); do
        fs_config "$cfga" "$alg" "" strict "$DNS_EPS" "$interval" "$RATE" "$DNS_IN_FLIGHT"
        FS_VARIANT=sysdns fs_config "$cfgb" "$alg" "" strict "$DNS_EPS" "$interval" "$RATE" "$DNS_IN_FLIGHT"
        fs_start "$cfga" "$WORK/fs-dns-map-$rep"
        local apid=$FS_PID aurl=$FS_URL
        FS_SYSTEM_DNS=1 fs_start "$cfgb" "$WORK/fs-dns-sys-$rep"
        local bpid=$FS_PID burl=$FS_URL
        sleep "$WARM"
        local ta0 tb0 pa0 pb0 ta1 tb1 pa1 pb1 state
        FS_URL=$aurl; pa0=$(fs_probes); ta0=$(cpu_ticks "$apid")
        FS_URL=$burl; pb0=$(fs_probes); tb0=$(cpu_ticks "$bpid")
        sleep "$WIN"
        FS_URL=$aurl; pa1=$(fs_probes); ta1=$(cpu_ticks "$apid")
        FS_URL=$burl; pb1=$(fs_probes); tb1=$(cpu_ticks "$bpid")
        state=$(fs_check)
        if [ "$rep" = 1 ] && command -v strace > /dev/null; then
            local s0 s1
            s0=$(fs_probes)
            timeout -s INT "$WIN" strace -c -f -o "$WORK/strace-dns-daemon.txt" -p "$bpid" 2> /dev/null || true
            s1=$(fs_probes)
            put dns.daemon.syscalls "$(awk -v n=$((s1 - s0)) '$NF == "total" {printf "%.1f", $4 / n}' "$WORK/strace-dns-daemon.txt")"
            put dns.daemon.syscalls_by "$(awk -v n=$((s1 - s0)) '/^ *[0-9]/ && $NF != "total" && $4 / n >= 0.01 {printf "%s %.2f\n", $NF, $4 / n}' "$WORK/strace-dns-daemon.txt" | sort -k2 -rn | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')"
        fi
        stop_pid "$apid"; stop_pid "$bpid"
        local ua ub
        ua=$(awk -v dt=$((ta1 - ta0)) -v hz="$HZ" -v dp=$((pa1 - pa0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
        ub=$(awk -v dt=$((tb1 - tb0)) -v hz="$HZ" -v dp=$((pb1 - pb0)) 'BEGIN {printf "%.0f", dp ? dt / hz * 1e6 / dp : 0}')
        log "   daemon #$rep: resolve map $ua us/probe ($((pa1 - pa0))) | system resolver via the cache $ub us/probe ($((pb1 - pb0))); $state; load $(loadavg)"
        case "$state" in *"offline=0 "*) ;; *) log "WARNING: offline endpoints in the resolve-cache run" ;; esac
        put "dns.daemon.map.$rep" "$ua"
        put "dns.daemon.sys.$rep" "$ub"
        put "dns.daemon.ratio.$rep" "$(awk -v a="$ua" -v b="$ub" 'BEGIN {printf "%.3f", a ? b / a : 0}')"
    done
    log "   daemon: $(get dns.daemon.syscalls) system calls per probe through the cache ($(get dns.daemon.syscalls_by))"
}

stat_of() { # stat_of KEY [FORMAT]: median of KEY.* (mean of the middle two for an even count)
    local vals
    vals=$(awk -F= -v k="$1" 'index($1, k ".") == 1 && $2 != "" {print $2}' "$RES" | sort -g)
    [ -z "$vals" ] && { echo "-"; return; }
    awk -v f="${2:-%.0f}" '{a[NR] = $1} END {printf f "\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}' <<< "$vals"
}
all_of() { awk -F= -v k="$1" 'index($1, k ".") == 1 {printf "%s%s", (n++ ? "/" : ""), $2}' "$RES"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b}'; }

report() {
    {
        echo "fleetscan benchmark - $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(openssl version | cut -d' ' -f1-2), nginx $(nginx -v 2>&1 | sed 's|.*/||'), blackbox_exporter $(prometheus-blackbox-exporter --version 2>&1 | awk 'NR == 1 {print $3}')"
        echo "fleetscan: $FS, built from the tree at $FS_REV"
        echo "bare client: $(if [ "$BARE_BUILTIN_KEYS" = 1 ]; then echo "with fleetscan's built-in RSA/EC key decoding (BENCH_BARE_BUILTIN_KEYS=1)"; else echo "OpenSSL as shipped"; fi)"
        if has cpu; then
            echo
            echo "1. Client CPU per probe, µs (utime+stime from /proc; median of $REPEAT runs, all runs after /)"
            echo "   full handshakes to loopback nginx (TLS 1.3; TLS 1.2 ECDHE-RSA-AES-GCM as IIS serves it), no session reuse; $RATE probes/s; ${WIN}s window after ${WARM}s warm-up"
            printf '   %-62s %-22s %-22s %-22s\n' client "RSA-2048 TLS 1.3" "ECDSA P-256 TLS 1.3" "RSA-2048 TLS 1.2"
            local row
            for row in "bare:bare OpenSSL client (handshake+verify only)" \
                "fs_hs:fleetscan handshake-only (strict CRL, cached)" \
                "fs_hs_norev:fleetscan handshake-only (revocation off)" \
                "fs_url:fleetscan + agent URL GET (strict CRL)" \
                "bb_tls_connect:blackbox_exporter tls_connect" \
                "bb_http_2xx:blackbox_exporter http_2xx"; do
                local k=${row%%:*} label=${row#*:}
                printf '   %-62s %-22s %-22s %-22s\n' "$label" \
                    "$(stat_of cpu.$k.rsa) ($(all_of cpu.$k.rsa))" \
                    "$(stat_of cpu.$k.ecdsa) ($(all_of cpu.$k.ecdsa))" \
                    "$(stat_of cpu.$k.rsa12) ($(all_of cpu.$k.rsa12))"
            done
            echo "   ratios (target):"
            local alg
            for row in "fs_hs/bare:fleetscan handshake-only / bare client (≤ 0.75)" \
                "fs_hs/bb_tls_connect:fleetscan handshake-only / blackbox tls_connect (≤ 0.5)" \
                "fs_url/bb_http_2xx:fleetscan agent URL / blackbox http_2xx" \
                "fs_hs_norev/bare:fleetscan revocation off / bare client"; do
                local ks=${row%%:*} label=${row#*:}
                local a=${ks%%/*} b=${ks#*/}
                printf '   %-62s %-22s %-22s %-22s\n' "$label" \
                    "$(ratio "$(stat_of cpu.$a.rsa)" "$(stat_of cpu.$b.rsa)")" \
                    "$(ratio "$(stat_of cpu.$a.ecdsa)" "$(stat_of cpu.$b.ecdsa)")" \
                    "$(ratio "$(stat_of cpu.$a.rsa12)" "$(stat_of cpu.$b.rsa12)")"
            done
            echo "   1-min load average at the end of each run: $(awk -F= '/^load.cpu/ {print $2}' "$RES" | sort -n | awk 'NR == 1 {a = $1} {b = $1} END {print a " to " b}') (2 CPUs; other jobs share the machine)"
            echo "   achieved rates /s: fleetscan $(all_of rate.fs_hs.rsa) (rsa) $(all_of rate.fs_hs.ecdsa) (ecdsa); blackbox tls $(all_of rate.bb_tls_connect.rsa)/$(all_of rate.bb_tls_connect.ecdsa), http $(all_of rate.bb_http_2xx.rsa)/$(all_of rate.bb_http_2xx.ecdsa)"
        fi
        if has paired; then
            echo
            echo "1b. Paired runs: fleetscan and the other client probing side by side in the same ${WIN}s window, $RATE/s each"
            echo "    µs CPU per probe, fleetscan vs the other; ratio fleetscan/other per run; median ratio"
            printf '   %-62s %-34s %-34s %-34s\n' pair "RSA-2048 TLS 1.3" "ECDSA P-256 TLS 1.3" "RSA-2048 TLS 1.2"
            local o lab
            for o in "bare:fleetscan handshake-only vs bare client (≤ 0.75)" \
                "tls_connect:fleetscan handshake-only vs blackbox tls_connect (≤ 0.5)" \
                "http_2xx:fleetscan agent URL vs blackbox http_2xx"; do
                local k=${o%%:*} lab=${o#*:}
                local cells=() a
                for a in rsa ecdsa rsa12; do
                    cells+=("$(paste -d: <(awk -F= -v k="pair.$k.fs.$a." 'index($1, k) == 1 {print $2}' "$RES") <(awk -F= -v k="pair.$k.other.$a." 'index($1, k) == 1 {print $2}' "$RES") | paste -sd' ') -> $(stat_of pair.$k.ratio.$a %.2f)")
                done
                printf '   %-62s %-34s %-34s %-34s\n' "$lab" "${cells[0]}" "${cells[1]}" "${cells[2]}"
            done
        fi
        if has feat; then
            echo
            echo "1c. Features: a daemon without the feature and one with it, side by side in the same ${WIN}s window, $RATE/s each, handshake-only"
            echo "    µs CPU per probe without:with per run; with/without per run (median); the first endpoint's retrievals (kind@depth)"
            local v lab a
            for v in $FEAT_VARIANTS; do
                case $v in
                crl) lab="strict, base CRLs (cached) vs revocation off" ;;
                ocsp) lab="strict, OCSP for the leaf (cached) vs off" ;;
                delta) lab="strict, base + delta CRL (cached) vs off" ;;
                targets) lab="2 targets, 3 addresses a name vs 1 and 1" ;;
                store) lab="state database vs none (strict CRL)" ;;
                *) lab=$v ;;
                esac
                for a in $ALGS; do
                    printf '   %-52s %-6s %-30s %-26s %s\n' "$lab" "$a" \
                        "$(paste -d: <(awk -F= -v k="feat.off.$v.$a." 'index($1, k) == 1 {print $2}' "$RES") <(awk -F= -v k="feat.on.$v.$a." 'index($1, k) == 1 {print $2}' "$RES") | paste -sd' ')" \
                        "$(all_of feat.ratio.$v.$a) ($(stat_of feat.ratio.$v.$a %.3f))" "$(get feat.rets.$v.$a)"
                done
            done
        fi
        if has sys; then
            echo
            echo "1d. Heap allocations and system calls per probe (handshake-only, strict CRL, $RATE/s; ${WIN_SYS}s windows)"
            local a
            for a in $SYS_ALGS; do
                echo "   $a: allocations: fleetscan $(get sys.alloc.fs.$a) ($(get sys.alloc.fs_bytes.$a) bytes), bare client $(get sys.alloc.bare.$a)"
                echo "       fleetscan's, by the nearest fleetscan function (OpenSSL's inside tlsc_handshake): $(get sys.alloc.sites.$a)"
                echo "       system calls: fleetscan $(get sys.calls.fs.$a) ($(get sys.calls_by.fs.$a)); bare client $(get sys.calls.bare.$a) ($(get sys.calls_by.bare.$a))"
            done
        fi
        if has ab; then
            echo
            echo "A/B: A=$FS, B=${BENCH_AB_FLEETSCAN:-$FS}${BENCH_AB_PRELOAD:+ with LD_PRELOAD=$BENCH_AB_PRELOAD}; same window, $RATE/s each, handshake-only, strict CRL"
            echo "   RSA:   A $(all_of ab.a.rsa)  B $(all_of ab.b.rsa)  B/A $(all_of ab.ratio.rsa) (median $(stat_of ab.ratio.rsa %.3f))"
            echo "   ECDSA: A $(all_of ab.a.ecdsa)  B $(all_of ab.b.ecdsa)  B/A $(all_of ab.ratio.ecdsa) (median $(stat_of ab.ratio.ecdsa %.3f))"
            echo "   RSA TLS 1.2: A $(all_of ab.a.rsa12)  B $(all_of ab.b.rsa12)  B/A $(all_of ab.ratio.rsa12) (median $(stat_of ab.ratio.rsa12 %.3f))"
        fi
        if has mem; then
            local e rs r1 r2
            e=$(get mem.endpoints); rs=$(get mem.rss_start_kib); r1=$(get mem.rss_cycle1_kib); r2=$(get mem.rss_after_kib)
            echo
            echo "2. Memory: $e endpoints (ECDSA, strict revocation, max_in_flight $MEM_IN_FLIGHT, state database on$([ "$MEM_VARIANT" = full ] && echo "; two targets of three addresses each, half the endpoints checked through OCSP, half through base + delta CRLs")), probing at $(get mem.rate)/s, one cycle ≈ $(get mem.cycle_s) s"
            awk -v rs="$rs" -v r1="$r1" -v r2="$r2" -v e="$e" -v c="$(get mem.cycles)" -v h="$(get mem.hwm_kib)" -v rr="$(get mem.rss_range_kib)" 'BEGIN {
                split(rr, r, " ")
                printf "   RSS at start %.1f MiB; after the first cycle %.1f MiB = %.0f bytes per endpoint (all in)\n", rs / 1024, r1 / 1024, r1 * 1024 / e
                printf "   then %s more cycles: RSS %.1f MiB at the end (%+.1f MiB), range %.1f-%.1f MiB, peak (VmHWM) %.1f MiB   (target <= 128 MiB, flat)\n",
                    c, r2 / 1024, (r2 - r1) / 1024, r[1] / 1024, r[2] / 1024, h / 1024 }'
            echo "   state: $(get mem.state)"
        fi
        if has api && has mem; then
            echo
            echo "3. API latency while probing at full rate (wrk -t2 -c16 -d15s --latency, same daemon as 2.; the bench's TLS server $(if [ "$(get api.server_idle)" = 1 ]; then echo "at SCHED_IDLE, as a remote server competes for none of this host's CPU"; else echo "at normal priority"; fi))"
            printf '   %-18s p50 %-9s p99 %-9s %6s req/s  (daemon probing %s/s meanwhile)\n' \
                /api/v1/status "$(get api.status.p50)" "$(get api.status.p99)" "$(get api.status.rps)" "$(get api.status.probe_rate)"
            printf '   %-18s p50 %-9s p99 %-9s %6s req/s  (daemon probing %s/s meanwhile)\n' \
                /metrics "$(get api.metrics.p50)" "$(get api.metrics.p99)" "$(get api.metrics.rps)" "$(get api.metrics.probe_rate)"
            echo "   CPU of the 2 cores under wrk, /api/v1/status: $(get api.status.cpu)"
            echo "   (fleetscan:NAME per thread name: the loop, the API's libmicrohttpd threads, the store; nginx = the bench's TLS server; machine = all busy time, the rest being wrk)"
            printf '   %-18s p50 %-9s p99 %-9s max %s  (one poller%s, 1500 requests at 100/s on one keep-alive connection; daemon probing %s/s)\n' \
                /api/v1/status "$(get api.poll.p50)" "$(get api.poll.p99)" "$(get api.poll.max)" "$([ "$(get api.poll.fifo)" != 0 ] && echo " at SCHED_FIFO")" "$(get api.poll.probe_rate)"
            echo "   target: /api/v1/status p99 ≤ 5 ms under the saturating client, ≤ 2 ms for one poller"
        fi
        if has crl; then
            echo
            echo "4. CRL economy: $CRL_EPS endpoints, strict revocation, RSA chain (2 CRL URLs: leaf CDP, intermediate CDP)"
            echo "   (a) CRLs valid 7 days, $(get crl.a.probes) probes: $(get crl.a.fetches) fetches: $(get crl.a.by_url)"
            echo "       $(get crl.a.state)"
            echo "   (b) CA republishing every P = $(get crl.b.period_s) s, each CRL valid 1.5 P, $(get crl.b.duration_s) s run, $(get crl.b.probes) probes: $(get crl.b.fetches) fetches: $(get crl.b.by_url)"
            echo "       one fetch per URL per nextUpdate means 4 per URL and network view (at 0, 1.5P, 2.5P, 3.5P)"
            echo "       $(get crl.b.state)"
            echo "   target: exactly one fetch per CRL URL per nextUpdate"
        fi
        if has dns; then
            echo
            echo "5. Resolve cache, $DNS_IN_FLIGHT in flight"
            echo "   (a) the engine: $DNS_PROBES probes of localhost (system path, /etc/hosts) to a closed port: resolve + connect + refused"
            echo "   µs of CPU per probe (median of $REPEAT runs, all runs after /), lookups per run, system calls per probe (strace -c, $DNS_STRACE_PROBES probes)"
            local row
            for row in "ip:IP literal, no resolution (the floor)" "none:a lookup per probe (no cache)" \
                "cache:one shared resolve cache"; do
                printf '   %-44s %-28s %8s lookups   %s syscalls/probe (%s)\n' "${row#*:}" \
                    "$(stat_of "dns.${row%%:*}.us" %.1f) ($(all_of "dns.${row%%:*}.us"))" \
                    "$(get "dns.${row%%:*}.lookups")" "$(get "dns.${row%%:*}.syscalls")" "$(get "dns.${row%%:*}.syscalls_by")"
            done
            echo "   (b) the daemon: $DNS_EPS endpoints (ECDSA, strict CRL), $RATE/s each, same window: the URL's name in network.resolve vs through the system resolver and the daemon's resolve cache"
            echo "       µs per probe map:cache $(paste -d: <(awk -F= 'index($1, "dns.daemon.map.") == 1 {print $2}' "$RES") <(awk -F= 'index($1, "dns.daemon.sys.") == 1 {print $2}' "$RES") | paste -sd' '); cache/map $(all_of dns.daemon.ratio) (median $(stat_of dns.daemon.ratio %.3f))"
            echo "       system calls per probe through the cache: $(get dns.daemon.syscalls) ($(get dns.daemon.syscalls_by))"
        fi
        if has store; then
            echo
            cat "$WORK/store.txt"
        fi
        if has soak; then
            echo
            echo "7. Soak: $SOAK_EPS endpoints (every feature on; $SOAK_HOSTILE on a server that accepts and never speaks, $SOAK_HOSTILE on one that trickles a byte every 500 ms), max_in_flight $MEM_IN_FLIGHT, full rate, $SOAK_MIN minutes"
            printf '   %-7s %-9s %-6s %-22s %-8s %-10s %s\n' minute "RSS MiB" fds "/status p99 (1 poller)" healthz "probes/s" state
            local m
            for m in $(seq 1 "$SOAK_MIN"); do
                [ -n "$(get soak.$m.rss_kib)" ] || continue
                printf '   %-7s %-9s %-6s %-22s %-8s %-10s %s\n' "$m" "$(awk -v k="$(get soak.$m.rss_kib)" 'BEGIN {printf "%.1f", k / 1024}')" \
                    "$(get soak.$m.fds)" "$(get soak.$m.p99_ms) ms" "$(get soak.$m.healthz)" "$(get soak.$m.rate)" "$(get soak.$m.state)"
            done
            echo "   peak RSS (VmHWM) $(awk -v k="$(get soak.hwm_kib)" 'BEGIN {printf "%.1f", k / 1024}') MiB; hostile servers: $(get soak.hostile)"
        fi
    } | tee "$REPORT"
    log "report written to $REPORT"
}

# ---- main -----------------------------------------------------------------------------------
# Everything the sections share: dependencies, the binaries, the PKI, nginx, the OCSP responders.
bench_setup() {
    install_deps
    if [ -z "${FLEETSCAN:-}" ]; then
        local bdir=${BENCH_BUILD:-$ROOT/build-bench}
        log "building fleetscan (Release) in $bdir"
        cmake -S "$ROOT" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DFLEETSCAN_WERROR=OFF > /dev/null
        cmake --build "$bdir" -j "$(nproc)" --target fleetscan bench_ocsp > /dev/null
        FS=$bdir/fleetscan
        BENCH_OCSP=$bdir/bench_ocsp
    else
        FS=$FLEETSCAN
    fi
    if [ -z "${BENCH_OCSP:-}" ] || [ ! -x "$BENCH_OCSP" ]; then
        local odir=${BENCH_BUILD:-$ROOT/build-bench}
        cmake -S "$ROOT" -B "$odir" -DCMAKE_BUILD_TYPE=Release -DFLEETSCAN_WERROR=OFF > /dev/null
        cmake --build "$odir" -j "$(nproc)" --target bench_ocsp > /dev/null
        BENCH_OCSP=$odir/bench_ocsp
    fi
    FS_REV="$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- . ':!bench' ':!docs' 2> /dev/null || echo '+uncommitted changes')"
    WORK=$(mktemp -d /tmp/fleetscan-bench.XXXXXX)
    chmod 755 "$WORK"
    RES=$WORK/results.txt
    : > "$RES"
    cc -O2 -std=c11 -Wall -o "$WORK/bare_client" "$ROOT/bench/bare_client.c" -lssl -lcrypto

    PORT_HTTP=$(free_port)
    CRL_BASE="http://crl.bench.test:$PORT_HTTP/crl"
    # The -ocsp leaves' AIA OCSP URLs go to nginx (its port is known now), which passes them to
    # bench_ocsp (lab/ocspd.c: good, signed by the issuing CA, nextUpdate a day ahead).
    bash "$ROOT/bench/pki.sh" "$WORK/pki" "$CRL_BASE" 604800 \
        "http://ocsp.bench.test:$PORT_HTTP/ocsp/rsa" "http://ocsp.bench.test:$PORT_HTTP/ocsp/ecdsa"
    "$BENCH_OCSP" /ocsp/rsa "$WORK/pki/rsa-int.pem" "$WORK/pki/rsa-int.key" \
        /ocsp/ecdsa "$WORK/pki/ecdsa-int.pem" "$WORK/pki/ecdsa-int.key" > "$WORK/ocsp.out" &
    PIDS+=("$!")
    local i
    for i in $(seq 1 100); do
        PORT_OCSP=$(sed -n 's/^port=//p' "$WORK/ocsp.out")
        [ -n "$PORT_OCSP" ] && break
        sleep 0.1
    done
    USED_PORTS+="$PORT_OCSP "
    # Picked once the responder's ephemeral port is taken, so none of them can be that one.
    PORT_RSA=$(free_port); PORT_ECDSA=$(free_port); PORT_RSA12=$(free_port)
    mkdir -p "$WORK/nginx/tmp"
    local user_line=""
    [ "$(id -u)" -eq 0 ] && user_line="user root;" # workers must read the keys in $WORK
    sed -e "s|@WORK@|$WORK|g" -e "s|@PORT_RSA@|$PORT_RSA|g" -e "s|@PORT_ECDSA@|$PORT_ECDSA|g" \
        -e "s|@PORT_RSA12@|$PORT_RSA12|g" \
        -e "s|@PORT_HTTP@|$PORT_HTTP|g" -e "s|@USER_LINE@|$user_line|" \
        -e "s|@PORT_OCSP@|$PORT_OCSP|g" \
        -e "s|@WORKERS@|${BENCH_NGINX_WORKERS:-auto}|" \
        "$ROOT/bench/nginx.conf.in" > "$WORK/nginx/nginx.conf"
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" \
        -g 'daemon off;' &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$PORT_RSA"; wait_port "$PORT_ECDSA"; wait_port "$PORT_RSA12"; wait_port "$PORT_HTTP"
    log "nginx on 127.0.0.1: rsa $PORT_RSA, ecdsa $PORT_ECDSA, rsa tls1.2 $PORT_RSA12, crl and ocsp http $PORT_HTTP (OCSP responder $PORT_OCSP); work dir $WORK; load $(loadavg)"
}

main() {
    bench_setup

    if has cpu; then section_cpu; fi
    if has paired; then section_paired; fi
    if has feat; then section_feat; fi
    if has sys; then section_sys; fi
    if has ab; then section_ab; fi
    if has mem; then section_mem_api; fi
    if has crl; then section_crl; fi
    if has soak; then section_soak; fi
    if has dns; then section_dns; fi
    if has store; then section_store; fi
    report
}
# Sourced (`source bench/run.sh`), it only defines the functions: for ad-hoc runs and profiles.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
