"""Show, Attend and Tell: the soft-attention captioner, imported from sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning.

family.py      the Family: its name, import arguments, export, pipeline, calibration (registered)
model.py       the tutorial's modules (the numerical truth) and the graphs cut from them
reference.py   the tutorial's caption.py beam search, restated (tests, bench)
checkpoint.py  its .pth.tar and WORDMAP json, read without running code from them
export.py      encoder / init / step / step_fused graphs, each checked against model.py
pipeline.py    CaptionPipeline: images in, captions out
contenders.py  the reference loop and glimpse's pipelines, timed alike (bench, demo)
"""
