"""The HTTP API and admin dashboard: a second front end over the same requests as the bot.

`api.app.create_app` builds the application.
"""
