"""The HTTP API and admin dashboard: a second front end over the same requests as the bot."""

from api.app import create_app

__all__ = ["create_app"]
