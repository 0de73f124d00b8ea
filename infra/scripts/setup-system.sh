#!/usr/bin/env bash
# The system packages a bare Debian machine lacks for coinpulse: one script for `make setup` (and so `make demo`,
# `make test`) and CI. Installs what is missing when it can (root, or sudo without a password); otherwise it names
# what is missing and the one command that installs it, and fails.
set -euo pipefail

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
[ -x "${COINPULSE_PG_BIN:-/usr/lib/postgresql/15/bin}/postgres" ] || need_apt+=(postgresql-15)
command -v chromium >/dev/null || need_apt+=(chromium)
fc-list 2>/dev/null | grep -qi nanum || need_apt+=(fonts-nanum)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo_=""
  elif sudo -n true 2>/dev/null; then sudo_="sudo"
  else
    echo "setup: missing system packages: ${need_apt[*]}" >&2
    echo "setup: install them with: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need_apt[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get update -q
  $sudo_ apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

# Apicurio Registry 3.3 needs a JDK 21+; Debian 12 packages none, so it must already be under /usr/lib/jvm
if [ -z "${COINPULSE_JAVA21_HOME:-}" ]; then
  ok=""
  for j in /usr/lib/jvm/*/bin/java; do
    v=$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/ *java.specification.version = //p')
    [ "${v:-0}" -ge 21 ] 2>/dev/null && ok="$j" && break
  done
  if [ -z "$ok" ]; then
    echo "setup: no JDK 21+ under /usr/lib/jvm (Apicurio Registry needs one); install one (e.g. Temurin 21) and/or" \
         "set COINPULSE_JAVA21_HOME to its home" >&2
    exit 1
  fi
fi

command -v uv >/dev/null || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
