"""Watching the bot run: structured logs with job context (`logs`) and Prometheus metrics (`metrics`).

May import: bot.settings, bot.redis_client, bot.jobs.
"""
