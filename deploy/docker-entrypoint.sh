#!/bin/sh
# Container entrypoint: secrets from files, a clean metrics directory, the schema
# migrated, then `tiaojie "$@"` (default: run --workers 2) as PID 1's only child.
set -eu

# Docker/compose secrets arrive as files: VAR_FILE=/run/secrets/x sets VAR from it, so
# no secret has to sit in the compose file or the environment of `docker inspect`.
for var in TIAOJIE_DATABASE_URL TIAOJIE_SECRET_KEY TIAOJIE_REST_TOKEN TIAOJIE_METRICS_TOKEN \
    TELEGRAM_BOT_TOKEN TELEGRAM_WEBHOOK_SECRET WECHAT_TOKEN WECHAT_APP_SECRET WECHAT_AES_KEY; do
    eval "file=\${${var}_FILE:-}"
    if [ -n "$file" ]; then
        if [ ! -r "$file" ]; then
            echo "tiaojie-entrypoint: ${var}_FILE=$file cannot be read" >&2
            exit 2
        fi
        value=$(cat "$file")
        unset "${var}_FILE"
        # An empty file means "not set" (a channel left off), not an empty secret.
        if [ -n "$value" ]; then
            export "$var=$value"
        fi
    fi
done

# prometheus-client's multiprocess files of an earlier run would add to this run's
# counters: start from an empty directory.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
fi

if [ "${1:-}" = "run" ]; then
    tiaojie db upgrade
fi
exec tiaojie "$@"
