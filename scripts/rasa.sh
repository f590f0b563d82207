#!/usr/bin/env bash
# Optional Rasa server path for tiaojie's NLU (TIAOJIE_NLU_BACKEND=rasa).
#
#   scripts/rasa.sh setup     create .venv-rasa with rasa 3.6.21 (Python 3.10)
#   scripts/rasa.sh validate  validate nlu/data against config.yml [--fail-on-warnings]
#   scripts/rasa.sh train     train an NLU-only model -> models/rasa/tiaojie-nlu.tar.gz
#   scripts/rasa.sh serve     run `rasa run --enable-api` on 127.0.0.1:$RASA_PORT (background)
#   scripts/rasa.sh stop      stop the server started by `serve`
#   scripts/rasa.sh status    say whether the server is running
#   scripts/rasa.sh test      serve (training first if there is no model), then run
#                             the rasa_live tests with TIAOJIE_NLU_BACKEND=rasa; stops
#                             the server afterwards if it started it (RASA_KEEP=1 keeps it)
#
# Environment:
#   RASA_PYTHON         Python 3.10 interpreter to build the venv with
#   RASA_PORT           server port (default 5005)
#   RASA_START_TIMEOUT  seconds `serve` waits for GET /status (default 180)
#
# Everything runs from the project root, so config.yml's
# `dictionary_path: nlu/dictionary` resolves. Generated files go to var/rasa/
# and models/rasa/ (both git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

readonly RASA_VERSION="3.6.21"
readonly VENV="$ROOT/.venv-rasa"
readonly VAR_DIR="var/rasa"
readonly MODEL_DIR="models/rasa"
readonly MODEL_NAME="tiaojie-nlu"
readonly MODEL="$MODEL_DIR/$MODEL_NAME.tar.gz"
readonly DATA_DIR="nlu/data"
readonly CONFIG="config.yml"
readonly DOMAIN="$VAR_DIR/domain.yml"
readonly PID_FILE="$VAR_DIR/rasa.pid"
readonly TRAIN_SECONDS_FILE="$VAR_DIR/train_seconds"
readonly LOG_FILE="$VAR_DIR/rasa.log"
readonly HOST="127.0.0.1"
readonly PORT="${RASA_PORT:-5005}"
readonly START_TIMEOUT="${RASA_START_TIMEOUT:-180}"

# Keep Rasa quiet, offline and out of the project root.
export RASA_TELEMETRY_ENABLED=false
export RASA_CACHE_DIRECTORY="$ROOT/$VAR_DIR/cache"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export SQLALCHEMY_SILENCE_UBER_WARNING=1
export MPLCONFIGDIR="$ROOT/$VAR_DIR/matplotlib"
export PIP_DISABLE_PIP_VERSION_CHECK=1

die() {
    echo "rasa.sh: $*" >&2
    exit 1
}

log() {
    echo "rasa.sh: $*" >&2
}

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- interpreter -----------------------------------------------------------

is_py310() {
    [[ -n "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1
}

find_python() {
    if [[ -n "${RASA_PYTHON:-}" ]]; then
        is_py310 "$RASA_PYTHON" || die "RASA_PYTHON=$RASA_PYTHON is not a working Python 3.10"
        echo "$RASA_PYTHON"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local root candidate version
        root="$(pyenv root)"
        # Prefer 3.10.13, then the newest 3.10.x pyenv knows.
        for version in 3.10.13 $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10\.[0-9]+$' | sort -t. -k3,3nr); do
            candidate="$root/versions/$version/bin/python3.10"
            if is_py310 "$candidate"; then
                echo "$candidate"
                return
            fi
        done
    fi
    if command -v python3.10 >/dev/null 2>&1 && is_py310 python3.10; then
        command -v python3.10
        return
    fi
    die "no Python 3.10 found (set RASA_PYTHON, or install one, e.g. pyenv install 3.10.13)"
}

venv_ok() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - "$RASA_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(version("rasa") != sys.argv[1] or not version("jieba"))
PY
}

need_venv() {
    venv_ok || die "no .venv-rasa with rasa $RASA_VERSION: run scripts/rasa.sh setup"
}

rasa_cli() {
    "$VENV/bin/rasa" "$@"
}

cmd_setup() {
    if venv_ok; then
        log ".venv-rasa already has rasa $RASA_VERSION"
    else
        local python start
        python="$(find_python)"
        log "using $python ($("$python" --version 2>&1))"
        start=$SECONDS
        if [[ ! -x "$VENV/bin/python" ]] || ! is_py310 "$VENV/bin/python"; then
            rm -rf "$VENV"
            "$python" -m venv "$VENV"
        fi
        "$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
        # rasa pins almost everything it needs; jieba is for JiebaTokenizer.
        "$VENV/bin/python" -m pip install --quiet \
            "rasa==$RASA_VERSION" \
            "jieba==0.42.1"
        log "installed in $((SECONDS - start)) s"
    fi
    mkdir -p "$VAR_DIR"
    # Smoke test: the CLI and the tokenizer import on this machine.
    "$VENV/bin/python" -c 'import jieba, rasa, rasa.nlu.tokenizers.jieba_tokenizer; print("rasa", rasa.__version__, "jieba", jieba.__version__)'
    log "venv size: $(du -sh "$VENV" | cut -f1)"
}

# --- data ------------------------------------------------------------------

# Rasa needs a domain to validate (and accepts one for training). tiaojie's
# dialogue is its own, so a minimal one is generated into var/rasa/ from the
# intents and entities found in the NLU data; it is never committed.
write_domain() {
    mkdir -p "$VAR_DIR"
    "$VENV/bin/python" - "${1:-$DATA_DIR}" "$DOMAIN" <<'PY'
import sys
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.utils.io import write_yaml

data_dir, out = sys.argv[1], sys.argv[2]
try:
    td = load_data(data_dir)
except RasaException as e:
    sys.exit(f"rasa.sh: cannot load {data_dir}: {e}")
domain = {"version": "3.1", "intents": sorted(td.intents), "entities": sorted(td.entities)}
write_yaml(domain, out)
print(f"rasa.sh: generated {out} ({len(domain['intents'])} intents, "
      f"{len(domain['entities'])} entities)", file=sys.stderr)
PY
}

check_data() {
    if [[ ! -d "$DATA_DIR" ]] || ! compgen -G "$DATA_DIR/*.yml" >/dev/null; then
        die "no training data in $DATA_DIR/*.yml"
    fi
}

# First Rasa's own `rasa data validate` (Rasa 3.6 has no `nlu` subcommand: this
# is the whole check, which for NLU-only data means schema, intents vs. domain,
# duplicate examples; it exits non-zero only on errors). Then the NLU part again,
# run through Rasa's own Validator so that --fail-on-warnings is meaningful:
# YAML schema (on load), intents vs. domain, examples labelled with two
# intents, mandatory config keys. `rasa data validate` itself would add one
# "not used in any story or rule" warning per intent, since there are no
# stories here. On top, entity annotations are checked against the token
# boundaries of the configured JiebaTokenizer (with nlu/dictionary), as
# DIETClassifier does at training time.
# Exit 1 on errors; with --fail-on-warnings also on warnings.
cmd_validate() {
    local strict=0
    case "${1:-}" in
        --fail-on-warnings) strict=1 ;;
        "") ;;
        *) die "validate: unknown option $1 (only --fail-on-warnings)" ;;
    esac
    need_venv
    check_data
    write_domain
    rasa_cli data validate --data "$DATA_DIR" --domain "$DOMAIN" --config "$CONFIG" \
        >"$VAR_DIR/validate.log" 2>&1 || {
        grep -v -E 'DeprecationWarning|not used in any story' "$VAR_DIR/validate.log" | tail -n 40 >&2
        die "rasa data validate failed (full output: $VAR_DIR/validate.log)"
    }
    local unused other
    unused="$(grep -c 'is not used in any story' "$VAR_DIR/validate.log" || true)"
    other="$(grep 'UserWarning' "$VAR_DIR/validate.log" | grep -vc 'is not used in any story' || true)"
    log "rasa data validate: no errors; $unused 'intent not used in any story' warnings (expected: NLU only), $other other warnings (see $VAR_DIR/validate.log)"
    "$VENV/bin/python" - "$CONFIG" "$DOMAIN" "$DATA_DIR" "$strict" <<'PY'
import logging
import sys
import tempfile
import warnings
from pathlib import Path

config_path, domain_path, data_dir, strict = sys.argv[1:5]
strict = strict == "1"
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s - %(message)s")
for noisy in ("tensorflow", "absl", "matplotlib"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

warnings.simplefilter("always", UserWarning)
for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
    warnings.simplefilter("ignore", category)
counted = []
_show = warnings.showwarning


def _count(message, category, *args, **kwargs):
    if issubclass(category, UserWarning):
        counted.append(str(message))
    _show(message, category, *args, **kwargs)


warnings.showwarning = _count

from rasa.shared.exceptions import RasaException  # noqa: E402
from rasa.shared.importers.importer import TrainingDataImporter  # noqa: E402
from rasa.validator import Validator  # noqa: E402

try:
    importer = TrainingDataImporter.load_from_config(config_path, domain_path, [data_dir])
    validator = Validator.from_importer(importer)
    nlu = importer.get_nlu_data()
    config = importer.get_config()
except RasaException as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)

ok = validator.verify_domain_validity()
ok = validator.verify_intents(ignore_warnings=not strict) and ok
ok = validator.verify_example_repetition_in_intents(ignore_warnings=not strict) and ok
validator.warn_if_config_mandatory_keys_are_not_set()

# Entity annotations vs. token boundaries of the configured tokenizer.
tokenizer_conf = next(
    (c for c in config.get("pipeline", []) if c.get("name") == "JiebaTokenizer"), None
)
if tokenizer_conf is not None:
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.nlu.extractors.extractor import EntityExtractorMixin
    from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer
    import jieba

    jieba.setLogLevel(logging.WARNING)
    conf = {**JiebaTokenizer.get_default_config(), **tokenizer_conf}
    conf.pop("name")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = JiebaTokenizer.create(
            conf,
            LocalModelStorage(Path(tmp)),
            Resource("tokenizer"),
            ExecutionContext(GraphSchema({}), "validate"),
        )
        tokenizer.process_training_data(nlu)
        before = len(counted)
        EntityExtractorMixin.check_correct_entity_annotations(nlu)
        if strict and len(counted) > before:
            ok = False

print(
    f"rasa.sh: {len(nlu.intents)} intents, {len(nlu.intent_examples)} examples, "
    f"{len(nlu.entity_examples)} with entities, {len(nlu.entity_synonyms)} synonyms, "
    f"{len(nlu.regex_features)} regexes, {len(nlu.lookup_tables)} lookup tables; "
    f"{len(counted)} warning(s)",
    file=sys.stderr,
)
if not ok:
    print("rasa.sh: validation failed", file=sys.stderr)
    sys.exit(1)
print("rasa.sh: validation passed", file=sys.stderr)
PY
}

# The labelled real messages of the review inbox (training slice only, never the
# holdout slice) join nlu/data: exported with `tiaojie review export` into a temporary
# folder beside copies of the data files, since `rasa train nlu --nlu` takes one path.
# Without a reachable database (or with TIAOJIE_RASA_NO_REVIEWED=1) only nlu/data is used.
reviewed_data_dir() {
    local combined="$1"
    mkdir -p "$combined"
    cp "$DATA_DIR"/*.yml "$combined"/
    if [[ "${TIAOJIE_RASA_NO_REVIEWED:-0}" != "1" && -x "$ROOT/.venv/bin/tiaojie" ]]; then
        if "$ROOT/.venv/bin/tiaojie" review export --out "$combined/reviewed" >&2; then
            log "including reviewed messages from the review inbox"
        else
            log "review export failed (no database?); training on $DATA_DIR only"
            rm -rf "$combined/reviewed"
        fi
    fi
}

cmd_train() {
    need_venv
    check_data
    local combined
    combined=$(mktemp -d "${TMPDIR:-/tmp}/tiaojie-rasa-data.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the folder is local to this call
    trap "rm -rf '$combined'" RETURN
    reviewed_data_dir "$combined"
    write_domain "$combined"
    mkdir -p "$MODEL_DIR"
    local start end
    start=$(date +%s.%N)
    rasa_cli train nlu \
        --nlu "$combined" \
        --config "$CONFIG" \
        --domain "$DOMAIN" \
        --out "$MODEL_DIR" \
        --fixed-model-name "$MODEL_NAME" \
        "$@"
    end=$(date +%s.%N)
    [[ -f "$MODEL" ]] || die "training finished but $MODEL is missing"
    # Kept for benchmarks/nlu_compare.py --rasa-model (training takes long on 2 cores).
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f\n", e - s }' >"$TRAIN_SECONDS_FILE"
    echo "rasa.sh: trained $MODEL in $(cat "$TRAIN_SECONDS_FILE") s"
}

# --- server ----------------------------------------------------------------

server_pid() {
    # Print the pid of our running server, or fail.
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    grep -q rasa "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

status_ok() {
    curl -fsS --max-time 5 "http://$HOST:$PORT/status" >/dev/null 2>&1
}

cmd_serve() {
    need_venv
    local pid
    if pid="$(server_pid)"; then
        if status_ok; then
            log "already running (pid $pid) on http://$HOST:$PORT"
            return
        fi
        log "pid $pid is running but not answering yet; waiting"
    else
        [[ -f "$MODEL" ]] || die "no model at $MODEL: run scripts/rasa.sh train"
        if status_ok; then
            die "something else already answers on http://$HOST:$PORT"
        fi
        mkdir -p "$VAR_DIR"
        rm -f "$PID_FILE"
        # setsid: its own session, so it outlives the calling shell.
        setsid "$VENV/bin/rasa" run \
            --enable-api \
            --model "$MODEL" \
            --interface "$HOST" \
            --port "$PORT" \
            </dev/null >"$LOG_FILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PID_FILE"
        log "started pid $pid, log $LOG_FILE"
    fi
    local waited=0
    until status_ok; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 30 "$LOG_FILE" >&2 || true
            die "server exited before answering (see $LOG_FILE)"
        fi
        if ((waited >= START_TIMEOUT)); then
            tail -n 30 "$LOG_FILE" >&2 || true
            die "no answer from http://$HOST:$PORT/status after ${START_TIMEOUT} s (pid $pid still running; scripts/rasa.sh stop)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "rasa.sh: serving on http://$HOST:$PORT (pid $pid, ready after ${waited} s)"
}

cmd_stop() {
    local pid
    if ! pid="$(server_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= 30)); then
            log "pid $pid ignored SIGTERM for 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE"
    log "stopped pid $pid"
}

cmd_status() {
    local pid
    if pid="$(server_pid)"; then
        if status_ok; then
            echo "running (pid $pid) on http://$HOST:$PORT"
        else
            echo "starting (pid $pid), not answering yet on http://$HOST:$PORT"
        fi
    else
        echo "not running"
        return 1
    fi
}

# The live tests need a real server. Train if there is no model, serve if not
# running, and stop afterwards only what this command started.
cmd_test() {
    need_venv
    [[ -x "$ROOT/.venv/bin/pytest" ]] || die "no .venv/bin/pytest: install the project with dev extras first"
    local started=0 rc=0
    if ! server_pid >/dev/null; then
        [[ -f "$MODEL" ]] || cmd_train
        cmd_serve
        started=1
    elif ! status_ok; then
        cmd_serve
    fi
    RASA_URL="http://$HOST:$PORT" TIAOJIE_NLU_BACKEND=rasa \
        "$ROOT/.venv/bin/pytest" -m rasa_live tests/test_rasa_live.py "$@" || rc=$?
    if ((started)) && [[ "${RASA_KEEP:-0}" != 1 ]]; then
        cmd_stop
    fi
    return "$rc"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        setup) cmd_setup "$@" ;;
        validate) cmd_validate "$@" ;;
        train) cmd_train "$@" ;;
        serve) cmd_serve "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        test) cmd_test "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"; exit  # one line: bash must not read on if this file changes while running
