"""The run folder: where each file of a run lives and what it is called (`layout`), atomic writes (`files`), reading
and finishing a run (`folder`), the hash chain and its verification (`chain`, `verify`), the run key and the run
cache (`cache`), and `reproduce`. Nothing here imports torch at module level: a run folder can be read, verified
and compared wherever it was downloaded.
"""
