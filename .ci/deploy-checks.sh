#!/usr/bin/env bash
# Deploy checks that need real tools from Debian packages (none of them comes from npm):
#   docker-compose config   (docker-compose)   the compose file is valid; no Docker engine is needed or used
#   promtool check/test     (prometheus)       Prometheus config, alert rules and their unit tests
#   haproxy -c              (haproxy)          the load balancer config parses
#   nginx -t                (nginx-light)      the alternative balancer config parses
#   kubectl kustomize       (kubernetes-client, or any newer kubectl)   base and every overlay render
# The jest suites in test/deploy/ also use prometheus, haproxy, nginx and kubectl; run this first (.ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if ((${#need[@]} > 0)); then
  mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "deploy-checks: installing ${pkgs[*]}"
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
  fi
fi

echo '== docker-compose config'
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile load config -q

echo '== promtool check config'
promtool check config deploy/prometheus/prometheus.yml

echo '== promtool check rules'
promtool check rules deploy/prometheus/alerts.yml

echo '== promtool test rules'
promtool test rules deploy/prometheus/alerts.test.yml

echo '== haproxy -c'
# Outside Docker the gw1..gw3 names do not resolve; haproxy warns and still validates everything else.
haproxy -c -f deploy/haproxy/haproxy.cfg

echo '== nginx -t'
# The upstream names (gw1..gw3) resolve only inside compose: check a copy that points them at 127.0.0.1.
tmp=$(mktemp -d)
sed -E 's/server gw[0-9]+:8080/server 127.0.0.1:8080/' deploy/nginx/nginx.conf >"$tmp/nginx.conf"
nginx -t -q -p "$tmp" -c "$tmp/nginx.conf" -g "pid $tmp/nginx.pid; error_log stderr;"
rm -rf "$tmp"

for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
  echo "== kubectl kustomize $dir ($(kubectl version --client 2>/dev/null | head -1))"
  kubectl kustomize "$dir" >/dev/null
done

echo 'deploy-checks: all passed'
