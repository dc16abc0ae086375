"""The lip-sync bot: packages by role, imports running one way, lowest first.

  bot.settings, bot.redis_client  the one settings object and the Redis URL forms it checks (base)
  bot.retry      the one backoff formula, and who retries what (base)
  bot.jobs       the job model, its Redis keys, its store and the step decisions
  bot.observe    logs and metrics
  bot.providers  the lip-sync providers' clients and their webhooks
  bot.money      budgets and the link check (what guards spending)
  bot.parsing    what people type and share, read into typed requests (no I/O)
  bot.views      the messages people see
  bot.slack      Slack I/O: posts, uploads, downloads, Socket Mode, request guards, hosted media links
  bot.lanes      the job lanes: their steps, the money gate, rate turns and the worker that runs them
  bot.requests   what people ask for: new jobs, control of their jobs, file shares, App Home
  handlers       (top-level package) Bolt's listeners, wired to bot.requests
  bot.programs   the programs (the bot, `doctor`, `dub`) and the composition root

A module may import from its own package and from the packages above it in this list; only
bot.programs imports `handlers`. tests/test_layout.py holds the order and checks it.
"""
