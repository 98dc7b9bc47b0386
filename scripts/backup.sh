#!/usr/bin/env bash
# Write a backup of the deployment to backups/outpost-<UTC time>.tar.gz.
#
# The archive contains .env, config/ and a Redis snapshot (dump.rdb). All
# three contain secrets (provider credentials, the agent key, store-held
# tokens), so the archive and its directory are readable by the owner only.
set -euo pipefail

cd "$(dirname "$0")/.."
umask 077

backup_dir=${BACKUP_DIR:-backups}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
archive="$backup_dir/outpost-$stamp.tar.gz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$backup_dir"
chmod 700 "$backup_dir"

# SAVE writes a consistent snapshot before it is copied out of the container.
docker compose exec -T redis redis-cli SAVE >/dev/null
docker compose exec -T redis cat /data/dump.rdb > "$work/dump.rdb"
[ -s "$work/dump.rdb" ] || { echo "error: the Redis snapshot is empty" >&2; exit 1; }

cp .env "$work/env"
cp -R config "$work/config"
tar -C "$work" -czf "$archive" env config dump.rdb
chmod 600 "$archive"
echo "$archive"
