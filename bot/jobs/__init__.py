"""The job: its model (`model`), the Slack files it names (`files`), every Redis key (`keys`), the store
that keeps jobs in Redis, by concern (`lanes`, `records`, `inbox`, `caches`, `indexes`, `marks`, held
together by `store`, with the scripts' shared pieces in `scripts`), and the decisions a step returns
(`decisions`).

May import: bot.settings, bot.redis_client.
"""
