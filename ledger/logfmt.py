"""Log lines for people (text) or for log collectors (JSON: one object per line).

JSON lines carry `time` (ISO 8601, UTC, milliseconds), `level`, `logger`, `message`, and `exc` with
the traceback when there is one, so a collector (Loki, Elasticsearch, journald's JSON output) can
index them without parsing free text. `node run --log-json` or `"log_format": "json"` in config.json
asks for them.
"""

from __future__ import annotations

import json
import logging
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out = {"time": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(json_lines: bool, level: int = logging.INFO) -> None:
    """Log to stderr as text or JSON lines; quiet the HTTP client's line per request (observers poll)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
