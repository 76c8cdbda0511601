"""The Discord front end of JayAvatar: slash commands, live progress and exactly-once delivery."""
