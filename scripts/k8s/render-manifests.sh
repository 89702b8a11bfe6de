#!/usr/bin/env bash
# render-manifests.sh brings the Helm chart up to date with what it takes from elsewhere and
# renders the plain manifests from it:
#   - deploy/prometheus/skein-rules.yaml.tmpl  -> deploy/helm/skein/files/ (the PrometheusRule body)
#   - deploy/prometheus/thresholds.yaml        -> the `alerts:` block at the end of values.yaml
#   - deploy/grafana/*.json                    -> deploy/helm/skein/files/dashboards/
#   - helm template                            -> deploy/manifests/skein.yaml
# TestKubeManifestsInSync (e2e/kube_test.go) fails while any of these is stale.
set -euo pipefail
cd "$(dirname "$0")/../.."
chart=deploy/helm/skein
helm=${HELM:-$(scripts/k8s/tools.sh helm)}

cp deploy/prometheus/skein-rules.yaml.tmpl "$chart/files/skein-rules.yaml.tmpl"
rm -f "$chart"/files/dashboards/*.json
cp deploy/grafana/*.json "$chart/files/dashboards/"

marker='# ---- alerts: copied from deploy/prometheus/thresholds.yaml by scripts/k8s/render-manifests.sh; edit them there. ----'
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
awk -v m="$marker" '$0 == m { exit } { print }' "$chart/values.yaml" >"$tmp"
{ cat "$tmp"; echo "$marker"; cat deploy/prometheus/thresholds.yaml; } >"$chart/values.yaml"

"$helm" lint --strict "$chart" >/dev/null
mkdir -p deploy/manifests
# The plain manifests carry everything, the Prometheus operator's objects included: where its CRDs
# are missing, kubectl reports those two objects and applies the rest.
args=(template skein "$chart" --namespace skein-system --include-crds --set namespace.create=true
	--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule)
{
	echo "# Generated from deploy/helm/skein by scripts/k8s/render-manifests.sh; do not edit."
	echo "# helm ${args[*]}"
	"$helm" "${args[@]}"
} >deploy/manifests/skein.yaml
echo "rendered deploy/manifests/skein.yaml"
