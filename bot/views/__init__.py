"""What people see: every message and Block Kit view the bot sends, one module per feature, with outside
text escaped in one place (`text`).

  text      outside text made inert for mrkdwn (`_escape`, `_code`, `_link`, `_mention`), Block Kit's limits
            (`_fit`), the Message type; every other module builds on it
  formats   how the facts many messages repeat read: a provider's name, a cost, an amount, a duration
  actions   the buttons on a job's messages, their action ids, the Dub again modal (handlers/actions.py)
  jobs      a job's message in the channel and the one thread reply that ends it
  compare   a compare's message and its summary table
  control   the answers to /lipsync list, status, cancel, retry (bot/requests/control.py)
  money     the quote before an expensive dub, balance and budget refusals, /lipsync budget
  shares    the notes on shared files and the reactions on them (bot/requests/shares.py)
  help      /lipsync help and the answers to a command that started nothing
  home      the App Home tab (bot/requests/home.py)

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money, bot.parsing.
"""
