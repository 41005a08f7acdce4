"""Research pipeline for the conversion model: data, features, training, export.

The preprocessing contract lives in models/README.md; features.py is the Python
implementation of it and the TypeScript server implements the same contract.
"""

# Bump when the preprocessing implementation or the artefact layout changes.
PIPELINE_VERSION = "1.1.0"
