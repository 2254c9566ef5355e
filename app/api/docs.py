"""Swagger UI's files, served from the ``swagger-ui-bundle`` package (no CDN needed)."""
from __future__ import annotations

from apiflask import APIBlueprint
from flask import send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = APIBlueprint("docs_assets", __name__, enable_openapi=False)

#: Where the interactive docs page finds Swagger UI.
ASSETS_URL = "/docs/assets"


@bp.get(f"{ASSETS_URL}/<path:filename>")
def asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
