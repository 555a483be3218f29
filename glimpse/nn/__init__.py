"""Torch building blocks the families share: CNN backbones and beam-search helpers."""
