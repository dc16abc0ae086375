"""The programs: the bot and its composition root (`main`), its Bolt and web apps (`app`), `lipsync-bot
doctor` (`doctor`), `lipsync-bot dub` (`terminal_dub`, on the bot's lanes wired in `dub_lanes`, its
terminal display in `dub_display`) and the embedded Redis for runs without REDIS_URL (`embedded_redis`).

May import: every bot package, and `handlers` (the only package that does).
"""
