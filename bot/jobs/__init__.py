"""The job: its model in typed parts (`model`), its one mapping to a flat Redis hash (`codec`), the Slack
files it names (`files`), every Redis key (`keys`), the store
that keeps jobs in Redis, by concern (`lanes`, `records`, `inbox`, `caches`, `indexes`, `marks`, held
together by `store`, with the scripts' shared pieces in `scripts`), and the decisions a step returns
(`decisions`).

May import: bot.settings, bot.redis_client.
"""
