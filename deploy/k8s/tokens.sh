#!/usr/bin/env bash
# Writes two new random API tokens (256 bits each, as hex: write `token`, read `read-token`)
# into an overlay's api-tokens.env, from which kustomize generates the Secret
# vecino-api-token that every peer, the traffic Job and Prometheus read:
#
#   deploy/k8s/tokens.sh deploy/k8s/overlays/testnet/api-tokens.env
#   kubectl apply -k deploy/k8s/overlays/testnet      # a new Secret (hash suffix): the pods roll
#
# The file then holds secrets: do not commit it (git update-index --skip-worktree FILE, or
# keep your overlay outside the repository). Print the tokens: grep token FILE.
set -euo pipefail
file=${1:?usage: tokens.sh OVERLAY/api-tokens.env}
rand() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
umask 077
tmp=$(mktemp "$(dirname "$file")/.api-tokens.XXXXXX")
printf '# The API tokens of the peers (Secret vecino-api-token), written by deploy/k8s/tokens.sh.\n# Secrets: do not commit.\ntoken=%s\nread-token=%s\n' "$(rand)" "$(rand)" >"$tmp"
mv "$tmp" "$file"
echo "wrote new tokens to $file"
