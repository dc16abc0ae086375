"""The job lanes (submit, poll, send): one module per step a job goes through (`submit`, `poll`, `send`),
the protocols they share (`posting`: post once; `hosting`: shared files to the provider; `turns`: rate
turns and queue notes; `summary`: a compare's table; `upload`: the result video), their schedule
(`timing`) and providers (`provisions`), the one place their decisions are carried out (`pipeline`), the
money gate before a provider is paid (`gate`), rate turns and seats per provider (`ratelimit`), and the
worker that claims due jobs and runs their steps (`worker`).

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money, bot.parsing,
bot.views, bot.slack.
"""
