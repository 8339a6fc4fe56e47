#!/usr/bin/env bash
# The end-to-end demo on this one machine (as root):
#   an emulated two-node cluster (tests/kube/emulator) with the real kubectl, one
#   ordinal-provisioner per node (each with its own directory standing for that node's disk),
#   the MySQL StatefulSet of the Kubernetes docs bound to per-ordinal directories; then, with one
#   backup agent per node, distinct data in every ordinal, a CronJob-style 'ordinal-backup run'
#   in reverse-ordinal order into a local repository, damage, and the one-command cluster
#   restore in ordinal order that brings the data back.
# Everything it starts is stopped at exit; KEEP=1 keeps the work directory for a look around.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/setup.sh
scripts/build.sh release
bin=$top/build/bin

work=$(mktemp -d /tmp/ordinal-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
export HOME=$work/home KUBECONFIG=$work/kubeconfig
mkdir -p "$HOME"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "demo: timed out waiting for $what" >&2
            exit 1
        fi
        sleep 0.1
    done
}

step "An emulated cluster with two nodes"
tests/kube/emulator --listen 127.0.0.1:0 --nodes node-a,node-b --kubeconfig-out "$KUBECONFIG" \
    >"$work/emulator.out" 2>"$work/emulator.log" &
pids+=($!)
wait_until 30 "the emulator" grep -q '^ready' "$work/emulator.out"
show kubectl get nodes

step "On each node: the provisioner and the backup agent, each node with its own disk"
show kubectl create namespace ordinal-system
show kubectl apply -f deploy/crd-volumetask.yaml
for node in node-a node-b; do
    mkdir -p "$work/$node/ordinal"
    "$bin/ordinal-provisioner" --node-name "$node" --root "$work/$node/ordinal" \
        2>"$work/provisioner-$node.log" &
    pids+=($!)
    "$bin/ordinal-backup" agent --node-name "$node" --root "$work/$node/ordinal" \
        --repo "$work/repo" --namespace ordinal-system 2>"$work/agent-$node.log" &
    pids+=($!)
done
show kubectl apply -f deploy/examples/storageclass-demo.yaml

step "The MySQL StatefulSet: 3 replicas, a 1Gi claim per ordinal"
show kubectl apply -f deploy/examples/mysql-statefulset.yaml
show kubectl rollout status statefulset/mysql --timeout=60s
show kubectl get pvc
show kubectl get pods -o wide
show kubectl get pv -o custom-columns='PV:.metadata.name,CLAIM:.spec.claimRef.name,NODE:.metadata.annotations.ordinal\.dev/node,PATH:.spec.hostPath.path'

step "Per-ordinal directories on the nodes' disks"
(cd "$work" && find node-a node-b -mindepth 5 -maxdepth 5 | sort)

step "Distinct data in every ordinal"
declare -A node_of
for i in 0 1 2; do
    node=$(kubectl get pod "mysql-$i" -o jsonpath='{.spec.nodeName}')
    node_of[$i]=$node
    dir=$work/$node/ordinal/default/mysql/$i/mysql-data
    mkdir -p "$dir/db"
    printf 'rows of mysql-%s\n' "$i" >"$dir/db/table.ibd"
    head -c 1M /dev/urandom >"$dir/db/blob-$i"
    echo "mysql-$i on $node: $(cat "$dir/db/table.ibd")"
done

step "The nightly backup (what the CronJob runs): one task per ordinal, reverse order"
show "$bin/ordinal-backup" run --statefulset default/mysql --repo "$work/repo" \
    --namespace ordinal-system --keep-daily 7
show "$bin/ordinal-backup" list --repo "$work/repo"
show "$bin/ordinal-backup" verify --repo "$work/repo"

step "Damage: the data of every ordinal is overwritten"
for i in 0 1 2; do
    dir=$work/${node_of[$i]}/ordinal/default/mysql/$i/mysql-data
    echo garbage >"$dir/db/table.ibd"
    rm -f "$dir/db/blob-$i"
    echo "mysql-$i: $(cat "$dir/db/table.ibd")"
done

step "Restore in one command: scale to 0, restore ordinal by ordinal, scale back"
show "$bin/ordinal-backup" restore --kubeconfig "$KUBECONFIG" --statefulset default/mysql \
    --repo "$work/repo" --namespace ordinal-system
show kubectl rollout status statefulset/mysql --timeout=60s

step "The data is back"
for i in 0 1 2; do
    dir=$work/${node_of[$i]}/ordinal/default/mysql/$i/mysql-data
    echo "mysql-$i: $(cat "$dir/db/table.ibd") ($(stat -c %s "$dir/db/blob-$i") bytes of blob)"
done
echo
echo "demo: done"
