#!/usr/bin/env bash
# A short end-to-end tour of entrasync on a throw-away SQLite store (what `make demo` runs
# until the built-in `entrasync demo` with a simulated Entra tenant is available).
#
# It loads examples/reports.jsonl — agent reports for a person on three domain-joined
# computers, a person on two standalone computers, a person before and after a UPN change and
# a few others — then shows licenses, users, a merge of the renamed person and the audit log.
# The store and config stay behind so you can explore them with the other commands.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
reports="$here/reports.jsonl"

if ! command -v entrasync >/dev/null 2>&1; then
    echo "entrasync is not on PATH: run 'make demo', or activate .venv first" >&2
    exit 1
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/entrasync-demo.XXXXXX")"
config="$workdir/entrasync.toml"
store="$workdir/store.db"

cat >"$config" <<EOF
# Demo configuration: a local SQLite store, 10 purchased licenses, no Entra tenant.
[store]
url = "sqlite:///$store"

[account]
purchased_licenses = 10
plan = "paid"

[merge]
agent_merge = "all"
EOF

export ENTRASYNC_CONFIG="$config"

step() {
    printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"
    "${@:2}"
}
if [[ -n "${NO_COLOR:-}" || ! -t 1 ]]; then
    step() {
        printf '\n== %s\n$ %s\n' "$1" "${*:2}"
        "${@:2}"
    }
fi

step "Create the store schema" entrasync db upgrade
step "Load agent reports (10 reports, 7 people)" entrasync ingest "$reports"
step "Licenses: every agent holding history uses one" entrasync status
step "All users" entrasync users list
step "Three domain-joined computers, one login: one agent, one license" \
    entrasync users show jdoe@contoso.com
step "Two standalone computers (each its own domain): two agents, two licenses" \
    entrasync users show slee@contoso.com
step "A UPN change made a second record for the same person" \
    entrasync users show bchen@oldco.com
step "Merge the old record into the new one (agents merged too: one license)" \
    entrasync users merge bchen@oldco.com bchen@newco.com --yes --actor demo-admin
step "One license fewer" entrasync status
step "Every change is in the audit log" entrasync audit list
step "The hash chain is intact" entrasync audit verify

cat <<EOF

Done. Explore the demo store with the same commands:

  export ENTRASYNC_CONFIG=$config
  entrasync users show jdoe@contoso.com --json
  entrasync users purge slee@contoso.com --dry-run
  entrasync audit export --format jsonl

  config: $config
  store:  $store
EOF
