#!/usr/bin/env bash
# test_dashboard.sh - the dashboard at GET / shows what the API says: a real browser (Debian's
# headless chromium) renders the page against `fleetscan demo`, and the figures in its DOM must
# equal /api/v1/status, /causes, /targets, /events, /forecast, /history and /endpoints fetched
# around the same time; nothing on the page may be wider than the window at 420, 1400 or 1920 px;
# and screenshots at 1400 and 420 px are kept for a person to look at.
# Env: FLEETSCAN_BIN (the binary); optional CHROMIUM (browser command), DASHBOARD_SCREENSHOT (the
# directory the screenshots go to; default FLEETSCAN_BUILD/dashboard, else the kept temporary
# directory). Needs bash, curl, grep, sed, date, base64, stdbuf; no python, no jq.
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

shots=${DASHBOARD_SCREENSHOT:-}
[ -n "$shots" ] || [ -z "${FLEETSCAN_BUILD:-}" ] || shots=$FLEETSCAN_BUILD/dashboard
[ -n "$shots" ] || shots=$tmp
mkdir -p "$shots"

# ---- the demo, with an interval long enough that nothing changes during the test ----------
# The files exist before the demo starts: the loop below may read them before the background
# shell has opened its redirections.
: >"$tmp/demo.out"
: >"$tmp/demo.err"
"$BIN" demo --listen 127.0.0.1:0 --duration 150 --scale 0.2 --interval 3600 \
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
epoch() { date -u -d "$1" +%s; }

status=""
for _ in $(seq 1 80); do
    status=$(curl -fsS "$base/api/v1/status" 2>/dev/null || true)
    endpoints=$(jobj "$status" endpoints)
    [ -n "$endpoints" ] && [ "$(jnum "$endpoints" pending)" = 0 ] && break
    sleep 0.5
done
[ "$(jnum "$endpoints" pending)" = 0 ] || fail "endpoints still pending after 40 s: $endpoints"

# A reload of the same file: unchanged groups keep their state, and the timeline marks it.
kill -HUP "$pid"
for _ in $(seq 1 100); do
    status=$(curl -fsS "$base/api/v1/status")
    [[ $status == *'"reloads":[{"at":'* ]] && break
    sleep 0.1
done
[[ $status == *'"reloads":[{"at":"'*'","ok":true}]'* ]] || fail "SIGHUP: no reload in /status config: $status"
endpoints=$(jobj "$status" endpoints)
generated=$(jstr "$status" generated_at)
# The reload probes the targets again: wait for that, or the page and the test may see two
# reference probes a second apart (days_left counts from the probe's time).
reloaded=${status#*'"reloads":[{"at":"'}
reloaded=${reloaded%%'"'*}
for _ in $(seq 1 100); do
    checked=$(jstr "$(curl -fsS "$base/api/v1/targets")" checked_at)
    [[ $checked < $reloaded ]] || break
    sleep 0.1
done

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
# ?selfcheck makes the page list, after each render, every element whose right edge is past the
# window (#layout-check data-overflow, data-width).
chromium_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync)
browse() { # browse ARGS...: headless chromium on the dashboard with its own throwaway profile
    timeout 45 "$CHROMIUM" "${chromium_flags[@]}" \
        --user-data-dir="$(mktemp -d "$tmp/profile.XXXXXX")" --virtual-time-budget=8000 \
        "$@" "$base/?selfcheck" 2>>"$tmp/chromium.err"
}
# Chromium's headless window is never narrower than 500 px, so a phone's width is emulated
# through the DevTools protocol over --remote-debugging-pipe (NUL-separated JSON on fds 3 and 4):
# open the page at WIDTH CSS pixels, wait until it is ready, print #layout-check, and save a
# screenshot of the whole page to PNG.
capture() { # capture WIDTH PNG
    local w=$1 png=$2 dir n=0 R="" sid tid h
    dir=$(mktemp -d "$tmp/cdp.XXXXXX")
    mkfifo "$dir/in"
    "$CHROMIUM" "${chromium_flags[@]}" --user-data-dir="$dir/profile" --remote-debugging-pipe \
        3<"$dir/in" 4> >(stdbuf -o0 tr '\0' '\n' >"$dir/msgs") 2>>"$tmp/chromium.err" &
    local cpid=$!
    exec 5>"$dir/in"
    send() { # send METHOD PARAMS [SESSION]: the answer in R (a whole line: NUL became newline)
        n=$((n + 1))
        local s="" at
        [ -z "${3:-}" ] || s=",\"sessionId\":\"$3\""
        printf '{"id":%d,"method":"%s","params":%s%s}\0' "$n" "$1" "$2" "$s" >&5
        for _ in $(seq 1 600); do
            at=$(grep -n -m1 "^{\"id\":$n," "$dir/msgs" 2>/dev/null | cut -d: -f1 || true)
            if [ -n "$at" ] && [ "$at" -le "$(wc -l <"$dir/msgs")" ]; then
                R=$(sed -n "${at}p" "$dir/msgs")
                return 0
            fi
            sleep 0.05
        done
        echo "no answer to $1" >&2
        return 1
    }
    send Target.createTarget '{"url":"about:blank"}'
    tid=${R#*\"targetId\":\"}
    send Target.attachToTarget "{\"targetId\":\"${tid%%\"*}\",\"flatten\":true}"
    sid=${R#*\"sessionId\":\"}
    sid=${sid%%\"*}
    send Emulation.setDeviceMetricsOverride \
        "{\"width\":$w,\"height\":900,\"deviceScaleFactor\":1,\"mobile\":false}" "$sid"
    send Page.navigate "{\"url\":\"$base/?selfcheck\"}" "$sid"
    for _ in $(seq 1 150); do
        send Runtime.evaluate '{"expression":"document.body.dataset.state+\" \"+(document.getElementById(\"layout-check\").dataset.overflow||\"\")","returnByValue":true}' "$sid"
        case "$R" in *'"value":"ready '[0-9]*) break ;; esac
        sleep 0.1
    done
    send Runtime.evaluate '{"expression":"document.documentElement.scrollHeight+\" \"+document.getElementById(\"layout-check\").outerHTML","returnByValue":true}' "$sid"
    h=${R#*\"value\":\"}
    printf '%s\n' "${h%%\"\}*}" | sed 's/\\"/"/g'
    h=${h%% *}
    send Page.captureScreenshot "{\"format\":\"png\",\"captureBeyondViewport\":true,\"clip\":{\"x\":0,\"y\":0,\"width\":$w,\"height\":$h,\"scale\":1}}" "$sid"
    # (megabytes: sed, not bash's pattern removal, which is quadratic)
    printf '%s' "$R" | sed -n 's/.*"data":"\([^"]*\)".*/\1/p' | base64 -d >"$png"
    send Browser.close '{}' || true
    exec 5>&-
    wait "$cpid" || true
}
causes_json=$(curl -fsS "$base/api/v1/causes")
targets_json=$(curl -fsS "$base/api/v1/targets")
events_json=$(curl -fsS "$base/api/v1/events")
forecast_json=$(curl -fsS "$base/api/v1/forecast?days=30")
browse --window-size=1400,3000 --dump-dom >"$tmp/dom.html" ||
    fail "chromium --dump-dom failed: $(tail -n5 "$tmp/chromium.err")"
browse --window-size=1920,3000 --dump-dom >"$tmp/dom1920.html" ||
    fail "chromium --dump-dom at 1920 px failed: $(tail -n5 "$tmp/chromium.err")"
export -f capture
export CHROMIUM base tmp
chromium_list=$(declare -p chromium_flags)
for w in 420 1400; do
    timeout 90 bash -c "$chromium_list; capture $w '$shots/dashboard-$w.png'" >"$tmp/check$w.txt" ||
        fail "capturing the page at $w px failed: $(tail -n5 "$tmp/chromium.err")"
done
status_after=$(curl -fsS "$base/api/v1/status")

# The fleet must not have moved while the browser looked at it, or the comparison means nothing.
fleet() { printf '%s' "$1" | sed 's/^.*"endpoints":/"endpoints":/; s/,"scan":.*$//'; }
[ "$(fleet "$status")" = "$(fleet "$status_after")" ] ||
    fail "the fleet changed during the test (is --interval honoured?)"

grep -q '<body data-state="ready">' "$tmp/dom.html" ||
    fail "the page never loaded its data (body data-state is not \"ready\"); see $tmp/dom.html"

# ---- nothing wider than the window ------------------------------------------------------------
layout() { # layout FILE WIDTH: the page's own check found no element past the window's right edge
    local check
    check=$(grep -o '<output id="layout-check"[^>]*>[^<]*' "$1") || fail "no layout check in $1"
    [[ $check == *"data-width=\"$2\""* ]] || fail "the page was not $2 px wide: $check"
    [[ $check == *'data-overflow="0"'* ]] || fail "elements wider than the window at $2 px: ${check#*>}"
}
layout "$tmp/dom.html" 1400
layout "$tmp/dom1920.html" 1920
layout "$tmp/check420.txt" 420
layout "$tmp/check1400.txt" 1400
for w in 420 1400; do
    png=$shots/dashboard-$w.png
    [ -s "$png" ] || fail "empty screenshot $png"
    [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png is not a PNG"
    [ "$(head -c 20 "$png" | tail -c 4 | od -An -tu1 | tr -s ' ' | sed 's/^ //')" = "0 0 $((w / 256)) $((w % 256))" ] ||
        fail "$png is not $w px wide"
done

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
attr() { # attr ID NAME: attribute NAME of the element with that id
    local tag
    tag=$(grep -o -m1 "<[a-z]* [^>]*id=\"$1\"[^>]*>" "$tmp/dom.html") || return 1
    tag=${tag#*" $2=\""}
    printf '%s' "${tag%%\"*}"
}
row() { # row ATTR VALUE: the first <tr ATTR="VALUE"> of the page, with its content
    grep -m1 -F "<tr $1=\"$2\">" "$tmp/rows"
}
cell() { # cell ROW FIELD: the text of the data-field="FIELD" cell of ROW
    local s=${1#*"data-field=\"$2\""*([^>])>}
    [ "$s" != "$1" ] || return 1
    text "${s%%</t[dh]>*}"
}
digits() { printf '%s' "${1//,/}"; } # numbers are shown grouped: 1,000
utc() { printf '%s' "$1" | sed 's/T/ /; s/Z$/ UTC/'; } # how the page writes a time

# Totals.
for k in online offline pending total; do
    id=total-$k
    [ $k != total ] || id=total-endpoints
    shown=$(digits "$(byid $id)")
    [ "$shown" = "$(jnum "$endpoints" $k)" ] ||
        fail "#$id shows '$shown', /api/v1/status says $(jnum "$endpoints" $k)"
done
offline=$(jnum "$endpoints" offline)
total=$(jnum "$endpoints" total)

# Every group's row: counts, target, since when its oldest outage lasts, and its forecast.
re='\{"name":"([^"\\]*)","total":([0-9]+),"online":([0-9]+),"offline":([0-9]+),"pending":([0-9]+),"causes":\{([^}]*)\},"warnings":\{[^}]*\},"target":"([^"]*)","offline_since":("[^"]*"|null)\}'
rest=$status
ngroups=0 noffline_groups=0 since_min="" pairs=()
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    name=${BASH_REMATCH[1]} gcauses=${BASH_REMATCH[6]} target=${BASH_REMATCH[7]} since=${BASH_REMATCH[8]//\"/}
    want="${BASH_REMATCH[2]} ${BASH_REMATCH[3]} ${BASH_REMATCH[4]} ${BASH_REMATCH[5]}"
    r=$(row data-group "$name") || fail "no row for group $name"
    shown="$(cell "$r" total) $(cell "$r" online) $(cell "$r" offline) $(cell "$r" pending)"
    [ "$(digits "$shown")" = "$want" ] ||
        fail "group $name: total/online/offline/pending show '$shown', API says '$want'"
    [ "$(cell "$r" target)" = "$target" ] || fail "group $name: target shows '$(cell "$r" target)', API says $target"
    want=-
    [ "$since" = null ] || want=$(utc "$since")
    [ "$(cell "$r" offline_since)" = "$want" ] ||
        fail "group $name: offline since shows '$(cell "$r" offline_since)', API says '$want'"
    if [ "${BASH_REMATCH[4]}" -gt 0 ]; then
        noffline_groups=$((noffline_groups + 1))
        [ -z "$since_min" ] || [[ $since < $since_min ]] && since_min=$since
    fi
    gre='"([a-z_]+)":([0-9]+)'
    while [[ $gcauses =~ $gre ]]; do
        gcauses=${gcauses#*"${BASH_REMATCH[0]}"}
        pairs+=("$name ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}")
    done
    ngroups=$((ngroups + 1))
done
[ "$ngroups" -ge 2 ] || fail "expected several groups in the demo, got $ngroups"
re='\{"name":"([^"\\]*)","target":"[^"]*","endpoints":\{[^}]*\},"causes":\{[^}]*\},"offline_now":(true|false),"offline_from":("[^"]*"|null),"offline_cause":("[^"]*"|null)'
rest=$forecast_json
next=""
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    name=${BASH_REMATCH[1]} from=${BASH_REMATCH[3]//\"/} cause=${BASH_REMATCH[4]//\"/}
    r=$(row data-group "$name") || fail "no row for group $name"
    if [ "${BASH_REMATCH[2]}" = true ]; then want="offline now"; else want="$(utc "$from") $cause"; fi
    [ "$from" != null ] || [ "${BASH_REMATCH[2]}" = true ] || want=-
    [ "$(cell "$r" forecast)" = "$want" ] || fail "group $name: forecast shows '$(cell "$r" forecast)', API says '$want'"
    if [ "${BASH_REMATCH[2]}" = false ] && [ "$from" != null ] && [[ $from > $generated ]]; then
        [ -z "$next" ] || [[ $from < $next ]] && next=$from
    fi
done

# The headline: what broke (offline now, where), since when, the top cause and what to do, the
# next forecast edge.
[ "$(digits "$(byid hl-offline)")" = "$offline" ] || fail "headline offline shows '$(byid hl-offline)', API says $offline"
[ "$(digits "$(byid hl-total)")" = "$total" ] || fail "headline total shows '$(byid hl-total)', API says $total"
p10=$(((offline * 2000 + total) / (2 * total)))
[ "$(byid hl-percent)" = "$((p10 / 10)).$((p10 % 10))" ] ||
    fail "headline percent shows '$(byid hl-percent)', $offline of $total is $((p10 / 10)).$((p10 % 10))"
[ "$(byid hl-groups)" = "$noffline_groups" ] || fail "headline groups shows '$(byid hl-groups)', API has $noffline_groups offline"
[ "$offline" -gt 0 ] || fail "the demo has offline endpoints"
[ "$(attr hl-since datetime)" = "$since_min" ] ||
    fail "headline since shows '$(attr hl-since datetime)', the earliest offline_since is $since_min"
top="" top_n=0
rest=$(jobj "$status" causes)
re='"([a-z_]+)":([0-9]+)'
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    [ "${BASH_REMATCH[2]}" -le "$top_n" ] || { top=${BASH_REMATCH[1]} top_n=${BASH_REMATCH[2]}; }
done
[ "$(byid hl-cause)" = "$top" ] || fail "headline top cause shows '$(byid hl-cause)', API's is $top"
[ "$(digits "$(byid hl-cause-count)")" = "$top_n" ] || fail "headline top cause count '$(byid hl-cause-count)', API says $top_n"
entry=${causes_json#*"{\"id\":\"$top\","}
remediation=$(jstr "${entry%%'}'*}" remediation)
[ -n "$remediation" ] && [ "$(text "$(byid hl-remediation)")" = "$remediation" ] ||
    fail "headline remediation shows '$(byid hl-remediation)', the catalogue's for $top is '$remediation'"
re='"strict_endpoints_at_risk":([1-9][0-9]*),"strict_offline_at":"([^"]*)"'
rest=$targets_json
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    at=${BASH_REMATCH[2]}
    [[ $at > $generated ]] && { [ -z "$next" ] || [[ $at < $next ]]; } && next=$at
done
[ -n "$next" ] || fail "the demo's forecast has a certificate edge, the test found none"
[ "$(attr hl-next data-at)" = "$next" ] || fail "headline next edge is '$(attr hl-next data-at)', the forecast's is $next"
[ "$(digits "$(byid hl-forecast-offline)")" = "$(jnum "$forecast_json" offline)" ] ||
    fail "headline forecast offline shows '$(byid hl-forecast-offline)', /forecast?days=30 says $(jnum "$forecast_json" offline)"

# Every offline cause: count, agent.log symptom and remediation as the catalogue says, and its
# groups, each with its count and the agent.log line its endpoints write.
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
for p in "${pairs[@]}"; do
    read -r g c n <<<"$p"
    li=$(grep -m1 -F "<li data-cause-group=\"$g\" data-count=\"$n\">" <(sed -n "/<tr data-cause=\"$c\">/p" "$tmp/rows" | sed 's|<li |\n<li |g')) ||
        fail "cause $c does not list group $g with $n endpoints"
    item=$(curl -fsS "$base/api/v1/endpoints?group=$g&cause=$c&limit=1")
    want=$(jstr "$item" message)
    m=${li#*'data-field="message">'}
    [ "$m" != "$li" ] || fail "cause $c, group $g: no agent.log line shown"
    m=$(text "${m%%</div>*}")
    [ "$m" = "$want" ] || fail "cause $c, group $g: agent.log line shows '$m', its endpoints' is '$want'"
done

# Warnings: online endpoints at risk, and all endpoints carrying each.
rest=$(jobj "$status" warnings)
nwarn=0
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    id=${BASH_REMATCH[1]}
    r=$(row data-warning "$id") || fail "no row for warning $id"
    [ "$(digits "$(cell "$r" count)")" = "${BASH_REMATCH[2]}" ] || fail "warning $id: all shows '$(cell "$r" count)', API says ${BASH_REMATCH[2]}"
    want=$(jnum "$(curl -fsS "$base/api/v1/endpoints?state=online&warning=$id&limit=0")" total)
    [ "$(digits "$(cell "$r" online)")" = "$want" ] || fail "warning $id: online at risk shows '$(cell "$r" online)', API says $want"
    nwarn=$((nwarn + 1))
done

# The reference target: the leaf the server presented, and each address behind its name.
thumb=$(jstr "$targets_json" sha1_thumbprint)
[ -n "$thumb" ] || fail "/api/v1/targets has no chain"
r=$(row data-cert-depth 0) || fail "no leaf row in the chain table"
shown=$(cell "$r" sha1_thumbprint)
[ "$shown" = "$thumb" ] || fail "leaf thumbprint shows '$shown', API says $thumb"
shown=$(cell "$r" days_left)
# (the reload above re-probes the reference: a page that read /targets a second apart from the
# test may count from the other side of a day boundary of the lab's 365-day leaf)
api_days=$(jnum "$targets_json" days_left)
d=$((${shown%% *} - api_days))
[ "$d" -ge -1 ] && [ "$d" -le 1 ] ||
    fail "leaf days left shows '$shown', API says $api_days"
re='\{"address":"([^"]*)","leaf_sha1":("[^"]*"|null),"state":"([a-z]*)"'
rest=$targets_json
naddr=0
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    r=$(row data-address "${BASH_REMATCH[1]}") || fail "no row for address ${BASH_REMATCH[1]}"
    want=${BASH_REMATCH[2]//\"/}
    [ "$want" != null ] || want=-
    [ "$(cell "$r" leaf_sha1)" = "$want" ] || fail "address ${BASH_REMATCH[1]}: leaf shows '$(cell "$r" leaf_sha1)', API says $want"
    shown=$(cell "$r" state)
    # (the reload re-probes the reference between the page's read and the test's: a loaded
    # machine may have seen the other outcome once; the page must match one of the two reads)
    if [ "${shown%% *}" != "${BASH_REMATCH[3]}" ]; then
        again=$(curl -fsS "$base/api/v1/targets")
        [[ $again == *"\"address\":\"${BASH_REMATCH[1]}\","*"\"state\":\"${shown%% *}\""* ]] ||
            fail "address ${BASH_REMATCH[1]}: outcome shows '$shown', API says ${BASH_REMATCH[3]}"
    fi
    naddr=$((naddr + 1))
done
[ "$naddr" -ge 1 ] || fail "/api/v1/targets lists no address"
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
    next_update=$(jstr "$entry" next_update)
    want=-
    [ -z "$next_update" ] || want=$(utc "$next_update")
    shown=$(cell "$r" next_update)
    [ "$shown" = "$want" ] || fail "revocation URL $url: next update shows '$shown', API says '$want'"
    want=$(jnum "$entry" strict_endpoints_at_risk)
    shown=$(digits "$(cell "$r" at_risk)")
    [ "$shown" = "$want" ] || fail "revocation URL $url: strict at risk shows '$shown', API says $want"
    nrev=$((nrev + 1))
done
[ "$nrev" -ge 2 ] || fail "the demo's reference chain has two CRLs (leaf and intermediate), the test found $nrev revocation sources in /api/v1/targets"

# Group changes are listed with their group and target; per-endpoint changes are not.
re='\{"seq":([0-9]+),"at":"([^"]*)","kind":"(group|endpoint)","subject":"([^"]*)","old_state":"[a-z]*","new_state":"[a-z]*","cause":[^,]*,"target":("[^"]*"|null)\}'
rest=$events_json
ngev=0 last_ep="" gseqs=()
declare -A event_at=()
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    seq=${BASH_REMATCH[1]}
    if [ "${BASH_REMATCH[3]}" = endpoint ]; then
        last_ep=$seq
        continue
    fi
    event_at[$seq]=${BASH_REMATCH[2]}
    gseqs+=("$seq")
done
[ "${#gseqs[@]}" -ge 2 ] || fail "the demo produced ${#gseqs[@]} group events"
first=$((${#gseqs[@]} > 50 ? ${#gseqs[@]} - 50 : 0))
for seq in "${gseqs[@]:first}"; do # the page lists the newest 50
    rest=${events_json#*"{\"seq\":$seq,"}
    [[ "{\"seq\":$seq,$rest" =~ $re ]] || fail "event $seq unreadable"
    r=$(row data-seq "$seq") || fail "group event $seq (${BASH_REMATCH[4]}) is not listed"
    [ "group:$(cell "$r" subject)" = "${BASH_REMATCH[4]}" ] || fail "event $seq shows '$(cell "$r" subject)', API says ${BASH_REMATCH[4]}"
    [ "$(cell "$r" target)" = "${BASH_REMATCH[5]//\"/}" ] || fail "event $seq: target shows '$(cell "$r" target)', API says ${BASH_REMATCH[5]}"
    ngev=$((ngev + 1))
done
[ -n "$last_ep" ] || fail "the demo produced no endpoint events"
! row data-seq "$last_ep" >/dev/null || fail "endpoint event $last_ep is listed among the group changes"

# The timeline: a bar per minute sample of /api/v1/history in the window it shows, with the
# sample's numbers; the reload; a mark per group change in the window.
svg=$(grep -o '<svg [^>]*id="timeline-svg"[^>]*>' "$tmp/dom.html") || fail "no timeline"
step=${svg#*data-step=\"} step=${step%%\"*}
history_json=$(curl -fsS "$base/api/v1/history?since=$(date -u -d "$generated - 6 hours" +%Y-%m-%dT%H:%M:%SZ)&step=$step")
from=${svg#*data-from=\"} from=$(epoch "${from%%\"*}")
to=${svg#*data-to=\"} to=$(epoch "${to%%\"*}")
re='\{"at":"([^"]*)","sampled_at":"[^"]*","endpoints":\{"total":[0-9]+,"online":([0-9]+),"offline":([0-9]+),"pending":([0-9]+)\}'
rest=$history_json
npts=0
while [[ $rest =~ $re ]]; do
    rest=${rest#*"${BASH_REMATCH[0]}"}
    at=$(epoch "${BASH_REMATCH[1]}")
    [ $((at + step)) -gt "$from" ] && [ "$at" -lt "$to" ] || continue
    if ! g=$(grep -o -m1 "<g class=\"tl-pt\" data-at=\"${BASH_REMATCH[1]}\"[^>]*>" "$tmp/dom.html"); then
        # sampled after the page read the history: the page's bar for the present covers it
        grep -q "<g class=\"tl-now\" data-at=\"${BASH_REMATCH[1]}\"" "$tmp/dom.html" ||
            fail "the timeline has no bar for the history sample at ${BASH_REMATCH[1]}"
        continue
    fi
    [[ $g == *"data-online=\"${BASH_REMATCH[2]}\" data-offline=\"${BASH_REMATCH[3]}\" data-pending=\"${BASH_REMATCH[4]}\""* ]] ||
        fail "timeline bar $g, history says ${BASH_REMATCH[2]} online ${BASH_REMATCH[3]} offline ${BASH_REMATCH[4]} pending"
    npts=$((npts + 1))
done
[ "$npts" -ge 1 ] || fail "the timeline has no point"
if g=$(grep -o -m1 '<g class="tl-now"[^>]*>' "$tmp/dom.html"); then
    [[ $g == *"data-online=\"$(jnum "$endpoints" online)\" data-offline=\"$offline\" data-pending=\"$(jnum "$endpoints" pending)\""* ]] ||
        fail "the timeline's present $g is not /api/v1/status's $endpoints"
fi
[[ $svg == *"data-points=\"$npts\""* ]] || fail "the timeline shows other points than /api/v1/history's $npts: $svg"
[ "$(grep -o '<g class="tl-pt"' "$tmp/dom.html" | wc -l)" = "$npts" ] || fail "the timeline has $(grep -o '<g class="tl-pt"' "$tmp/dom.html" | wc -l) bars, /api/v1/history $npts samples"
[[ $svg == *'data-reloads="1"'* ]] || fail "the timeline does not mark the reload: $svg"
nmarks=0
for seq in "${!event_at[@]}"; do
    at=$(epoch "${event_at[$seq]}")
    [ "$at" -ge "$from" ] && [ "$at" -le "$to" ] || continue
    grep -q "<g class=\"tl-event [a-z-]*\" data-seq=\"$seq\">" "$tmp/dom.html" || fail "group event $seq is not on the timeline"
    nmarks=$((nmarks + 1))
done
[ "$nmarks" -ge 1 ] || fail "no group event on the timeline"

echo "ok: dashboard shows $(jnum "$endpoints" online) online / $offline offline /" \
    "$(jnum "$endpoints" pending) pending, $ngroups groups, $ncauses causes (${#pairs[@]} group lines)," \
    "$nwarn warnings, $naddr addresses, $nrev revocation sources, $ngev group changes, a timeline of" \
    "$npts samples, as the API does; nothing wider than 420, 1400 or 1920 px; screenshots in $shots"
ok=1
