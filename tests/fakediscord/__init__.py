"""A local fake Discord (REST + gateway) for end-to-end tests of the bot.

See `server.FakeDiscord`; it speaks enough of API v10 for discord.py 2.7.
"""
