"""A frozen copy of the library's reference-loop optimizers as of version 0.3.0
(``updates``, ``norms``, ``optim``), kept as an oracle: every optimizer of the new
rules-based library must equal these to 1e-10 in float64. Do not edit."""
