#!/bin/sh
# Make the secret files docker-compose.yml mounts (once; existing files are kept).
# Random passwords and tokens for PostgreSQL, the phone-number key, the REST and
# metrics tokens and Grafana's admin; empty files for the channels (fill in the ones
# you use: an empty file leaves that channel off). Back up secret_key: without it the
# residents' stored phone numbers cannot be read.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets

new_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

put() {  # put NAME VALUE: write secrets/NAME unless it exists
    if [ ! -e "secrets/$1" ]; then
        printf '%s' "$2" >"secrets/$1"
        echo "made secrets/$1"
    fi
    # The containers read the files as their own users; the 0700 folder keeps other
    # users of this host out.
    chmod 0644 "secrets/$1"
}

put postgres_password "$(new_secret)"
put database_url "postgresql://tiaojie:$(cat secrets/postgres_password)@postgres:5432/tiaojie"
put secret_key "$(new_secret)"
put rest_token "$(new_secret)"
put metrics_token "$(new_secret)"
put grafana_admin_password "$(new_secret)"
for channel in telegram_bot_token telegram_webhook_secret wechat_token wechat_app_secret wechat_aes_key; do
    put "$channel" ""
done
