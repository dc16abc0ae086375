"""Every Redis key the bot uses, in one place.

All keys share the `{lip}` hash tag, so the Lua scripts also work on Redis Cluster. Scripts receive their
keys through KEYS; where a script must build a key itself (a job's hash from a claimed id, a month's budget
spend), it receives the key's prefix from here through ARGV.

  {lip}:job:<job id>                    hash  the job (bot.jobs.model); kept a week once it has ended
  {lip}:<lane>                          zset  job id → when it is next due (ms); lanes: submit, poll, send
  {lip}:<lane>:lease                    hash  job id → the token of the process that claimed it
  {lip}:inbox, {lip}:inbox:lease        zset, hash  requests acknowledged but not yet made into jobs
  {lip}:inbox:item:<key>                string  one such request
  {lip}:seen:<marker>                   string  a dedupe marker ("cmd:<trigger>" holds the job it created)
  {lip}:group:<group>, …:owner          hash, string  the ended members of a group of jobs, and who posts
  {lip}:result:<cache key>              string  the result cache: an earlier result of the same inputs (the
                                              key's first 32 characters; before, the whole key)
  {lip}:value:<name>                    string  a small shared value with a lifetime (a balance, a digest)
  {lip}:asset:<file key>                string  what a provider's upload of a Slack file returned
  {lip}:lock:<name>                     string  a lock's owner
  {lip}:failed:<YYYYMMDD>               set   the jobs that failed that day (UTC)
  {lip}:user:<team>:<user>              zset  a person's jobs (their index, for `list` and App Home)
  {lip}:shorts:<YYYYMMDD>:<c>           hash  short id → the rest of its job id, for the jobs created that
                                              day (UTC) whose short id starts with <c>; ~8 days
  {lip}:short:<short id>                string  a short id → its job id (written before the day hashes; read
                                              until the last of them expires, 7 days)
  {lip}:task:<provider>:<task id>       string  a provider's task → its job id, for webhooks
  {lip}:media:<media id>                string  a Slack file served at a link providers fetch
  {lip}:ratelimit:<digest>              zset  a provider account's recent submits (rate turns)
  {lip}:seats:<digest>                  zset  a provider account's running tasks (seats)
  {lip}:budget:limits:<team>            hash  <scope>:<id>:<unit> → limit (micro-units); kept until removed
  {lip}:budget:spent:<YYYY-MM>:<team>   hash  <scope>:<id>:<unit> → spent this month, reservations
                                              included (micro-units); expires ~400 days after its last job
  {lip}:budget:job:<job id>             hash  month, team, channel, user, unit, micros: one reservation,
                                              until settled; expires after ~70 days
A budget's <scope> is "channel" or "user", <id> a Slack id (never contains ':'); the unit is last, so it may.
"""

from __future__ import annotations

PREFIX = "{lip}"
JOB = f"{PREFIX}:job:"  # a job's key is this and its id (the claim scripts build it so)
INBOX = f"{PREFIX}:inbox"
INBOX_LEASE = f"{PREFIX}:inbox:lease"
BUDGET_SPENT = f"{PREFIX}:budget:spent:"  # then <YYYY-MM>:<team> (the budget scripts build it so)


def job_key(job_id: str) -> str:
    return f"{JOB}{job_id}"


def queue_key(lane: str) -> str:
    return f"{PREFIX}:{lane}"


def lease_key(lane: str) -> str:
    return f"{PREFIX}:{lane}:lease"


def inbox_item_key(key: str) -> str:
    return f"{INBOX}:item:{key}"


def seen_key(marker: str) -> str:
    return f"{PREFIX}:seen:{marker}"


def group_key(group: str) -> str:
    return f"{PREFIX}:group:{group}"


def group_owner_key(group: str) -> str:
    return f"{PREFIX}:group:{group}:owner"


def result_key(cache_key: str) -> str:
    return f"{PREFIX}:result:{cache_key}"


def value_key(name: str) -> str:
    return f"{PREFIX}:value:{name}"


def asset_key(file_key: str) -> str:
    return f"{PREFIX}:asset:{file_key}"


def lock_key(name: str) -> str:
    return f"{PREFIX}:lock:{name}"


def failed_key(day: str) -> str:
    """`day` is YYYYMMDD (UTC)."""
    return f"{PREFIX}:failed:{day}"


def user_jobs_key(team_id: str, user: str) -> str:
    return f"{PREFIX}:user:{team_id}:{user}"


def short_key(short: str) -> str:
    """Written by versions before `short_ids_key`; still read, until the last of these expires."""
    return f"{PREFIX}:short:{short}"


def short_ids_key(day: str, short: str) -> str:
    """`day` is YYYYMMDD (UTC) of the job's creation. One hash per day and first character of the short
    id, so each stays small enough for Redis's compact encoding (128 entries by default: 2,048 jobs a
    day)."""
    return f"{PREFIX}:shorts:{day}:{short[:1]}"


def task_key(provider: str, task_id: str) -> str:
    return f"{PREFIX}:task:{provider}:{task_id}"


def media_key(media_id: str) -> str:
    return f"{PREFIX}:media:{media_id}"


def ratelimit_key(digest: str) -> str:
    return f"{PREFIX}:ratelimit:{digest}"


def seats_key(digest: str) -> str:
    return f"{PREFIX}:seats:{digest}"


def budget_limits_key(team: str) -> str:
    return f"{PREFIX}:budget:limits:{team}"


def budget_spent_key(team: str, month: str) -> str:
    return f"{BUDGET_SPENT}{month}:{team}"


def budget_reservation_key(job_id: str) -> str:
    return f"{PREFIX}:budget:job:{job_id}"
