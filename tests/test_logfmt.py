"""JSON log lines (`node run --log-json`): one object per line, the traceback kept."""

from __future__ import annotations

import json
import logging
import sys

from ledger.logfmt import JsonFormatter


def test_a_log_record_is_one_json_object_with_time_level_logger_message_and_traceback() -> None:
    try:
        raise ValueError("disk said no")
    except ValueError:
        record = logging.LogRecord("ledger.node", logging.ERROR, __file__, 1, "block %d failed", (7,), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert (out["level"], out["logger"], out["message"]) == ("ERROR", "ledger.node", "block 7 failed")
    assert out["time"].endswith("Z") and len(out["time"]) == len("2026-12-02T05:00:00.000Z")
    assert "ValueError: disk said no" in out["exc"]
