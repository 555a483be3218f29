"""The VQA families, which share one checkpoint layout (pytorch-vqa's dict), one graph cut and one pipeline:

    saaa.py        Show, Ask, Attend, and Answer (Cyanogenoid/pytorch-vqa's modules)
    san.py         Stacked Attention Networks
    rdan.py        Dual Attention Networks, reasoning (r-DAN)
    naive.py       naive VQA, no attention: pooled image vector x question LSTM, then an MLP
    family.py      the Family: its name, import arguments, export, pipeline, calibration (registered)
    model.py       what they share: the question LSTM over padded batches, masks, the graph cut
    checkpoint.py  the checkpoint dict and the CNN's state dict, read without running code from them
    export.py      encoder / question / head graphs, each checked against the modules
    pipeline.py    VQAPipeline: (image, question) pairs in, answers out

A new VQA model of the same layout is one more module here, its name in NAMES and in ``model_class``
(checkpoint.py), and one more ``VQAFamily`` in family.py.
"""

# The VQA families of this folder, each a model module of that name here; VQAPipeline runs them.
NAMES = ("saaa", "san", "rdan", "naive")
