"""The client side of the Verifily server: credentials (`verifily login`), HTTP calls, dataset push and pull, and
the pull-through cache that `train`/`eval` use for `name@version` when VERIFILY_SERVER is set."""
