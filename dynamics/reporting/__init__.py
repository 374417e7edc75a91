"""The reporting layer: summary.json, text reports, plots, figures and the derivation document."""
