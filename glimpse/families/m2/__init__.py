"""M2: the Meshed-Memory Transformer captioner, imported from aimagelab/meshed-memory-transformer.

family.py      the Family: its name, import arguments, export, pipeline, calibration (registered)
model.py       the repository's modules with its state-dict keys, and the graphs cut from them
reference.py   its BeamSearch, restated (tests, demo)
checkpoint.py  its checkpoint and vocab.pkl, read without running code from them
export.py      encoder / init / step graphs (fixed-size self-attention caches), checked against model.py
search.py      its beam search semantics over the step graph
pipeline.py    M2Pipeline: detection features in, captions out
"""
