#!/usr/bin/env bash
# Build an OCI image layout from Debian's busybox-static, offline:
#   scripts/busybox-image.sh DIR [TAG]   -> DIR is an OCI layout with DIR:TAG
# The image has every busybox applet in /bin, an /etc/passwd and /etc/group,
# a /www page for httpd, and runs `sh` by default.
set -euo pipefail
dir=${1:?usage: busybox-image.sh DIR [TAG]}
tag=${2:-latest}
busybox=/bin/busybox
work=$(mktemp -d /tmp/skiff-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
rm -rf "$dir"
umoci init --layout "$dir"
umoci new --image "$dir:$tag"
umoci unpack --image "$dir:$tag" "$work/unpacked" >/dev/null
rootfs="$work/unpacked/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/www" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nwww:x:33:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
echo '<h1>hello from a skiff pod</h1>' > "$rootfs/www/index.html"
echo ok > "$rootfs/www/healthz"
umoci repack --image "$dir:$tag" "$work/unpacked" >/dev/null
umoci config --image "$dir:$tag" --config.cmd sh --config.env PATH=/bin --config.workingdir / >/dev/null
umoci gc --layout "$dir"
