"""What people see: every message and Block Kit view the bot sends (`messages`), with outside text escaped
in one place.

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money, bot.parsing.
"""
