#!/usr/bin/env bash
# Captures the protobuf request bodies real kubectl sends from its typed
# clients (NAME.pb) and, where kubectl can print it, the same object as Go's
# JSON (`--dry-run=client -o json`: NAME.json). kubectl logs the body at
# -v=10 before it sends it; stub_server.py answers discovery and the reads
# kubectl makes first, and fails every write. The decoder's tests check
# decode(NAME.pb) against NAME.json.
#
# Usage: capture.sh [KUBECTL]   (default: kubectl 1.33 of the Google Cloud SDK)
set -euo pipefail
kubectl=${1:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
python3 "$here/stub_server.py" >"$tmp/port" &
stub=$!
trap 'kill $stub; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
cat >"$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:$(cat "$tmp/port")"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]
current-context: c
KC
export KUBECONFIG=$tmp/kubeconfig
printf 'bin\000\001\377' >"$tmp/blob"

# name | kubectl arguments | "json" where --dry-run=client -o json prints the object
cases=(
  "configmap|create configmap cfg --from-literal=a=b --from-literal=empty= --from-file=blob=$tmp/blob|json"
  "namespace|create namespace team-a|json"
  "deployment|create deployment web --image=nginx:1.25 --replicas=3 --port=80|json"
  "deployment-zero|create deployment idle --image=nginx --replicas=0|json"
  "secret|create secret generic creds --from-literal=user=admin --from-literal=pw=s3cr3t|json"
  "secret-docker|create secret docker-registry reg --docker-server=r.example --docker-username=u --docker-password=p|json"
  "service|create service clusterip web --tcp=80:8080 --tcp=443|json"
  "service-nodeport|create service nodeport np --tcp=80:8080 --node-port=30080|json"
  "service-headless|create service clusterip hl --clusterip=None|json"
  "job|create job once --image=busybox -- echo hi|json"
  "cronjob|create cronjob tick --image=busybox --schedule='*/5 * * * *' -- date|json"
  "quota|create quota q --hard=cpu=1,memory=1Gi,pods=10 --scopes=NotTerminating|json"
  "priorityclass|create priorityclass high --value=1000 --description=important|json"
  "pdb|create poddisruptionbudget budget --selector=app=web --min-available=50%|json"
  "serviceaccount|create serviceaccount robot|json"
  "ingress|create ingress ing --class=nginx --rule=foo.com/bar*=svc1:8080,tls=cert --default-backend=def:80|json"
  "role|create role reader --verb=get,list --resource=pods,deployments.apps --resource-name=a|json"
  "clusterrole|create clusterrole agg --aggregation-rule=team=a|json"
  "rolebinding|create rolebinding rb --clusterrole=view --user=alice --serviceaccount=default:robot --group=devs|json"
  "clusterrolebinding|create clusterrolebinding crb --clusterrole=edit --user=bob|json"
  "hpa|autoscale deployment web --min=2 --max=5 --cpu-percent=70|json"
  "token|create token robot --duration=10m --audience=api|"
  "selfsubjectaccessreview|auth can-i create deployments.apps --subresource=scale|"
  "selfsubjectreview|auth whoami|"
  "csr-approve|certificate approve csr1|"
)
for c in "${cases[@]}"; do
  IFS='|' read -r name args json <<<"$c"
  eval "argv=($args)"
  # Flags go before a `--` that starts the container's command.
  head=() tail=()
  for i in "${!argv[@]}"; do
    if [ "${argv[$i]}" = -- ]; then tail=("${argv[@]:$i}"); break; fi
    head+=("${argv[$i]}")
  done
  { "$kubectl" "${head[@]}" -v=10 "${tail[@]}" 2>&1 || true; } | awk '
    /"Request Body" body=</ { on = 1; next }
    on && /^ >/ { exit }
    on { sub(/\|.*/, ""); n = split($0, f, " "); for (i = 2; i <= n; i++) printf "%s", f[i] }
  ' | xxd -r -p >"$here/$name.pb"
  [ -s "$here/$name.pb" ] || { echo "no body captured for $name" >&2; exit 1; }
  if [ -n "$json" ]; then
    "$kubectl" "${head[@]}" --dry-run=client -o json "${tail[@]}" >"$here/$name.json"
  fi
done
echo "captured ${#cases[@]} bodies with $("$kubectl" version --client 2>/dev/null | head -1)"
