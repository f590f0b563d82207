"""``tiaojie chat`` driven with piped input, as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_console_chat_files_a_case(sqlite_url: str, tmp_path: Path, nlu_model_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(
        TIAOJIE_DATABASE_URL=sqlite_url,
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_MODEL_DIR=str(nlu_model_dir),
    )
    script = "\n".join(
        [
            "楼上邻居家天天漏水到我家卫生间,说了好几次都不修",
            "1",  # [1] 是: yes, a neighbour dispute
            "1",  # [1] the first kind of problem
            "楼上602的住户",  # who the neighbour is
            "1",  # [1] 跳过: skip "since when"
            "1",  # [1] 新安 street
            "1",  # [1] its first community
            "13812345678",
            "submit",  # the review: "✅ 同意提供给调解员,提交" (consent asked here)
            "",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--user", "tester"],
        input=script,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "邻里纠纷" in result.stdout and "[1]" in result.stdout
    assert "138****5678" in result.stdout and "13812345678" not in result.stdout
    reference = result.stdout.split("案件编号:")[1][:16]
    assert reference.startswith("BA-")
    shown = subprocess.run(
        [sys.executable, "-m", "bot", "case", "show", reference],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "dispute_neighbor" in shown.stdout or "邻里" in shown.stdout
    assert "楼上602的住户" in shown.stdout
