# Optional Rasa 3.6 NLU server for tiaojie (compose profile "rasa";
# TIAOJIE_NLU_BACKEND=rasa). Built the way `make rasa` builds it (scripts/rasa.sh, Python
# 3.10, rasa 3.6.21 and jieba), from the same nlu/data and config.yml as the built-in
# engine. The model is trained on the first start into the rasa-models volume (over half
# an hour on 2 cores; tiaojie falls back to its built-in engine until Rasa answers).
#
#   docker build -f deploy/rasa.Dockerfile -t tiaojie-rasa .   (from the repository root)
FROM python:3.10-slim

ENV RASA_TELEMETRY_ENABLED=false \
    TIAOJIE_RASA_NO_REVIEWED=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 10002 rasa \
    && useradd --system --uid 10002 --gid rasa --home-dir /app rasa \
    && mkdir -p /app/models/rasa /app/var/rasa \
    && chown -R rasa:rasa /app
WORKDIR /app
COPY --chown=rasa:rasa config.yml ./
COPY --chown=rasa:rasa nlu/data ./nlu/data
COPY --chown=rasa:rasa nlu/dictionary ./nlu/dictionary
COPY --chown=rasa:rasa scripts/rasa.sh ./scripts/rasa.sh
USER rasa
RUN RASA_PYTHON=/usr/local/bin/python3.10 bash scripts/rasa.sh setup

EXPOSE 5005
CMD ["bash", "-c", "test -f models/rasa/tiaojie-nlu.tar.gz || bash scripts/rasa.sh train; exec .venv-rasa/bin/rasa run --enable-api --model models/rasa/tiaojie-nlu.tar.gz --interface 0.0.0.0 --port 5005"]
