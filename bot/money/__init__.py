"""What guards spending before a provider is paid: monthly budgets and their reservations (`budgets`) and the
link check that reads a public link's media before anything is spent (`preflight`: its steps and requests;
`link_http`: refusals, the address check, reading answers; `media_probe`: the container parser;
`parser_process`: the process it runs in). The gate that applies them to a job is a lane step
(bot.lanes.gate): it posts prompts, so it sits above views and Slack I/O.

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers.
"""
