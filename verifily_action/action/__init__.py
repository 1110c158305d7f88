"""The GitHub Action: `inputs` (read and validate INPUT_*), `stages` (train, evaluate, compare and render, through the
package), `flow` (the two modes, called by entrypoint.py) and `gpu_check` (a CUDA config in a container without a GPU).
"""
