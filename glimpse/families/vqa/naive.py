"""Naive VQA: no attention. The CNN's grid pooled to one image vector, the question LSTM's final cell
state, their element-wise product, an MLP over the answers. This is the VQA paper's "deeper LSTM Q + norm I"
baseline (Antol et al. 2015; Lu et al.'s VQA_LSTM_CNN) with pytorch-vqa's text processor and classifier.
There is no public checkpoint layout of it (tbmoon/basic_vqa is a sketch, not a format), so glimpse's own
layout reuses pytorch-vqa's names wherever pytorch-vqa has the piece, and is saved in pytorch-vqa's
checkpoint dict like san and rdan:

    v   = mean_{h,w} grid                                  (B, C)    the pooled image vector
    v   = v / (||v||_2 + 1e-8)                             (B, C)    "norm I", as pytorch-vqa normalises its grid
    q   = LSTM(tanh(embedding(tokens))), final CELL state  (B, Q)    pytorch-vqa's TextProcessor, unchanged
    f   = tanh(v_lin v) * tanh(q_lin q)                    (B, F)    each side projected, then multiplied
    logits = lin2(relu(lin1 f))                            (B, A)    pytorch-vqa's Classifier

State dict (the checkpoint's ``weights``, with DataParallel's ``module.`` prefix or without; ``cnn.*`` come
from ``--cnn`` under torchvision's names, as for san and rdan):

    text.embedding.weight                [T, E]     (T = question words + 1; row 0: unknown and padding)
    text.lstm.weight_ih_l0               [4Q, E]
    text.lstm.weight_hh_l0               [4Q, Q]
    text.lstm.bias_ih_l0, bias_hh_l0     [4Q]
    v_lin.weight [F, C], v_lin.bias [F]
    q_lin.weight [F, Q], q_lin.bias [F]
    classifier.lin1.weight [M, F], classifier.lin1.bias [M]
    classifier.lin2.weight [A, M], classifier.lin2.bias [A]

``glimpses`` (B, 1, h, w) is the mean pool's weights, 1 / (h w) in every cell: the model looks at the
whole image evenly, and that uniform map is what it honestly "attends" with. It keeps the head's outputs
those of the attention families, so the pipeline, ``--attention-plot`` and the HTTP API need no special case.

Shapes: B questions, T words, E embedding, Q LSTM features, C vision features, h x w grid, F fused
features, M classifier features, A answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from glimpse.families.vqa.model import VQAModel
from glimpse.families.vqa.saaa import Classifier, TextProcessor


@dataclass
class NaiveConfig:
    backbone: str = "resnet152"
    caffe: bool = False
    image_size: int = 448
    tokens: int = 15193  # question vocabulary + 1 (0: unknown and padding)
    embedding_features: int = 300
    lstm_features: int = 1024
    vision_features: int = 2048
    fused_features: int = 1024  # F: both projections' width, so the product's
    classifier_features: int = 1024
    answers: int = 3000
    max_question_length: int = 23

    def to_dict(self) -> dict:
        return asdict(self)


class NaiveVQA(VQAModel):
    Config = NaiveConfig

    QUESTION_OUTPUTS = ("question",)
    HEAD_INPUTS = ("grid", "question")

    def __init__(self, config: NaiveConfig):
        super().__init__(config.backbone, config.caffe)
        self.config = c = config
        self.text = TextProcessor(c.tokens, c.embedding_features, c.lstm_features)
        self.v_lin = nn.Linear(c.vision_features, c.fused_features)
        self.q_lin = nn.Linear(c.lstm_features, c.fused_features)
        self.classifier = Classifier(c.fused_features, c.classifier_features, c.answers)

    def question(self, tokens, lengths):
        """tokens (B, T), lengths (B,) -> the LSTM's final cell state (B, Q), as pytorch-vqa reads a question."""
        return self.text(tokens, lengths)

    def head(self, grid, question):
        """grid (B, C, h, w), question (B, Q) -> logits (B, A), glimpses (B, 1, h, w): the uniform map of
        the mean pool."""
        _, _, gh, gw = grid.shape
        v = grid.flatten(2).mean(dim=2)  # (B, C)
        v = v / (v.norm(p=2, dim=1, keepdim=True) + 1e-8)
        fused = torch.tanh(self.v_lin(v)) * torch.tanh(self.q_lin(question))  # (B, F)
        glimpses = torch.full_like(grid[:, :1], 1.0 / (gh * gw))  # (B, 1, h, w)
        return self.classifier(fused), glimpses
