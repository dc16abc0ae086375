"""Slack I/O: posting and its errors (`out`), guarding incoming requests (`inbound`), Socket Mode
(`socket_mode`), streaming Slack files to providers (`transfer`), serving them at links providers fetch
(`media_links`) and uploading results into threads (`result_upload`).

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money, bot.parsing,
bot.views.
"""
