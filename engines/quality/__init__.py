"""The quality report: sync, voice likeness and picture checks of a render."""
