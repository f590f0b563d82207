"""The running assistant's log lines: readable text, or one JSON object per line.

``TIAOJIE_LOG_FORMAT=json`` is for log collectors (Loki, Elasticsearch, journald's JSON
export …) that index fields instead of parsing text. Each line is an object with
``time``, ``level``, ``logger``, ``message``, the process id (several workers write to
one stream) and, for a failure, ``exc_info``. It is the same records in another shape:
what is logged, and at which level, does not change, so message texts stay at DEBUG
in both formats. python-json-logger does the encoding (non-ASCII kept readable).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Record attributes in each JSON line, renamed to the usual collector field names.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields=JSON_RENAMES,
        json_ensure_ascii=False,
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure_logging(level: str, log_format: Literal["text", "json"] = "text") -> None:
    """One handler on the root logger, on stderr, in the chosen format.

    Like :func:`logging.basicConfig` (which it calls), nothing changes when the root
    logger has handlers already (a test runner's capture, say).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
