#!/usr/bin/env bash
# The end-to-end demo on this one machine (as root):
#   an emulated two-node cluster (tests/kube/emulator) with the real kubectl, one
#   ordinal-provisioner per node (each with its own directory standing for that node's disk),
#   the MySQL StatefulSet of the Kubernetes docs bound to per-ordinal directories; then distinct
#   data in every ordinal, a backup in reverse-ordinal order into a local repository, damage,
#   and a restore in ordinal order that brings the data back.
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

step "One provisioner per node, each with its own disk"
for node in node-a node-b; do
    mkdir -p "$work/$node/ordinal"
    "$bin/ordinal-provisioner" --node-name "$node" --root "$work/$node/ordinal" \
        2>"$work/provisioner-$node.log" &
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

step "Back up every ordinal, reverse-ordinal order, into a local repository"
# Run by hand on each node, each backup holds the ordinals of that node; the cluster mode
# ('ordinal-backup run') makes one backup of all of them.
declare -A backup_of
for node in node-a node-b; do
    echo "\$ $bin/ordinal-backup backup --root $work/$node/ordinal --repo $work/repo --statefulset default/mysql --node-name $node --json"
    "$bin/ordinal-backup" backup --root "$work/$node/ordinal" --repo "$work/repo" \
        --statefulset default/mysql --node-name "$node" --json >"$work/backup-$node.json"
    backup_of[$node]=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' \
        <"$work/backup-$node.json")
    /usr/bin/python3 -c 'import json,sys
for v in json.load(sys.stdin)["volumes"]:
    print("  ordinal %d %s: %d bytes in, %d stored, sha256 %s..." % (v["ordinal"], v["template"], v["bytes_in"], v["bytes_stored"], v["sha256"][:16]))' <"$work/backup-$node.json"
done
show "$bin/ordinal-backup" list --repo "$work/repo"
show "$bin/ordinal-backup" verify --repo "$work/repo"

step "Damage: the data of every ordinal is overwritten"
for i in 0 1 2; do
    dir=$work/${node_of[$i]}/ordinal/default/mysql/$i/mysql-data
    echo garbage >"$dir/db/table.ibd"
    rm -f "$dir/db/blob-$i"
    echo "mysql-$i: $(cat "$dir/db/table.ibd")"
done

step "Restore, ordinal order, with the StatefulSet scaled to 0"
show kubectl scale statefulset/mysql --replicas=0
wait_until 60 "the pods to go" bash -c '[ -z "$(kubectl get pods -l app=mysql -o name)" ]'
for node in node-a node-b; do
    show "$bin/ordinal-backup" restore --root "$work/$node/ordinal" --repo "$work/repo" \
        --statefulset default/mysql --backup "${backup_of[$node]}"
done
show kubectl scale statefulset/mysql --replicas=3
show kubectl rollout status statefulset/mysql --timeout=60s

step "The data is back"
for i in 0 1 2; do
    dir=$work/${node_of[$i]}/ordinal/default/mysql/$i/mysql-data
    echo "mysql-$i: $(cat "$dir/db/table.ibd") ($(stat -c %s "$dir/db/blob-$i") bytes of blob)"
done
echo
echo "demo: done"
