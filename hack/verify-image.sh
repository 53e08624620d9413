#!/usr/bin/env bash
# Fails when the image would not hold what the manifests start, before an
# image build or a pod finds out. Called by `make verify`:
#   hack/verify-image.sh [platforms]      (default linux/amd64,linux/arm64)
#
# (a) The Dockerfile's builder stage must COPY every directory of this module
#     that the binaries of cmd/ import (go list -deps ./cmd/..., for each
#     platform the image is built for), plus go.mod, go.sum and hack/build.sh.
#     A package moved to a new top-level directory fails here, not in
#     `make images`.
# (b) Every binary a manifest starts must be one that hack/build.sh builds
#     (hack/build.sh --list: one per cmd/<name> directory, at /<name> in the
#     image). The commands are collected from
#       - the hub chart's and the embedded agent chart's templates: the first
#         item of every `command:` (block or flow list);
#       - the Go code that builds containers (non-test files under internal/
#         and pkg/): WithCommand("/x", ...) and Command: []string{"/x", ...}.
#     Every container there runs our image; a command that is not a literal
#     absolute path cannot be checked and fails too.
set -o errexit -o nounset -o pipefail

platforms=${1:-linux/amd64,linux/arm64}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
failed=0
fail() { echo "verify-image: $*" >&2; failed=1; }

dockerfile=Dockerfile
charts=(charts/cluster-proxy/templates internal/agentaddon/manifests/charts/cluster-proxy-agent/templates)
gocode=(internal pkg)

# --- (a) Dockerfile COPY coverage -------------------------------------------

# The sources of the builder stage's COPY instructions (those without
# --from): every argument but the last, flags dropped, JSON form accepted.
mapfile -t sources < <(awk '
  toupper($1) == "COPY" {
    line = $0
    sub(/^[[:space:]]*[Cc][Oo][Pp][Yy][[:space:]]+/, "", line)
    if (line ~ /--from[=[:space:]]/) next
    gsub(/[\[\],"]/, " ", line)
    n = split(line, f, /[[:space:]]+/)
    k = 0
    for (i = 1; i <= n; i++) if (f[i] != "" && f[i] !~ /^--/) a[++k] = f[i]
    for (i = 1; i < k; i++) print a[i]
    delete a
  }' "$dockerfile")

# covered <path relative to the module root>: is it inside a COPY source?
covered() {
  local path=$1 src
  for src in "${sources[@]}"; do
    src=${src#./}
    src=${src%/}
    if [ -z "$src" ] || [ "$src" = . ] || [ "$path" = "$src" ] || [[ $path == "$src"/* ]]; then
      return 0
    fi
  done
  return 1
}

for file in go.mod go.sum hack/build.sh; do
  covered "$file" || fail "$dockerfile does not COPY $file, which the image build needs"
done

dirs=()
IFS=, read -ra plats <<<"$platforms"
for plat in "${plats[@]}"; do
  if ! out=$(CGO_ENABLED=0 GOOS=${plat%%/*} GOARCH=${plat#*/} go list -deps \
    -f '{{if and .Module .Module.Main}}{{.Dir}}{{end}}' ./cmd/...); then
    fail "go list -deps ./cmd/... failed for $plat"
    continue
  fi
  while IFS= read -r dir; do
    [ -n "$dir" ] && dirs+=("${dir#"$root"/}")
  done <<<"$out"
done
[ "${#dirs[@]}" -gt 0 ] || fail "go list -deps ./cmd/... found no package of this module"

declare -A reported=()
for dir in $(printf '%s\n' "${dirs[@]}" | sort -u); do
  covered "$dir" && continue
  top=${dir%%/*}
  [ -n "${reported[$top]:-}" ] && continue
  reported[$top]=1
  fail "$dockerfile does not COPY $top/, but the binaries import $dir (add 'COPY $top/ $top/' to the builder stage)"
done

# --- (b) every binary the manifests start is built --------------------------

mapfile -t built < <(hack/build.sh --list)
declare -A isbuilt=()
for b in "${built[@]}"; do isbuilt[$b]=1; done

# Lines "<file>:<line>:<command>" for the first item of every `command:` in
# the chart templates.
template_commands() {
  find "${charts[@]}" -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.tpl' \) -print0 | sort -z |
    xargs -0 awk '
      FNR == 1 { want = 0 }
      # A flow list on the same line: command: ["/x", "y"].
      /^[[:space:]]*-?[[:space:]]*command:[[:space:]]*\[/ {
        v = $0
        sub(/^[^\[]*\[[[:space:]]*/, "", v)
        sub(/[[:space:]]*[,\]].*$/, "", v)
        gsub(/["\047]/, "", v)
        print FILENAME ":" FNR ":" v
        want = 0
        next
      }
      /^[[:space:]]*-?[[:space:]]*command:[[:space:]]*(#.*)?$/ { want = 1; next }
      want {
        # Blank lines and template control lines between the key and its
        # first item are skipped.
        if ($0 ~ /^[[:space:]]*$/ || $0 ~ /^[[:space:]]*\{\{-?[[:space:]]*(if|else|end|with|range)[[:space:]}-]/) next
        want = 0
        if ($0 !~ /^[[:space:]]*-[[:space:]]/) { print FILENAME ":" FNR ":<no list item after command:>"; next }
        v = $0
        sub(/^[[:space:]]*-[[:space:]]*/, "", v)
        sub(/[[:space:]]+#.*$/, "", v)
        sub(/[[:space:]]+$/, "", v)
        gsub(/^["\047]|["\047]$/, "", v)
        print FILENAME ":" FNR ":" v
      }'
}

# The same for Go code that builds containers.
go_commands() {
  find "${gocode[@]}" -name '*.go' ! -name '*_test.go' ! -name 'zz_generated*' ! -path 'pkg/generated/*' -print0 | sort -z |
    xargs -0 -r grep -n -E 'WithCommand\(|\bCommand:[[:space:]]*\[\]string\{' |
    sed -E \
      -e 's/^([^:]+:[0-9]+):.*(WithCommand\(|Command:[[:space:]]*\[\]string\{)[[:space:]]*"([^"]*)".*$/\1:\3/' \
      -e 't' \
      -e 's/^([^:]+:[0-9]+):.*$/\1:<not a string literal>/'
}

commands=$( { template_commands; go_commands; } )
[ -n "$commands" ] || fail "found no container command in ${charts[*]} or the Go code: is the scan broken?"
while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  cmd=${entry#*:*:} where=${entry%:"$cmd"}
  case $cmd in
  /*)
    name=${cmd#/}
    if [ -z "${isbuilt[$name]:-}" ]; then
      fail "$where starts $cmd, but no cmd/$name exists, so hack/build.sh (binaries: ${built[*]}) does not build it and the image has no $cmd"
    fi
    ;;
  *)
    fail "$where: container command '$cmd' is not a literal absolute path to one of our binaries (${built[*]}), so it cannot be checked"
    ;;
  esac
done <<<"$commands"

[ "$failed" = 0 ] || exit 1
echo "verify-image: the Dockerfile copies every directory the binaries import, and every command the manifests start is built (${built[*]})"
