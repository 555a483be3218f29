"""m-DAN: Dual Attention Networks for image-text matching, in glimpse's canonical layout (the paper's).

family.py      the Family: its name, import arguments, export, pipeline, calibration (registered)
model.py       the modules (the numerical truth) and the graphs cut from them
checkpoint.py  {'weights', 'vocab'[, 'config']} and the CNN's state dict, read without running code
export.py      encoder / image_embed / text_embed graphs, each checked against model.py
pipeline.py    MatchPipeline: images and sentences in, embeddings and similarities out
"""
