"""The Verifily server: datasets shared by `name@version` over HTTP (FastAPI + Uvicorn, SQLAlchemy 2, Alembic), and
a run store with a model registry.

Imported only by `verifily server …` and the tests: nothing here loads at CLI start-up. Modules: `settings` (every
default), `models` (tables), `database` (engines and migrations), `blobs` (the content-addressed store), `auth`
(tokens, scopes, rate limit), `names` (the rules for names and paths), `app` (the FastAPI app, health and tokens),
`datasets_api` (uploads and dataset versions), `commit` (what is verified before a version becomes visible),
`runs_api` and `run_check` (runs recorded only when their hash chain holds; model versions and stages).
"""
