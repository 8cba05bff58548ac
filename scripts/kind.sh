#!/usr/bin/env bash
# The path for a machine WITH Docker (not the local stack's): a kind cluster, the project's
# images built and loaded into it, the operator installed with its chart, an example applied.
#
#   bash scripts/kind.sh KAFKA_BOOTSTRAP HBASE_THRIFT HBASE_ADMIN
#
# Kafka and HBase are yours (addresses reachable from the kind nodes, host:port each).
# This script cannot run where the project is developed (no Docker engine there) and is
# not exercised by the tests; kind-config.yaml follows stack/fink_stack/versions.py.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 3 ] || { echo "usage: $0 KAFKA_BOOTSTRAP HBASE_THRIFT HBASE_ADMIN" >&2; exit 2; }
for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "kind.sh: $tool is needed" >&2; exit 1; }
done

kind get clusters | grep -qx fink || kind create cluster --config kind-config.yaml
docker build -f images/pipeline/Containerfile -t fink-k8s/pipeline:dev .
docker build -f images/operator/Containerfile -t fink-k8s/operator:dev .
kind load docker-image --name fink fink-k8s/pipeline:dev fink-k8s/operator:dev

kubectl create namespace fink-operator --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace fink --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install fink charts/fink-operator -n fink-operator --wait \
  --set image.tag=dev --set image.pullPolicy=Never \
  --set pipelineImage.tag=dev --set pipelineImage.pullPolicy=Never \
  --set connections.kafkaBootstrap="$1" --set connections.hbaseThrift="$2" \
  --set connections.hbaseAdmin="$3" \
  --set pipelineVolume=storage-class:standard:5Gi
kubectl apply -n fink -f manifests/examples/ztf-demo-pipeline.yaml
kubectl get bp -n fink -w
