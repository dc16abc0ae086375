"""What people ask for, answered: new jobs from `/lipsync` (`intake`), list, status, cancel, retry and budgets
on one's own jobs (`control`), jobs from shared files (`shares`) and the App Home (`home`).

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money, bot.parsing,
bot.views, bot.slack, bot.lanes.
"""
