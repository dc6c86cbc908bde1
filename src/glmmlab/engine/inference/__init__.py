"""Inference on a fit: the record of the estimates (``GlmmResult``), Wald tables, profile intervals,
intervals from profiles and bootstraps, and the advice (warnings) a fit carries."""
