#!/usr/bin/env python3
"""Record real responses of a running Rasa server into tests/data/rasa_recordings/.

The recordings let tiaojie's Rasa HTTP engine be tested against the exact JSON
a Rasa 3.6 server sends, without running Rasa. Start the server first
(`scripts/rasa.sh serve`), then run:

    python3 scripts/record_rasa.py [--url http://127.0.0.1:5005] [--out DIR]

Writes `status.json` (GET /status), `version.json` (GET /version), one
`parse_<name>.json` per text (POST /model/parse), each parse file being
{"request": {...}, "response": <body as JSON>, "status": <HTTP status>}, and
`error_<name>.json` for Rasa's own answer to a body that is not JSON.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "data" / "rasa_recordings"
DEFAULT_URL = f"http://127.0.0.1:{os.environ.get('RASA_PORT', '5005')}"

# A long, realistic text: a labour complaint repeated to exactly 3000 characters.
_LONG_UNIT = (
    "我在沙井一家电子厂上班，老板已经拖欠我们二十多个工人三个月工资了，"
    "每个人大概八千元，我们去找了好几次都说没钱，现在厂门也关了，"
)
LONG_TEXT = (_LONG_UNIT * (3000 // len(_LONG_UNIT) + 1))[:3000]

# name -> text sent to POST /model/parse
TEXTS: dict[str, str] = {
    "labor_wage_arrears": "老板拖欠我三个月工资一共8000元，在福永的一个厂",
    "gig_rider_deduction": "我是美团外卖骑手，平台无缘无故扣了我500块钱",
    "tenancy_deposit": "二房东不退押金，说墙被我弄脏了，押金有两千块",
    "neighbor_noise": "楼上邻居天天半夜装修，吵得我们睡不着觉",
    "family_elder_support": "我哥不愿意出钱赡养我妈，我们兄妹几个吵翻了",
    "traffic_ebike": "昨天在西乡被一辆电动车撞了，对方不肯赔医药费",
    "consumer_prepaid_card": "健身房跑路了，我办的预付卡还有3000元没用完",
    "greet": "你好",
    "emergency_knife": "他拿着刀说要杀了我",
    "english": "My landlord refuses to return my deposit of 2000 yuan.",
    "empty": "",
    "long_3000_chars": LONG_TEXT,
    "emoji_only": "😡😭🙏",
    "gibberish": "qwzx plmk vbnt",
    "cantonese_traditional": "隔籬屋成日嘈到凌晨,佢哋唔肯收聲,我哋點算",
}

# name -> raw (non-JSON) body sent to POST /model/parse, to record Rasa's error shape.
RAW_BODIES: dict[str, bytes] = {
    "error_not_json": b"this is not json",
}


def request(
    url: str, body: dict[str, Any] | None = None, raw_body: bytes | None = None
) -> tuple[int, Any]:
    """Send GET (no body) or POST (JSON or raw body); return (status, parsed JSON body)."""
    data = raw_body
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:  # 4xx/5xx still carry a JSON body
        status, raw = err.code, err.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def write(path: Path, payload: Any) -> None:
    """Pretty JSON, with Rasa's ``[start, end]`` token pairs kept on one line each."""
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    text = re.sub(r"\[\s+(\d+),\s+(\d+)\s+\]", r"[\1, \2]", text)
    path.write_text(text + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server base URL ({DEFAULT_URL})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    args.out.mkdir(parents=True, exist_ok=True)

    try:
        for name, path in (("status", "/status"), ("version", "/version")):
            status, body = request(base + path)
            if status != 200:
                print(f"GET {path}: HTTP {status}", file=sys.stderr)
                return 1
            write(args.out / f"{name}.json", body)
            print(f"{name}.json: HTTP {status}")
        for name, text in TEXTS.items():
            req = {"text": text}
            status, body = request(base + "/model/parse", req)
            write(
                args.out / f"parse_{name}.json",
                {"request": req, "response": body, "status": status},
            )
            summary = body.get("intent") if isinstance(body, dict) else body
            shown = json.dumps(summary, ensure_ascii=False)[:100]
            print(f"parse_{name}.json: HTTP {status} {shown}")
        for name, raw in RAW_BODIES.items():
            status, body = request(base + "/model/parse", raw_body=raw)
            write(
                args.out / f"{name}.json",
                {"request_raw": raw.decode("utf-8"), "response": body, "status": status},
            )
            print(f"{name}.json: HTTP {status}")
    except urllib.error.URLError as err:
        print(
            f"cannot reach {base}: {err.reason} (start it: scripts/rasa.sh serve)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
