#!/usr/bin/env bash
# Builds the vecino OCI image from scratch, with no base image and no registry: the `vecino`
# binary (stripped), the shared libraries it links (as ldd lists them, with the dynamic loader),
# /etc/passwd and /etc/group naming the unprivileged user 10001, the default settings
# (vecino.toml) and an empty /data owned by that user; then `buildah bud` on Containerfile.
#
#   deploy/container/build.sh                        # cargo build --release, image localhost/vecino:latest
#   deploy/container/build.sh --tag vecino:1 --archive vecino.tar   # also an OCI archive
#   deploy/container/build.sh --profile dev          # the debug build (CI: it is already built)
#   deploy/container/build.sh --binary path/to/vecino
#
# Needs buildah (Debian: apt-get install buildah), ldd and strip. buildah honours the usual
# containers-storage settings (CONTAINERS_STORAGE_CONF, or --storage-driver vfs in
# BUILDAH_STORAGE_DRIVER here) so that podman on the same storage sees the image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

tag=localhost/vecino:latest
profile=release
binary=
archive=
usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    echo "flags: --tag NAME  --profile release|dev  --binary PATH  --archive FILE.tar"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --binary) binary=${2:?--binary needs a value}; shift 2 ;;
        --archive) archive=${2:?--archive needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
say() { printf '[image %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
for tool in buildah ldd strip; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build.sh: $tool not found (Debian: apt-get install buildah binutils libc-bin)" >&2
        exit 1
    }
done
storage=()
if [ -n "${BUILDAH_STORAGE_DRIVER:-}" ]; then storage=(--storage-driver "$BUILDAH_STORAGE_DRIVER"); fi

if [ -z "$binary" ]; then
    case "$profile" in
        release) dir=release ;;
        dev) dir=debug ;;
        *) echo "build.sh: --profile is release or dev, not $profile" >&2; exit 2 ;;
    esac
    say "cargo build --locked --profile $profile -p vecino"
    (cd "$root" && cargo build --locked --quiet --profile "$profile" -p vecino)
    binary="${CARGO_TARGET_DIR:-$root/target}/$dir/vecino"
fi
[ -x "$binary" ] || { echo "build.sh: no executable at $binary" >&2; exit 1; }
version=$("$binary" --version | awk '{print $2}')
revision=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
created=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)

ctx=$(mktemp -d "${TMPDIR:-/tmp}/vecino-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/vecino" "$ctx/data"
strip -o "$rootfs/usr/local/bin/vecino" "$binary"
chmod 0755 "$rootfs/usr/local/bin/vecino"

# The shared libraries, at the paths the loader looks for them.
if ldd "$binary" | grep -q 'not found'; then
    ldd "$binary" >&2
    echo "build.sh: $binary links a library this host lacks" >&2
    exit 1
fi
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[ -n "$libs" ] || { echo "build.sh: ldd listed no library (a static binary needs none: fine)" >&2; }
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
# /lib64 and /lib are symlinks into /usr on merged-/usr Debian; the loader path in the binary
# (/lib64/ld-linux-x86-64.so.2) is copied as a file above, so no symlink is needed.

printf 'root:x:0:0:root:/nonexistent:/nonexistent\nvecino:x:10001:10001:vecino:/data:/nonexistent\n' \
    >"$rootfs/etc/passwd"
printf 'root:x:0:\nvecino:x:10001:\n' >"$rootfs/etc/group"
install -m 0644 "$here/vecino.toml" "$rootfs/etc/vecino/vecino.toml"
chmod 0700 "$ctx/data"
cp "$here/Containerfile" "$ctx/Containerfile"

say "buildah bud -t $tag (vecino $version, $revision; $(du -sh "$rootfs" | cut -f1) of files)"
buildah "${storage[@]}" bud --quiet --format docker --layers=false --timestamp "$created" \
    --label "org.opencontainers.image.title=vecino" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.description=vecino peer-to-peer overlay node" \
    -f "$ctx/Containerfile" -t "$tag" "$ctx" >/dev/null
size=$(buildah "${storage[@]}" images --noheading --format '{{.Size}}' "$tag" | head -n 1)
say "built $tag: $size"
if [ -n "$archive" ]; then
    rm -f "$archive"
    buildah "${storage[@]}" push --quiet "$tag" "oci-archive:$archive:$tag"
    say "wrote $archive ($(du -h "$archive" | cut -f1); podman load -i $archive)"
fi
