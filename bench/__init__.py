"""dcae-bench: the reproducibility harness for DC-AE (arXiv 2410.10733).

Run ``python -m bench ls`` for the list of paper artefacts and the command of each.
"""
