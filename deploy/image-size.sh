#!/usr/bin/env bash
# Measures the size of the rade runtime image (the last stage of deploy/Containerfile) without
# a container engine daemon: Buildah (vfs storage, chroot isolation) builds that stage on a
# bookworm-slim base made here, checks that the image runs, pushes it to a local OCI layout
# with gzip layers and adds up the layers, packed and unpacked. Prints each layer, the image's
# uncompressed and compressed sizes, the binary's size and the base image's size.
#
#   deploy/image-size.sh                   as root (Buildah writes root-owned files; mmdebstrap
#                                          and the RUN steps install Debian packages)
#   RADE_BIN=path/to/rade deploy/image-size.sh
#                                          the binary to put in the image; default
#                                          $CARGO_TARGET_DIR/release/rade, else target/release/rade
#                                          (build it first: cargo build --release --locked -p rade)
#   DEBIAN_MIRROR=http://... deploy/image-size.sh
#                                          the Debian mirror (default: the one apt uses here)
#   KEEP=1 deploy/image-size.sh            keep the work directory (storage, OCI layouts)
#
# Needs buildah, skopeo, mmdebstrap and jq (apt-get install -y buildah skopeo mmdebstrap jq);
# installs them if missing. Not part of `make test`: it takes a few minutes, about 2 GB of
# /var/tmp while it runs (vfs stores every layer as a full copy), and needs the Debian mirror.
#
# Why the base is built here: debian:bookworm-slim comes from Docker Hub, which a machine with
# only package registries cannot reach. So this builds the same thing from Debian's packages,
# the way Debian's official images are made (debuerreotype): a minbase bookworm with the
# "slim" excludes (no man pages, docs other than copyright files, locales, info pages), apt's
# docker-clean/-gzip-indexes/-no-languages settings, no apt lists or caches, no logs. It is
# close to debian:bookworm-slim but not byte-identical: the packages are the mirror's current
# bookworm point release rather than the snapshot Docker Hub's tag was built from, and small
# details differ (file timestamps, which debuerreotype clamps to one epoch; a one-line
# sources.list instead of debian.sources).
# The runtime stage itself is taken from deploy/Containerfile as it is, so a change there is
# measured by the next run; only its FROM (the local base) and its COPY --from=builder (the
# binary built outside) are rewritten.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "$(id -u)" -ne 0 ]; then
  echo "image-size.sh: run as root (buildah with vfs storage and chroot isolation, mmdebstrap)" >&2
  exit 2
fi

RADE_BIN="${RADE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rade}"
if [ ! -x "$RADE_BIN" ]; then
  echo "image-size.sh: no binary at $RADE_BIN; build it with" >&2
  echo "  cargo build --release --locked -p rade   (or set RADE_BIN)" >&2
  exit 2
fi

# The mirror apt uses on this machine (deb822 or one-line sources), else deb.debian.org.
if [ -z "${DEBIAN_MIRROR:-}" ]; then
  DEBIAN_MIRROR="$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')"
  [ -n "$DEBIAN_MIRROR" ] ||
    DEBIAN_MIRROR="$(grep -hsE '^deb .*/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2; exit}')"
  DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi
DEBIAN_MIRROR="${DEBIAN_MIRROR%/}"
SECURITY_MIRROR="${SECURITY_MIRROR:-${DEBIAN_MIRROR}-security}"

need=()
for tool in buildah skopeo mmdebstrap jq; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

WORK="$(mktemp -d /var/tmp/rade-image.XXXXXX)"
# Buildah gets its own storage under $WORK (vfs: plain directories, no overlay mounts), so
# the images stay out of /var/lib/containers and removing $WORK removes them. (Buildah still
# keeps its blob-info cache, about 100 kB, in /var/lib/containers/cache.)
BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $WORK (remove it with: buildah --root $WORK/storage --runroot $WORK/run --storage-driver vfs rmi --all -f; rm -rf $WORK)"
    return
  fi
  "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

BASE=localhost/rade-base:bookworm-slim
IMAGE=localhost/rade:size

# ---- the base: debian:bookworm-slim, made from Debian's packages --------------------------
echo "== base: mmdebstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
# The slim excludes and includes of debuerreotype (scripts/.slimify-excludes and -includes),
# kept by dpkg for every later install too (the image has them in /etc/dpkg/dpkg.cfg.d/docker).
SLIM=(
  'path-exclude /usr/share/doc/*'
  'path-exclude /usr/share/groff/*'
  'path-exclude /usr/share/info/*'
  'path-exclude /usr/share/linda/*'
  'path-exclude /usr/share/lintian/overrides/*'
  'path-exclude /usr/share/locale/*'
  'path-exclude /usr/share/man/*'
  'path-include /usr/share/doc/*/copyright'
  'path-include /usr/share/doc/kde/HTML/C/*'
  'path-include /usr/share/gnome/help/*/C/*'
  'path-include /usr/share/locale/all_languages'
  'path-include /usr/share/locale/currency/*'
  'path-include /usr/share/locale/l10n/*'
  'path-include /usr/share/locale/languages'
  'path-include /usr/share/locale/locale.alias'
  'path-include /usr/share/omf/*/*-C.emf'
)
printf '%s\n' "${SLIM[@]/ /=}" > "$WORK/slim.dpkg"
# debuerreotype-minimizing-config's apt settings: no package caches kept, compressed lists,
# no translations.
cat > "$WORK/docker.apt" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
Acquire::Languages "none";
Apt::AutoRemove::SuggestsImportant "false";
EOF
# The merged-usr hook makes /bin, /lib, /sbin symlinks itself, as debootstrap does, instead of
# installing the usrmerge package (and perl with it), which debian:bookworm-slim does not have.
# (The hooks are run by mmdebstrap with the root directory as $1: single quotes are meant.)
# shellcheck disable=SC2016
mmdebstrap --quiet --mode=root --variant=minbase --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt="$WORK/slim.dpkg" --dpkgopt=force-unsafe-io \
  --aptopt="$WORK/docker.apt" \
  --customize-hook='printf "#!/bin/sh\nexit 101\n" > "$1/usr/sbin/policy-rc.d"; chmod 0755 "$1/usr/sbin/policy-rc.d"' \
  --customize-hook='rm -f "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log "$1"/var/log/apt/*.log "$1"/var/cache/ldconfig/aux-cache' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/etc/hostname "$1"/etc/resolv.conf' \
  bookworm "$WORK/base.tar" \
  "deb $DEBIAN_MIRROR bookworm main" \
  "deb $DEBIAN_MIRROR bookworm-updates main" \
  "deb $SECURITY_MIRROR bookworm-security main" > "$WORK/mmdebstrap.log" 2>&1 ||
  { cat "$WORK/mmdebstrap.log" >&2; exit 1; }

ctr="$("${BUILDAH[@]}" from --quiet scratch)"
"${BUILDAH[@]}" add --quiet "$ctr" "$WORK/base.tar" / >/dev/null
"${BUILDAH[@]}" config --created-by "mmdebstrap --variant=minbase bookworm, slim" \
  --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --os linux --arch "$(dpkg --print-architecture)" "$ctr"
"${BUILDAH[@]}" commit --quiet --rm "$ctr" "$BASE" >/dev/null
rm -f "$WORK/base.tar"

# ---- the runtime stage of deploy/Containerfile, on that base -------------------------------
echo "== image: the runtime stage of deploy/Containerfile (buildah bud --isolation chroot)"
ctx="$WORK/context"
mkdir -p "$ctx/deploy"
cp -r schemas rules "$ctx/"
cp deploy/rade.toml "$ctx/deploy/"
cp "$RADE_BIN" "$ctx/rade"
# From the runtime FROM to the end; FROM names the local base, COPY --from=builder the binary.
awk '/^FROM debian:bookworm-slim/ {on = 1} on' deploy/Containerfile |
  sed -e "s|^FROM debian:bookworm-slim.*|FROM $BASE|" \
      -e 's|^COPY --from=builder /usr/local/bin/rade |COPY rade |' > "$ctx/Containerfile"
if ! grep -q "^FROM $BASE" "$ctx/Containerfile" || ! grep -q '^COPY rade ' "$ctx/Containerfile"; then
  echo "image-size.sh: deploy/Containerfile's runtime stage no longer looks as expected:" >&2
  cat "$ctx/Containerfile" >&2
  exit 1
fi
"${BUILDAH[@]}" bud --quiet --isolation chroot --pull=never --layers \
  -f "$ctx/Containerfile" -t "$IMAGE" "$ctx" > "$WORK/bud.log" 2>&1 ||
  { cat "$WORK/bud.log" >&2; exit 1; }
"${BUILDAH[@]}" run --isolation chroot "$("${BUILDAH[@]}" from --quiet --pull=never "$IMAGE")" -- rade --version |
  sed 's/^/   the image says: /'
"${BUILDAH[@]}" rm --all >/dev/null

# ---- sizes -------------------------------------------------------------------------------
# Each image is pushed to an OCI layout with gzip layers, as a registry stores them and a node
# pulls them: the compressed size is the sum of the layer blobs. The uncompressed size is the
# sum of the same layers unpacked: the layer tars, so a little more than the files they hold
# (tar headers and padding). Buildah's own listing (`buildah images`) is printed too.
oci_push() { # <image> <dir>
  "${BUILDAH[@]}" push --quiet --compression-format gzip "$1" "oci:$2" >/dev/null
}
gz_sum() { # <oci-dir>: the sum of its layer blob sizes
  skopeo inspect --raw "oci:$1" | jq '[.layers[].size] | add'
}
raw_sizes() { # <oci-dir>: each layer's unpacked tar size, one a line
  local digest
  for digest in $(skopeo inspect --raw "oci:$1" | jq -r '.layers[].digest'); do
    gzip -dc "$1/blobs/${digest%%:*}/${digest#*:}" | wc -c
  done
}
sum() { awk '{ s += $1 } END { print s + 0 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

oci_push "$BASE" "$WORK/oci-base"
oci_push "$IMAGE" "$WORK/oci-image"
base_gz="$(gz_sum "$WORK/oci-base")"
base_raw="$(raw_sizes "$WORK/oci-base" | sum)"
img_gz="$(gz_sum "$WORK/oci-image")"
img_raw="$(raw_sizes "$WORK/oci-image" | sum)"
bin="$(stat -c %s "$RADE_BIN")"
listed_base="$("${BUILDAH[@]}" images --format '{{.Size}}' "$BASE")"
listed_img="$("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE")"

echo "== layers of the image: unpacked, gzip, the step that made it"
paste <(raw_sizes "$WORK/oci-image") \
      <(skopeo inspect --raw "oci:$WORK/oci-image" | jq -r '.layers[].size') \
      <(skopeo inspect --config "oci:$WORK/oci-image" |
          jq -r '.history[] | select(.empty_layer | not) | .created_by
                 | sub("^/bin/sh -c (#\\(nop\\) )?"; "") | sub("(file|dir):[0-9a-f]+ "; "")
                 | gsub(" +"; " ") | .[0:64]') |
  while IFS=$'\t' read -r raw gz step; do
    printf '   %12d %12d  %s\n' "$raw" "$gz" "${step:-(base)}"
  done
echo "== sizes"
printf '%-36s %12d bytes  %s\n' "image, uncompressed" "$img_raw" "$(mb "$img_raw")"
printf '%-36s %12d bytes  %s\n' "image, compressed (gzip layers)" "$img_gz" "$(mb "$img_gz")"
printf '%-36s %12s\n' "image, as buildah images lists it" "$listed_img"
printf '%-36s %12d bytes  %s  (%s)\n' "binary" "$bin" "$(mb "$bin")" "$RADE_BIN"
printf '%-36s %12d bytes  %s\n' "base (bookworm-slim), uncompressed" "$base_raw" "$(mb "$base_raw")"
printf '%-36s %12d bytes  %s\n' "base (bookworm-slim), compressed" "$base_gz" "$(mb "$base_gz")"
printf '%-36s %12s\n' "base, as buildah images lists it" "$listed_base"
