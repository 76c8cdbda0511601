"""Voice engines: text to speech in the user's voice."""
