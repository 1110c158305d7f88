"""The run folder: where each file of a run lives and what it is called (`layout`), atomic writes (`files`), reading
and finishing a run (`folder`), one process per run (`lock`), the hash chain and its verification (`chain`,
`verify`), the run key and the run cache (`cache`), and `reproduce`. Nothing here imports torch at module level: a
run folder can be read, verified and compared wherever it was downloaded.

Crash safety: every change of a run leaves the old state or the new one at every point a process can be killed.
Files are written whole (`files.write_text_atomic`: a temporary `.<name>.*.tmp` beside the file, fsync, rename; a
temporary file is never a run file, `layout.is_scratch`). A run is built in `<name>.partial/` and renamed once
sealed. A sealed run is changed (eval adds its results and extends the chain) as a whole: a copy of it is made
beside it (hard links), changed, and swapped in with one atomic exchange of the two names (`folder.replace_run`,
where the sequence and its fallback are spelled out). What a killed process leaves (a sealed `.partial` not yet
renamed, a hidden copy beside the run) is finished or deleted by the next command on that run (`folder.recover`),
under the run's lock (`lock`), which train, resume, eval and the run cache's copies hold.
"""
