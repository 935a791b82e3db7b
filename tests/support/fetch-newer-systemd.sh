#!/usr/bin/env bash
# Unpacks a systemd >= 253 (for Type=notify-reload) from Debian's backports into a directory,
# for tests/real_systemd.rs to lay over the host's as a lower layer of its container's root.
# The host's systemd is untouched: nothing is installed, apt's own configuration and state
# are not used (a sources list, package lists and a cache of its own, in a temp dir).
#
#   tests/support/fetch-newer-systemd.sh [DIR]     # DIR: /var/cache/tableflip/newer-systemd
#
# Needs root only to write DIR; network access to deb.debian.org. Debian 12 (bookworm) gets
# systemd 254 from bookworm-backports.
set -euo pipefail

dest=${1:-/var/cache/tableflip/newer-systemd}
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
suite=$codename-backports

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$tmp/root"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
    >"$tmp/sources.list"
apt=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
     -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

apt-get "${apt[@]}" update -qq
# systemd, and the libraries of its own version it needs (the rest comes from the host).
(cd "$tmp/debs" && apt-get "${apt[@]}" download -qq \
    "systemd/$suite" "libsystemd-shared/$suite" "libsystemd0/$suite")
for deb in "$tmp"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tmp/root"
done

# The host has merged /usr (/bin, /lib, /sbin are links into /usr): a real directory of that
# name in an overlay layer would hide the link, so move their content under usr/.
for d in bin sbin lib lib64; do
    if [ -d "$tmp/root/$d" ] && [ ! -L "$tmp/root/$d" ]; then
        mkdir -p "$tmp/root/usr/$d"
        cp -a "$tmp/root/$d/." "$tmp/root/usr/$d/"
        rm -rf "${tmp:?}/root/$d"
    fi
done

version=$(dpkg-deb -f "$tmp"/debs/systemd_*.deb Version | cut -d. -f1)
if [ "${version:-0}" -lt 253 ]; then
    echo "fetch-newer-systemd: $suite has systemd $version, not >= 253" >&2
    exit 1
fi

mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"
mv "$tmp/root" "$dest.new"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "fetch-newer-systemd: systemd $version from $suite unpacked at $dest"
