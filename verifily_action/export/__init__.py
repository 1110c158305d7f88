"""`verifily export`: a verified run as a folder others can load without Verifily — the base model with the run's
LoRA adapter merged into its weights (`--merged`), or the adapter alone (`--adapter-only`), each with the run's
tokenizer and a model card naming the run key and root hash (`bundle`).

Nothing is read from a run whose hash chain does not hold (the check `reproduce --verify-only` makes), and nothing
half-written is ever left under the output's name: the export is built in a hidden folder beside it and renamed into
place at the end. torch, transformers and peft are imported inside functions only.
"""
