# shellcheck shell=bash
# The fresh Debian chroot that scripts/fresh-check and scripts/check-deb
# start from: a debootstrap minbase of the host's own release, cached as a
# tarball, unpacked anew for each run with the host's apt sources.
# Callers define say and die, and set CACHE and REBUILD (0 or 1).

# (os-release is read in a subshell: its VERSION would clobber a caller's.)
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$SUITE" ] || die "no VERSION_CODENAME in /etc/os-release"
host_sources()
{
    ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true
}
mirror()
{
    local f
    for f in $(host_sources); do
        case $f in
        *.sources)
            awk -v s="$SUITE" '
                /^[ \t]*$/ { if (ok && uri) { print uri; exit } uri = ""; ok = 0 }
                tolower($1) == "uris:" { uri = $2 }
                tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
                END { if (ok && uri) print uri }' "$f" ;;
        *)
            awk -v s="$SUITE" '$1 == "deb" {
                    i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++
                    if ($2 ~ /^\[/) i++
                    if ($(i + 1) == s) { print $i; exit } }' "$f" ;;
        esac
    done | head -n 1
}

# pristine_chroot: make the cached tarball if there is none (or REBUILD=1);
# sets PRISTINE to its path.
pristine_chroot()
{
PRISTINE=$CACHE/$SUITE-minbase.tar
mkdir -p "$CACHE"
if [ "$REBUILD" = 1 ] || [ ! -s "$PRISTINE" ]; then
    MIRROR=$(mirror)
    [ -n "$MIRROR" ] || die "no archive for $SUITE in the host's apt sources"
    say "building the pristine $SUITE minbase chroot (once; cached in $PRISTINE)"
    build=$(mktemp -d "$CACHE/build.XXXXXX")
    trap 'rm -rf "$build"' EXIT
    debootstrap --variant=minbase --include=git,make,ca-certificates \
        "$SUITE" "$build/root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $CACHE/debootstrap.log"
    tar -C "$build/root" -cf "$PRISTINE.tmp" .
    mv "$PRISTINE.tmp" "$PRISTINE"
    rm -rf "$build"
    trap - EXIT
fi
}

# chroot_unpack ROOT: a copy of the pristine chroot in ROOT, which reaches
# the archive the way the host does (and only that way).
chroot_unpack()
{
    local root=$1 f
    mkdir -p "$root"
    tar -C "$root" -xf "$PRISTINE"
    rm -f "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/*
    for f in $(host_sources); do cp "$f" "$root$f"; done
    cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    # ...and the npm registry the same way: the host's own CAs (a proxy in
    # the path signs with one; npm then refuses the registry without it)
    # and npm's settings.
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
        cp -a /usr/local/share/ca-certificates/. \
            "$root/usr/local/share/ca-certificates/"
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" \
            2>/dev/null || true
    fi
    [ -f "$HOME/.npmrc" ] && cp "$HOME/.npmrc" "$root/root/.npmrc"
    # debootstrap writes no /etc/hosts; every installed Debian has one, and
    # without it "localhost" does not resolve.
    [ -e "$root/etc/hosts" ] || printf '%s\n' "127.0.0.1	localhost" \
        "::1		localhost ip6-localhost ip6-loopback" >"$root/etc/hosts"
    return 0
}
