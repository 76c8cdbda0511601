"""The enrollment stages ARQ runs: validate an upload, then store it as a voice or an avatar.

Built from the steps in `jobs.stages`: claim the request, run the engine, publish, finish. A
re-run after the asset was published (the request id marker matches) only registers it again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from engines.calls import Enroll, Prepare
from jayavatar.errors import BadInput, UserError
from jobs.context import StageContext
from jobs.stages import claim, finish, run_engine
from storage.keys import avatar_prefix, voice_prefix


async def enroll_voice_stage(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """Validate a voice sample and store the voice."""
    return await _enroll(ctx, payload, "voice")


async def enroll_avatar_stage(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """Validate avatar media, prepare its face track and store the avatar."""
    return await _enroll(ctx, payload, "avatar")


async def _enroll(ctx: dict[str, Any], payload: dict[str, Any], kind: str) -> str:
    sc: StageContext = ctx["stage"]
    req = await claim(sc, payload, ("queued", "enroll"), "enroll")
    if req is None:
        return "skipped"
    prefix = (voice_prefix if kind == "voice" else avatar_prefix)(req.user, req.name)
    marker = f"{prefix}/request_id"
    if not (sc.storage.exists(marker) and sc.storage.get_bytes(marker).decode() == req.id):
        if sc.storage.exists(prefix) and not req.replace:
            raise BadInput(
                f"you already have a {kind} named {req.name!r}; "
                "enroll again with replace to overwrite it"
            )
        source = sc.storage.local_path(req.upload_key)
        call = Enroll if kind == "voice" else Prepare
        try:
            out, meta = await run_engine(
                sc, req, lambda scratch: call(source, scratch / "asset"), "asset"
            )
        except UserError as exc:
            # The stored name (source.mp4) means nothing to the sender; fronts name their file.
            raise type(exc)(str(exc).replace(source.name, "the file")) from exc
        current = await sc.store.get(req.id)
        if current.final or current.epoch != req.epoch:
            # Cancelled while the engine ran: publishing now would enroll (or replace) an asset
            # the user was told is not coming.
            shutil.rmtree(out.parent, ignore_errors=True)
            return "abandoned"
        (out / "request_id").write_text(req.id)
        (out / "meta.json").write_text(json.dumps(meta))
        sc.storage.publish_dir(prefix, out)
        shutil.rmtree(out.parent, ignore_errors=True)
    else:
        meta = _read_meta(sc.storage.local_path(prefix))
    await sc.accounts.register(kind, req.user, req.name, meta)  # type: ignore[arg-type]
    await finish(sc, req, "enroll", result=meta)
    return f"{kind} enrolled"


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / "meta.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    return data if isinstance(data, dict) else {}
