#!/usr/bin/env bash
# Build skiff and run one container from a bundle made of Debian's
# busybox-static: no image, no registry. Needs root.
#   SKIFF_EXPLAIN=1 scripts/runtime-demo.sh   narrates every step the runtime takes.
set -euo pipefail
cd "$(dirname "$0")/.."
skiff_prog=runtime-demo.sh
. scripts/lib/setup.sh
skiff_setup demo || exit 1
busybox=/bin/busybox   # from busybox-static: it must run without the host's libraries
cargo build -q -p skiff-runtime --bin skiff
skiff="$PWD/target/x86_64-unknown-linux-gnu/debug/skiff"

bundle=$(mktemp -d /tmp/skiff-demo.XXXXXX)
root=$(mktemp -d /tmp/skiff-demo-root.XXXXXX)
trap '"$skiff" --root "$root" delete --force skiff-demo-$$ >/dev/null 2>&1 || true; rm -rf "$bundle" "$root"' EXIT

mkdir -p "$bundle/rootfs/bin"
cp "$busybox" "$bundle/rootfs/bin/busybox"
for applet in $("$busybox" --list); do [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"; done
(cd "$bundle" && "$skiff" spec)
# The default config runs an interactive `sh` on a terminal; run a short script instead.
cat > "$bundle/rootfs/demo.sh" <<'SCRIPT'
echo "hello from $(hostname): I am pid $$, uid $(id -u), in a root with $(ls / | wc -l) entries"
echo "my mounts: $(wc -l < /proc/self/mountinfo), my capabilities: $(grep CapEff /proc/self/status | cut -f2)"
echo "no new privileges: $(grep NoNewPrivs /proc/self/status | cut -f2)"
SCRIPT
sed -i -e 's/"terminal": true/"terminal": false/' \
       -e 's|^\t\t\t"sh"$|\t\t\t"sh", "/demo.sh"|' "$bundle/config.json"

explain=()
[ "${SKIFF_EXPLAIN:-0}" = 1 ] && explain=(--explain)
"$skiff" --root "$root" "${explain[@]}" run --bundle "$bundle" "skiff-demo-$$"
