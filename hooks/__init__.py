"""The CDS hooks this service answers: one module per hook."""
