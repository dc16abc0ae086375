"""The job lanes (submit, poll, send): the steps a job goes through (`pipeline`), the money gate before a
provider is paid (`gate`), rate turns and seats per provider (`ratelimit`), and the worker that claims due
jobs and carries out the steps' decisions (`worker`).

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money, bot.parsing,
bot.views, bot.slack.
"""
