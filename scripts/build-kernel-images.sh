#!/usr/bin/env bash
# Builds the local kernel images the Docker runtime offers, from Debian packages (no image registry needed):
#   backendai/shell:latest   debootstrap minbase               (user-facing name shell:latest, aliases shell, bash)
#   backendai/python:3.11    debootstrap minbase + python3     (user-facing name python:3.11, aliases python, python3)
# Both carry the ai.backend.* kernelspec labels the runtime reads, and a non-root user `work` (uid 1000, home
# /home/work). The kernel runner is not baked in: the agent bind-mounts its own host-built binary, which works
# because the suite is the host's own (same glibc).
#
# The Debian suite and mirror are read at run time from the host's apt sources (/etc/apt/sources.list or the deb822
# files in /etc/apt/sources.list.d/); override with DEBIAN_SUITE / DEBIAN_MIRROR. An image whose
# ai.backend.rs.recipe label matches this script's recipe hash is kept as is, so reruns are no-ops; FORCE=1 rebuilds.
#
# Usage: sudo scripts/build-kernel-images.sh        (needs root for debootstrap, and a running Docker daemon)
set -euo pipefail

log() { printf '[build-kernel-images] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

# --- the host's Debian suite and mirror --------------------------------------------------------------------------

# Prints "MIRROR SUITE" of the first plain Debian archive entry (not security, not updates) in the apt sources.
host_apt_source() {
    local f
    if [ -f /etc/apt/sources.list ]; then
        # One-line format: deb [options] URI SUITE COMPONENTS...
        awk '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                uri = $i; suite = $(i + 1)
                if (suite !~ /-(security|updates|backports)$/ && uri !~ /security/) { print uri, suite; exit }
             }' /etc/apt/sources.list
    fi
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822: stanzas separated by blank lines with Types:, URIs:, Suites: fields.
        awk 'function flush() {
                 if (types ~ /(^| )deb( |$)/ && uris != "" && uris !~ /security/) {
                     n = split(suites, s, " ")
                     for (j = 1; j <= n; j++) if (s[j] !~ /-(security|updates|backports)$/) { split(uris, u, " "); print u[1], s[j]; exit }
                 }
                 types = ""; uris = ""; suites = ""
             }
             /^[ \t]*$/ { flush(); next }
             /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
             /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
             /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
             END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                           if ($(i + 1) !~ /-(security|updates|backports)$/ && $i !~ /security/) { print $i, $(i + 1); exit } }' "$f"
    done
}

read -r found_mirror found_suite < <(host_apt_source | head -n 1) || true
MIRROR=${DEBIAN_MIRROR:-${found_mirror:-}}
SUITE=${DEBIAN_SUITE:-${found_suite:-}}
[ -n "$MIRROR" ] && [ -n "$SUITE" ] || die "no Debian archive found in the host's apt sources; set DEBIAN_MIRROR and DEBIAN_SUITE"
log "suite $SUITE from the host's apt sources"

# --- the recipe ----------------------------------------------------------------------------------------------------

# Everything that shapes an image except the mirror (a different mirror serves the same packages). Bump RECIPE_REV
# when the build steps below change.
RECIPE_REV=2
recipe() { # name packages runtime-type runtime-path
    printf 'rev=%s\nsuite=%s\nvariant=minbase\narch=%s\nname=%s\npackages=%s\ntype=%s\npath=%s\nuser=work:1000:/home/work\n' \
        "$RECIPE_REV" "$SUITE" "$(dpkg --print-architecture)" "$1" "$2" "$3" "$4"
}

WORK=$(mktemp -d /tmp/build-kernel-images.XXXXXX)
CACHE=${KERNEL_IMAGE_CACHE:-/var/cache/backend-ai/debootstrap}
mkdir -p "$CACHE"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# build IMAGE USER_NAME ALIASES PACKAGES RUNTIME_TYPE RUNTIME_PATH
build() {
    local image=$1 name=$2 aliases=$3 packages=$4 rtype=$5 rpath=$6
    local hash started rootfs
    hash=$(recipe "$name" "$packages" "$rtype" "$rpath" | sha256sum | cut -c1-16)
    if [ -z "${FORCE:-}" ] &&
        [ "$(docker image inspect -f '{{index .Config.Labels "ai.backend.rs.recipe"}}' "$image" 2>/dev/null || true)" = "$hash" ]; then
        log "$image is up to date (recipe $hash): nothing to do"
        return
    fi
    started=$(date +%s)
    rootfs="$WORK/$name"
    local include=()
    [ -n "$packages" ] && include=(--include="$packages")
    log "$image: debootstrap --variant=minbase $SUITE ${packages:+(+ $packages)}"
    debootstrap --variant=minbase "${include[@]}" --cache-dir="$CACHE" "$SUITE" "$rootfs" "$MIRROR" \
        >"$WORK/$name.debootstrap.log" 2>&1 || {
        tail -n 30 "$WORK/$name.debootstrap.log" >&2
        die "debootstrap failed for $image"
    }
    # The non-root user kernels run as.
    chroot "$rootfs" /usr/sbin/groupadd -g 1000 work
    chroot "$rootfs" /usr/sbin/useradd -u 1000 -g 1000 -m -d /home/work -s /bin/bash work
    # Smaller images: no package caches, lists, docs or man pages (apt still works after `apt-get update`).
    rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
    local min_mem=$((64 << 20))
    log "$image: importing"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change "LABEL ai.backend.kernelspec=1" \
        --change "LABEL ai.backend.runtime-type=$rtype" \
        --change "LABEL ai.backend.runtime-path=$rpath" \
        --change "LABEL ai.backend.resource.min.cpu=1" \
        --change "LABEL ai.backend.resource.min.mem=$min_mem" \
        --change "LABEL ai.backend.service-ports=" \
        --change "LABEL ai.backend.rs.name=$name" \
        --change "LABEL ai.backend.rs.aliases=$aliases" \
        --change "LABEL ai.backend.rs.recipe=$hash" \
        --change "ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "USER work" \
        --change "WORKDIR /home/work" \
        --change 'CMD ["/bin/sh"]' \
        - "$image" >/dev/null
    rm -rf "$rootfs"
    log "$image: built in $(($(date +%s) - started)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'), recipe $hash)"
}

total_start=$(date +%s)
build backendai/shell:latest shell:latest "shell,bash,backendai/shell:latest" "" shell /bin/sh
build backendai/python:3.11 python:3.11 "python,python3,backendai/python:3.11" python3 python /usr/bin/python3
# Remove images replaced by a rebuild that nothing uses any more.
docker image prune -f --filter "label=ai.backend.kernelspec" >/dev/null || true
log "done in $(($(date +%s) - total_start)) s:"
docker images --filter "label=ai.backend.kernelspec" --format '  {{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' >&2
