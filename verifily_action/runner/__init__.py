"""`verifily runner`: the agent that leases jobs from a Verifily server and runs them through `train`.

- `agent`: the loop — lease, prepare, train in a child, heartbeat, upload checkpoints, report the outcome.
- `lease_client`: the HTTP side (the runner routes; a 410 is `LeaseLost`, no answer or a 5xx is `Unreachable`).
- `heartbeat`: the thread that keeps a lease alive, sends the log lines and learns of a cancel.
- `workspace`: a job's folder — datasets by hash, train.yaml, a checkpoint restored with its paths rewritten.
- `child`: the training child (a forkserver with torch and transformers loaded: 1.3 s a tiny job instead of 5.5 s).
- `snapshot`: the checkpoint tar.gz (the `.partial` folder with only its newest complete checkpoint).
- `devices`: what the runner reports it has (GPUs, for metering).
"""

POLL_SECONDS = 2.0  # between lease calls when the queue has nothing for this runner (--poll)
