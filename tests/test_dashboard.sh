#!/usr/bin/env bash
# test_dashboard.sh - the dashboard at GET / shows what the API says: a real browser (Debian's
# headless chromium) renders the page against `fleetscan demo`, and the figures in its DOM
# must equal /api/v1/status, /causes, /targets and /events fetched around the same time.
# Env: FLEETSCAN_BIN (the binary); optional CHROMIUM (browser command), DASHBOARD_SCREENSHOT
# (keep a copy of the screenshot there). Needs bash, curl, grep, sed; no python, no jq.
set -euo pipefail

BIN=${FLEETSCAN_BIN:?FLEETSCAN_BIN must name the fleetscan binary}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
    echo "FAIL: chromium is not installed (scripts/deps.sh installs Debian's 'chromium')" >&2
    exit 1
fi

tmp=$(mktemp -d)
pid=""
ok=0
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ "$ok" = 1 ]; then rm -rf "$tmp"; else echo "test_dashboard: artifacts kept in $tmp" >&2; fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# ---- the demo, with an interval long enough that nothing changes during the test ----------
# The files exist before the demo starts: the loop below may read them before the background
# shell has opened its redirections.
: >"$tmp/demo.out"
: >"$tmp/demo.err"
"$BIN" demo --listen 127.0.0.1:0 --duration 90 --scale 0.2 --interval 3600 \
    >"$tmp/demo.out" 2>"$tmp/demo.err" &
pid=$!

base=""
for _ in $(seq 1 200); do
    base=$(sed -n 's|^  API  *\(http://127\.0\.0\.1:[0-9]*\)/api/v1/status$|\1|p' "$tmp/demo.out")
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/demo.err" >&2; fail "demo exited before it was ready"; }
    sleep 0.1
done
[ -n "$base" ] || fail "demo did not print its API URL within 20 s"

# JSON and DOM are picked apart with bash regular expressions (no python or jq on a fresh
# machine); the API's JSON is compact with a fixed key order, which the patterns rely on.
jnum() { # jnum JSON KEY: the first integer value of "KEY"
    local re="\"$2\":(-?[0-9]+)"
    if [[ $1 =~ $re ]]; then printf '%s' "${BASH_REMATCH[1]}"; fi
}
jobj() { # jobj JSON KEY: the first flat object value of "KEY", as {...}
    local re="\"$2\":(\\{[^{}]*\\})"
    if [[ $1 =~ $re ]]; then printf '%s' "${BASH_REMATCH[1]}"; fi
}
jstr() { # jstr JSON KEY: the first string value of "KEY", unescaped (\" and \\ only)
    local re="\"$2\":\"(([^\"\\\\]|\\\\.)*)\"" v
    if [[ $1 =~ $re ]]; then
        v=${BASH_REMATCH[1]//'\"'/'"'}
        printf '%s' "${v//'\\'/'\'}"
    fi
}

status=""
for _ in $(seq 1 80); do
    status=$(curl -fsS "$base/api/v1/status" 2>/dev/null || true)
    endpoints=$(jobj "$status" endpoints)
    [ -n "$endpoints" ] && [ "$(jnum "$endpoints" pending)" = 0 ] && break
    sleep 0.5
done
[ "$(jnum "$endpoints" pending)" = 0 ] || fail "endpoints still pending after 40 s: $endpoints"

# ---- the page as served ---------------------------------------------------------------------
curl -fsS -D "$tmp/headers" -o "$tmp/page.html" "$base/"
tr -d '\r' <"$tmp/headers" >"$tmp/h"
grep -qix 'content-type: text/html; charset=utf-8' "$tmp/h" || fail "GET / Content-Type: $(cat "$tmp/h")"
csp=$(sed -n 's/^[Cc]ontent-[Ss]ecurity-[Pp]olicy: //p' "$tmp/h")
case "$csp" in
*"default-src 'none'"*"script-src 'sha256-"*"style-src 'sha256-"*) ;;
*) fail "GET / has no strict Content-Security-Policy: '$csp'" ;;
esac
case "$csp" in *unsafe-inline* | *unsafe-eval*) fail "CSP allows unsafe code: $csp" ;; esac
if grep -qiE '(src|href)="(https?:)?//' "$tmp/page.html"; then
    fail "the page loads something from elsewhere (it must work offline)"
fi

# ---- the page as a browser renders it -------------------------------------------------------
browse() { # browse ARGS...: headless chromium on the dashboard with its own throwaway profile
    timeout 45 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d "$tmp/profile.XXXXXX")" --virtual-time-budget=5000 \
        "$@" "$base/" 2>>"$tmp/chromium.err"
}
causes_json=$(curl -fsS "$base/api/v1/causes")
targets_json=$(curl -fsS "$base/api/v1/targets")
events_json=$(curl -fsS "$base/api/v1/events")
browse --dump-dom >"$tmp/dom.html" || fail "chromium --dump-dom failed: $(tail -n5 "$tmp/chromium.err")"
browse --window-size=1280,3000 --hide-scrollbars --screenshot="$tmp/dashboard.png" >/dev/null ||
    fail "chromium --screenshot failed: $(tail -n5 "$tmp/chromium.err")"
status_after=$(curl -fsS "$base/api/v1/status")

# The fleet must not have moved while the browser looked at it, or the comparison means nothing.
fleet() { printf '%s' "$1" | sed 's/^.*"endpoints":/"endpoints":/; s/,"scan":.*$//'; }
[ "$(fleet "$status")" = "$(fleet "$status_after")" ] ||
    fail "the fleet changed during the test (is --interval honoured?)"

grep -q '<body data-state="ready">' "$tmp/dom.html" ||
    fail "the page never loaded its data (body data-state is not \"ready\"); see $tmp/dom.html"
# One table row per line (the script builds rows without newlines), so grep can find them.
tr -d '\n' <"$tmp/dom.html" | sed 's|<tr |\n<tr |g; s|</tr>|</tr>\n|g' >"$tmp/rows"

shopt -s extglob
text() { # text HTML: the text of an HTML fragment, tags dropped and entities decoded
    local s=${1//<*([^>])>/}
    s=${s//'&lt;'/'<'}
    s=${s//'&gt;'/'>'}
    s=${s//'&quot;'/'"'}
    s=${s//'&nbsp;'/' '}
    printf '%s' "${s//'&amp;'/'&'}"
}
byid() { # byid ID: the text of the element with that id (no markup inside)
    grep -o -m1 "id=\"$1\">[^<]*" "$tmp/dom.html" | sed 's/^[^>]*>//'
}
row() { # row ATTR VALUE: the first <tr ATTR="VALUE"> of the page, with its content
    grep -m1 -F "<tr $1=\"$2\">" "$tmp/rows"
}
cell() { # cell ROW FIELD: the text of the data-field="FIELD" cell of ROW
    local s=${1#*"data-field=\"$2\">"}
    [ "$s" != "$1" ] || return 1
    text "${s%%</t[dh]>*}"
}
digits() { printf '%s' "${1//,/}"; } # numbers are shown grouped: 1,000

# Totals.
for k in online offline pending total; do
    id=total-$k
    [ $k != total ] || id=total-endpoints
    shown=$(digits "$(byid $id)")
    [ "$shown" = "$(jnum "$endpoints" $k)" ] ||
        fail "#$id shows '$shown', /api/v1/status says $(jnum "$endpoints" $k)"
done

# Every group's row.
re='\{"name":"([^"\\]*)","total":([0-9]+),"online":([0-9]+),"offline":([0-9]+),"pending":([0-9]+)'
rest=$status
ngroups=0
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    name=${BASH_REMATCH[1]}
    want="${BASH_REMATCH[2]} ${BASH_REMATCH[3]} ${BASH_REMATCH[4]} ${BASH_REMATCH[5]}"
    r=$(row data-group "$name") || fail "no row for group $name"
    shown="$(cell "$r" total) $(cell "$r" online) $(cell "$r" offline) $(cell "$r" pending)"
    [ "$(digits "$shown")" = "$want" ] ||
        fail "group $name: total/online/offline/pending show '$shown', API says '$want'"
    ngroups=$((ngroups + 1))
done
[ "$ngroups" -ge 2 ] || fail "expected several groups in the demo, got $ngroups"

# Every offline cause: count, agent.log symptom and remediation as the catalogue says.
rest=$(jobj "$status" causes) # the fleet's: it comes before the groups'
re='"([a-z_]+)":([0-9]+)'
ncauses=0
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    id=${BASH_REMATCH[1]}
    n=${BASH_REMATCH[2]}
    r=$(row data-cause "$id") || fail "no row for cause $id"
    shown=$(digits "$(cell "$r" count)")
    [ "$shown" = "$n" ] || fail "cause $id shows '$shown', API says $n"
    entry=${causes_json#*"{\"id\":\"$id\","}
    entry=${entry%%'}'*}
    for f in symptom remediation; do
        want=$(jstr "$entry" $f)
        [ -n "$want" ] || fail "no $f for $id in /api/v1/causes"
        [ "$(cell "$r" $f)" = "$want" ] || fail "cause $id: $f shows '$(cell "$r" $f)', API says '$want'"
    done
    ncauses=$((ncauses + 1))
done
[ "$ncauses" -ge 1 ] || fail "the demo has offline causes, the test found none in /api/v1/status"

# The reference target: the leaf the server presented.
thumb=$(jstr "$targets_json" sha1_thumbprint)
[ -n "$thumb" ] || fail "/api/v1/targets has no chain"
r=$(row data-cert-depth 0) || fail "no leaf row in the chain table"
shown=$(cell "$r" sha1_thumbprint)
[ "$shown" = "$thumb" ] || fail "leaf thumbprint shows '$shown', API says $thumb"
shown=$(cell "$r" days_left)
[ "${shown%% *}" = "$(jnum "$targets_json" days_left)" ] ||
    fail "leaf days left shows '$shown', API says $(jnum "$targets_json" days_left)"
# Every revocation source as the daemon checked it live: reachable now (or skipped), next
# update and the strict endpoints at risk, as /api/v1/targets "revocation" says.
re='\{"url":"([^"]*)","kind":"(crl|delta|ocsp)","cert_depth":[0-9]+,"reachable":(true|false),"skipped":(true|false)'
rest=$targets_json
nrev=0
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    url=${BASH_REMATCH[1]}
    want=NO
    [ "${BASH_REMATCH[3]}" = false ] || want=yes
    [ "${BASH_REMATCH[4]}" = false ] || want=skipped
    entry=${rest%%'"groups":'*}
    r=$(row data-rev-url "$url") || fail "no row for revocation URL $url"
    shown=$(cell "$r" reachable)
    [ "$shown" = "$want" ] || fail "revocation URL $url: reachable shows '$shown', API says $want"
    next=$(jstr "$entry" next_update)
    want=-
    [ -z "$next" ] || want="$(printf '%s' "$next" | sed 's/T/ /; s/Z$/ UTC/')"
    shown=$(cell "$r" next_update)
    [ "$shown" = "$want" ] || fail "revocation URL $url: next update shows '$shown', API says '$want'"
    want=$(jnum "$entry" strict_endpoints_at_risk)
    shown=$(digits "$(cell "$r" at_risk)")
    [ "$shown" = "$want" ] || fail "revocation URL $url: strict at risk shows '$shown', API says $want"
    nrev=$((nrev + 1))
done
[ "$nrev" -ge 2 ] || fail "the demo's reference chain has two CRLs (leaf and intermediate), the test found $nrev revocation sources in /api/v1/targets"

# The newest state change is listed with its subject.
last=${events_json##*'{"seq":'}
[ "$last" != "$events_json" ] || fail "the demo produced no events"
seq=${last%%,*}
subject=$(jstr "$last" subject)
r=$(row data-seq "$seq") || fail "newest event $seq ($subject) is not listed"
case "$(text "$r")" in *"$subject"*) ;; *) fail "event $seq row lacks its subject $subject: $(text "$r")" ;; esac

# The screenshot is a non-empty PNG.
[ -s "$tmp/dashboard.png" ] || fail "empty screenshot"
[ "$(head -c 8 "$tmp/dashboard.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "screenshot is not a PNG"
[ -z "${DASHBOARD_SCREENSHOT:-}" ] || cp "$tmp/dashboard.png" "$DASHBOARD_SCREENSHOT"

echo "ok: dashboard shows $(jnum "$endpoints" online) online / $(jnum "$endpoints" offline) offline /" \
    "$(jnum "$endpoints" pending) pending, $ngroups groups, $ncauses causes, $nrev revocation sources, as the API does"
ok=1
