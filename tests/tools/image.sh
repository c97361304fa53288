#!/usr/bin/env bash
# Builds the project's image with podman on a machine that can reach no image registry
# (tests/image.rs runs it; people can too). Nothing is pulled: the base images are made here
# with debootstrap and `podman import`, then the root Containerfile is built on them through
# images/build.py, with the host's Rust toolchain and cargo registry mounted into the builder
# stage and the host's CA bundle handed to pip.
#
#   tests/tools/image.sh bases                   make the local base images, print their names
#   tests/tools/image.sh build VARIANT IMAGE     build images/VARIANT.toml as IMAGE on them
#
# Caches, so that a second run takes seconds:
#   ~/.cache/pulp-entrypoint/rootfs-NAME-KEY.tar   debootstrap's result, KEY = hash of suite,
#                                                  mirror and package list
#   localhost/pulp-entrypoint-base/NAME:KEY        the imported base image (podman's store)
#   podman's layer cache                           apt and pip steps of the Containerfile
#   the cache mount of the builder stage           cargo's target directory
# podman runs with tests/tools/containers.conf (CONTAINERS_CONF); /etc is not touched.
set -euo pipefail

tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$tools/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$tools/containers.conf}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pulp-entrypoint"

suite=bookworm
mirror=http://deb.debian.org/debian
# What the public defaults of the Containerfile give: debian:bookworm-slim for the Pulp image
# (its packages come from the Containerfile's PACKAGES), rust:1-bookworm for the builder
# (here: a C toolchain and the host's rustup).
runtime_packages=""
builder_packages="gcc,libc6-dev"

log() { printf 'image.sh: %s\n' "$*" >&2; }

need() {
    local missing=()
    for tool in podman debootstrap python3; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "missing ${missing[*]}: run tests/run.sh (it installs them through tests/tools/deps.sh)"
        exit 1
    fi
}

# base NAME PACKAGES ENV...: makes localhost/pulp-entrypoint-base/NAME:KEY unless it is there,
# prints the image name.
base() {
    local name=$1 packages=$2
    shift 2
    local key image tarball rootfs
    key=$(printf '%s\n' "$suite" "$mirror" "$packages" "$@" | sha256sum | cut -c1-12)
    image="localhost/pulp-entrypoint-base/$name:$key"
    if podman image exists "$image"; then
        echo "$image"
        return
    fi
    tarball="$cache/rootfs-$name-$key.tar"
    if [ ! -f "$tarball" ]; then
        log "debootstrap $suite ($name${packages:+: $packages}) into $tarball (about a minute)"
        mkdir -p "$cache"
        rootfs=$(mktemp -d "$cache/rootfs-$name.XXXXXX")
        # A failed debootstrap leaves a half-made tree behind: never cache that.
        if ! debootstrap --variant=minbase ${packages:+--include="$packages"} \
            "$suite" "$rootfs" "$mirror" > "$rootfs.log" 2>&1; then
            tail -n 20 "$rootfs.log" >&2
            rm -rf "$rootfs" "$rootfs.log"
            log "debootstrap failed"
            exit 1
        fi
        # As debian:*-slim: no package lists or caches in the image.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" --numeric-owner -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$rootfs" "$rootfs.log"
    fi
    local changes=()
    for env in "$@"; do changes+=(--change "ENV $env"); done
    log "importing $tarball as $image"
    podman import "${changes[@]}" --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
    echo "$image"
}

runtime_base() { base runtime "$runtime_packages"; }

# Like rust:1-bookworm: rustup and cargo under /usr/local, on PATH. The toolchain itself is
# the host's, mounted at build time (builder_mounts).
builder_base() {
    base builder "$builder_packages" \
        RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
        PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
}

# Mounts and build arguments that stand in for the network the public defaults assume.
local_build_args() {
    local rustup=${RUSTUP_HOME:-$HOME/.rustup} cargo_home=${CARGO_HOME:-$HOME/.cargo}
    local ca=/etc/ssl/certs/ca-certificates.crt
    printf '%s\n' \
        -v "$rustup:/usr/local/rustup:ro" \
        -v "$cargo_home:/usr/local/cargo" \
        -v "$ca:/run/host-ca-certificates.crt:ro" \
        --build-arg "PIP_OPTIONS=--cert=/run/host-ca-certificates.crt"
}

# Both base images at once (debootstrap mostly waits on the network); their names on stdout.
bases() {
    local names
    names=$(mktemp -d)
    runtime_base > "$names/runtime" & local runtime=$!
    builder_base > "$names/builder" & local builder=$!
    local failed=0
    wait "$runtime" || failed=1
    wait "$builder" || failed=1
    cat "$names/runtime" "$names/builder"
    rm -rf "$names"
    return "$failed"
}

need
case "${1:-}" in
bases)
    bases
    ;;
build)
    [ $# -eq 3 ] || { log "usage: $0 build VARIANT IMAGE"; exit 64; }
    variant=$2 image=$3
    { read -r base_image; read -r builder_image; } < <(bases)
    [ -n "${builder_image:-}" ] || { log "could not make the base images"; exit 1; }
    mapfile -t extra < <(local_build_args)
    log "building $image from images/$variant.toml"
    # --jobs 2: the builder stage (cargo, CPU) and the Pulp stage (apt, pip: network) overlap.
    python3 "$root/images/build.py" "$root/images/$variant.toml" --engine podman --run \
        --image "$image" --base "$base_image" --builder "$builder_image" -- --jobs 2 "${extra[@]}"
    ;;
*)
    log "usage: $0 bases | build VARIANT IMAGE"
    exit 64
    ;;
esac
