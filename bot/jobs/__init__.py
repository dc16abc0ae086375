"""The job: its model (`model`), the Slack files it names (`files`), every Redis key (`keys`), the store
that keeps jobs and their lanes in Redis (`store`), and the decisions a step returns (`decisions`).

May import: bot.settings, bot.redis_client.
"""
