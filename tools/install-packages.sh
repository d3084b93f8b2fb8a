#!/bin/bash
# Installs the Debian packages named on the command line that are not
# installed yet, so that `make test` and `make demo` work on a fresh
# machine and cost nothing on a prepared one.
set -euo pipefail

missing=()
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian starts the services its packages ship (nginx, redis, sshd, bird)
# as it installs them; the tests run copies of their own in network
# namespaces, and nothing may be left listening on the host. Service
# starts go through invoke-rc.d (systemd's too, deb-systemd-invoke), which
# asks policy-rc.d: one that refuses every start (101) holds for the
# install, and whatever was there before comes back afterwards.
policy=/usr/sbin/policy-rc.d
if [ -e "$policy" ]; then
	mv "$policy" "$policy.xdpstack-saved"
	trap 'mv -f "$policy.xdpstack-saved" "$policy"' EXIT
else
	trap 'rm -f "$policy"' EXIT
fi
printf '#!/bin/sh\n# tools/install-packages.sh: no service starts while it installs\nexit 101\n' >"$policy"
chmod 0755 "$policy"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
