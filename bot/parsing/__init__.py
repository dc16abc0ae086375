"""What people ask for, read into typed values without I/O: the `/lipsync` text and its options
(`command`) and the files of a shared message, paired into jobs (`file_share`).

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe, bot.providers, bot.money.
"""
