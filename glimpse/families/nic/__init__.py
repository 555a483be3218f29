"""Show and Tell (NIC): the no-attention captioner, imported from yunjey/pytorch-tutorial's image_captioning.

family.py      the Family: its name, import arguments, export, pipeline, calibration (registered)
model.py       the tutorial's EncoderCNN and DecoderRNN (the numerical truth) and the graphs cut from them
reference.py   sample.py's greedy captioning, restated (tests, bench)
checkpoint.py  its encoder/decoder state dicts and vocab.pkl, read without running code from them
export.py      encoder / init / step graphs, each checked against model.py
pipeline.py    NICPipeline: images in, captions out
contenders.py  sample.py's loop and glimpse's pipelines, timed alike (bench)
"""
