"""The programs: the bot and its composition root (`main`, with the builders that need only the settings in
`wiring` and the checks before it serves in `startup_checks`), the command line (`cli`), its Bolt and web
apps (`app`), `lipsync-bot doctor` (`doctor`, a package: one module of checks per concern), `lipsync-bot
dub` (`terminal_dub`, on the bot's lanes wired in `dub_lanes`, its terminal display in `dub_display`) and the
embedded Redis for runs without REDIS_URL (`embedded_redis`).

May import: every bot package, and `handlers` (the only package that does).
"""
