"""What only local work runs, never a deployed receiver: the `dev` command (`server`), the
state file through which other commands find it (`state`), the throw-away Redis of `dev`
and the tests (`embedded_redis`) and the file watcher that restarts `dev`'s worker
(`reloader`).

The receiver's web and worker modules never import it; the commands that read Redis
consult `state` only while `REDIS_URL` is unset, to find a running `dev`.
"""
