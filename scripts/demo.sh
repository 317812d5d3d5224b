#!/usr/bin/env bash
# The relay's main job on the running dev region (started by scripts/run-dev.sh), end to end:
#   1. a customer is created through the portal API from the test push certificate mail.p12;
#   2. the "app" registers two devices for alice@example.com and one for bob@example.com through
#      /v1/registrations, and carol@example.com as a second account on alice's iPhone; it gets a
#      capability for each registration: its listener URL's secret, and the bearer token that
#      alone refreshes, moves or deletes that registration;
#   3. "Exchange" posts real SendNotification callbacks to each device's URL (each device holds
#      its own subscription): a StatusEvent (binds it), a ModifiedEvent with the Inbox's
#      UnreadCount, a NewMailEvent (and the same one again, counted once);
#   3b. dave@online.example.com, bob's Exchange Online account, is registered through Microsoft
#      Graph (source "graph", the app's clientState): the app subscribes at "Graph" (graph-sim),
#      which validates both URLs, then delivers a created notification (and the same again) and
#      a reauthorizationRequired lifecycle event;
#   4. what each simulated device received from apns-sim is shown, badge by badge: a device's
#      badge is the sum of its accounts' unread counts (alice's iPhone: alice's and carol's; bob's
#      iPhone: bob's on EWS and dave's on Graph), and the background push that wakes bob's app;
#   5. `mailpushctl doctor` checks the region as its operators would (APNs ports, the customer's
#      certificate by a test push, the public listener, tokens, expiry, outbox).
# Usage: scripts/demo.sh   (needs the dev region up: bash scripts/run-dev.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

state="$root/var/dev"
region=regions/dev.json
port=$(jq -r .listener.port "$region")
sim_control=$(cat "$state/apns-sim.control-port")
graph_control=$(cat "$state/graph-sim.control-port")
base="https://localhost:$port"
curl_tls=(--cacert "$state/tls/ca.crt" -sS --max-time 10)
certs="$state/apns-certs"

fail() { echo "demo: $*" >&2; exit 1; }
json_field() { jq -er "$1" <<<"$2" 2>/dev/null || fail "unexpected answer: $2"; }

# ---- 1. a customer, through the portal (the region admin token stands in for an invite) ----
echo "== 1. the administrator uploads mail.p12 (App ID com.example.mail) through the portal"
created=$(curl "${curl_tls[@]}" -X POST "$base/portal/v1/customers" \
  -H "Authorization: Bearer $(cat "$state/portal-admin-token")" \
  -F "certificate=@$certs/mail.p12;type=application/x-pkcs12" \
  -F "password=<$certs/mail.p12.password" \
  -F "app_id=com.example.mail" -F "region=dev" -F "display_name=Demo $(date -u +%H:%M:%S)")
customer=$(json_field .customer_id "$created")
registration_key=$(json_field .registration_key "$created")
echo "   customer $customer created (registration key and admin key shown once, kept in memory here)"

# ---- 2. the app registers its devices ----
echo "== 2. the app registers three devices, one of them with two accounts"
declare -A token url capability
token[alice-iphone]=$(printf 'a1%.0s' $(seq 32))
token[alice-ipad]=$(printf 'a2%.0s' $(seq 32))
token[bob-iphone]=$(printf 'b1%.0s' $(seq 32))
devices=(alice-iphone alice-ipad bob-iphone)
# A registration is one account on one device: its own listener URL, capability and badge share.
registrations=(alice-iphone alice-ipad bob-iphone carol-on-alice-iphone)
declare -A device_of=([alice-iphone]=alice-iphone [alice-ipad]=alice-ipad [bob-iphone]=bob-iphone
                      [carol-on-alice-iphone]=alice-iphone)
declare -A mailbox=([alice-iphone]=alice@example.com [alice-ipad]=alice@example.com
                    [bob-iphone]=bob@example.com [carol-on-alice-iphone]=carol@example.com)
declare -A accounts=([alice-iphone]="alice@, carol@" [alice-ipad]="alice@" [bob-iphone]="bob@, dave@")
for r in "${registrations[@]}"; do
  d=${device_of[$r]}
  body=$(jq -n --arg c "$customer" --arg k "$registration_key" --arg m "${mailbox[$r]}" \
    --arg t "${token[$d]}" '{customer_id:$c, registration_key:$k, mailbox:$m, device_token:$t,
                             environment:"production", folder_id:"AAMkInbox"}')
  reply=$(curl "${curl_tls[@]}" -X POST "$base/v1/registrations" -H 'Content-Type: application/json' \
    --data-binary "$body")
  url[$r]=$(json_field .listener_url "$reply")
  capability[$r]=$(json_field .capability "$reply")
  echo "   $r (${mailbox[$r]} on $d, token ${token[$d]:0:8}…): $(json_field .change "$reply")," \
       "a capability of ${#capability[$r]} characters, StatusFrequency" \
       "$(json_field .status_frequency_minutes "$reply") min"
done
# The app refreshes its registration at start-up with its capability: the same URL. Without it,
# the key in the app gets nothing about an existing registration (it would replace it).
reply=$(curl "${curl_tls[@]}" -X POST "$base/v1/registrations" -H 'Content-Type: application/json' \
  -H "Authorization: Bearer ${capability[alice-iphone]}" --data-binary "$(jq -n --arg c "$customer" \
  --arg k "$registration_key" --arg t "${token[alice-iphone]}" '{customer_id:$c, registration_key:$k,
  mailbox:"alice@example.com", device_token:$t, environment:"production", folder_id:"AAMkInbox"}')")
[ "$(json_field .listener_url "$reply")" = "${url[alice-iphone]}" ] || fail "a refresh changed the URL"
echo "   alice-iphone refreshed with its capability: $(json_field .change "$reply"), the same listener URL"
status=$(curl "${curl_tls[@]}" -o /dev/null -w '%{http_code}' -X DELETE "$base/v1/registrations/self" \
  -H "Authorization: Bearer made-up-capability")
echo "   DELETE /v1/registrations/self with a made-up capability -> $status (nothing deleted)"

# ---- 3. Exchange posts callbacks ----
soap() {  # soap SUBSCRIPTION EVENTS-XML
  cat <<EOX
<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<soap:Header><t:RequestServerVersion Version="Exchange2016"/></soap:Header>
<soap:Body><m:SendNotification><m:ResponseMessages>
<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
<m:Notification><t:SubscriptionId>$1</t:SubscriptionId><t:PreviousWatermark>AQAAAA==</t:PreviousWatermark>
<t:MoreEvents>false</t:MoreEvents>$2</m:Notification></m:SendNotificationResponseMessage>
</m:ResponseMessages></m:SendNotification></soap:Body></soap:Envelope>
EOX
}
status_event='<t:StatusEvent><t:Watermark>AQAAAB==</t:Watermark></t:StatusEvent>'
unread_event() {
  echo "<t:ModifiedEvent><t:Watermark>AQAAA$1==</t:Watermark><t:TimeStamp>$(date -u +%FT%TZ)</t:TimeStamp><t:FolderId Id=\"AAMkInbox\" ChangeKey=\"AQAAAA==\"/><t:ParentFolderId Id=\"AAMkRoot\" ChangeKey=\"AQAAAA==\"/><t:UnreadCount>$2</t:UnreadCount></t:ModifiedEvent>"
}
new_mail_event() {
  echo "<t:NewMailEvent><t:Watermark>AQAAA$1==</t:Watermark><t:TimeStamp>$(date -u +%FT%TZ)</t:TimeStamp><t:ItemId Id=\"AAMkItem$1\" ChangeKey=\"CQAAAA==\"/><t:ParentFolderId Id=\"AAMkInbox\" ChangeKey=\"AQAAAA==\"/></t:NewMailEvent>"
}
post() {  # post REGISTRATION SUBSCRIPTION EVENTS-XML DESCRIPTION
  local answer status
  answer=$(soap "$2" "$3" | curl "${curl_tls[@]}" -X POST "${url[$1]}" \
    -H 'Content-Type: text/xml; charset=utf-8' \
    -H 'SOAPAction: "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification"' \
    --data-binary @- -w '\n%{http_code}')
  status=$(tail -n 1 <<<"$answer")
  [ "$status" = 200 ] || fail "the listener answered $status to $4"
  grep -q '>OK<' <<<"$answer" || fail "the listener did not answer OK to $4"
  echo "   $4 -> 200 SubscriptionStatus OK"
}
echo "== 3. Exchange posts SendNotification callbacks to the listener URLs"
since=$(( $(curl -sS --max-time 5 "http://127.0.0.1:$sim_control/stats" | jq -r .next_seq) - 1 ))
run=$(date +%s)
# Each device holds its own subscription (the app subscribes on each device), so Exchange posts
# every event to each device's URL; a callback moves only its own registration's badge.
post alice-iphone "alice-iphone-sub-$run" "$status_event" "alice-iphone: StatusEvent (binds its subscription)"
post alice-ipad "alice-ipad-sub-$run" "$status_event" "alice-ipad: StatusEvent (binds its subscription)"
post bob-iphone "bob-sub-$run" "$status_event" "bob: StatusEvent (binds the subscription)"
for d in alice-iphone alice-ipad; do
  post "$d" "$d-sub-$run" "$(unread_event B 3)" "$d: ModifiedEvent Inbox UnreadCount=3"
done
# Each badge reaches the devices before the next event (or the dispatcher would rightly send only
# the newer one: it coalesces per device).
wait_badge() {  # wait_badge DEVICE BADGE: until apns-sim accepted that badge for the device
  for _ in $(seq 1 100); do
    curl -sS --max-time 5 "http://127.0.0.1:$sim_control/accepted?since=$since" |
      jq -e --arg t "${token[$1]}" --argjson b "$2" \
        'any(.records[]; .token == $t and (.payload | fromjson | .aps.badge) == $b)' >/dev/null &&
      return 0
    sleep 0.1
  done
}
wait_badge alice-iphone 3
wait_badge alice-ipad 3
for d in alice-iphone alice-ipad; do
  post "$d" "$d-sub-$run" "$(new_mail_event C)" "$d: NewMailEvent (one more unread)"
done
# Exchange sending the same notification again (our OK was lost on the way): counted once.
post alice-iphone "alice-iphone-sub-$run" "$(new_mail_event C)" "alice-iphone: the same NewMailEvent again"
post bob-iphone "bob-sub-$run" "$(unread_event B 1)" "bob: ModifiedEvent Inbox UnreadCount=1"
wait_badge alice-iphone 4
# carol's account on alice's iPhone: its own subscription and URL; the iPhone shows the sum.
post carol-on-alice-iphone "carol-sub-$run" "$status_event" "carol (on alice-iphone): StatusEvent (binds its subscription)"
post carol-on-alice-iphone "carol-sub-$run" "$(unread_event D 2)" "carol (on alice-iphone): ModifiedEvent Inbox UnreadCount=2"

# ---- 3b. an Exchange Online account through Microsoft Graph ----
# dave@online.example.com is bob's second account, on Exchange Online, where EWS is gone: the app
# registers it with source "graph" and its own clientState, creates the Graph subscription with
# its own token (Graph validates both URLs first), and Graph posts change notifications. The
# relay holds no Microsoft credential.
echo "== 3b. an Exchange Online account on bob's iPhone, through Microsoft Graph"
client_state=$(openssl rand -hex 16)
reply=$(curl "${curl_tls[@]}" -X POST "$base/v1/registrations" -H 'Content-Type: application/json' \
  --data-binary "$(jq -n --arg c "$customer" --arg k "$registration_key" --arg t "${token[bob-iphone]}" \
  --arg s "$client_state" '{customer_id:$c, registration_key:$k, mailbox:"dave@online.example.com",
  device_token:$t, environment:"production", source:"graph", client_state:$s, unread:2}')")
graph_notify=$(json_field .notification_url "$reply")
graph_lifecycle=$(json_field .lifecycle_notification_url "$reply")
echo "   dave (on bob-iphone, Graph): $(json_field .change "$reply"); subscribe to" \
     "$(json_field .resource "$reply") for $(json_field .change_type "$reply"), unread now 2"
# graph_sim METHOD PATH [JSON]: a call to graph-sim, which stands in for Microsoft Graph.
graph_sim() {
  local args=(-sS --max-time 60 -X "$1" "http://127.0.0.1:$graph_control$2")
  [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${args[@]}"
}
# The app creates the subscription with its own Microsoft token (here: at graph-sim); Graph
# validates both URLs before it answers.
subscription=$(graph_sim POST /v1.0/subscriptions "$(jq -n --arg n "$graph_notify" \
  --arg l "$graph_lifecycle" --arg s "$client_state" --arg res "$(json_field .resource "$reply")" \
  '{changeType:"created,deleted", resource:$res, notificationUrl:$n, lifecycleNotificationUrl:$l,
    clientState:$s, tenantId:"84bd8158-6d4d-4958-8b9f-9d6445542f95", userId:"dave"}')")
subscription_id=$(json_field .id "$subscription")
echo "   Graph validated the notification and lifecycle URLs (the token came back as text/plain in" \
     "$(json_field '.validation_ms * 10 | round / 10' "$subscription") ms) and created subscription $subscription_id"
graph_deliver() {  # graph_deliver PATH-SUFFIX JSON DESCRIPTION
  local outcome
  outcome=$(graph_sim POST "/v1.0/subscriptions/$subscription_id/$1" "$2")
  [ "$(jq -r .outcome <<<"$outcome")" = delivered ] || fail "Graph could not deliver $3: $outcome"
  echo "   $3 -> $(json_field .last_status "$outcome") in $(json_field '.answer_ms * 10 | round / 10' "$outcome") ms"
}
created=$(jq -n --arg r "$run" '{changes: [{changeType: "created", id: ("AAMkDave" + $r)}]}')
graph_deliver notify "$created" "Graph: created (a message became unread in dave's Inbox)"
graph_deliver notify "$created" "Graph: the same notification again"
graph_deliver lifecycle '{"lifecycleEvent":"reauthorizationRequired"}' \
  "Graph: lifecycle reauthorizationRequired (the app is woken)"

# ---- 4. what the devices received ----
echo "== 4. what each simulated device received from APNs (apns-sim)"
declare -A want=([alice-iphone]=6 [alice-ipad]=4 [bob-iphone]=4)
for _ in $(seq 1 100); do
  accepted=$(curl -sS --max-time 5 "http://127.0.0.1:$sim_control/accepted?since=$since")
  done_all=1
  for d in "${devices[@]}"; do
    last=$(jq -r --arg t "${token[$d]}" '[.records[] | select(.token == $t) | .payload | fromjson | .aps.badge // empty] | last // empty' <<<"$accepted")
    [ "$last" = "${want[$d]}" ] || done_all=0
  done
  [ "$done_all" = 1 ] && break
  sleep 0.1
done
for d in "${devices[@]}"; do
  badges=$(jq -r --arg t "${token[$d]}" '[.records[] | select(.token == $t) | .payload | fromjson | .aps.badge // empty | tostring] | join(", ")' <<<"$accepted")
  printf '   %-13s %-15s badges received: %s\n' "$d" "${accounts[$d]}" "${badges:-none}"
done
wake=$(jq -r --arg t "${token[bob-iphone]}" '[.records[] | select(.token == $t and (.payload | fromjson | .aps["content-available"]) == 1)] | last | if . then "\(.payload)  (apns-push-type \(.headers["apns-push-type"]), apns-priority \(.headers["apns-priority"]))" else "none" end' <<<"$accepted")
echo "   background push to bob-iphone (Graph asked for reauthorization): $wake"
[ "$wake" != none ] || fail "bob-iphone got no background push for dave's reauthorizationRequired"
payload=$(jq -r --arg t "${token[alice-iphone]}" '[.records[] | select(.token == $t)] | last | "\(.payload)  (apns-topic \(.headers["apns-topic"]), apns-collapse-id \(.headers["apns-collapse-id"]))"' <<<"$accepted")
echo "   last payload to alice-iphone: $payload"
[ "$done_all" = 1 ] || fail "not every device got its badge within 10 s (see var/dev/mailpushd.log)"
echo "== each device shows the sum of its own accounts' unread counts, EWS and Graph (a new mail counted once, even when sent again); no device got another's"

# ---- 5. the region as its operators see it ----
echo "== 5. mailpushctl doctor (the operators' check of the region and of this customer)"
set +e
"$root/build/dev/src/app/mailpushctl" --region "$region" doctor --customer "$customer" \
  --listener-ca "$state/tls/ca.crt" | sed 's/^/   /'
doctor_rc=${PIPESTATUS[0]}
set -e
[ "$doctor_rc" = 0 ] || fail "mailpushctl doctor found a problem (above, with what to do)"
