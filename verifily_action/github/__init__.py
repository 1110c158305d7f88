"""The GitHub layer of the Action: REST client, event parsing, baseline lookup, sticky comments, workflow
commands and artifact upload. Nothing here imports torch; the Action's flow (`verifily_action.action`) uses it.
"""
