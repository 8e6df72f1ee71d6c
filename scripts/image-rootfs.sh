#!/usr/bin/env bash
# Assembles the runtime image's whole file system from a built binary, for a FROM scratch stage:
#   scripts/image-rootfs.sh BINARY DEST
# DEST gets the stripped binary (/usr/local/bin/cloudtrail-changes), the shared libraries ldd
# lists for it (glibc's loader, libc, libm, libgcc_s: TLS is rustls and SQLite is bundled), the
# CA bundle of Debian's ca-certificates, a passwd/group with the non-root user 65532 (nonroot)
# and an empty /tmp (the spool; mount a writable volume there under a read-only root).
# Runs in the Dockerfile's builder stage and, on a machine without a registry, on the host
# (scripts/image.sh). Needs ldd, strip and /etc/ssl/certs/ca-certificates.crt.
set -euo pipefail

binary=${1:?usage: image-rootfs.sh BINARY DEST}
dest=${2:?usage: image-rootfs.sh BINARY DEST}
bundle=/etc/ssl/certs/ca-certificates.crt
[[ -x $binary ]] || { echo "image-rootfs: $binary is not an executable (build it first)" >&2; exit 1; }
[[ -s $bundle ]] || { echo "image-rootfs: $bundle is missing (apt-get install ca-certificates)" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs" "$dest/tmp"
chmod 1777 "$dest/tmp"
strip --strip-all -o "$dest/usr/local/bin/cloudtrail-changes" "$binary"

# Every library the loader resolves ("name => /path (addr)") and the loader itself ("/path (addr)").
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
  sort -u | while read -r lib; do
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
  done
# A static binary has no loader to copy; a dynamic one must have one.
if ldd "$binary" >/dev/null 2>&1 && ! ls "$dest"/lib*/ld-linux* >/dev/null 2>&1; then
  echo "image-rootfs: ldd lists no dynamic loader for $binary" >&2
  exit 1
fi

cp -L "$bundle" "$dest/etc/ssl/certs/ca-certificates.crt"
cat > "$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:cloudtrail-changes:/tmp:/sbin/nologin
PASSWD
cat > "$dest/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
