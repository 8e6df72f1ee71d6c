#!/usr/bin/env bash
# Builds the container image on this kind of machine (no registry, no container runtime):
#   scripts/image.sh [--smoke] [--no-build]
# Debian's buildah as root, --storage-driver vfs --isolation chroot. The binary is built on the
# host (cargo build --release, with cargo's own progress) and scripts/image-rootfs.sh assembles
# the runtime's files into target/image/builder/rootfs; that directory stands in for the
# Dockerfile's `builder` stage (--build-context), so the Dockerfile's `runtime` stage is built
# as written. Result: the image cloudtrail-changes:VERSION in buildah's storage and the OCI
# archive target/image/cloudtrail-changes-VERSION.oci.tar (load it with `podman load` or
# `skopeo copy oci-archive:... docker://REGISTRY/cloudtrail-changes:VERSION`).
#
# --smoke then runs, inside the image (buildah run, as its non-root user): --version,
# config check, and process on the sample CloudTrail files (mounted read-only), and compares
# the changes with the host binary's; then `run` against moto (scripts/moto.sh) and compares
# its first scrape with the README's metrics table. --no-build reuses the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false build=true
for arg in "$@"; do
  case $arg in
    --smoke) smoke=true ;;
    --no-build) build=false ;;
    *) echo "usage: scripts/image.sh [--smoke] [--no-build]" >&2; exit 2 ;;
  esac
done

command -v buildah >/dev/null || { echo "image.sh: buildah is missing (apt-get install buildah)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "image.sh: buildah with the vfs driver runs as root here" >&2; exit 1; }
bh() { buildah --storage-driver vfs "$@"; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image=cloudtrail-changes:$version
target_dir=${CARGO_TARGET_DIR:-target}
binary=$target_dir/release/cloudtrail-changes
out=target/image
mkdir -p "$out"

if $build; then
  echo "== cargo build --release (the first build takes several minutes; cargo shows its progress)"
  cargo build --release --locked --bin cloudtrail-changes
fi
echo "== runtime files from $binary"
echo "   ldd: $(ldd "$binary" | awk '{print $1}' | tr '\n' ' ')"
scripts/image-rootfs.sh "$binary" "$out/builder/rootfs"

echo "== buildah build $image (Dockerfile, target runtime)"
previous=$(bh images --quiet --noheading "$image" 2>/dev/null || true)
started=$SECONDS
bh build --isolation chroot --layers=false --target runtime \
  --build-context "builder=$out/builder" -f Dockerfile -t "$image" . >"$out/build.log" 2>&1 ||
  { cat "$out/build.log" >&2; echo "image.sh: buildah build failed" >&2; exit 1; }
# The image this one replaces would stay in storage untagged.
current=$(bh images --quiet --noheading "$image")
if [[ -n $previous && $previous != "$current" ]]; then bh rmi "$previous" >/dev/null 2>&1 || true; fi
archive=$out/cloudtrail-changes-$version.oci.tar
rm -f "$archive"
bh push --quiet "$image" "oci-archive:$archive:$image"
echo "image:   localhost/$image (built in $((SECONDS - started)) s)"
echo "size:    $(bh images --noheading --format '{{.Size}}' "$image") (buildah), $(du -sm "$out/builder/rootfs" | cut -f1) MB unpacked, $(du -m "$archive" | cut -f1) MB OCI archive ($archive)"

$smoke || exit 0

echo "== smoke test inside the image"
container=$(bh from --quiet "$image")
trap 'bh rm "$container" >/dev/null 2>&1 || true' EXIT
data=$PWD/tests/data/cloudtrail
run() { bh run --isolation chroot -v "$data:/data:ro" "$container" -- /usr/local/bin/cloudtrail-changes "$@"; }
user=$(bh inspect --type container --format '{{.OCIv1.Config.User}}' "$container")
[[ $user == 65532:65532 ]] || { echo "smoke: the image runs as '$user', not 65532:65532" >&2; exit 1; }
echo "user:    $user"
echo "version: $(run --version)"
run config check >"$out/config-check.json"
echo "config check: ok ($(wc -c <"$out/config-check.json") bytes of effective settings)"
run process /data >"$out/smoke-changes.jsonl" 2>"$out/smoke-process.err"
# The same files on the host; a change's metadata names its file, so map the host's path.
"$binary" process "$data" 2>/dev/null | sed "s|$data/|/data/|g" >"$out/host-changes.jsonl"
inside=$(wc -l <"$out/smoke-changes.jsonl")
host=$(wc -l <"$out/host-changes.jsonl")
echo "process: $inside changes inside the image, $host on the host"
tail -n 3 "$out/smoke-process.err" | sed 's/^/         /'
cmp -s "$out/smoke-changes.jsonl" "$out/host-changes.jsonl" ||
  { echo "smoke: the image's changes differ from the host binary's" >&2; exit 1; }
# HTTPS needs the CA bundle (there is no network here to try it): look at the image's files.
mnt=$(bh mount "$container")
[[ -s $mnt/etc/ssl/certs/ca-certificates.crt ]] || { echo "smoke: no CA bundle in the image" >&2; exit 1; }
echo "files:   $(find "$mnt" -type f | sed "s|^$mnt||" | sort | tr '\n' ' ')"
bh umount "$container" >/dev/null

# The daemon itself in the image, against a local AWS (moto, scripts/moto.sh): its first scrape
# must show every family of the README's metrics table, before any message.
echo "== run inside the image against moto"
py=${CTC_MOTO_VENV:-$PWD/target/moto-venv}/bin/python
scripts/moto.sh install >/dev/null
read -r moto_port admin_port api_port < <("$py" -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
scripts/moto.sh start "$moto_port" >"$out/moto.log" 2>&1 &
moto_pid=$!
daemon_pid=''
trap 'kill $daemon_pid $moto_pid 2>/dev/null || true; wait 2>/dev/null; bh rm "$container" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null && break; sleep 0.1; done
queue=$(AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "$py" -c "import boto3, sys
sqs = boto3.client('sqs', endpoint_url=sys.argv[1], region_name='us-east-1')
print(sqs.create_queue(QueueName='image-smoke')['QueueUrl'])" "http://127.0.0.1:$moto_port")
# buildah itself in the background (not the bh function, whose subshell would not pass on
# the SIGTERM that stops it).
buildah --storage-driver vfs run --isolation chroot --network host \
  -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test -e AWS_EC2_METADATA_DISABLED=true \
  -e CTC__AWS__ENDPOINT_URL="http://127.0.0.1:$moto_port" -e CTC__AWS__REGION=us-east-1 \
  -e CTC__SQS__QUEUE_URL="$queue" -e CTC__SUBSCRIPTIONS__STORE=sqlite:/tmp/subscriptions.db \
  -e CTC__ADMIN__LISTEN="127.0.0.1:$admin_port" -e CTC__API__LISTEN="127.0.0.1:$api_port" \
  "$container" -- /usr/local/bin/cloudtrail-changes run >"$out/daemon.log" 2>&1 &
daemon_pid=$!
page=''
for _ in $(seq 200); do
  page=$(curl -sf "http://127.0.0.1:$admin_port/metrics") && break
  sleep 0.1
done
[[ -n $page ]] || { cat "$out/daemon.log" >&2; echo "smoke: the daemon in the image served no /metrics" >&2; exit 1; }
families=$(grep -c '^# TYPE ' <<<"$page")
series=$(grep -vc '^#' <<<"$page")
documented=$(sed -n '/^### Metrics/,/^###/p' README.md | grep -c '^| `ctc_')
echo "first scrape: $families families ($series series), README's table: $documented"
[[ $families == "$documented" ]] || { echo "smoke: the first scrape differs from the README's table" >&2; exit 1; }
echo "smoke: ok"
