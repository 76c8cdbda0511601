"""Autocomplete for voice, avatar and language options: only what the user may use."""

from __future__ import annotations

from discord import app_commands

from jayavatar import catalog
from jayavatar.settings import Settings
from jobs.accounts import Accounts, AssetKind

MAX_CHOICES = 25  # Discord shows at most 25 suggestions


async def asset_choices(
    accounts: Accounts, kind: AssetKind, user: str, current: str, own_only: bool = False
) -> list[app_commands.Choice[str]]:
    """Suggest the user's own assets by name and (unless `own_only`) shared ones as `owner/name`."""
    needle = current.strip().casefold()
    out = []
    found = await (accounts.owned(kind, user) if own_only else accounts.usable(kind, user))
    for asset in found:
        ref = asset.name if asset.owner == user else asset.ref
        if needle in ref:
            out.append(app_commands.Choice(name=ref, value=ref))
    return out[:MAX_CHOICES]


def language_choices(settings: Settings, current: str) -> list[app_commands.Choice[str]]:
    """Suggest the languages the configured voice engine speaks."""
    codes = sorted(catalog.engine(settings.voice_engine).languages)
    needle = current.strip().lower()
    return [app_commands.Choice(name=c, value=c) for c in codes if needle in c][:MAX_CHOICES]
