"""Everything rendered for people, and the one escaper every markdown output goes through (`escape.inert`).

`summary` (plain-English sentences and number formats), `comparison` (a comparison as a terminal table, markdown or
JSON), `results` (one evaluation: terminal table, notes, markdown, failure breakdown), `mermaid` (the bar chart in
the PR comment), `charts` (PNG), `pr` (the PR comment and job summary). Imports neither torch nor transformers.
"""
