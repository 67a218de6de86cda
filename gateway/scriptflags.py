"""How a Redis at ``maxmemory`` treats each of our Lua scripts: the shebang line (Redis 7
script flags) that starts every script which writes.

Without a shebang, Redis refuses a script under ``maxmemory`` (``noeviction``) only at
its first write, and only if that write may grow memory; a script whose first write is a
trim or a ``ZREM`` then writes freely past the limit. So a full Redis used to accept new
tasks (the submit starts with a trim of the rate log) and let workers claim them (the
claim starts with a ``ZREM``), while it refused the writes that end running tasks: the
finish, the lease renewal, the progress. Leases then lapsed, the reaper handed the tasks
over, and after ``max_attempts`` claims good tasks failed as poison.

With these lines:

- scripts that start new work (:data:`REFUSED_WHEN_FULL`: the submit, the claim, the
  upstream worker's take) are refused whole, before they change anything: a submit gets
  503, queued tasks wait in their queues;
- scripts that move work to its end (:data:`RUNS_WHEN_FULL`: finish, lease renewal,
  progress, annotations, a client's cancel, the reaper's passes) run whatever the memory:
  a few small fields a task (a cancel frees the queued message), and finished records
  expire as usual.
"""

from __future__ import annotations

REFUSED_WHEN_FULL = "#!lua\n"
RUNS_WHEN_FULL = "#!lua flags=allow-oom\n"
