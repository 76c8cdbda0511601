"""Job payloads: frozen models carrying ids only, never bytes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StagePayload(BaseModel):
    """Which request a stage works on, and for which epoch (attempt generation)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    epoch: int


#: ARQ function names per stage, and the queue each runs on.
STAGE_FUNCTIONS = {
    "voice": "voice_stage",
    "lipsync": "lipsync_stage",
    "enroll_voice": "enroll_voice_stage",
    "enroll_avatar": "enroll_avatar_stage",
}
