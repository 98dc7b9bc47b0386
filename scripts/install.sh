#!/usr/bin/env bash
# Interactive installer for the Docker deployment.
#
# Asks for the deployment mode (sidecar or public) and, for public, the
# domain and the certificate e-mail. Writes .env (owner-only, because it
# contains the Redis password and the agent key) and config/ (providers and
# hosts.yaml), then builds and starts the containers. Run it from the repository root:
# `make install`. Answers are read from standard input, one per line.
set -euo pipefail

cd "$(dirname "$0")/.."

ENV_FILE=.env
CONFIG_DIR=config

ask() {
    # ask VARIABLE "question" [default]
    local answer
    local prompt="$2"
    if [ -n "${3:-}" ]; then
        prompt="$prompt [$3]"
    fi
    printf '%s: ' "$prompt" >&2
    IFS= read -r answer || answer=""
    printf -v "$1" '%s' "${answer:-${3:-}}"
}

random_hex() {
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

fail() {
    echo "error: $*" >&2
    exit 1
}

if [ -e "$ENV_FILE" ]; then
    ask overwrite "$ENV_FILE exists; replace it and config/hosts.yaml? (yes/no)" no
    [ "$overwrite" = yes ] || fail "kept the existing $ENV_FILE; nothing changed"
fi

ask mode "Deployment mode: sidecar (agents on this Docker host) or public (TLS on a domain)" sidecar
case "$mode" in
    sidecar | public) ;;
    *) fail "mode '$mode' is not valid; answer sidecar or public" ;;
esac

domain=""
email=""
if [ "$mode" = public ]; then
    ask domain "Domain name that points at this host (e.g. outpost.example.com)"
    [[ "$domain" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ && "$domain" == *.* ]] \
        || fail "domain '$domain' is not a valid host name"
    ask email "E-mail address for the TLS certificate (Let's Encrypt)"
    [[ "$email" == ?*@?*.?* ]] || fail "e-mail '$email' is not valid"
    ask agent_cidrs "Networks agents call from, comma-separated" "0.0.0.0/0,::/0"
else
    ask agent_cidrs "Agent network subnet" "172.28.0.0/24"
fi

umask 077
agent_key=$(random_hex)
redis_password=$(random_hex)

compose_file=compose.yaml
if [ "$mode" = public ]; then
    compose_file=compose.yaml:compose.public.yaml
fi

{
    echo "# Written by scripts/install.sh. Owner-only: it holds secrets."
    echo "COMPOSE_PROJECT_NAME=outpost"
    echo "COMPOSE_FILE=$compose_file"
    echo "OUTPOST_MODE=$mode"
    echo "REDIS_PASSWORD=$redis_password"
    echo "OUTPOST_AGENT_KEY=$agent_key"
    if [ "$mode" = public ]; then
        echo "OUTPOST_DOMAIN=$domain"
        echo "ACME_EMAIL=$email"
    else
        echo "AGENT_SUBNET=$agent_cidrs"
    fi
    echo "# Provider credentials, e.g.:"
    echo "# OPENAI_API_KEY="
    echo "# GITHUB_TOKEN="
} > "$ENV_FILE"
chmod 600 "$ENV_FILE"

mkdir -p "$CONFIG_DIR/providers"
if [ -z "$(ls -A "$CONFIG_DIR/providers")" ]; then
    cp examples/providers/*.yaml "$CONFIG_DIR/providers/"
fi

cidr_list=""
IFS=',' read -r -a cidrs <<< "$agent_cidrs"
for cidr in "${cidrs[@]}"; do
    cidr="${cidr// /}"
    [ -n "$cidr" ] && cidr_list="$cidr_list\"$cidr\", "
done
{
    echo "# Written by scripts/install.sh: callers allowed to use Outpost."
    echo "hosts:"
    echo "  - id: agents"
    echo "    description: Agents of this deployment ($mode)"
    echo "    cidrs: [${cidr_list%, }]"
    echo "    # The key is OUTPOST_AGENT_KEY in .env; agents send it in X-Outpost-Auth."
    echo "    auth_token_env: OUTPOST_AGENT_KEY"
    echo "    can_call_sensitive: false"
} > "$CONFIG_DIR/hosts.yaml"
chmod 644 "$CONFIG_DIR/hosts.yaml"
chmod 755 "$CONFIG_DIR" "$CONFIG_DIR/providers"
chmod 644 "$CONFIG_DIR"/providers/*

echo "wrote $ENV_FILE and $CONFIG_DIR/; add provider credentials to $ENV_FILE" >&2
docker compose up -d --build
if [ "$mode" = public ]; then
    echo "Outpost is starting at https://$domain" >&2
else
    echo "Outpost is starting at http://outpost:8080 on network outpost-agents" >&2
fi
echo "agents authenticate with the header X-Outpost-Auth: \$OUTPOST_AGENT_KEY (see $ENV_FILE)" >&2
