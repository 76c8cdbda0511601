"""Imported ahead by the engine children's fork server (see `jobs.enginehost`), nowhere else.

coqui-tts's XTTS classes take most of a voice engine's start (7.8 s of imports on an H100 host,
through transformers and librosa); imported once in the fork server, every
engine child forked from it starts with them.
"""

from engines.voice.xtts_model import coqui

coqui()
