#!/usr/bin/env bash
# Restore a backup written by scripts/backup.sh: scripts/restore.sh FILE.
#
# Replaces .env, config/ and the Redis data, then starts the containers.
# The current .env and config/ are kept as .env.before-restore and
# config.before-restore (owner-only).
set -euo pipefail

cd "$(dirname "$0")/.."
umask 077

archive=${1:-}
[ -n "$archive" ] || { echo "usage: scripts/restore.sh backups/outpost-....tar.gz" >&2; exit 2; }
[ -f "$archive" ] || { echo "error: backup $archive not found" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$archive"
for part in env config dump.rdb; do
    [ -e "$work/$part" ] || { echo "error: $archive has no $part; is it an Outpost backup?" >&2; exit 1; }
done

docker compose stop outpost redis

[ -e .env ] && cp .env .env.before-restore
rm -rf config.before-restore
[ -d config ] && mv config config.before-restore
cp "$work/env" .env
chmod 600 .env
cp -R "$work/config" config
chmod -R go+rX config

# With append-only persistence on, Redis 7 ignores dump.rdb at start when no
# append-only files exist and starts empty. So a one-off Redis loads the
# snapshot with append-only off, turns it on (which rewrites the append-only
# files from memory), waits for the rewrite and shuts down cleanly.
docker compose run --rm -T --no-deps --entrypoint sh -v "$work:/restore:ro" redis -c '
    set -e
    rm -rf /data/appendonlydir
    cp /restore/dump.rdb /data/dump.rdb
    redis-server --dir /data --appendonly no --requirepass "$REDISCLI_AUTH" --daemonize yes
    until redis-cli ping >/dev/null 2>&1; do sleep 0.2; done
    redis-cli CONFIG SET appendonly yes >/dev/null
    until redis-cli INFO persistence | grep -q "aof_rewrite_in_progress:0" \
        && redis-cli INFO persistence | grep -q "aof_rewrite_scheduled:0" \
        && [ -d /data/appendonlydir ]; do sleep 0.2; done
    redis-cli SHUTDOWN SAVE >/dev/null 2>&1 || true
'
docker compose up -d
echo "restored $archive" >&2
