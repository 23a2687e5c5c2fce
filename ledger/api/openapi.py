"""The OpenAPI document (`/openapi.json`, shown at `/docs`)."""

from __future__ import annotations

from fastapi import FastAPI


def install_openapi(app: FastAPI) -> None:
    return None
