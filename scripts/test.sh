#!/usr/bin/env bash
# The test suite, on a fresh machine too: starts PostgreSQL, Redis and etcd on loopback (scripts/services.sh,
# installing them from Debian's packages when missing), builds the kernel images the Docker tests use
# (scripts/build-kernel-images.sh, cached), then runs `cargo test --workspace` with any extra arguments.
# Tests that need a service fail, never skip, when it cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/services.sh start)"
bash scripts/build-kernel-images.sh
cargo test --workspace "$@"
